"""Ladder step 4 for the native depthwise kernel: its NEON builds RUN on aarch64.

The kernel sources the patch series installs into the real 2.6.0 tree (checked byte-identical
to kernels/depthwise/ below) are cross-compiled into the add-on (`build.py addon --torch 2.6.0
--arch aarch64`: the kernel once per capability, the add-on's own capability tables instead of
torch's DispatchStub), installed beside the official torch 2.6.0 aarch64 wheel and run under
qemu-user by an interpreter that only imports torch -- twice, one per compiled capability:

* FP16 (``-march=armv8.2-a+fp16``, chosen at run time where HWCAP has asimdhp: Jetson CPUs,
  and qemu's cortex-a76 model): fp16 convs accumulate in fp16 vector arithmetic (8 lanes);
* DEFAULT (ARMv8.0 NEON, what every in-tree aarch64 build compiles): under qemu's Cortex-A57
  model (ARMv8.0, no FP16 arithmetic, so the add-on chooses DEFAULT by itself, and any FP16
  instruction that leaked into the code it runs would kill the process with SIGILL): fp32
  NEON, fp16 accumulated in fp32. The same DEFAULT object, forced on the cortex-a76
  (TORCH_GROUPED_CONV_CPU_CAPABILITY=default), must take its own fp16-arithmetic engines
  (compiled under a target pragma, chosen from the asimdhp hwcap): that is how the in-tree
  build, which has no FP16 capability, gets fp16 arithmetic on a Jetson.

Each is compared with a float64 reference computed in the same aarch64 process. Timings under
qemu mean nothing.
"""
from __future__ import annotations

import json
import textwrap

import pytest

import addon_helpers as ah


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
    # 3x3 stride-1 channels-last column sweep: no padding (5 rows: a band of 4 + an
    # overlapping one of 2), padding 2 (border columns, zero rows), batch 2
    (2, 8, 1, 7, 6, (3, 3), (1, 1), (0, 0), (1, 1)),
    (1, 12, 1, 10, 11, (3, 3), (1, 1), (2, 2), (1, 1)),
    # ... pad 1 (pad columns as steps without input), two fp16 vectors, no bias
    (1, 16, 1, 10, 9, (3, 3), (1, 1), (1, 1), (1, 1)),
    # 3x3 stride-2 column sweep: no padding, even width, no bias; padding 2 (zero rows,
    # border columns, odd width, overlapping last band), batch 2; CASES[2] has pad 1
    (1, 16, 1, 12, 14, (3, 3), (2, 2), (0, 0), (1, 1)),
    (2, 8, 1, 20, 21, (3, 3), (2, 2), (2, 2), (1, 1)),
    # 5x5 / 7x7 stride-1 sweep (pad columns and zero rows, last band overlapping): 21 rows
    # in bands of 4; 28 rows in bands of 3, batch 2, no bias; no padding, 5 rows
    (1, 16, 1, 21, 19, (5, 5), (1, 1), (2, 2), (1, 1)),
    (2, 8, 1, 28, 27, (7, 7), (1, 1), (3, 3), (1, 1)),
    (1, 8, 1, 9, 12, (5, 5), (1, 1), (0, 0), (1, 1)),
]
# Cases run without bias (the sweeps add the bias at the store, or not at all).
NO_BIAS = [10, 11, 14]
BACKWARD_CASES = [CASES[1], CASES[3], CASES[5]]

# qemu -cpu models (QEMU_CPU): without and with ARMv8.2-A fp16 arithmetic (asimdhp).
CPU_WITHOUT_FP16, CPU_WITH_FP16 = "cortex-a57", "cortex-a76"

# max |y - ref| / max |ref| against float64 of the same rounded inputs.
FP32_TOLERANCE = 1e-5
BF16_TOLERANCE = 1.6e-2
FP16_TOLERANCE_FP32_ACCUM = 2e-3      # only the output's rounding
FP16_TOLERANCE_FP16_ACCUM = 1e-2      # every partial sum rounded to fp16 (up to 121 taps)

SCRIPT = """
import json, torch, torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
torch.manual_seed(0)
out = {"capability": torch.ops.torch_grouped_conv.cpu_capability(),
       "registered_aten_kernels": torch.ops.native_dwconv.registered_aten_kernels(),
       "forward": [], "backward": []}

def err(y, ref):
    return ((y.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()

for i, (n, c, m, h, w, k, s, p, d) in enumerate(CASES):
    x0, w0, b0 = torch.randn(n, c, h, w), torch.randn(c * m, 1, *k), torch.randn(c * m)
    with_bias = i not in NO_BIAS
    for dtype in DTYPES:
        dt = getattr(torch, dtype)
        for cl in (False, True):
            x, wt, b = x0.to(dt), w0.to(dt), b0.to(dt) if with_bias else None
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.ops.aten._conv_depthwise2d(x, wt, list(k), b, list(s), list(p), list(d))
            ref = F.conv2d(x.double(), wt.double(), b.double() if with_bias else None, s, p, d,
                           groups=c)
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

# fp16 backward (grad_input accumulates like the forward; grad_weight always in fp32).
out["backward_fp16"] = []
if "float16" in DTYPES:
    for n, c, m, h, w, k, s, p, d in BACKWARD_CASES:
        for cl in (False, True):
            x = torch.randn(n, c, h, w).half()
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            wt = torch.randn(c * m, 1, *k).half()
            go = torch.randn_like(F.conv2d(x.float(), wt.float(), None, s, p, d, groups=c)).half()
            gi, gw, _ = torch.ops.native_dwconv.conv_depthwise2d_backward(
                go, x, wt, list(k), list(s), list(p), list(d), [True, True, False])
            xd, wd = x.double().requires_grad_(), wt.double().requires_grad_()
            F.conv2d(xd, wd, None, s, p, d, groups=c).backward(go.double())
            out["backward_fp16"].append([[n, c, m, h, w, k, s, p, d], cl, err(gi, xd.grad),
                                         err(gw, wd.grad), gi.float().sum().item()])
print("RESULT " + json.dumps(out))
"""


def _run(aarch64_addon, dtypes, cpu, capability=None):
    code = (textwrap.dedent(SCRIPT).replace("DTYPES", repr(dtypes))
            .replace("BACKWARD_CASES", repr(BACKWARD_CASES)).replace("NO_BIAS", repr(NO_BIAS))
            .replace("CASES", repr(CASES)))
    # qemu-user reads its CPU model from QEMU_CPU (binfmt and -L modes alike).
    env = {"QEMU_CPU": cpu}
    if capability:
        env["TORCH_GROUPED_CONV_CPU_CAPABILITY"] = capability
    proc = aarch64_addon.python(code, env=env, timeout=1500)
    assert proc.returncode == 0, "aarch64 python failed:\n%s\n%s" % (proc.stdout, proc.stderr)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, "no RESULT line:\n%s\n%s" % (proc.stdout, proc.stderr)
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def neon_results(aarch64_addon):
    """DEFAULT on a CPU without fp16 arithmetic."""
    return _run(aarch64_addon, ["float32", "float16", "bfloat16"], CPU_WITHOUT_FP16)


@pytest.fixture(scope="module")
def neon_fp16_results(aarch64_addon):
    """The FP16 capability (-march=armv8.2-a+fp16), chosen by the add-on on an fp16 CPU."""
    return _run(aarch64_addon, ["float32", "float16"], CPU_WITH_FP16)


@pytest.fixture(scope="module")
def neon_default_on_fp16_cpu_results(aarch64_addon):
    """The DEFAULT object (the in-tree build's) on a CPU with fp16 arithmetic."""
    return _run(aarch64_addon, ["float32", "float16"], CPU_WITH_FP16, capability="default")


def test_the_patched_tree_holds_the_same_kernel_sources(patched_source_tree):
    ah.assert_patched_tree_holds_the_kernel_sources(patched_source_tree, "kernels/depthwise",
                                                    "kernels/common")


def _forward_failures(results, tolerances):
    failures = []
    for case, dtype, cl, ok_shape, err, _ in results["forward"]:
        name = "%s %s %s" % (case, dtype, "channels_last" if cl else "NCHW")
        if not ok_shape:
            failures.append("%s: wrong output shape or dtype" % name)
        elif not err <= tolerances[dtype]:
            failures.append("%s: relative error %.3g > %.1g" % (name, err, tolerances[dtype]))
    return failures


def _backward_fp16_failures(results, grad_input_tolerance):
    failures = []
    for case, cl, gi, gw, _ in results["backward_fp16"]:
        if not (gi <= grad_input_tolerance and gw <= FP16_TOLERANCE_FP32_ACCUM):
            failures.append("%s %s: fp16 grad_input %.3g, grad_weight %.3g" % (
                case, "channels_last" if cl else "NCHW", gi, gw))
    return failures


def _by_key(results, dtype):
    return {(json.dumps(c), cl): (err, checksum)
            for c, dt, cl, _, err, checksum in results["forward"] if dt == dtype}


def test_neon_build_matches_float64_on_aarch64(neon_results):
    assert neon_results["capability"] == "DEFAULT", "an ARMv8.0 CPU must get the NEON kernels"
    assert neon_results["registered_aten_kernels"] is True, "2.6.0 has no CPU _conv_depthwise2d"
    assert len(neon_results["forward"]) == len(CASES) * 3 * 2
    assert not _forward_failures(neon_results, {"float32": FP32_TOLERANCE,
                                                "float16": FP16_TOLERANCE_FP32_ACCUM,
                                                "bfloat16": BF16_TOLERANCE})
    assert len(neon_results["backward_fp16"]) == len(BACKWARD_CASES) * 2
    assert not _backward_fp16_failures(neon_results, FP16_TOLERANCE_FP32_ACCUM)


def test_default_build_takes_the_fp16_arithmetic_path_only_on_an_fp16_cpu(
        neon_results, neon_default_on_fp16_cpu_results, neon_fp16_results):
    """One ARMv8.0 object (what the in-tree build compiles): on the cortex-a76 its fp16 convs
    run the fp16-arithmetic variant (bit for bit what the FP16 capability computes), on the
    cortex-a57 the fp32 accumulation (where an fp16 instruction would have been SIGILL)."""
    on_fp16 = neon_default_on_fp16_cpu_results
    assert on_fp16["capability"] == "DEFAULT", "the capability cap had no effect"
    assert not _forward_failures(on_fp16, {"float32": FP32_TOLERANCE,
                                           "float16": FP16_TOLERANCE_FP16_ACCUM})
    assert not _backward_fp16_failures(on_fp16, FP16_TOLERANCE_FP16_ACCUM)
    assert _by_key(on_fp16, "float16") == _by_key(neon_fp16_results, "float16")
    assert [r[-1] for r in on_fp16["backward_fp16"]] == \
        [r[-1] for r in neon_fp16_results["backward_fp16"]]
    plain16 = _by_key(neon_results, "float16")
    assert any(plain16[k] != v for k, v in _by_key(on_fp16, "float16").items()), \
        "the cortex-a76 run accumulated fp16 in fp32 (the fp32 path)"
    assert _by_key(on_fp16, "float32") == _by_key(neon_results, "float32")


def test_neon_fp16_arithmetic_build_matches_float64_on_aarch64(neon_fp16_results):
    assert neon_fp16_results["capability"] == "FP16", "qemu's CPU has asimdhp: FP16 kernels"
    assert len(neon_fp16_results["forward"]) == len(CASES) * 2 * 2
    assert not _forward_failures(neon_fp16_results, {"float32": FP32_TOLERANCE,
                                                     "float16": FP16_TOLERANCE_FP16_ACCUM})
    assert not _backward_fp16_failures(neon_fp16_results, FP16_TOLERANCE_FP16_ACCUM)


def test_fp16_arithmetic_build_really_accumulates_in_fp16(neon_results, neon_fp16_results):
    """Same inputs (same seed, same order): fp32 results agree between the two capabilities;
    fp16 results differ, because the FP16 kernels round every partial sum."""
    by_key = _by_key
    plain32, fp16b32 = by_key(neon_results, "float32"), by_key(neon_fp16_results, "float32")
    assert plain32.keys() == fp16b32.keys()
    for key in plain32:
        assert abs(plain32[key][0] - fp16b32[key][0]) <= FP32_TOLERANCE, key
    plain16, fp16b16 = by_key(neon_results, "float16"), by_key(neon_fp16_results, "float16")
    assert any(plain16[k] != fp16b16[k] for k in plain16), \
        "fp16 results identical: the FP16 kernels still accumulate in fp32"


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
