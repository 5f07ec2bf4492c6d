"""Ladder step 4: the patched kernels RUN on aarch64, inside the official torch 2.6.0 wheel.

Each test cross-compiles patched sources from the real 2.6.0 tree (series applied by the
recipe's patch step) into a small library with a test op (tests/cpp/graft_*.cpp), loads it
with torch.ops.load_library into the official aarch64 wheel running under qemu-user in
an arm64 Debian root filesystem, and compares with a float64 reference computed there.
Timings under qemu mean nothing and none are taken.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap

import pytest

from recipe import REPO_ROOT

CPP = os.path.join(REPO_ROOT, "tests", "cpp")
FP32_TOLERANCE = 1e-4  # max |y - ref| / max |ref|

# (batch, channels, multiplier, height, width, padding, bias)
WINOGRAD_CASES = [
    (1, 4, 1, 1, 1, 1, True),      # 1x1 map
    (1, 4, 1, 2, 3, 1, False),     # 2x3 map
    (1, 3, 1, 2, 3, 2, True),      # padding 2 on a tiny map
    (2, 8, 1, 7, 7, 0, True),      # padding 0, odd map, batch 2
    (3, 6, 2, 5, 9, 1, True),      # multiplier 2, batch 3
    (1, 5, 3, 11, 4, 2, False),    # multiplier 3, padding 2
    (2, 16, 1, 14, 14, 1, True),
    (1, 384, 1, 56, 56, 1, True),  # the original report's layer
]

# (name, batch, in_channels, out_channels, groups, kernel, stride, padding, dilation, H, W, channels_last)
XNNPACK_CASES = [
    ("dw3-s1", 1, 32, 32, 32, 3, 1, 1, 1, 14, 14, False),
    ("dw5-s2", 2, 24, 24, 24, 5, 2, 2, 1, 17, 13, False),
    ("dw7-igemm", 1, 16, 16, 16, 7, 1, 3, 1, 9, 9, False),   # > 25 taps: XNNPACK's IGEMM path
    ("dw3-mult2", 1, 8, 16, 8, 3, 1, 1, 1, 6, 6, False),
    ("dw3-dilated", 1, 8, 8, 8, 3, 1, 2, 2, 12, 12, False),
    ("dw3-1x1map", 1, 4, 4, 4, 3, 1, 1, 1, 1, 1, False),
    ("dw3-2x3map", 2, 4, 4, 4, 3, 1, 1, 1, 2, 3, True),
    ("g2", 1, 8, 12, 2, 3, 1, 1, 1, 10, 10, False),
    ("g-c/4", 2, 32, 32, 8, 3, 2, 1, 1, 9, 11, True),
    ("dw3-c384", 1, 384, 384, 384, 3, 1, 1, 1, 56, 56, False),
    ("dw3-c384-cl", 1, 384, 384, 384, 3, 1, 1, 1, 56, 56, True),
]


def _run_json(aarch64_torch, code, binds):
    proc = aarch64_torch.python(textwrap.dedent(code), binds=binds, timeout=1200)
    assert proc.returncode == 0, "aarch64 python failed:\n%s\n%s" % (proc.stdout, proc.stderr)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, "no RESULT line:\n%s\n%s" % (proc.stdout, proc.stderr)
    return json.loads(lines[-1][len("RESULT "):])


# ----------------------------------------------------------------------------- NEON guard

def _winograd_guard(convolution_cpp):
    text = open(convolution_cpp).read()
    body = text[text.index("bool use_cpu_depthwise3x3_winograd"):]
    return re.search(r"^#if (.*)$", body, re.M).group(1)


def _guard_is_true(guard, compiler):
    src = "#if %s\nint guard_true;\n#else\n#error guard false\n#endif\n" % guard
    proc = subprocess.run([compiler, "-x", "c++", "-fsyntax-only", "-"], input=src,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    return proc.returncode == 0


def test_winograd_routing_guard_is_true_for_gcc_aarch64_only_after_the_patch(
        patched_source_tree, pytorch_source_pristine, cross_toolchain):
    rel = os.path.join("aten", "src", "ATen", "native", "Convolution.cpp")
    before = _winograd_guard(os.path.join(pytorch_source_pristine, rel))
    after = _winograd_guard(os.path.join(patched_source_tree, rel))
    aarch64 = cross_toolchain.compiler("aarch64")
    assert not _guard_is_true(before, aarch64), "2.6.0's guard should be false on GCC/aarch64 (the bug)"
    assert _guard_is_true(after, aarch64)
    assert not _guard_is_true(after, cross_toolchain.compiler("x86_64"))


# ----------------------------------------------------------------------------- Winograd

@pytest.fixture(scope="module")
def winograd_graft(patched_source_tree, aarch64_torch, tmp_path_factory):
    out = tmp_path_factory.mktemp("graft_winograd")
    kernel = os.path.join(patched_source_tree, "aten/src/ATen/native/cpu/DepthwiseConvKernel.cpp")
    return aarch64_torch.build_graft(
        [os.path.join(CPP, "graft_winograd.cpp")], str(out / "libgraft_winograd.so"),
        source_tree=patched_source_tree, defines=['GRAFT_KERNEL_SOURCE="%s"' % kernel])


def test_patched_winograd_kernel_matches_float64_on_aarch64(winograd_graft, aarch64_torch):
    results = _run_json(aarch64_torch, """
        import json, torch, torch.nn.functional as F
        torch.ops.load_library(%r)
        torch.manual_seed(0)
        out = {"simd": torch.ops.graft_winograd.simd_body(), "cases": []}
        for n, c, m, h, w, pad, with_bias in %r:
            x = torch.randn(n, c, h, w)
            wt = torch.randn(c * m, 1, 3, 3)
            b = torch.randn(c * m) if with_bias else None
            y = torch.ops.graft_winograd.conv2d(x, wt, b, [pad, pad])
            ref = F.conv2d(x.double(), wt.double(), b.double() if b is not None else None,
                           padding=pad, groups=c)
            err = ((y.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()
            out["cases"].append([n, c, m, h, w, pad, list(y.shape), list(ref.shape), err])
        print("RESULT " + json.dumps(out))
        """ % (winograd_graft, WINOGRAD_CASES), binds=[os.path.dirname(winograd_graft)])
    assert results["simd"] == "neon", "the patched guards did not compile the NEON body in"
    assert len(results["cases"]) == len(WINOGRAD_CASES)
    for n, c, m, h, w, pad, shape, ref_shape, err in results["cases"]:
        case = "N%d C%d m%d %dx%d pad%d" % (n, c, m, h, w, pad)
        assert shape == ref_shape, case
        assert err <= FP32_TOLERANCE, "%s: relative error %.3g" % (case, err)


# ----------------------------------------------------------------------------- XNNPACK

@pytest.fixture(scope="module")
def xnnpack_graft(patched_source_tree, aarch64_torch, tmp_path_factory):
    out = tmp_path_factory.mktemp("graft_xnnpack")
    native = os.path.join(patched_source_tree, "aten", "src", "ATen", "native")
    sources = [os.path.join(CPP, "graft_xnnpack.cpp"), os.path.join(CPP, "graft_shims.cpp")]
    sources += [os.path.join(native, "xnnpack", f)
                for f in ("Convolution.cpp", "Init.cpp", "OpContext.cpp", "Linear.cpp")]
    sources.append(os.path.join(native, "utils", "Factory.cpp"))
    return aarch64_torch.build_graft(sources, str(out / "libgraft_xnnpack.so"),
                                     source_tree=patched_source_tree)


def test_pytorch_xnnpack_conv_path_runs_grouped_convs_on_aarch64(xnnpack_graft, aarch64_torch):
    results = _run_json(aarch64_torch, """
        import json, torch, torch.nn.functional as F
        torch.ops.load_library(%r)
        torch.manual_seed(0)
        ops = torch.ops.graft_xnnpack
        out = {"cases": []}
        for name, n, cin, cout, g, k, s, p, d, h, w, cl in %r:
            x = torch.randn(n, cin, h, w)
            if cl:
                x = x.to(memory_format=torch.channels_last)
            wt = torch.randn(cout, cin // g, k, k)
            b = torch.randn(cout)
            args = ([p, p], [s, s], [d, d], g)
            usable = ops.usable(x, wt, b, *args)
            y = ops.conv2d(x, wt, b, *args)
            ref = F.conv2d(x.double(), wt.double(), b.double(), stride=s, padding=p, dilation=d, groups=g)
            err = ((y.double() - ref).abs().max() / ref.abs().max()).item()
            out["cases"].append([name, usable, list(y.shape), list(ref.shape), err])
        x = torch.randn(1, 8, 6, 6)
        wt = torch.randn(8, 1, 3, 3)
        out["requires_grad_usable"] = ops.usable(x.requires_grad_(), wt, None, [1, 1], [1, 1], [1, 1], 8)
        out["fp16_usable"] = ops.usable(x.detach().half(), wt.half(), None, [1, 1], [1, 1], [1, 1], 8)
        print("RESULT " + json.dumps(out))
        """ % (xnnpack_graft, XNNPACK_CASES), binds=[os.path.dirname(xnnpack_graft)])
    assert len(results["cases"]) == len(XNNPACK_CASES)
    for name, usable, shape, ref_shape, err in results["cases"]:
        assert usable, "%s: xnnpack::use_convolution2d refused a grouped fp32 conv" % name
        assert shape == ref_shape, name
        assert err <= FP32_TOLERANCE, "%s: relative error %.3g" % (name, err)
    # Inference only, fp32 only: what the routing relies on to keep training off XNNPACK.
    assert results["requires_grad_usable"] is False
    assert results["fp16_usable"] is False
