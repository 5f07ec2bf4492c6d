"""The native CPU grouped convolution kernel (kernels/grouped/), built out of tree against the
installed torch exactly as users build it (`python build.py kernel`), checked against a
float64 reference: forward over a sampled shape space (fixed seed), backward with gradcheck
and against stock PyTorch's group loop, grouped Conv1d, bad input, the routing shim, memory
and thread behaviour. The aarch64 NEON build of the same sources is checked under qemu in
tests/test_native_grouped_aarch64.py.
"""
from __future__ import annotations

import json
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


FORWARD_OP = "native_gconv::grouped_conv2d"
BACKWARD_OP = "native_gconv::grouped_conv2d_backward"


def pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def gconv(x, w, b, stride, padding, dilation, groups):
    return torch.ops.native_gconv.grouped_conv2d(x, w, b, pair(stride), pair(padding),
                                                 pair(dilation), groups)


def reference(x, w, b, stride, padding, dilation, groups):
    """Stock PyTorch in float64 (the shim off: it would route float64 to the native kernel)."""
    with shim(False):
        return F.conv2d(x.double(), w.double(), None if b is None else b.double(),
                        stride, padding, dilation, groups)


# ----------------------------------------------------------------------------- shape space

def forward_cases(count=36, seed=20261125):
    """The spec's ranges, sampled with a fixed seed: groups 2..64, Cin/G and Cout/G 1..64
    (unequal too), kernel 1..7 (non-square too), stride 1..3, padding 0..k, dilation 1..3,
    batch 1..8, 1x1 and odd maps. Channels x map size are kept small (test time)."""
    rng = random.Random(seed)
    groups = [2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48, 64]
    per_group = [1, 2, 3, 4, 5, 7, 8, 12, 16, 17, 24, 32, 48, 64]
    cases = []
    for i in range(count):
        g = groups[i % len(groups)]
        cg = per_group[i % len(per_group)]
        og = per_group[(5 * i + 3) % len(per_group)]
        while g * max(cg, og) > 512:  # keep the channel count moderate
            cg, og = max(1, cg // 2), max(1, og // 2)
        k = 1 + i % 7
        kh, kw = (k, k) if i % 3 else (k, 1 + (i * 2) % 7)
        dh, dw = 1 + (i // 3) % 3, 1 + i % 3
        ph, pw = rng.randint(0, kh), rng.randint(0, kw)
        h = max(1, dh * (kh - 1) + 1 - 2 * ph) + rng.randint(0, 11)
        w = max(1, dw * (kw - 1) + 1 - 2 * pw) + rng.randint(0, 17)
        cases.append(dict(n=1 + i % 8, g=g, cg=cg, og=og, h=h, w=w, k=(kh, kw),
                          s=(1 + i % 3, 1 + (i // 2) % 3), p=(ph, pw), d=(dh, dw)))
    if count != 36:
        return cases
    cases += [
        dict(n=2, g=4, cg=3, og=5, h=1, w=1, k=(1, 1), s=(1, 1), p=(0, 0), d=(1, 1)),    # 1x1 map
        dict(n=3, g=2, cg=4, og=2, h=1, w=1, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1)),    # 1x1, padded
        dict(n=1, g=3, cg=20, og=80, h=7, w=9, k=(1, 1), s=(1, 1), p=(0, 0), d=(1, 1)),   # grouped 1x1
        dict(n=2, g=8, cg=12, og=48, h=5, w=5, k=(1, 1), s=(2, 2), p=(0, 0), d=(1, 1)),   # 1x1, stride 2
        dict(n=3, g=8, cg=48, og=12, h=4, w=6, k=(1, 1), s=(1, 1), p=(0, 0), d=(1, 1)),   # 1x1, partial vectors
        dict(n=2, g=2, cg=16, og=5, h=3, w=3, k=(1, 1), s=(1, 1), p=(0, 0), d=(1, 1)),    # 1x1, few outputs
        dict(n=1, g=32, cg=4, og=4, h=13, w=11, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1)),  # ResNeXt
        dict(n=2, g=4, cg=16, og=16, h=9, w=9, k=(3, 3), s=(2, 2), p=(1, 1), d=(1, 1)),   # RegNet s2
        dict(n=1, g=2, cg=24, og=64, h=11, w=11, k=(5, 5), s=(1, 1), p=(2, 2), d=(1, 1)),  # AlexNet
        dict(n=1, g=2, cg=3, og=4, h=9, w=8, k=(2, 3), s=(3, 3), p=(0, 0), d=(1, 1)),    # s > k
        dict(n=1, g=4, cg=2, og=3, h=2, w=3, k=(5, 5), s=(1, 1), p=(3, 2), d=(1, 1)),    # pad > map
    ]
    return cases


def case_id(c):
    return ("N{n}G{g}c{cg}o{og}-{h}x{w}-k{k[0]}x{k[1]}-s{s[0]}{s[1]}-p{p[0]}{p[1]}"
            "-d{d[0]}{d[1]}".format(**c))


FORWARD_CASES = forward_cases()


def make_inputs(c, dtype, layout, bias, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(c["n"], c["g"] * c["cg"], c["h"], c["w"], generator=gen).to(dtype)
    w = torch.randn(c["g"] * c["og"], c["cg"], *c["k"], generator=gen).to(dtype)
    b = torch.randn(c["g"] * c["og"], generator=gen).to(dtype) if bias else None
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":  # non-contiguous views: every other column / a permuted weight
        wide = torch.randn(c["n"], c["g"] * c["cg"], c["h"], 2 * c["w"], generator=gen).to(dtype)
        wide[..., ::2] = x
        x = wide[..., ::2]
        w = w.transpose(2, 3).contiguous().transpose(2, 3)
        assert not x.is_contiguous() and (w.shape[2] == w.shape[3] == 1 or not w.is_contiguous())
    return x, w, b


def args(c):
    return c["s"], c["p"], c["d"], c["g"]


def test_the_shape_space_covers_every_range_of_the_spec():
    seen = lambda f: {v for c in FORWARD_CASES for v in f(c)}
    assert {2, 64} <= seen(lambda c: [c["g"]]) and len(seen(lambda c: [c["g"]])) >= 10
    assert {1, 64} <= seen(lambda c: [c["cg"]]) and {1, 64} <= seen(lambda c: [c["og"]])
    assert sum(c["cg"] != c["og"] for c in FORWARD_CASES) >= len(FORWARD_CASES) // 2
    assert set(range(1, 8)) <= seen(lambda c: c["k"])
    assert any(c["k"][0] != c["k"][1] for c in FORWARD_CASES)
    assert {1, 2, 3} <= seen(lambda c: c["s"]) and {1, 2, 3} <= seen(lambda c: c["d"])
    assert set(range(0, 8)) <= seen(lambda c: c["p"])
    assert any(c["p"][0] == c["k"][0] and c["k"][0] > 1 for c in FORWARD_CASES), "padding = k"
    assert set(range(1, 9)) <= seen(lambda c: [c["n"]])
    assert (1, 1) in seen(lambda c: [(c["h"], c["w"])])
    assert any(c["h"] % 2 and c["w"] % 2 and c["h"] > 1 for c in FORWARD_CASES), "odd maps"
    assert any(c["k"] == (1, 1) and c["cg"] > 1 and c["og"] > 1 for c in FORWARD_CASES)


# The kernel has two engines (positions or output channels in the vector lanes), chosen
# per conv, and an in-place path for channels-last 1x1 stride-1 convs; the test hook
# PYTORCH_NATIVE_GCONV_ENGINE forces one ("direct": wherever the conv allows it, even where
# the automatic choice would not take it), so each sees every case it can run.
# Default tier: the automatic choice in every dtype, each forced engine in fp32 (the engines'
# code is the same template for every dtype); slow tier: each forced engine in every dtype.
ENGINES = ["auto", "planar", "channel", "direct"]
DTYPE_IDS = {torch.float64: "float64", torch.float32: "float32", torch.float16: "float16",
             torch.bfloat16: "bfloat16"}


def engine_params(dtypes):
    return [pytest.param(e, d, id="%s-%s" % (e, DTYPE_IDS[d]),
                         marks=() if e == "auto" or d == torch.float32 else pytest.mark.slow)
            for e in ENGINES for d in dtypes]


def force_engine(monkeypatch, engine):
    if engine != "auto":
        monkeypatch.setenv("PYTORCH_NATIVE_GCONV_ENGINE", engine)


def forward_failures(cases, dtype, layout):
    failures = []
    for i, c in enumerate(cases):
        x, w, b = make_inputs(c, dtype, layout, bias=i % 2 == 0, seed=i)
        y = gconv(x, w, b, *args(c))
        ref = reference(x, w, b, *args(c))
        failure = forward_failure(case_id(c), y, ref, dtype)
        if failure:
            failures.append(failure)
    return failures


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("engine,dtype", engine_params(DTYPES))
def test_forward_matches_float64_reference(engine, dtype, layout, monkeypatch):
    force_engine(monkeypatch, engine)
    failures = forward_failures(FORWARD_CASES, dtype, layout)
    assert not failures, "\n".join(failures)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: DTYPE_IDS[d])
def test_wide_sweep_matches_float64_reference(dtype, layout):
    """Slow tier: 300 more sampled shapes (another seed) in every dtype and layout."""
    failures = forward_failures(forward_cases(300, seed=20261202), dtype, layout)
    assert not failures, "\n".join(failures)


def test_output_follows_the_input_memory_format():
    c = FORWARD_CASES[-5]
    for layout, fmt in (("channels_last", torch.channels_last),
                        ("contiguous", torch.contiguous_format)):
        x, w, b = make_inputs(c, torch.float32, layout, bias=True)
        assert gconv(x, w, b, *args(c)).is_contiguous(memory_format=fmt)


def test_empty_batch_gives_an_empty_output_like_stock_pytorch():
    x, w = torch.randn(0, 8, 5, 5), torch.randn(6, 4, 3, 3)
    with shim(False):
        stock = F.conv2d(x, w, padding=1, groups=2)
    assert gconv(x, w, None, 1, 1, 1, 2).shape == stock.shape == (0, 6, 5, 5)


# ----------------------------------------------------------------------------- backward

class NativeGrouped(torch.autograd.Function):
    """The kernel's forward and backward, straight (no routing in between)."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups):
        ctx.save_for_backward(x, w)
        ctx.conv_args = (pair(stride), pair(padding), pair(dilation), groups)
        return torch.ops.native_gconv.grouped_conv2d(x, w, b, *ctx.conv_args)

    @staticmethod
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        # grad_output in the input's layout: a channels-last grad_input of a 1x1 conv takes
        # the in-place path too.
        cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        fmt = torch.channels_last if cl else torch.contiguous_format
        gi, gw, gb = torch.ops.native_gconv.grouped_conv2d_backward(
            grad_out.contiguous(memory_format=fmt), x, w, *ctx.conv_args, mask)
        return gi, gw, gb, None, None, None, None


BACKWARD_CASES = [
    dict(n=2, g=2, cg=3, og=2, h=5, w=6, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1)),
    dict(n=1, g=3, cg=2, og=3, h=7, w=5, k=(2, 3), s=(2, 1), p=(0, 2), d=(1, 1)),
    dict(n=2, g=2, cg=2, og=1, h=8, w=9, k=(3, 3), s=(3, 2), p=(2, 1), d=(2, 3)),
    dict(n=1, g=4, cg=1, og=2, h=1, w=1, k=(3, 3), s=(1, 1), p=(1, 1), d=(1, 1)),
    dict(n=1, g=2, cg=4, og=3, h=4, w=4, k=(1, 1), s=(2, 2), p=(0, 0), d=(1, 1)),
    dict(n=1, g=2, cg=2, og=2, h=9, w=9, k=(2, 2), s=(3, 3), p=(0, 1), d=(1, 1)),
    dict(n=2, g=3, cg=4, og=10, h=3, w=5, k=(1, 1), s=(1, 1), p=(0, 0), d=(1, 1)),
]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("case", BACKWARD_CASES, ids=case_id)
def test_gradcheck_float64(case, layout):
    x, w, b = make_inputs(case, torch.float64, layout, bias=True)
    x, w, b = (t.detach().requires_grad_() for t in (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w, b: NativeGrouped.apply(x, w, b, *args(case)),
                                    (x, w, b), eps=1e-6, atol=1e-7, rtol=1e-5)


def loop_gradients(x, w, b, c, go):
    """Stock PyTorch: the per-group loop (oneDNN off, routing shim off)."""
    x, w, b = (t.detach().requires_grad_() for t in (x, w, b))
    with shim(False), onednn(False):
        y = F.conv2d(x, w, b, *args(c))
        y.backward(go)
    return y, x.grad, w.grad, b.grad


def backward_params():
    """Every case with the automatic engine; each forced engine on BACKWARD_CASES in the
    default tier, on the sampled forward cases in the slow tier."""
    params = []
    for engine in ENGINES:
        for case in FORWARD_CASES[::3] + BACKWARD_CASES:
            slow = engine != "auto" and case not in BACKWARD_CASES
            params.append(pytest.param(case, engine, id="%s-%s" % (engine, case_id(case)),
                                       marks=pytest.mark.slow if slow else ()))
    return params


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("case,engine", backward_params())
def test_backward_matches_the_stock_group_loop(case, layout, engine, monkeypatch):
    force_engine(monkeypatch, engine)
    x, w, b = make_inputs(case, torch.float32, layout, bias=True)
    go = torch.randn(reference(x, w, b, *args(case)).shape,
                     generator=torch.Generator().manual_seed(1))
    y_loop, gx_loop, gw_loop, gb_loop = loop_gradients(x, w, b, case, go)
    x, w, b = (t.detach().requires_grad_() for t in (x, w, b))
    y = NativeGrouped.apply(x, w, b, *args(case))
    y.backward(go)
    assert x.grad.is_contiguous(memory_format=torch.channels_last if layout == "channels_last"
                                else torch.contiguous_format)
    assert_matches_the_loop(case_id(case), y, x, w, b, (y_loop, gx_loop, gw_loop, gb_loop))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_gradients_match_float64(dtype):
    case = BACKWARD_CASES[2]
    x, w, _ = make_inputs(case, dtype, "channels_last", bias=False)
    go = torch.randn(reference(x, w, None, *args(case)).shape).to(dtype)
    gi, gw, _ = torch.ops.native_gconv.grouped_conv2d_backward(
        go, x, w, pair(case["s"]), pair(case["p"]), pair(case["d"]), case["g"],
        [True, True, False])
    xd, wd = x.double().requires_grad_(), w.double().requires_grad_()
    reference(xd, wd, None, *args(case)).backward(go.double())
    assert_reduced_gradients(gi, gw, xd, wd, dtype)


def test_backward_output_mask_leaves_unwanted_gradients_undefined():
    x, w, go = torch.randn(1, 4, 6, 6), torch.randn(6, 2, 3, 3), torch.randn(1, 6, 6, 6)
    gi, gw, gb = torch.ops.native_gconv.grouped_conv2d_backward(
        go, x, w, [1, 1], [1, 1], [1, 1], 2, [False, True, False])
    assert gi is None and gb is None and gw.shape == w.shape


# ----------------------------------------------------------------------------- routing shim

@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_training_a_grouped_conv2d_runs_one_native_call_each_way(layout):
    """ResNeXt-style 3x3 with oneDNN off (a Jetson wheel): one call forward, one backward."""
    x = torch.randn(2, 64, 14, 14)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, groups=16)
    with onednn(False):
        counts = op_counts(lambda: conv(x).sum().backward())
    assert counts.get(FORWARD_OP) == 1 and counts.get(BACKWARD_OP) == 1, counts
    assert not any("thnn" in k or "slow_conv" in k or "mkldnn" in k for k in counts), counts


def test_onednn_keeps_the_grouped_convs_it_takes():
    """x86 with oneDNN on: fp32 grouped convs stay with oneDNN's JIT (policy: oneDNN first)."""
    x, w = torch.randn(1, 64, 14, 14), torch.randn(64, 4, 3, 3)
    with onednn(True):
        counts = op_counts(lambda: F.conv2d(x, w, padding=1, groups=16))
    assert FORWARD_OP not in counts
    if torch.backends.mkldnn.is_available():
        assert counts.get("aten::mkldnn_convolution") == 1, counts


def test_shim_off_restores_the_stock_group_loop():
    x, w = torch.randn(1, 16, 8, 8), torch.randn(16, 4, 3, 3)
    with shim(False), onednn(False):
        counts = op_counts(lambda: F.conv2d(x, w, padding=1, groups=4))
    assert FORWARD_OP not in counts
    assert counts.get("aten::_slow_conv2d_forward", counts.get("aten::thnn_conv2d")) == 4, counts


def test_the_routing_override_env_picks_native_for_grouped_convs():
    code = ("import torch; from recipe.kernel import load_kernel; load_kernel(quiet=True); "
            "x, w = torch.randn(1, 16, 6, 6), torch.randn(16, 4, 3, 3); "
            "print(torch.ops.native_dwconv.routing_choice(x, w, 4, False), end=' '); "
            "torch.backends.mkldnn.enabled = False; "
            "print(torch.ops.native_dwconv.routing_choice(x, w, 4, True))")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    onednn_first = "mkldnn" if torch.backends.mkldnn.is_available() else "native"
    for value, expected in (("auto", [onednn_first, "native"]), ("loop", ["loop", "loop"]),
                            ("native", ["native", "native"])):
        env["PYTORCH_GROUPED_CONV_BACKEND"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split()[-2:] == expected, (value, out.stdout)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["float32", "float16"])
def test_grouped_conv1d_runs_through_the_same_kernel(dtype):
    """Grouped Conv1d, (N, C, L) and the (N, L, C)-transposed view; contiguous output as stock."""
    conv = torch.nn.Conv1d(48, 96, 5, groups=4, padding=2).to(dtype)
    for x in (torch.randn(2, 48, 37).to(dtype), torch.randn(2, 37, 48).to(dtype).transpose(1, 2)):
        with onednn(False):
            counts = op_counts(lambda: conv(x))
            y = conv(x)
        assert counts.get(FORWARD_OP) == 1, counts
        with shim(False):
            ref = F.conv1d(x.double(), conv.weight.double(), conv.bias.double(), padding=2,
                           groups=4)
        assert y.shape == ref.shape and y.is_contiguous()
        assert rel_err(y, ref) <= TOLERANCE[dtype]


def test_grouped_conv1d_gradients_match_float64():
    x = torch.randn(3, 12, 25, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, 4, 4, dtype=torch.float64, requires_grad=True)
    counts = op_counts(lambda: F.conv1d(x, w, padding=3, groups=3).sum().backward())
    assert counts.get(BACKWARD_OP) == 1, counts
    assert torch.autograd.gradcheck(lambda x, w: F.conv1d(x, w, padding=3, groups=3),
                                    (x, w), eps=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- bad input

BAD_INPUTS = [
    # (what, input size, weight size, groups)
    ("input channels not groups x weight's", (1, 8, 6, 6), (8, 3, 3, 3), 2),
    ("output channels not a multiple of the groups", (1, 8, 6, 6), (9, 4, 3, 3), 2),
    ("3-D weight", (1, 8, 6, 6), (8, 4, 3), 2),
    ("kernel larger than the padded input", (1, 8, 2, 2), (8, 4, 5, 5), 2),
    ("zero channels", (1, 0, 6, 6), (0, 0, 3, 3), 2),
    ("zero height", (1, 8, 0, 6), (8, 4, 3, 3), 2),
]


@pytest.mark.parametrize("what,input_size,weight_size,groups", BAD_INPUTS,
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_like_stock_pytorch(what, input_size, weight_size, groups):
    x, w = torch.randn(input_size), torch.randn(weight_size)
    with onednn(False):
        with pytest.raises(RuntimeError) as stock:
            with shim(False):
                F.conv2d(x, w, groups=groups)
        with pytest.raises(RuntimeError) as routed:  # through the shim: stock behaviour
            F.conv2d(x, w, groups=groups)
    assert type(routed.value) is type(stock.value) and str(routed.value) == str(stock.value)
    with pytest.raises(RuntimeError, match="grouped_conv2d"):
        gconv(x, w, None, 1, 0, 1, groups)


def test_mismatched_dtypes_and_bad_parameters_are_refused():
    x, w = torch.randn(1, 8, 6, 6), torch.randn(8, 4, 3, 3)
    with pytest.raises(RuntimeError, match="dtype"):
        gconv(x, w.double(), None, 1, 0, 1, 2)
    with pytest.raises(RuntimeError, match="stride"):
        gconv(x, w, None, [0, 1], 0, 1, 2)
    with pytest.raises(RuntimeError, match="groups"):
        gconv(x, w, None, 1, 0, 1, 0)
    with pytest.raises(RuntimeError, match="bias"):
        gconv(x, w, torch.randn(7), 1, 0, 1, 2)


# ----------------------------------------------------------------------------- memory, threads

def test_forward_allocates_nothing_but_its_output():
    x, w = torch.randn(2, 64, 28, 28), torch.randn(64, 8, 3, 3)
    for layout in (torch.contiguous_format, torch.channels_last):
        xl = x.contiguous(memory_format=layout)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            y = gconv(xl, w, None, 1, 1, 1, 8)
        event = next(e for e in prof.key_averages() if e.key == FORWARD_OP)
        # torch-allocator memory (the per-thread band buffers are not tensors)
        assert event.cpu_memory_usage == y.numel() * y.element_size()


def test_results_do_not_depend_on_the_number_of_threads():
    c = dict(n=2, g=4, cg=6, og=10, h=23, w=17, k=(5, 3), s=(2, 1), p=(2, 1), d=(1, 2))
    x, w, b = make_inputs(c, torch.float32, "contiguous", bias=True)
    go = torch.randn(reference(x, w, b, *args(c)).shape)

    def run():
        y = gconv(x, w, b, *args(c))
        return [y] + list(torch.ops.native_gconv.grouped_conv2d_backward(
            go, x, w, pair(c["s"]), pair(c["p"]), pair(c["d"]), c["g"], [True, True, True]))

    assert_independent_of_threads(run)


# ----------------------------------------------------------------------------- build.py verify

def test_verify_passes_the_grouped_cases_with_onednn_off(native_kernel):
    """`build.py verify --kernel-lib LIB --no-mkldnn` (stock torch + this library, what a
    Jetson wheel + the add-on is): every grouped (not depthwise) case of the default matrix
    runs as ONE native call each way and matches float64 (Conv3d stays stock: one
    slow_conv3d call)."""
    env = dict(os.environ)
    env.pop("PYTORCH_GROUPED_CONV_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "build.py"), "verify", "--kernel-lib",
         native_kernel, "--no-mkldnn", "--no-timing", "--json", "--cases", "1d-g,2d-g"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, timeout=600)
    data = json.loads(proc.stdout)
    cases = data["cases"]
    assert len(cases) >= 5 and {c["case"]["dtype"] for c in cases} >= {"float32", "float16"}
    assert any(c["case"]["mode"] == "training" for c in cases)
    for c in cases:
        assert c["status"] == "PASS", (c["name"], c["reason"], c["message"])
        assert c["backend_ops"]["forward"] == {FORWARD_OP: 1}, c["name"]
        if c["case"]["mode"] == "training":
            assert c["backend_ops"]["backward"] == {BACKWARD_OP: 1}, c["name"]
    assert proc.returncode == 0, proc.stderr
