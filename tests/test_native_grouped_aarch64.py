"""Ladder step 4 for the native grouped kernel: its NEON builds RUN on aarch64.

The kernel sources the patch series installs into the real 2.6.0 tree (checked byte-identical
to kernels/grouped/ below) are cross-compiled into the add-on (`build.py addon --torch 2.6.0
--arch aarch64`: once per capability, the add-on's own capability tables), installed beside
the official torch 2.6.0 aarch64 wheel and run under qemu-user by an interpreter that only
imports torch -- once per compiled capability: FP16 (qemu's default CPU has asimdhp, as Jetson
CPUs do) and DEFAULT (ARMv8.0 NEON, under qemu's Cortex-A57 model, where any FP16 instruction
would be SIGILL). The kernel accumulates every dtype in fp32 (fp64 for double) on both.

Grouped convs are compared with a float64 reference computed in the same aarch64 process: both
engines (positions / output channels in the lanes), NCHW and channels_last, fp32, fp16, bf16
and fp64, grouped 1x1, strides and dilations, and training through the routing shim. This wheel
has oneDNN with ACL, so the policy sends grouped convs to the native kernel rather than
oneDNN's reference gemm, with oneDNN on. Timings under qemu mean nothing.
"""
from __future__ import annotations

import json
import textwrap

import pytest

import addon_helpers as ah


# (batch, groups, Cin/G, Cout/G, H, W, (kh, kw), (sh, sw), (ph, pw), (dh, dw))
CASES = [
    (1, 32, 4, 4, 9, 11, (3, 3), (1, 1), (1, 1), (1, 1)),     # ResNeXt-style
    (2, 4, 16, 16, 7, 7, (3, 3), (2, 2), (1, 1), (1, 1)),     # RegNet, stride 2
    (1, 3, 20, 80, 6, 5, (1, 1), (1, 1), (0, 0), (1, 1)),     # ShuffleNet grouped 1x1
    (1, 2, 5, 24, 9, 8, (5, 3), (1, 2), (2, 0), (2, 1)),      # non-square, dilated
    (2, 6, 3, 2, 1, 1, (3, 3), (1, 1), (1, 1), (1, 1)),       # 1x1 map
    (1, 2, 48, 40, 5, 6, (3, 3), (1, 1), (1, 1), (3, 2)),     # wide groups, dilation 3
]
BACKWARD_CASES = [CASES[0], CASES[1], CASES[3]]
TOLERANCE = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}

SCRIPT = """
import json, os, torch, torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
torch.manual_seed(0)
shim = torch.ops.native_dwconv.set_shim_enabled
out = {"capability": torch.ops.torch_grouped_conv.cpu_capability(),
       "forward": [], "backward": []}

def err(y, ref):
    return ((y.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()

def reference(x, w, b, s, p, d, g):
    prev = shim(False)   # the shim would send float64 to the native kernel
    try:
        return F.conv2d(x.double(), w.double(), None if b is None else b.double(), s, p, d, g)
    finally:
        shim(prev)

for n, g, cg, og, h, w, k, s, p, d in CASES:
    x0, w0, b0 = torch.randn(n, g * cg, h, w), torch.randn(g * og, cg, *k), torch.randn(g * og)
    for engine in ("planar", "channel", "direct"):
        os.environ["PYTORCH_NATIVE_GCONV_ENGINE"] = engine
        for dtype in ("float32", "float16", "bfloat16", "float64"):
            dt = getattr(torch, dtype)
            for cl in (False, True):
                x, wt, b = x0.to(dt), w0.to(dt), b0.to(dt)
                if cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = torch.ops.native_gconv.grouped_conv2d(x, wt, b, list(s), list(p), list(d), g)
                ref = reference(x, wt, b, s, p, d, g)
                fmt = torch.channels_last if cl else torch.contiguous_format
                ok = (list(y.shape) == list(ref.shape) and y.dtype == dt
                      and y.is_contiguous(memory_format=fmt))
                out["forward"].append([[n, g, cg, og, h, w, k, s, p, d], engine, dtype, cl, ok,
                                       err(y, ref)])
os.environ.pop("PYTORCH_NATIVE_GCONV_ENGINE")

for n, g, cg, og, h, w, k, s, p, d in BACKWARD_CASES:
    x = torch.randn(n, g * cg, h, w, requires_grad=True)
    wt = torch.randn(g * og, cg, *k, requires_grad=True)
    b = torch.randn(g * og, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        y = F.conv2d(x, wt, b, s, p, d, g)      # routed by the shim (oneDNN stays on)
        go = torch.randn_like(y)
        y.backward(go)
    counts = {e.key: e.count for e in prof.key_averages()}
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, wt, b))
    prev = shim(False)
    F.conv2d(xd, wd, bd, s, p, d, g).backward(go.double())
    shim(prev)
    out["backward"].append([[n, g, cg, og, h, w, k, s, p, d],
                            counts.get("native_gconv::grouped_conv2d", 0),
                            counts.get("native_gconv::grouped_conv2d_backward", 0),
                            err(x.grad, xd.grad), err(wt.grad, wd.grad), err(b.grad, bd.grad)])
print("RESULT " + json.dumps(out))
"""


def _run(aarch64_addon, env=None):
    code = (textwrap.dedent(SCRIPT).replace("BACKWARD_CASES", repr(BACKWARD_CASES))
            .replace("CASES", repr(CASES)))
    proc = aarch64_addon.python(code, env=env, timeout=1500)
    assert proc.returncode == 0, "aarch64 python failed:\n%s\n%s" % (proc.stdout, proc.stderr)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, "no RESULT line:\n%s\n%s" % (proc.stdout, proc.stderr)
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module", params=["FP16", "DEFAULT"])
def results(request, aarch64_addon):
    env = {"QEMU_CPU": "cortex-a57"} if request.param == "DEFAULT" else None
    res = _run(aarch64_addon, env)
    assert res["capability"] == request.param
    return res


def test_the_patched_tree_holds_the_same_kernel_sources(patched_source_tree):
    ah.assert_patched_tree_holds_the_kernel_sources(patched_source_tree, "kernels/grouped")


def test_neon_grouped_kernel_matches_float64_on_aarch64(results):
    rows = results["forward"]
    assert len(rows) == len(CASES) * 3 * 4 * 2
    failures = ["%s %s %s %s: %s" % (case, engine, dtype, "CL" if cl else "NCHW",
                                     "wrong shape/dtype/format" if not ok else "error %.3g" % err)
                for case, engine, dtype, cl, ok, err in rows
                if not ok or not err <= TOLERANCE[dtype]]
    assert not failures, "\n".join(failures)


def test_training_runs_the_native_grouped_kernel_on_aarch64(results):
    """oneDNN+ACL wheel: the policy picks the native kernel (not oneDNN's gemm:ref), one
    call each way, gradients equal float64's."""
    assert len(results["backward"]) == len(BACKWARD_CASES)
    for case, forward_calls, backward_calls, gi, gw, gb in results["backward"]:
        assert (forward_calls, backward_calls) == (1, 1), case
        for name, err in (("grad_input", gi), ("grad_weight", gw), ("grad_bias", gb)):
            assert err <= 2e-5, "%s: %s relative error %.3g" % (case, name, err)
