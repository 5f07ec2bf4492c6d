"""The independent float64 reference and the relative error against it."""
from __future__ import annotations

import itertools

from recipe.verify.base import import_torch


def reference_conv(x, w, b, stride, padding, groups):
    """float64 grouped convolution by shift-and-add einsum: no conv op involved, so neither
    oneDNN nor a routing shim can be the reference for itself."""
    torch = import_torch()
    import torch.nn.functional as F
    d = x.dim() - 2
    pads = []
    for _ in range(d):
        pads += [padding, padding]
    xp = F.pad(x, pads) if padding else x
    n, c = x.shape[0], x.shape[1]
    o = w.shape[0]
    ks = list(w.shape[2:])
    cg, og = c // groups, o // groups
    out_sz = [(xp.shape[2 + i] - ks[i]) // stride + 1 for i in range(d)]
    xg = xp.reshape([n, groups, cg] + list(xp.shape[2:]))
    wg = w.reshape([groups, og, cg] + ks)
    y = None
    for off in itertools.product(*[range(k) for k in ks]):
        sl = [slice(None)] * 3 + [slice(off[i], off[i] + stride * (out_sz[i] - 1) + 1, stride)
                                  for i in range(d)]
        patch = xg[tuple(sl)]
        wk = wg[tuple([slice(None)] * 3 + list(off))]
        term = torch.einsum("ngc...,goc->ngo...", patch, wk)
        y = term if y is None else y + term
    y = y.reshape([n, o] + out_sz)
    if b is not None:
        y = y + b.reshape([1, o] + [1] * d)
    return y


def rel_err(y, ref):
    torch = import_torch()
    y = y.detach().to(torch.float64)
    ref = ref.detach()
    if y.shape != ref.shape:
        return float("inf")
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    diff = (y - ref).abs()
    if not bool(torch.isfinite(y).all()):
        return float("inf")
    m = float(diff.max()) if diff.numel() else 0.0
    return m / scale if scale > 0 else m
