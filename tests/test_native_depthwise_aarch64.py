"""Ladder step 4 for the native depthwise kernel: its NEON builds RUN on aarch64.

The kernel sources the patch series installs into the real 2.6.0 tree (aten/src/ATen/
native/{,cpu/}DepthwiseConv2dNative*) are cross-compiled, with out_of_tree.cpp's operator
registrations, into a library loaded by the official torch 2.6.0 aarch64 wheel under
qemu-user -- twice, the two ways an aarch64 build compiles them:

* plain ARMv8-A (the wheel's DEFAULT capability): NEON fp32, fp16 accumulated in fp32;
* ``-march=armv8.2-a+fp16`` (the Jetson targets, and `python build.py kernel` on a CPU with
  asimdhp): fp16 convs accumulate in fp16 vector arithmetic (8 lanes per register).

Each is compared with a float64 reference computed in the same aarch64 process. The
capability plan (defines, empty dispatch slots) is recipe.kernel's, i.e. exactly what
`python build.py kernel` uses on an aarch64 machine. Timings under qemu mean nothing.
"""
from __future__ import annotations

import json
import os
import shutil
import textwrap

import pytest

from recipe import REPO_ROOT
from recipe.kernel import AARCH64_FP16_FLAGS, ROUTING_DIR, capability_plan, tree_sources

CPP = os.path.join(REPO_ROOT, "tests", "cpp")

# (batch, channels, multiplier, H, W, (kh, kw), (sh, sw), (ph, pw), (dh, dw))
CASES = [
    (1, 4, 1, 1, 1, (3, 3), (1, 1), (1, 1), (1, 1)),      # 1x1 map
    (2, 6, 2, 2, 3, (3, 3), (1, 1), (1, 1), (1, 1)),      # 2x3 map, multiplier 2
    (1, 8, 1, 17, 19, (3, 3), (2, 2), (1, 1), (1, 1)),    # stride 2
    (3, 5, 3, 12, 9, (5, 3), (1, 2), (2, 0), (2, 1)),     # non-square, dilation, stride
    (1, 24, 1, 15, 15, (7, 7), (1, 1), (3, 3), (1, 1)),   # ConvNeXt 7x7
    (2, 3, 4, 11, 13, (11, 11), (3, 1), (5, 7), (1, 1)),  # k 11, pad > k/2
    (1, 40, 1, 9, 33, (3, 3), (1, 1), (1, 1), (3, 3)),    # more channels than a vector
    (1, 384, 1, 56, 56, (3, 3), (1, 1), (1, 1), (1, 1)),  # the original report's layer
]
BACKWARD_CASES = [CASES[1], CASES[3], CASES[5]]

# max |y - ref| / max |ref| against float64 of the same rounded inputs.
FP32_TOLERANCE = 1e-5
BF16_TOLERANCE = 1.6e-2
FP16_TOLERANCE_FP32_ACCUM = 2e-3      # only the output's rounding
FP16_TOLERANCE_FP16_ACCUM = 1e-2      # every partial sum rounded to fp16 (up to 121 taps)

SCRIPT = """
import json, torch, torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
torch.ops.load_library(LIB)
torch.manual_seed(0)
out = {"fp16_vector_arithmetic": torch.ops.graft_build_info.fp16_vector_arithmetic(),
       "registered_aten_kernels": torch.ops.native_dwconv.registered_aten_kernels(),
       "forward": [], "backward": []}

def err(y, ref):
    return ((y.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()

for n, c, m, h, w, k, s, p, d in CASES:
    x0, w0, b0 = torch.randn(n, c, h, w), torch.randn(c * m, 1, *k), torch.randn(c * m)
    for dtype in DTYPES:
        dt = getattr(torch, dtype)
        for cl in (False, True):
            x, wt, b = x0.to(dt), w0.to(dt), b0.to(dt)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.ops.aten._conv_depthwise2d(x, wt, list(k), b, list(s), list(p), list(d))
            ref = F.conv2d(x.double(), wt.double(), b.double(), s, p, d, groups=c)
            ok_shape = list(y.shape) == list(ref.shape) and y.dtype == dt
            out["forward"].append([[n, c, m, h, w, k, s, p, d], dtype, cl, ok_shape, err(y, ref),
                                   y.float().sum().item()])

for n, c, m, h, w, k, s, p, d in BACKWARD_CASES:
    x = torch.randn(n, c, h, w, dtype=torch.float32, requires_grad=True)
    wt = torch.randn(c * m, 1, *k, requires_grad=True)
    b = torch.randn(c * m, requires_grad=True)
    counts = {}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        y = F.conv2d(x, wt, b, s, p, d, groups=c)      # routed by the shim
        go = torch.randn_like(y)
        y.backward(go)
    counts = {e.key: e.count for e in prof.key_averages()}
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, wt, b))
    F.conv2d(xd, wd, bd, s, p, d, groups=c).backward(go.double())
    out["backward"].append([[n, c, m, h, w, k, s, p, d],
                            counts.get("native_dwconv::conv_depthwise2d_backward", 0),
                            err(x.grad, xd.grad), err(wt.grad, wd.grad), err(b.grad, bd.grad)])

# Mamba-style causal depthwise Conv1d, through the routing shim.
C, L, K = 64, 50, 4
x = torch.randn(2, L, C).transpose(1, 2)
w = torch.randn(C, 1, K)
with profile(activities=[ProfilerActivity.CPU]) as prof:
    y = F.conv1d(x, w, padding=K - 1, groups=C)[..., :L]
counts = {e.key: e.count for e in prof.key_averages()}
ref = F.conv1d(x.double(), w.double(), padding=K - 1, groups=C)[..., :L]
out["conv1d"] = [counts.get("aten::_conv_depthwise2d", 0), err(y, ref)]
print("RESULT " + json.dumps(out))
"""


def _build(aarch64_torch, patched_source_tree, out_dir, fp16_arith):
    """The kernel library as an aarch64 build of this torch makes it (recipe.kernel's plan)."""
    have, units, empty_slots = capability_plan("aarch64", slots=2, fp16_arith=fp16_arith)
    (capability, flags), = units
    assert capability == "DEFAULT"
    staged = os.path.join(out_dir, "include", "ATen", "native")
    os.makedirs(staged, exist_ok=True)
    headers, cap_tus, plain_tus = tree_sources(patched_source_tree)  # the whole library
    for header in headers:
        shutil.copy(header, staged)
    sources = cap_tus + plain_tus + [os.path.join(CPP, "graft_build_info.cpp")]
    return aarch64_torch.build_graft(
        sources, os.path.join(out_dir, "libnative_dwconv.so"),
        include_dirs=[os.path.join(out_dir, "include"), ROUTING_DIR],
        defines=["DWCONV_OUT_OF_TREE"] + have + ["DWCONV_EMPTY_SLOT_" + e for e in empty_slots],
        extra_flags=["-O3"] + flags)


def _run(aarch64_torch, lib, dtypes):
    code = (textwrap.dedent(SCRIPT)
            .replace("LIB", repr(lib)).replace("DTYPES", repr(dtypes))
            .replace("BACKWARD_CASES", repr(BACKWARD_CASES)).replace("CASES", repr(CASES)))
    proc = aarch64_torch.python(code, binds=[os.path.dirname(lib)], timeout=1500)
    assert proc.returncode == 0, "aarch64 python failed:\n%s\n%s" % (proc.stdout, proc.stderr)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, "no RESULT line:\n%s\n%s" % (proc.stdout, proc.stderr)
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def neon_results(patched_source_tree, aarch64_torch, tmp_path_factory):
    lib = _build(aarch64_torch, patched_source_tree, str(tmp_path_factory.mktemp("dw_neon")), False)
    return _run(aarch64_torch, lib, ["float32", "float16", "bfloat16"])


@pytest.fixture(scope="module")
def neon_fp16_results(patched_source_tree, aarch64_torch, tmp_path_factory):
    lib = _build(aarch64_torch, patched_source_tree, str(tmp_path_factory.mktemp("dw_neon_fp16")),
                 True)
    return _run(aarch64_torch, lib, ["float32", "float16"])


def _forward_failures(results, tolerances):
    failures = []
    for case, dtype, cl, ok_shape, err, _ in results["forward"]:
        name = "%s %s %s" % (case, dtype, "channels_last" if cl else "NCHW")
        if not ok_shape:
            failures.append("%s: wrong output shape or dtype" % name)
        elif not err <= tolerances[dtype]:
            failures.append("%s: relative error %.3g > %.1g" % (name, err, tolerances[dtype]))
    return failures


def test_neon_build_matches_float64_on_aarch64(neon_results):
    assert neon_results["fp16_vector_arithmetic"] is False, "the plain build must be ARMv8.0 NEON"
    assert neon_results["registered_aten_kernels"] is True, "2.6.0 has no CPU _conv_depthwise2d"
    assert len(neon_results["forward"]) == len(CASES) * 3 * 2
    assert not _forward_failures(neon_results, {"float32": FP32_TOLERANCE,
                                                "float16": FP16_TOLERANCE_FP32_ACCUM,
                                                "bfloat16": BF16_TOLERANCE})


def test_neon_fp16_arithmetic_build_matches_float64_on_aarch64(neon_fp16_results):
    assert neon_fp16_results["fp16_vector_arithmetic"] is True, "-march=armv8.2-a+fp16 had no effect"
    assert AARCH64_FP16_FLAGS == ["-march=armv8.2-a+fp16"]
    assert len(neon_fp16_results["forward"]) == len(CASES) * 2 * 2
    assert not _forward_failures(neon_fp16_results, {"float32": FP32_TOLERANCE,
                                                     "float16": FP16_TOLERANCE_FP16_ACCUM})


def test_fp16_arithmetic_build_really_accumulates_in_fp16(neon_results, neon_fp16_results):
    """Same inputs (same seed, same order): fp32 results agree between the two builds; fp16
    results differ, because the fp16-arithmetic build rounds every partial sum."""
    def by_key(results, dtype):
        return {(json.dumps(c), cl): (err, checksum)
                for c, dt, cl, _, err, checksum in results["forward"] if dt == dtype}
    plain32, fp16b32 = by_key(neon_results, "float32"), by_key(neon_fp16_results, "float32")
    assert plain32.keys() == fp16b32.keys()
    for key in plain32:
        assert abs(plain32[key][0] - fp16b32[key][0]) <= FP32_TOLERANCE, key
    plain16, fp16b16 = by_key(neon_results, "float16"), by_key(neon_fp16_results, "float16")
    assert any(plain16[k] != fp16b16[k] for k in plain16), \
        "fp16 results identical: the fp16-arithmetic build still accumulates in fp32"


@pytest.mark.parametrize("which", ["neon", "neon_fp16"])
def test_training_and_conv1d_run_the_native_kernel_on_aarch64(which, neon_results, neon_fp16_results):
    results = neon_results if which == "neon" else neon_fp16_results
    assert len(results["backward"]) == len(BACKWARD_CASES)
    for case, native_backward_calls, gi, gw, gb in results["backward"]:
        assert native_backward_calls == 1, "%s: backward did not go to the native kernel" % case
        for name, err in (("grad_input", gi), ("grad_weight", gw), ("grad_bias", gb)):
            assert err <= 2e-5, "%s: %s relative error %.3g" % (case, name, err)
    calls, err = results["conv1d"]
    assert calls == 1 and err <= FP32_TOLERANCE
