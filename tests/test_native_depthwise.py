"""The native CPU depthwise kernel (kernels/depthwise/), built out of tree against the installed
torch exactly as users build it (`python build.py kernel`), checked against a float64
reference: forward over the whole shape space, backward with gradcheck and against stock
PyTorch's group loop, depthwise Conv1d (causal too), bad input, the routing shim, memory
and thread behaviour. The aarch64 NEON fp32/fp16 builds of the same sources are checked
under qemu in tests/test_native_depthwise_aarch64.py.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from recipe import REPO_ROOT
from native_helpers import (DTYPES, TOLERANCE, assert_independent_of_threads,  # noqa: F401
                            assert_matches_the_loop, assert_reduced_gradients, forward_failure,
                            native_kernel, onednn, op_counts, rel_err, shim)


def dwconv(x, w, b=None, stride=1, padding=0, dilation=1):
    pair = lambda v: list(v) if isinstance(v, (tuple, list)) else [v, v]
    return torch.ops.aten._conv_depthwise2d(x, w, list(w.shape[2:]), b, pair(stride),
                                            pair(padding), pair(dilation))


def reference(x, w, b, stride, padding, dilation):
    return F.conv2d(x.double(), w.double(), None if b is None else b.double(),
                    stride, padding, dilation, groups=x.shape[1])


# ----------------------------------------------------------------------------- shape space

def forward_cases():
    """Every value of every range in the spec appears, in varied combinations:
    kernel 1..11 (and non-square), stride 1..3, padding 0..k, dilation 1..3,
    multiplier 1..4, batch 1..8, maps down to 1x1 and 2x3."""
    rng = random.Random(20261124)
    cases = []
    for i, k in enumerate(range(1, 12)):
        kh, kw = (k, k) if i % 3 else (k, max(1, 12 - k))  # every third one non-square
        dh, dw = 1 + (i // 2) % 3, 1 + i % 3
        ph, pw = rng.randint(0, kh), rng.randint(0, kw)
        # the smallest map the padded input can hold the dilated kernel on, plus a margin
        h = max(1, dh * (kh - 1) + 1 - 2 * ph) + rng.randint(0, 9)
        w = max(1, dw * (kw - 1) + 1 - 2 * pw) + rng.randint(0, 9)
        cases.append(dict(n=1 + i % 8, c=3 + i % 5, m=1 + i % 4, h=h, w=w, k=(kh, kw),
                          s=(1 + i % 3, 1 + (i + 1) % 3), p=(ph, pw), d=(dh, dw)))
    cases += [
        dict(n=2, c=5, m=1, h=1, w=1, k=(1, 1), s=(1, 1), p=(0, 0), d=(1, 1)),   # 1x1 map
        dict(n=3, c=4, m=2, h=1, w=1, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1)),   # 1x1 map, padded
        dict(n=1, c=6, m=1, h=2, w=3, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1)),   # 2x3 map
        dict(n=8, c=7, m=3, h=2, w=3, k=(5, 3), s=(2, 3), p=(3, 2), d=(1, 1)),   # 2x3, pad > map
        dict(n=1, c=16, m=1, h=17, w=19, k=(3, 3), s=(2, 2), p=(1, 1), d=(1, 1)),  # stride 2
        dict(n=2, c=24, m=1, h=15, w=15, k=(7, 7), s=(1, 1), p=(3, 3), d=(1, 1)),  # ConvNeXt
        dict(n=1, c=10, m=4, h=13, w=11, k=(3, 3), s=(1, 1), p=(3, 3), d=(3, 3)),  # dilation 3
        dict(n=2, c=40, m=1, h=9, w=33, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1)),   # > 1 vector of C
    ]
    return cases


def case_id(c):
    return "N{n}C{c}m{m}-{h}x{w}-k{k[0]}x{k[1]}-s{s[0]}{s[1]}-p{p[0]}{p[1]}-d{d[0]}{d[1]}".format(**c)


FORWARD_CASES = forward_cases()


def make_inputs(c, dtype, layout, bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(c["n"], c["c"], c["h"], c["w"], generator=g).to(dtype)
    w = torch.randn(c["c"] * c["m"], 1, *c["k"], generator=g).to(dtype)
    b = torch.randn(c["c"] * c["m"], generator=g).to(dtype) if bias else None
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":  # a non-contiguous view: every other column of a wider tensor
        wide = torch.randn(c["n"], c["c"], c["h"], 2 * c["w"], generator=g).to(dtype)
        wide[..., ::2] = x
        x = wide[..., ::2]
        assert not x.is_contiguous()
    return x, w, b


def test_the_shape_space_covers_every_range_of_the_spec():
    seen = lambda f: {v for c in FORWARD_CASES for v in f(c)}
    assert set(range(1, 12)) <= seen(lambda c: c["k"])
    assert any(c["k"][0] != c["k"][1] for c in FORWARD_CASES)
    assert {1, 2, 3} <= seen(lambda c: c["s"]) and {1, 2, 3} <= seen(lambda c: c["d"])
    assert {1, 2, 3, 4} == seen(lambda c: [c["m"]])
    assert set(range(1, 9)) <= seen(lambda c: [c["n"]])
    assert {0} | set(range(1, 6)) <= seen(lambda c: c["p"])
    assert any(c["p"][0] == c["k"][0] and c["k"][0] > 1 for c in FORWARD_CASES) or \
        any(c["p"][1] == c["k"][1] and c["k"][1] > 1 for c in FORWARD_CASES), "padding = k"
    assert (1, 1) in seen(lambda c: [(c["h"], c["w"])]) and (2, 3) in seen(lambda c: [(c["h"], c["w"])])


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def test_forward_matches_float64_reference(dtype, layout):
    failures = []
    for i, c in enumerate(FORWARD_CASES):
        x, w, b = make_inputs(c, dtype, layout, bias=i % 2 == 0, seed=i)
        y = dwconv(x, w, b, c["s"], c["p"], c["d"])
        ref = reference(x, w, b, c["s"], c["p"], c["d"])
        failure = forward_failure(case_id(c), y, ref, dtype)
        if failure:
            failures.append(failure)
    assert not failures, "\n".join(failures)


def test_output_follows_the_input_memory_format():
    c = FORWARD_CASES[-1]
    x, w, b = make_inputs(c, torch.float32, "channels_last", bias=True)
    assert dwconv(x, w, b, 1, 1).is_contiguous(memory_format=torch.channels_last)
    x, w, b = make_inputs(c, torch.float32, "contiguous", bias=True)
    assert dwconv(x, w, b, 1, 1).is_contiguous()


def test_out_variant_writes_into_the_given_tensor():
    x, w, b = make_inputs(FORWARD_CASES[5], torch.float32, "contiguous", bias=True)
    c = FORWARD_CASES[5]
    expected = dwconv(x, w, b, c["s"], c["p"], c["d"])
    out = torch.full((1,), float("nan"))  # resized by the op
    torch.ops.aten._conv_depthwise2d.out(x, w, list(c["k"]), b, list(c["s"]), list(c["p"]),
                                         list(c["d"]), out=out)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_empty_batch_gives_an_empty_output_like_stock_pytorch():
    x, w = torch.randn(0, 8, 5, 5), torch.randn(8, 1, 3, 3)
    assert dwconv(x, w, None, 1, 1).shape == F.conv2d(x, w, padding=1, groups=8).shape == (0, 8, 5, 5)


# ----------------------------------------------------------------------------- backward

class NativeDepthwise(torch.autograd.Function):
    """The kernel's forward and backward, straight (no routing in between)."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation):
        ctx.save_for_backward(x, w)
        ctx.args = (list(w.shape[2:]), list(stride), list(padding), list(dilation))
        return torch.ops.aten._conv_depthwise2d(x, w, ctx.args[0], b, *ctx.args[1:])

    @staticmethod
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        gi, gw, gb = torch.ops.native_dwconv.conv_depthwise2d_backward(
            grad_out, x, w, *ctx.args, mask)
        return gi, gw, gb, None, None, None


BACKWARD_CASES = [
    dict(n=2, c=3, m=1, h=5, w=6, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1)),
    dict(n=1, c=2, m=3, h=7, w=5, k=(2, 3), s=(2, 1), p=(0, 2), d=(1, 1)),
    dict(n=2, c=2, m=2, h=8, w=9, k=(3, 3), s=(3, 2), p=(2, 1), d=(2, 3)),
    dict(n=1, c=4, m=1, h=1, w=1, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1)),
    dict(n=1, c=3, m=1, h=2, w=3, k=(5, 5), s=(1, 1), p=(2, 2), d=(1, 1)),
    dict(n=3, c=2, m=4, h=9, w=9, k=(7, 7), s=(1, 1), p=(3, 3), d=(1, 1)),
]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("case", BACKWARD_CASES, ids=case_id)
def test_gradcheck_float64(case, layout):
    x, w, b = make_inputs(case, torch.float64, layout, bias=True)
    args = (case["s"], case["p"], case["d"])
    x, w, b = (t.detach().requires_grad_() for t in (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w, b: NativeDepthwise.apply(x, w, b, *args),
                                    (x, w, b), eps=1e-6, atol=1e-7, rtol=1e-5)


def loop_gradients(x, w, b, c):
    """Stock PyTorch: the per-group loop (oneDNN off, routing shim off)."""
    x, w, b = (t.detach().requires_grad_() for t in (x, w, b))
    with shim(False), onednn(False):
        y = F.conv2d(x, w, b, c["s"], c["p"], c["d"], groups=x.shape[1])
        y.backward(torch.ones_like(y) * torch.linspace(-1, 1, y.numel()).view_as(y))
    return y, x.grad, w.grad, b.grad


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("case", FORWARD_CASES[::2] + BACKWARD_CASES, ids=case_id)
def test_backward_matches_the_stock_group_loop(case, layout):
    x, w, b = make_inputs(case, torch.float32, layout, bias=True)
    y_loop, gx_loop, gw_loop, gb_loop = loop_gradients(x, w, b, case)
    x, w, b = (t.detach().requires_grad_() for t in (x, w, b))
    y = NativeDepthwise.apply(x, w, b, case["s"], case["p"], case["d"])
    y.backward(torch.ones_like(y) * torch.linspace(-1, 1, y.numel()).view_as(y))
    assert_matches_the_loop(case_id(case), y, x, w, b, (y_loop, gx_loop, gw_loop, gb_loop))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_gradients_match_float64(dtype):
    case = BACKWARD_CASES[2]
    x, w, _ = make_inputs(case, dtype, "contiguous", bias=False)
    go = torch.randn(reference(x, w, None, case["s"], case["p"], case["d"]).shape).to(dtype)
    gi, gw, _ = torch.ops.native_dwconv.conv_depthwise2d_backward(
        go, x, w, list(case["k"]), list(case["s"]), list(case["p"]), list(case["d"]),
        [True, True, False])
    xd, wd = x.double().requires_grad_(), w.double().requires_grad_()
    reference(xd, wd, None, case["s"], case["p"], case["d"]).backward(go.double())
    assert_reduced_gradients(gi, gw, xd, wd, dtype)


def test_backward_output_mask_leaves_unwanted_gradients_undefined():
    x, w = torch.randn(1, 4, 6, 6), torch.randn(4, 1, 3, 3)
    go = torch.randn(1, 4, 6, 6)
    gi, gw, gb = torch.ops.native_dwconv.conv_depthwise2d_backward(
        go, x, w, [3, 3], [1, 1], [1, 1], [1, 1], [False, True, False])
    assert gi is None and gb is None and gw.shape == w.shape


# ----------------------------------------------------------------------------- routing shim

def test_training_a_depthwise_conv2d_runs_one_native_call_each_way():
    x = torch.randn(2, 32, 14, 14, requires_grad=True)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1, groups=32)
    counts = op_counts(lambda: conv(x).sum().backward())
    assert counts.get("aten::_conv_depthwise2d") == 1, counts
    assert counts.get("native_dwconv::conv_depthwise2d_backward") == 1, counts
    assert not any("thnn" in k or "slow_conv" in k or "mkldnn" in k for k in counts), counts


def test_shim_off_restores_the_stock_group_loop():
    x, w = torch.randn(1, 16, 8, 8), torch.randn(16, 1, 3, 3)
    with shim(False), onednn(False):
        counts = op_counts(lambda: F.conv2d(x, w, padding=1, groups=16))
    assert counts.get("aten::_conv_depthwise2d") is None
    assert counts.get("aten::_slow_conv2d_forward", counts.get("aten::thnn_conv2d")) == 16, counts


def test_the_routing_override_env_forces_the_loop_and_rejects_typos():
    code = ("import torch, torch.nn.functional as F; from recipe.kernel import load_kernel; "
            "load_kernel(quiet=True); x = torch.randn(1, 8, 6, 6).double(); "
            "print(torch.ops.native_dwconv.routing_choice(x, torch.randn(8, 1, 3, 3).double(), 8, True))")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    for value, expected in (("auto", "native"), ("loop", "loop"), ("native", "native")):
        env["PYTORCH_GROUPED_CONV_BACKEND"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split()[-1] == expected, (value, out.stdout)
    env["PYTORCH_GROUPED_CONV_BACKEND"] = "nativ"
    out = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    assert out.returncode != 0 and "PYTORCH_GROUPED_CONV_BACKEND='nativ'" in out.stderr
    assert "auto, mkldnn, xnnpack, winograd, native, loop" in out.stderr


# ----------------------------------------------------------------------------- Conv1d

@pytest.mark.parametrize("causal", [False, True], ids=["same", "causal"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16],
                         ids=["float32", "float64", "float16"])
def test_depthwise_conv1d_runs_through_the_same_kernel(dtype, causal):
    """Mamba/Conformer-style depthwise Conv1d, (N, C, L) and the (N, L, C)-transposed view."""
    C, L, k = 48, 37, 4
    conv = torch.nn.Conv1d(C, C, k, groups=C, padding=k - 1 if causal else k // 2).to(dtype)
    for x in (torch.randn(2, C, L).to(dtype), torch.randn(2, L, C).to(dtype).transpose(1, 2)):
        counts = op_counts(lambda: conv(x))
        assert counts.get("aten::_conv_depthwise2d") == 1, counts
        y = conv(x)[..., :L] if causal else conv(x)
        ref = F.conv1d(x.double(), conv.weight.double(), conv.bias.double(),
                       padding=conv.padding, groups=C)
        ref = ref[..., :L] if causal else ref
        assert y.shape == ref.shape
        assert rel_err(y, ref) <= TOLERANCE[dtype]


def test_depthwise_conv1d_gradients_match_float64():
    C, L, k = 16, 25, 4
    x = torch.randn(3, C, L, dtype=torch.float64, requires_grad=True)
    w = torch.randn(C, 1, k, dtype=torch.float64, requires_grad=True)
    counts = op_counts(lambda: F.conv1d(x, w, padding=k - 1, groups=C)[..., :L].sum().backward())
    assert counts.get("native_dwconv::conv_depthwise2d_backward") == 1, counts
    assert torch.autograd.gradcheck(lambda x, w: F.conv1d(x, w, padding=k - 1, groups=C)[..., :L],
                                    (x, w), eps=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- bad input

BAD_INPUTS = [
    # (what, input size, weight size, groups / kernel_size override)
    ("weight with 2 input channels per group", (1, 8, 6, 6), (8, 2, 3, 3)),
    ("output channels not a multiple of the groups", (1, 8, 6, 6), (12, 1, 3, 3)),
    ("3-D weight", (1, 8, 6, 6), (8, 1, 3)),
    ("kernel larger than the padded input", (1, 8, 2, 2), (8, 1, 5, 5)),
    ("zero channels", (1, 0, 6, 6), (0, 1, 3, 3)),
    ("zero height", (1, 8, 0, 6), (8, 1, 3, 3)),
]


@pytest.mark.parametrize("what,input_size,weight_size", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_like_stock_pytorch(what, input_size, weight_size):
    x, w = torch.randn(input_size), torch.randn(weight_size)
    with pytest.raises(RuntimeError) as stock:
        with shim(False):
            F.conv2d(x, w, groups=8)
    with pytest.raises(RuntimeError) as native:
        torch.ops.aten._conv_depthwise2d(x, w, list(w.shape[2:]), None, [1, 1], [0, 0], [1, 1])
    assert "_conv_depthwise2d" in str(native.value)
    with pytest.raises(RuntimeError) as routed:  # through the shim: stock behaviour, stock error
        F.conv2d(x, w, groups=8)
    assert type(routed.value) is type(stock.value)


def test_groups_mismatch_is_left_to_stock_pytorch():
    x, w = torch.randn(1, 8, 6, 6), torch.randn(8, 1, 3, 3)
    with pytest.raises(RuntimeError, match="expected input"):
        F.conv2d(x, w, groups=4)


def test_mismatched_kernel_size_and_dtypes_are_refused():
    x, w = torch.randn(1, 8, 6, 6), torch.randn(8, 1, 3, 3)
    with pytest.raises(RuntimeError, match="kernel_size"):
        torch.ops.aten._conv_depthwise2d(x, w, [5, 5], None, [1, 1], [0, 0], [1, 1])
    with pytest.raises(RuntimeError, match="dtype"):
        torch.ops.aten._conv_depthwise2d(x, w.double(), [3, 3], None, [1, 1], [0, 0], [1, 1])
    with pytest.raises(RuntimeError, match="stride"):
        torch.ops.aten._conv_depthwise2d(x, w, [3, 3], None, [0, 1], [0, 0], [1, 1])


# ----------------------------------------------------------------------------- memory, threads

def test_forward_allocates_nothing_but_its_output():
    x, w = torch.randn(2, 64, 28, 28), torch.randn(64, 1, 5, 5)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        y = dwconv(x, w, None, 1, 2)
    event = next(e for e in prof.key_averages() if e.key == "aten::_conv_depthwise2d")
    # torch-allocator memory (the kernel's small per-thread row buffers are not tensors)
    assert event.cpu_memory_usage == y.numel() * y.element_size()


def test_results_do_not_depend_on_the_number_of_threads():
    c = dict(n=2, c=40, m=2, h=23, w=17, k=(5, 5), s=(2, 1), p=(2, 2), d=(1, 2))
    x, w, b = make_inputs(c, torch.float32, "contiguous", bias=True)
    go = torch.randn(reference(x, w, b, c["s"], c["p"], c["d"]).shape)

    def run():
        y = dwconv(x, w, b, c["s"], c["p"], c["d"])
        return [y] + list(torch.ops.native_dwconv.conv_depthwise2d_backward(
            go, x, w, list(c["k"]), list(c["s"]), list(c["p"]), list(c["d"]), [True, True, True]))

    assert_independent_of_threads(run)
