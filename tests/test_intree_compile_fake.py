"""torch.compile's view of a conv in a torch built from the patched tree: FakeTensors with
symbolic sizes, backend selection and memory-format prediction.

FakeTensor's convolution rule (torch/_subclasses/fake_impls.py) calls
torch._C._select_conv_backend and torch._C._conv_determine_backend_memory_format on the fake
inputs (symbolic batch under dynamic shapes) and gives the fake output the predicted memory
format; Inductor then asserts the real output's strides against it. In a torch built from the
patched tree both bindings run the patched aten/src/ATen/native/Convolution.cpp.

The patched tree's Convolution.cpp (with the kernel sources the series installs, XNNPACK's conv
path and the Winograd kernel) is compiled UNCHANGED into a test library for the official torch
2.6.0 aarch64 wheel (tests/cpp/graft_conv_routing.cpp includes it whole; every symbol of the
library is local, so its wrappers reach the patched copies and the wheel keeps its own). The
SymInt selection (the torch._C binding) never picks XNNPACK; the real run of _convolution can,
so the backend each real run used is asked of the same int64_t selection. Under qemu, in that
wheel's Python, the wrappers are called on FakeTensors made by FakeTensorMode + ShapeEnv with a
symbolic batch (and symbolic H, W), and on the same real tensors through the patched
_convolution / convolution_backward, whose outputs must have the predicted memory format.
Then fake_impls.py itself runs F.conv2d on the fake inputs with the two torch._C bindings
pointed at the patched functions (a stand-in for the rebuilt bindings: the wheel's enum
torch._C._ConvBackend has no CpuDepthwise2d), and the fake output's strides must equal the
real output's.

oneDNN is compiled out of the graft (ATen/Config.h overlay: 2.6.0's oneDNN/ideep C++ headers
are not available here); that case is upstream code and unchanged by the series, and the native
kernel's support check, the one that failed on symbolic sizes, is evaluated either way.
"""
from __future__ import annotations

import json
import os
import textwrap

import pytest

from recipe import REPO_ROOT

CPP = os.path.join(REPO_ROOT, "tests", "cpp")
NATIVE = os.path.join("aten", "src", "ATen", "native")

# (name, channels, multiplier, kernel, stride, padding, dilation, H, W)
CASES = [
    ("dw3", 8, 1, 3, 1, 1, 1, 10, 10),
    ("dw5-s2", 16, 1, 5, 2, 2, 1, 13, 11),
    ("dw3-mult2-dil2", 6, 2, 3, 1, 2, 2, 9, 12),
]

SCRIPT = """
import json, os, torch, torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext
torch.ops.load_library(LIB)
ops = torch.ops.graft_conv
torch.manual_seed(0)
FORMATS = {"ChannelsLast": torch.channels_last, "Contiguous": torch.contiguous_format}

def has_format(t, fmt):
    # t's strides are those of memory format fmt, ignoring size-1 dimensions (as Inductor's
    # assert_size_stride does).
    want = torch.empty(t.shape, memory_format=FORMATS[fmt]).stride()
    return all(n == 1 or a == b for n, a, b in zip(t.shape, t.stride(), want))

def attempt(fn):
    try:
        return fn(), None
    except Exception as e:
        return None, str(e).splitlines()[0]

out = {"select": [], "real": [], "end_to_end": []}
for name, c, m, k, s, p, d, h, w in CASES:
    for dtype in ("float32", "float16"):
        for cl in (False, True):
            dt = getattr(torch, dtype)
            x = torch.randn(2, c, h, w, dtype=dt)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            wt = torch.randn(c * m, 1, k, k, dtype=dt)
            args = ([s, s], [p, p], [d, d], False, [0, 0], c)
            for dims in ((0,), (0, 2, 3)):
                mode = FakeTensorMode(shape_env=ShapeEnv())
                ctx = StatelessSymbolicContext(dynamic_sizes=[
                    DimDynamic.DYNAMIC if i in dims else DimDynamic.STATIC for i in range(4)])
                fx = mode.from_tensor(x, symbolic_context=ctx)
                fw = mode.from_tensor(wt)
                assert not isinstance(fx.shape[0], int)  # really symbolic
                with mode:
                    stock, stock_err = attempt(lambda: torch._C._select_conv_backend(fx, fw, None, *args).name)
                    patched, err = attempt(lambda: ops.select_backend(fx, fw, None, *args))
                    fmt = ops.memory_format(fx, fw, patched) if patched else None
                out["select"].append([name, dtype, cl, list(dims), stock, stock_err, patched, err, fmt])
            # Real tensors through the patched _convolution / convolution_backward, with the
            # backend each one selects (and every single-kernel backend forced in turn).
            for forced in ("auto", "native", "xnnpack", "winograd"):
                os.environ["PYTORCH_GROUPED_CONV_BACKEND"] = forced
                with torch.no_grad():
                    backend = ops.eager_backend(x, wt, [s, s], [p, p], [d, d], c)
                    y = ops.convolution(x, wt, None, [s, s], [p, p], [d, d], c)
                ref = F.conv2d(x.double(), wt.double(), None, s, p, d, c)
                err = ((y.double() - ref).abs().max() / ref.abs().max()).item()
                fmt = ops.memory_format(x, wt, backend)
                out["real"].append([name, dtype, cl, forced, "forward", backend, fmt,
                                    has_format(y, fmt), err])
                xg = x.detach().requires_grad_()
                backend = ops.eager_backend(xg, wt, [s, s], [p, p], [d, d], c)
                go = torch.randn_like(y)
                gi, gw, gb = ops.convolution_backward(go, x, wt, [s, s], [p, p], [d, d], c)
                fmt = ops.memory_format(x, wt, backend)
                for what, g in (("grad_input", gi), ("grad_weight", gw)):
                    out["real"].append([name, dtype, cl, forced, what, backend, fmt,
                                        has_format(g, fmt), 0.0])
            os.environ["PYTORCH_GROUPED_CONV_BACKEND"] = "auto"
            # fake_impls.py's own conv rule on the symbolic-batch fake input, bound to the
            # patched functions: the fake output must have the real output's strides.
            stock_select = torch._C._select_conv_backend
            stock_format = torch._C._conv_determine_backend_memory_format
            torch._C._select_conv_backend = lambda *a, **kw: ops.select_backend(*a, **kw)
            torch._C._conv_determine_backend_memory_format = (
                lambda i, wt_, b: FORMATS[ops.memory_format(i, wt_, b)])
            try:
                mode = FakeTensorMode(shape_env=ShapeEnv())
                ctx = StatelessSymbolicContext(dynamic_sizes=[DimDynamic.DYNAMIC] + [DimDynamic.STATIC] * 3)
                fx, fw = mode.from_tensor(x, symbolic_context=ctx), mode.from_tensor(wt)
                with mode, torch.no_grad():
                    fy, e2e_err = attempt(lambda: F.conv2d(fx, fw, None, s, p, d, c))
                fake_strides = [int(v.node.hint) if hasattr(v, "node") else int(v)
                                for v in fy.stride()] if fy is not None else None
            finally:
                torch._C._select_conv_backend = stock_select
                torch._C._conv_determine_backend_memory_format = stock_format
            with torch.no_grad():
                y = ops.convolution(x, wt, None, [s, s], [p, p], [d, d], c)
            out["end_to_end"].append([name, dtype, cl, fake_strides, list(y.stride()), e2e_err])
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def conv_graft(patched_source_tree, aarch64_torch, tmp_path_factory):
    out = tmp_path_factory.mktemp("graft_conv_routing")
    # The wheel's ATen/Config.h without oneDNN (see the module docstring).
    cfg = out / "include" / "ATen"
    cfg.mkdir(parents=True)
    text = open(os.path.join(aarch64_torch.include, "ATen", "Config.h")).read()
    assert "#define AT_MKLDNN_ENABLED() 1" in text
    (cfg / "Config.h").write_text(
        text.replace("#define AT_MKLDNN_ENABLED() 1", "#define AT_MKLDNN_ENABLED() 0")
            .replace("#define AT_MKLDNN_ACL_ENABLED() 1", "#define AT_MKLDNN_ACL_ENABLED() 0"))
    local = out / "local.map"
    local.write_text("{ local: *; };\n")  # the patched copies stay inside the library
    native = os.path.join(patched_source_tree, NATIVE)
    sources = [os.path.join(CPP, "graft_conv_routing.cpp"), os.path.join(CPP, "graft_shims.cpp")]
    sources += [os.path.join(native, f) for f in (
        "DepthwiseConv2dNative.cpp", "cpu/DepthwiseConv2dNativeKernel.cpp",
        "cpu/DepthwiseConvKernel.cpp", "xnnpack/Convolution.cpp", "xnnpack/Init.cpp",
        "xnnpack/OpContext.cpp", "xnnpack/Linear.cpp", "utils/Factory.cpp")]
    return aarch64_torch.build_graft(sources, str(out / "libgraft_conv.so"),
                                     include_dirs=[str(out / "include")],
                                     source_tree=patched_source_tree,
                                     defines=['GRAFT_CONVOLUTION_CPP="%s"'
                                              % os.path.join(native, "Convolution.cpp")],
                                     extra_flags=["-Wl,--version-script=%s" % local])


@pytest.fixture(scope="module")
def results(conv_graft, aarch64_torch):
    code = textwrap.dedent(SCRIPT).replace("LIB", repr(conv_graft)).replace("CASES", repr(CASES))
    proc = aarch64_torch.python(code, binds=[os.path.dirname(conv_graft)], timeout=1500)
    assert proc.returncode == 0, "aarch64 python failed:\n%s\n%s" % (proc.stdout, proc.stderr[-6000:])
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, "no RESULT line:\n%s\n%s" % (proc.stdout, proc.stderr[-6000:])
    return json.loads(lines[-1][len("RESULT "):])


def test_backend_selection_works_on_symbolic_sizes(results):
    assert len(results["select"]) == len(CASES) * 2 * 2 * 2
    for name, dtype, cl, dims, stock, stock_err, patched, err, fmt in results["select"]:
        case = "%s %s %s dynamic dims %s" % (name, dtype, "CL" if cl else "NCHW", dims)
        assert stock_err is None, "%s: stock torch 2.6.0 itself failed: %s" % (case, stock_err)
        assert err is None, "%s: the patched selection fails where stock returns %s: %s" % (
            case, stock, err)
        # XNNPACK never runs symbolic shapes; oneDNN is compiled out of the graft.
        assert patched == "CpuDepthwise2d", "%s: %s" % (case, patched)
        assert fmt == ("ChannelsLast" if cl else "Contiguous"), "%s: predicted %s" % (case, fmt)


def test_predicted_memory_format_is_what_the_kernels_return(results):
    seen = set()
    assert len(results["real"]) == len(CASES) * 2 * 2 * 4 * 3
    for name, dtype, cl, forced, what, backend, predicted, actual, err in results["real"]:
        case = "%s %s %s %s (forced %s) via %s" % (name, dtype, "CL" if cl else "NCHW", what,
                                                    forced, backend)
        seen.add(backend)
        assert actual, "%s: predicted %s, the kernel returned another layout" % (case, predicted)
        tolerance = 1e-5 if dtype == "float32" else 1e-2  # fp16: accumulated in fp16 (qemu's CPU has it)
        assert err <= tolerance, "%s: relative error %.3g" % (case, err)
    assert {"CpuDepthwise2d", "Xnnpack2d"} <= seen, seen


def test_fake_conv_output_has_the_real_strides(results):
    assert len(results["end_to_end"]) == len(CASES) * 2 * 2
    for name, dtype, cl, fake_strides, real_strides, err in results["end_to_end"]:
        case = "%s %s %s" % (name, dtype, "CL" if cl else "NCHW")
        assert err is None, "%s: FakeTensor F.conv2d failed: %s" % (case, err)
        assert fake_strides == real_strides, "%s: fake strides %s, real %s" % (
            case, fake_strides, real_strides)  # (no size-1 dimension here: exact)
