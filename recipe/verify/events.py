"""Which profiler events are backend kernel calls, and how many one convolution issued.

Pure functions over the profiler's FunctionEvents (their `name`, `cpu_parent`, `cpu_children`);
nothing here imports torch."""
from __future__ import annotations

#
# Forward: what aten::_convolution calls per backend (2.6.0 Convolution.cpp, the switch in
# _convolution and _convolution_nogroup_backend); backward: convolution_backward and
# _convolution_backward_nogroup_backend. Only the top-most backend op on a path counts
# (thnn_conv2d -> _slow_conv2d_forward is ONE call).
BACKEND_OPS = {
    # forward
    "aten::mkldnn_convolution": "oneDNN",
    "aten::_nnpack_spatial_convolution": "NNPACK",
    "aten::thnn_conv2d": "slow 2d (im2col+gemm)",
    "aten::_slow_conv2d_forward": "slow 2d (im2col+gemm)",
    "aten::slow_conv_dilated2d": "slow dilated 2d",
    "aten::slow_conv_dilated3d": "slow dilated 3d",
    "aten::slow_conv3d": "slow 3d",
    "aten::slow_conv3d_forward": "slow 3d",
    "aten::slow_conv_transpose2d": "slow transpose 2d",
    "aten::slow_conv_transpose3d": "slow transpose 3d",
    "aten::_conv_depthwise2d": "depthwise 2d kernel",
    "aten::conv_depthwise3d": "depthwise 3d kernel",
    "aten::_convolution_nogroup": "group loop (torch <= 1.10)",
    "aten::cudnn_convolution": "cuDNN",
    "aten::miopen_convolution": "MIOpen",
    "aten::miopen_depthwise_convolution": "MIOpen depthwise",
    "aten::convolution_overrideable": "out-of-tree backend",
    "aten::_mps_convolution": "MPS",
    "prepacked::conv2d_clamp_run": "XNNPACK (prepacked)",
    "xnnpack::convolution2d": "XNNPACK",
    # backward
    "aten::_slow_conv2d_backward": "slow 2d backward",
    "aten::thnn_conv2d_backward": "slow 2d backward",
    "aten::slow_conv3d_backward": "slow 3d backward",
    "aten::slow_conv_dilated2d_backward": "slow dilated 2d backward",
    "aten::slow_conv_dilated3d_backward": "slow dilated 3d backward",
    "aten::mkldnn_convolution_backward": "oneDNN backward",
    "aten::_conv_depthwise2d_backward": "depthwise 2d backward",
    "aten::conv_depthwise2d_backward": "depthwise 2d backward",
    "aten::conv_depthwise3d_backward": "depthwise 3d backward",
    "aten::_nnpack_spatial_convolution_backward": "NNPACK backward",
    "aten::convolution_backward_overrideable": "out-of-tree backend backward",
    "aten::cudnn_convolution_backward": "cuDNN backward",
}

# Forward roots: the top-most event of one convolution call.
FORWARD_ROOTS = ("aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::convolution",
                 "aten::_convolution")
# Events whose direct children reveal the group loop (narrow per group + one cat).
LOOP_HOSTS = ("aten::_convolution", "aten::convolution_backward", "aten::convolution",
              "aten::_convolution_nogroup")

# ConvBackend values that run the whole grouped conv in one call although no op event of their
# own appears in the profile (a DispatchStub or a plain C++ function inside _convolution /
# convolution_backward).
OPAQUE_SINGLE_BACKENDS = {
    "Mkldnn": "oneDNN (DispatchStub / no op event)",
    "Winograd3x3Depthwise": "winograd 3x3 depthwise (convolution_depthwise3x3_winograd_stub, no op event)",
    "Xnnpack2d": "XNNPACK (xnnpack::convolution2d inside aten::_convolution, no op event)",
    "CpuDepthwise2d": "native depthwise (DispatchStub, no op event)",
    "CpuGrouped2d": "native grouped (DispatchStub, no op event)",
    "Slow3d": "slow 3d (groups handled inside one call)",
    "Overrideable": "out-of-tree backend",
}
# ConvBackend values that loop over groups in _convolution / convolution_backward.
LOOP_BACKENDS = ("Slow2d", "NnpackSpatial", "SlowDilated2d", "SlowDilated3d",
                 "SlowTranspose2d", "SlowTranspose3d")

# Ops with "conv" in their name that are wrappers, not kernels (they dispatch to a backend).
WRAPPER_OPS = frozenset([
    "aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::convolution", "aten::_convolution",
    "aten::convolution_backward", "aten::_convolution_mode", "aten::conv_transpose1d",
    "aten::conv_transpose2d", "aten::conv_transpose3d", "aten::_convolution_double_backward",
    "aten::conv_tbc", "aten::_conv_depthwise2d.out",
])

# Which backend ops each ConvBackend is expected to issue (to notice when something else,
# e.g. an out-of-tree routing shim, served the conv although the selection says otherwise).
EXPECTED_OPS = {
    "Mkldnn": ("aten::mkldnn_convolution", "aten::mkldnn_convolution_backward"),
    "Slow2d": ("aten::thnn_conv2d", "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward",
               "aten::thnn_conv2d_backward"),
    "NnpackSpatial": ("aten::_nnpack_spatial_convolution",
                      "aten::_nnpack_spatial_convolution_backward"),
    "SlowDilated2d": ("aten::slow_conv_dilated2d", "aten::slow_conv_dilated2d_backward"),
    "SlowDilated3d": ("aten::slow_conv_dilated3d", "aten::slow_conv_dilated3d_backward"),
    "Slow3d": ("aten::slow_conv3d", "aten::slow_conv3d_forward", "aten::slow_conv3d_backward"),
    "CpuDepthwise2d": ("aten::_conv_depthwise2d", "aten::_conv_depthwise2d_backward",
                       "aten::conv_depthwise2d_backward"),
}


def is_backend_op(name):
    """A backend kernel call: a known backend op, or any other op with "conv" in its name
    that is not a wrapper (e.g. an out-of-tree library's `native_dwconv::...backward`)."""
    if name in BACKEND_OPS:
        return True
    if name in WRAPPER_OPS or "::" not in name or name.startswith("autograd::"):
        return False
    return "conv" in name.lower()


def _children(ev):
    return list(getattr(ev, "cpu_children", None) or [])


def _walk_backend(ev, found):
    """Top-most backend ops under ev (an op inside a backend op is that call's own work)."""
    for ch in _children(ev):
        if is_backend_op(ch.name):
            found[ch.name] = found.get(ch.name, 0) + 1
        else:
            _walk_backend(ch, found)


def _loop_evidence(ev, acc):
    """Count the direct children `aten::narrow` and `aten::cat` of the loop hosts under ev."""
    if ev.name in LOOP_HOSTS:
        for ch in _children(ev):
            if ch.name in ("aten::narrow", "aten::cat"):
                acc[ch.name] = acc.get(ch.name, 0) + 1
    for ch in _children(ev):
        if not is_backend_op(ch.name):
            _loop_evidence(ch, acc)


def _roots(events, phase):
    out = []
    for ev in events:
        parent = getattr(ev, "cpu_parent", None)
        if phase == "forward":
            if ev.name in FORWARD_ROOTS and (parent is None or parent.name not in FORWARD_ROOTS):
                # inside a backward node is not a forward conv (double backward)
                if not _has_ancestor(ev, "autograd::engine::evaluate_function"):
                    out.append(ev)
        else:
            if ev.name.startswith("autograd::engine::evaluate_function:") and "onv" in ev.name:
                out.append(ev)
    if phase == "backward" and not out:
        out = [ev for ev in events if ev.name == "aten::convolution_backward"
               and (getattr(ev, "cpu_parent", None) is None
                    or getattr(ev.cpu_parent, "name", "") != "aten::convolution_backward")]
    return out


def _has_ancestor(ev, prefix):
    p = getattr(ev, "cpu_parent", None)
    while p is not None:
        if p.name.startswith(prefix):
            return True
        p = getattr(p, "cpu_parent", None)
    return False


def count_backend_calls(events, phase, selected=None, groups=1, sliced_per_group=2):
    """-> (calls per conv, {backend op: count per conv}, attribution text, loop evidence).

    `events` hold exactly one convolution's forward (and backward if phase == "backward").
    """
    roots = _roots(events, phase)
    if not roots:
        return None, {}, "no %s convolution event in the profile" % phase, {}
    found, evidence = {}, {}
    for r in roots:
        _walk_backend(r, found)
        _loop_evidence(r, evidence)
    n = len(roots)
    ops = {k: v // n if v % n == 0 else v / float(n) for k, v in found.items()}
    calls = sum(ops.values())
    narrows, cats = evidence.get("aten::narrow", 0), evidence.get("aten::cat", 0)
    if calls:
        how = " + ".join("%s x %s" % (v, k) for k, v in sorted(ops.items()))
        if calls == 1:
            how = "%s (%s)" % (how, BACKEND_OPS.get(list(ops)[0], "a conv op outside aten"))
        elif cats:
            how += " + aten::cat (group loop)"
        return int(calls) if calls == int(calls) else calls, ops, how, evidence
    # No backend op event of its own: a DispatchStub or plain C++ call.
    if cats and narrows >= groups and groups > 1:
        # The group loop of _convolution/convolution_backward: `sliced_per_group` narrows per
        # group (input, weight[, bias] / grad_output, input, weight) then at::cat.
        per = max(1, int(round(narrows / float(groups))))
        calls = narrows // per // n
        return calls, {}, ("group loop inferred from %d x aten::narrow + %d x aten::cat "
                           "(backend %s issues no op event)" % (narrows, cats, selected)), evidence
    desc = OPAQUE_SINGLE_BACKENDS.get(selected or "", None)
    if desc:
        return 1, {}, "%s: attributed via _select_conv_backend" % desc, evidence
    return 1, {}, ("no backend op event and no group loop pattern; selected backend %s" %
                   selected), evidence
