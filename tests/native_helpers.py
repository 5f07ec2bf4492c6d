"""What the tests of the native kernels (tests/test_native_depthwise.py,
tests/test_native_grouped.py) share: the tolerances, the fixture that builds and loads the
kernel library (`python build.py kernel`'s build), switches (routing shim, oneDNN), the error
measure and the checks that compare with a reference."""
from __future__ import annotations

import contextlib

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from recipe.kernel import load_kernel

# max |y - ref| / max |ref|, ref = the conv of the same (rounded) inputs in float64.
# fp16/bf16 are converted to fp32 and accumulated in fp32 here (x86): only the output's
# rounding counts.
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-3,
             torch.bfloat16: 1.6e-2}
DTYPES = list(TOLERANCE)


@pytest.fixture(scope="module", autouse=True)
def native_kernel():
    """Build (or reuse the cached build of) the kernel library and load it into this process.

    A loaded library cannot be unloaded: afterwards its routing shim is switched off, so
    the tests that run later in this process see stock PyTorch's convolution routing."""
    path = load_kernel(quiet=True)
    torch.ops.native_dwconv.set_shim_enabled(True)
    yield path
    torch.ops.native_dwconv.set_shim_enabled(False)


@contextlib.contextmanager
def shim(enabled):
    previous = torch.ops.native_dwconv.set_shim_enabled(enabled)
    try:
        yield
    finally:
        torch.ops.native_dwconv.set_shim_enabled(previous)


@contextlib.contextmanager
def onednn(enabled):
    """Like torch.backends.mkldnn.flags(enabled=...), without its TF32 warning (torch 2.13)."""
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


def rel_err(y, ref):
    return ((y.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def op_counts(fn):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key: e.count for e in prof.key_averages()}


def forward_failure(name, y, ref, dtype):
    """None, or why the output `y` (dtype `dtype`) is not the float64 reference `ref`."""
    if y.shape != ref.shape or y.dtype != dtype:
        return "%s: got %s %s, expected %s" % (name, y.dtype, tuple(y.shape), tuple(ref.shape))
    err = rel_err(y, ref)
    if not err <= TOLERANCE[dtype]:
        return "%s: relative error %.3g > %.1g" % (name, err, TOLERANCE[dtype])
    return None


def assert_matches_the_loop(name, y, x, w, b, loop):
    """Output and the gradients of x, w, b against stock PyTorch's (y, gx, gw, gb) `loop`."""
    for what, got, want in zip(("output", "grad_input", "grad_weight", "grad_bias"),
                               (y, x.grad, w.grad, b.grad), loop):
        assert got.shape == want.shape, what
        assert rel_err(got, want.double()) <= 2e-5, "%s: %s differs from the loop" % (name, what)


def assert_reduced_gradients(gi, gw, xd, wd, dtype):
    """fp16 / bf16 grad_input, grad_weight against float64 (xd, wd: their .grad)."""
    assert gi.dtype == gw.dtype == dtype
    assert rel_err(gi, xd.grad) <= 4 * TOLERANCE[dtype]
    assert rel_err(gw, wd.grad) <= 4 * TOLERANCE[dtype]


def assert_independent_of_threads(run, threads=(1, 2, 3)):
    """run() -> [tensors]: bit for bit the same with every number of threads."""
    previous = torch.get_num_threads()
    results = []
    try:
        for n in threads:
            torch.set_num_threads(n)
            results.append(list(run()))
    finally:
        torch.set_num_threads(previous)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
