"""`python build.py verify`: does every grouped convolution run as ONE kernel, correctly, and how fast?

Runs a matrix of grouped / depthwise convolutions against the torch in the current
environment (or, with ``--wheel``, in a fresh venv with that wheel installed) and, per case:

* asks PyTorch which backend it selects (``torch._C._select_conv_backend`` where present,
  with exactly the arguments and grad mode of the real call) and records the profiler's
  events under the conv (forward) and under its autograd node (backward);
* counts the backend kernel calls issued for ONE convolution. More than one (e.g.
  ``aten::thnn_conv2d`` x groups + ``aten::cat``: the group loop inside ``_convolution``) is a
  LOOP, a failure. Backends that issue no op event of their own (oneDNN's backward, the 3x3
  winograd depthwise and XNNPACK paths: plain C++ calls / DispatchStubs inside
  ``aten::_convolution`` / ``aten::convolution_backward``) are attributed through the backend
  selection and counted as one call unless the profile shows the group loop's
  ``aten::narrow`` + ``aten::cat`` pattern;
* compares the output (and, in training, the gradients) with an independent float64 reference
  (shift-and-add einsum, no convolution op involved), relative to the reference's scale, with
  per-dtype tolerances;
* times the median of several runs after warm-up, and the same conv with the group loop forced
  (oneDNN disabled and ``PYTORCH_GROUPED_CONV_BACKEND=loop``, which the patched builds read at
  every call); if the forced run does not loop, no speed-up is claimed and the reason is given.

This file is self-contained (stdlib + torch only; Python 3.8+; torch 2.6 ... 2.13) so it can be
copied or run as a script inside a venv, on a Jetson or under qemu:
``python recipe/verify.py [options]`` works as well as ``python build.py verify``.

Python API for the recipe's build step::

    from recipe.verify import run_verify, VerifyOptions
    report = run_verify(VerifyOptions(wheel="dist/torch-2.6.0-...whl", no_mkldnn=True))
    report.ok, report.failures, report.to_json()
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # Run as a script (in a venv, on a Jetson, under qemu): do not let sibling modules of
    # recipe/ shadow anything.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import argparse
import contextlib
import fnmatch
import hashlib
import itertools
import json
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings

SCHEMA = "torch-arm-recipe/verify/1"
GROUPED_CONV_ENV = "PYTORCH_GROUPED_CONV_BACKEND"

# Exit codes.
EXIT_OK = 0
EXIT_FAILED = 1      # a case loops, is wrong, or errored
EXIT_SETUP = 2       # could not run at all (no torch, venv/pip failure, bad arguments)

# ---------------------------------------------------------------------------------------------
# Which profiler events are "backend kernel calls".
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

# Relative error tolerances (max |y - ref| / max |ref|), forward and backward.
TOLERANCES = {
    "float32": (1e-4, 1e-4),
    "bfloat16": (2e-2, 4e-2),
    "float16": (4e-3, 1e-2),
}
DTYPE_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}

_torch = None


def _import_torch():
    global _torch
    if _torch is None:
        import torch  # noqa: F401  (imported lazily: `--help` and `--wheel` do not need it)
        _torch = torch
    return _torch


# ---------------------------------------------------------------------------------------------
# Cases

class Case(object):
    """One convolution configuration."""

    __slots__ = ("dim", "batch", "in_channels", "out_channels", "groups", "kernel", "stride",
                 "padding", "size", "dtype", "memory_format", "mode", "label")

    def __init__(self, dim, in_channels, out_channels, groups, kernel, stride, padding, size,
                 dtype="float32", memory_format="nchw", mode="inference", batch=1, label=None):
        self.dim = dim
        self.batch = batch
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.groups = groups
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.size = tuple(size)
        self.dtype = dtype
        self.memory_format = memory_format
        self.mode = mode
        self.label = label

    @property
    def kind(self):
        if self.groups == self.in_channels:
            mult = self.out_channels // self.in_channels
            return "dw" if mult == 1 else "dw%d" % mult
        return "g%d" % self.groups

    @property
    def name(self):
        spatial = "x".join(str(s) for s in self.size)
        parts = ["%dd" % self.dim, "%s-c%d" % (self.kind, self.in_channels)]
        if self.groups != self.in_channels and self.out_channels != self.in_channels:
            parts.append("o%d" % self.out_channels)
        if self.batch != 1:
            parts.append("n%d" % self.batch)
        parts.append(spatial)
        parts.append("k%ds%dp%d" % (self.kernel, self.stride, self.padding))
        parts.append(DTYPE_SHORT.get(self.dtype, self.dtype))
        parts.append(self.memory_format)
        parts.append("inf" if self.mode == "inference" else "train")
        return "-".join(parts)

    def to_dict(self):
        d = {s: getattr(self, s) for s in self.__slots__}
        d["size"] = list(self.size)
        d["conv"] = "Conv%dd" % self.dim
        d["kind"] = self.kind
        d["name"] = self.name
        d["input_shape"] = [self.batch, self.in_channels] + list(self.size)
        d["weight_shape"] = [self.out_channels, self.in_channels // self.groups] + \
            [self.kernel] * self.dim
        return d

    def __repr__(self):
        return "Case(%s)" % self.name


def _dw(dim, c, k, s, size, mult=1, **kw):
    return Case(dim, c, c * mult, c, k, s, k // 2, size, **kw)


def _grouped(dim, c, groups, k, s, size, **kw):
    return Case(dim, c, c, groups, k, s, k // 2, size, **kw)


def default_matrix():
    """The default matrix: < 1 min on a 2-core x86 machine (timings included)."""
    cases = []
    seed = (56, 56)
    # The original report: Conv2d(384, 384, 3, groups=384) on [1, 384, 56, 56].
    for mf in ("nchw", "cl"):
        for mode in ("inference", "training"):
            cases.append(_dw(2, 384, 3, 1, seed, memory_format=mf, mode=mode, label="seed"))
    cases.append(_dw(2, 384, 3, 1, seed, dtype="bfloat16", memory_format="cl", label="seed"))
    cases.append(_dw(2, 384, 3, 1, seed, dtype="float16", label="seed"))
    # Depthwise, multiplier 1: kernel 3/5/7 x stride 1/2.
    for k in (3, 5, 7):
        for s in (1, 2):
            cases.append(_dw(2, 64, k, s, (28, 28)))
    # Depthwise, multiplier 2.
    cases.append(_dw(2, 64, 3, 1, (28, 28), mult=2))
    cases.append(_dw(2, 64, 5, 2, (28, 28), mult=2))
    # Grouped: groups = C/4 and groups = 2.
    cases.append(_grouped(2, 64, 16, 3, 1, (28, 28)))
    cases.append(_grouped(2, 64, 2, 3, 2, (28, 28)))
    # channels_last.
    cases.append(_dw(2, 64, 5, 2, (28, 28), memory_format="cl"))
    cases.append(_grouped(2, 64, 16, 3, 1, (28, 28), memory_format="cl"))
    # Training (forward + backward).
    cases.append(_dw(2, 64, 7, 2, (28, 28), mode="training"))
    cases.append(_dw(2, 64, 3, 1, (28, 28), mult=2, memory_format="cl", mode="training"))
    cases.append(_grouped(2, 64, 16, 3, 1, (28, 28), mode="training"))
    # Reduced precision.
    cases.append(_dw(2, 64, 3, 1, (28, 28), dtype="bfloat16", memory_format="cl"))
    cases.append(_dw(2, 64, 3, 1, (28, 28), dtype="float16"))
    cases.append(_dw(2, 64, 3, 1, (28, 28), dtype="bfloat16", mode="training"))
    cases.append(_grouped(2, 64, 16, 3, 1, (28, 28), dtype="float16", memory_format="cl"))
    # Conv1d (incl. a Mamba-style causal depthwise conv: k=4, pad 3).
    cases.append(_dw(1, 128, 3, 1, (512,)))
    cases.append(_dw(1, 128, 7, 2, (512,)))
    cases.append(Case(1, 256, 256, 256, 4, 1, 3, (256,), label="mamba"))
    cases.append(_grouped(1, 64, 2, 5, 1, (512,)))
    cases.append(_dw(1, 128, 3, 1, (512,), mode="training"))
    # Conv3d.
    cases.append(_dw(3, 32, 3, 1, (8, 16, 16)))
    cases.append(_grouped(3, 32, 8, 3, 2, (8, 16, 16)))
    cases.append(_dw(3, 32, 3, 1, (8, 16, 16), mode="training"))
    return cases


# Real depthwise shapes (C, H=W, k, stride, pad): MobileNetV2/V3, EfficientNet-B0, ConvNeXt-T.
MODEL_SHAPES = [
    (32, 112, 3, 1, 1), (96, 112, 3, 2, 1), (144, 56, 3, 1, 1), (192, 28, 3, 1, 1),
    (576, 14, 3, 2, 1), (960, 7, 3, 1, 1), (72, 56, 5, 2, 2), (672, 14, 5, 2, 2),
    (240, 28, 5, 1, 2), (672, 14, 5, 1, 2), (1152, 7, 5, 1, 2), (96, 56, 7, 1, 3),
    (384, 14, 7, 1, 3), (768, 7, 7, 1, 3),
]


# Real grouped (not depthwise) layers (C in, C out, groups, H=W, k, stride, pad): ResNeXt-50
# 32x4d's 3x3 convs, RegNetY-800MF (group width 16), ShuffleNet v1's grouped 1x1 (g=3, g=8).
GROUPED_MODEL_SHAPES = [
    (128, 128, 32, 56, 3, 1, 1), (256, 256, 32, 56, 3, 2, 1), (512, 512, 32, 14, 3, 1, 1),
    (1024, 1024, 32, 7, 3, 1, 1), (64, 64, 4, 56, 3, 1, 1), (144, 144, 9, 28, 3, 1, 1),
    (320, 320, 20, 14, 3, 1, 1), (784, 784, 49, 7, 3, 1, 1), (240, 60, 3, 28, 1, 1, 0),
    (60, 240, 3, 28, 1, 1, 0), (384, 96, 8, 28, 1, 1, 0), (96, 384, 8, 28, 1, 1, 0),
]


def full_matrix():
    """`--full`: the default matrix plus the cross product on more shapes, and model shapes."""
    cases = list(default_matrix())
    for dtype in ("float32", "bfloat16", "float16"):
        for mf in ("nchw", "cl"):
            for mode in ("inference", "training"):
                for k in (3, 5, 7):
                    for s in (1, 2):
                        kw = dict(dtype=dtype, memory_format=mf, mode=mode)
                        cases.append(_dw(2, 96, k, s, (28, 28), **kw))
                        cases.append(_dw(2, 96, k, s, (28, 28), mult=2, **kw))
                        cases.append(_grouped(2, 96, 24, k, s, (28, 28), **kw))
                        cases.append(_grouped(2, 96, 2, k, s, (28, 28), **kw))
                        if mf == "nchw":
                            cases.append(_dw(1, 96, k, s, (256,), **kw))
                            cases.append(_grouped(1, 96, 24, k, s, (256,), **kw))
                        if k == 3:
                            cases.append(_dw(3, 24, k, s, (8, 14, 14), **kw))
    for (c, hw, k, s, p) in MODEL_SHAPES:
        for mf in ("nchw", "cl"):
            for mode in ("inference", "training"):
                cases.append(Case(2, c, c, c, k, s, p, (hw, hw), memory_format=mf, mode=mode,
                                  label="model"))
    for (cin, cout, g, hw, k, s, p) in GROUPED_MODEL_SHAPES:
        for mf in ("nchw", "cl"):
            for mode in ("inference", "training"):
                cases.append(Case(2, cin, cout, g, k, s, p, (hw, hw), memory_format=mf, mode=mode,
                                  label="model"))
    # A batch large enough for NNPACK (batch >= 16) and the Mamba conv1d at full size.
    cases.append(_dw(2, 32, 3, 1, (28, 28), batch=16))
    cases.append(Case(1, 1536, 1536, 1536, 4, 1, 3, (1024,), label="mamba"))
    # de-duplicate by name, keep order
    seen, out = set(), []
    for c in cases:
        if c.name not in seen:
            seen.add(c.name)
            out.append(c)
    return out


def filter_cases(cases, spec):
    """`--cases FILTER`: comma-separated alternatives; `+` joins terms that must all match;
    a term is a glob (fnmatch) if it has *?[ and a substring of the case name otherwise.
    A term may also name a case attribute label (e.g. `seed`, `model`, `mamba`)."""
    if not spec:
        return list(cases)
    alternatives = [a.strip() for a in spec.split(",") if a.strip()]

    def term_ok(case, term):
        if any(ch in term for ch in "*?["):
            return fnmatch.fnmatchcase(case.name, term)
        return term in case.name or term == case.label

    out = []
    for case in cases:
        for alt in alternatives:
            if all(term_ok(case, t) for t in alt.split("+") if t):
                out.append(case)
                break
    return out


# ---------------------------------------------------------------------------------------------
# Options and results

class VerifyOptions(object):
    """Options of `run_verify`; the same names as the CLI flags."""

    def __init__(self, wheel=None, full=False, no_mkldnn=False, kernel_lib=None, cases=None,
                 profile_dir=None, timing=True, loop_baseline="auto", threads=None,
                 allow_loop=None, venv=None, python=None, offline=False, quiet=True,
                 progress=False, seed=0):
        self.wheel = wheel
        self.full = full
        self.no_mkldnn = no_mkldnn
        self.kernel_lib = kernel_lib
        self.cases = cases
        self.profile_dir = profile_dir
        self.timing = timing
        self.loop_baseline = loop_baseline
        self.threads = threads
        self.allow_loop = allow_loop
        self.venv = venv
        self.python = python
        self.offline = offline
        self.quiet = quiet
        self.progress = progress
        self.seed = seed

    def to_dict(self):
        return dict(self.__dict__)

    def to_argv(self):
        """The CLI flags that reproduce these options (without --wheel/--venv/--python)."""
        argv = []
        if self.full:
            argv.append("--full")
        if self.no_mkldnn:
            argv.append("--no-mkldnn")
        if self.kernel_lib:
            argv += ["--kernel-lib", os.path.abspath(self.kernel_lib)]
        if self.cases:
            argv += ["--cases", self.cases]
        if self.profile_dir:
            argv += ["--profile", os.path.abspath(self.profile_dir)]
        if not self.timing:
            argv.append("--no-timing")
        if self.loop_baseline != "auto":
            argv += ["--loop-baseline", self.loop_baseline]
        if self.threads:
            argv += ["--threads", str(self.threads)]
        if self.allow_loop:
            argv += ["--allow-loop", self.allow_loop]
        if self.seed:
            argv += ["--seed", str(self.seed)]
        return argv


class CaseResult(object):
    def __init__(self, case):
        self.case = case
        self.status = "ERROR"          # PASS, LOOP, WRONG, ERROR, SKIP, LOOP-ALLOWED
        self.selected = None           # torch._C._ConvBackend name, or None
        self.rerouted = False          # the profile shows another backend than selected
        self.forward_ops = {}          # backend op -> count, per conv
        self.backward_ops = {}
        self.calls_forward = None
        self.calls_backward = None
        self.attribution = {}          # phase -> how the count was established
        self.loop_evidence = {}        # phase -> {"aten::cat": n, "aten::narrow": m}
        self.errors = {}               # output/grad_input/... -> relative error
        self.tolerance = None          # (forward, backward)
        self.time_ms = None            # median after warm-up
        self.time_min_ms = None
        self.loop_time_ms = None
        self.loop_calls = None
        self.loop_selected = None
        self.loop_forced = None        # True / False / None (not attempted)
        self.loop_note = None
        self.speedup = None
        self.notes = []
        self.message = None
        self.traces = []

    @property
    def name(self):
        return self.case.name

    @property
    def loops(self):
        return any(c is not None and c > 1 for c in (self.calls_forward, self.calls_backward))

    @property
    def wrong(self):
        if self.tolerance is None:
            return False
        for key, err in self.errors.items():
            tol = self.tolerance[0] if key == "output" else self.tolerance[1]
            if err is None or not (err <= tol):
                return True
        return False

    @property
    def failed(self):
        return self.status in ("LOOP", "WRONG", "ERROR")

    def reason(self):
        """One line: why this case failed (with call counts)."""
        bits = []
        if self.status == "ERROR":
            bits.append("ERROR: %s" % (self.message or "unknown"))
        if self.loops:
            for phase, calls, ops in (("forward", self.calls_forward, self.forward_ops),
                                      ("backward", self.calls_backward, self.backward_ops)):
                if calls is not None and calls > 1:
                    opdesc = " + ".join("%d x %s" % (n, op) for op, n in sorted(ops.items())) \
                        or self.attribution.get(phase, "")
                    bits.append("%s: %d backend calls per conv (%s)" % (phase, calls, opdesc))
        if self.wrong:
            worst = ", ".join("%s err %s" % (k, _fmt_err(v)) for k, v in self.errors.items())
            bits.append("WRONG: %s > tol %s" % (worst, "/".join(_fmt_err(t) for t in self.tolerance)))
        if self.selected:
            bits.append("[selected %s]" % self.selected)
        return "; ".join(bits)

    def to_dict(self):
        return {
            "name": self.name,
            "case": self.case.to_dict(),
            "status": self.status,
            "failed": self.failed,
            "loops": self.loops,
            "wrong": self.wrong,
            "selected_backend": self.selected,
            "rerouted": self.rerouted,
            "calls": {"forward": self.calls_forward, "backward": self.calls_backward},
            "backend_ops": {"forward": self.forward_ops, "backward": self.backward_ops},
            "attribution": self.attribution,
            "loop_evidence": self.loop_evidence,
            "errors": self.errors,
            "tolerance": list(self.tolerance) if self.tolerance else None,
            "time_ms": self.time_ms,
            "time_min_ms": self.time_min_ms,
            "loop_time_ms": self.loop_time_ms,
            "loop_calls": self.loop_calls,
            "loop_selected_backend": self.loop_selected,
            "loop_forced": self.loop_forced,
            "loop_note": self.loop_note,
            "speedup": self.speedup,
            "notes": self.notes,
            "message": self.message,
            "reason": self.reason() if self.failed or self.status == "LOOP-ALLOWED" else None,
            "traces": self.traces,
        }


class Report(object):
    """What `run_verify` returns: `ok`, `failures`, `to_json()`, `format_table()`."""

    def __init__(self, facts, results, options=None, data=None):
        self.facts = facts
        self.results = results
        self.options = options
        self._data = data       # set when loaded from JSON (a run in another interpreter)

    @property
    def cases(self):
        if self._data is not None:
            return self._data["cases"]
        return [r.to_dict() for r in self.results]

    @property
    def ok(self):
        if self._data is not None:
            return bool(self._data["ok"])
        return bool(self.results) and not any(r.failed for r in self.results)

    @property
    def failures(self):
        """[{name, status, calls, reason}] for every failed case."""
        if self._data is not None:
            return self._data["failures"]
        return [{"name": r.name, "status": r.status,
                 "calls": {"forward": r.calls_forward, "backward": r.calls_backward},
                 "reason": r.reason()} for r in self.results if r.failed]

    def to_dict(self):
        if self._data is not None:
            return self._data
        counts = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return {
            "schema": SCHEMA,
            "ok": self.ok,
            "facts": self.facts,
            "options": self.options.to_dict() if self.options is not None else None,
            "summary": {"cases": len(self.results), "by_status": counts},
            "failures": self.failures,
            "cases": self.cases,
        }

    def to_json(self, indent=2):
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False, default=str)

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        return cls(data.get("facts", {}), [], None, data=data)

    def format_table(self):
        return format_report(self.to_dict())


# ---------------------------------------------------------------------------------------------
# Install facts

def _config_highlights(config_text):
    out = {}
    for line in config_text.splitlines():
        s = line.strip().lstrip("- ").strip()
        if re.search(r"MKL-DNN|oneDNN|Compute Library|\bACL\b|OpenMP|NNPACK|XNNPACK|"
                     r"CPU capability|LAPACK|Math Kernel|OpenBLAS", s) and "Build settings" not in s:
            out.setdefault("lines", []).append(s)
        if s.startswith("Build settings:"):
            settings = {}
            for m in re.finditer(r"([A-Z][A-Z0-9_]+)=([^,]*)", s):
                settings[m.group(1)] = m.group(2).strip()
            keep = ("TORCH_VERSION", "COMMIT_SHA", "BUILD_TYPE", "BLAS_INFO", "LAPACK_INFO",
                    "USE_MKLDNN", "USE_MKLDNN_ACL", "USE_XNNPACK", "USE_NNPACK", "USE_OPENMP",
                    "USE_MKL", "USE_CUDA", "CXX_COMPILER")
            out["build_settings"] = {k: settings[k] for k in keep if k in settings}
            flags = settings.get("CXX_FLAGS", "")
            out["cxx_defines"] = sorted(set(re.findall(r"-D(USE_[A-Z0-9_]+|ONEDNN_[A-Z0-9_]+|"
                                                       r"AT_[A-Z0-9_]+)", flags)))
    return out


def _safe(fn, default=None):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001  (facts are best effort; report what failed)
        return default if default is not None else "unavailable: %s" % (str(e).splitlines() or [""])[0]


def _load_kernel_lib(path):
    """The add-on's library links no torch library and registers its operators only when
    its loader asks: load it with addon/torch_grouped_conv/_loader.py of this checkout (makes
    the running torch's libraries global, loads, registers)."""
    loader = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "addon",
                          "torch_grouped_conv", "_loader.py")
    import importlib.util
    spec = importlib.util.spec_from_file_location("torch_grouped_conv_loader", loader)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.load_library(path)


def _addon_fact():
    """The autoloaded add-on torch-grouped-conv: None when not installed."""
    addon = sys.modules.get("torch_grouped_conv")
    if addon is None:
        return None
    state = getattr(addon, "_state", {})
    return {"version": addon.build_info().get("version"), "loaded": state.get("loaded"),
            "reason": state.get("reason")}


def install_facts(kernel_lib=None, no_mkldnn=False):
    torch = _import_torch()
    facts = {
        "torch_version": torch.__version__,
        "git_version": _safe(lambda: torch.version.git_version),
        "torch_file": os.path.dirname(torch.__file__),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "interop_threads": _safe(torch.get_num_interop_threads),
        "cpu_capability": _safe(lambda: torch.backends.cpu.get_cpu_capability()),
        "mkldnn_available": _safe(lambda: bool(torch.backends.mkldnn.is_available())),
        "mkldnn_enabled": _safe(lambda: bool(torch._C._get_mkldnn_enabled())),
        "mkldnn_disabled_for_run": bool(no_mkldnn),
        "acl": None,
        "xnnpack_compiled": None,
        "nnpack_available": _safe(lambda: bool(torch._nnpack_available())),
        "select_conv_backend": hasattr(torch._C, "_select_conv_backend"),
        "conv_backends": sorted(_conv_backend_names()),
        "patched_routing": "CpuDepthwise2d" in _conv_backend_names(),
        "patched_grouped_kernel": "CpuGrouped2d" in _conv_backend_names(),
        GROUPED_CONV_ENV: os.environ.get(GROUPED_CONV_ENV),
        "kernel_lib": os.path.abspath(kernel_lib) if kernel_lib else None,
        "addon": _safe(_addon_fact, default={}) or None,
    }
    if hasattr(torch.ops, "mkldnn"):
        facts["acl"] = _safe(lambda: bool(torch.ops.mkldnn._is_mkldnn_acl_supported()),
                             default="not exposed")
    if hasattr(torch._C, "_is_xnnpack_enabled"):
        facts["xnnpack_compiled"] = _safe(lambda: bool(torch._C._is_xnnpack_enabled()))
        facts["xnnpack_note"] = "compile flag only; says nothing about conv routing"
    facts["config"] = _safe(lambda: _config_highlights(torch.__config__.show()), default={})
    facts["parallel"] = _safe(lambda: [l.strip() for l in torch.__config__.parallel_info().splitlines()
                                       if "threads" in l or "backend" in l], default=[])
    return facts


def _conv_backend_names():
    torch = _import_torch()
    enum = getattr(torch._C, "_ConvBackend", None)
    if enum is None:
        return []
    return [n.rstrip(",") for n in getattr(enum, "__members__", {})]


# ---------------------------------------------------------------------------------------------
# Running one case

@contextlib.contextmanager
def _mkldnn_enabled(enabled):
    """enabled=None: leave as is; otherwise torch.backends.mkldnn.flags(enabled=...)."""
    torch = _import_torch()
    if enabled is None:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx = torch.backends.mkldnn.flags(enabled=enabled)
        ctx.__enter__()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctx.__exit__(None, None, None)


@contextlib.contextmanager
def _env(name, value):
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


_NOISE = re.compile(r"^(USDT|STAGE|WARNING|INFO):\S+ \S+ \d+:\d+ \S+\.cpp:\d+\]|"
                    r"failed to parse the list of (possible|present) processors")


@contextlib.contextmanager
def _quiet_profiler_stderr():
    """Kineto prints `USDT:... profiler_start` lines on fd 2 at every profile; drop those lines
    and pass everything else through."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    tmp = tempfile.TemporaryFile(mode="w+b")
    os.dup2(tmp.fileno(), 2)
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        os.dup2(saved, 2)
        os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode("utf-8", "replace")
        tmp.close()
        keep = [l for l in text.splitlines() if l.strip() and not _NOISE.search(l)]
        if keep:
            sys.stderr.write("\n".join(keep) + "\n")


def _profile(fn, trace_path=None):
    """Run fn once under the CPU profiler; return (its result, the list of FunctionEvents)."""
    torch = _import_torch()
    from torch.profiler import ProfilerActivity, profile
    with _quiet_profiler_stderr():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = fn()
    events = list(prof.events())
    if trace_path:
        d = os.path.dirname(trace_path)
        if d and not os.path.isdir(d):
            os.makedirs(d)
        prof.export_chrome_trace(trace_path)
    del torch
    return out, events


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


def _selected_backend(x, w, b, stride, padding, groups, dim):
    torch = _import_torch()
    sel = getattr(torch._C, "_select_conv_backend", None)
    if sel is None:
        return None
    try:
        r = sel(x, w, b, [stride] * dim, [padding] * dim, [1] * dim, False, [0] * dim, groups)
    except Exception as e:  # noqa: BLE001
        return "error: %s" % str(e).splitlines()[0]
    name = getattr(r, "name", None) or str(r).split(".")[-1]
    return name.rstrip(",")


def _reference(x, w, b, stride, padding, groups):
    """float64 grouped convolution by shift-and-add einsum: no conv op involved, so neither
    oneDNN nor a routing shim can be the reference for itself."""
    torch = _import_torch()
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


def _rel_err(y, ref):
    torch = _import_torch()
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


def _time(fn, budget_s=0.3, min_reps=3, max_reps=20, warmup=1):
    """(median, min) in ms of fn() after `warmup` calls (the caller has already run it twice:
    a warm-up and the profiled call). At least `min_reps`, then until `budget_s` is used."""
    for _ in range(warmup):
        fn()
    times = []
    end = time.perf_counter() + budget_s
    while len(times) < min_reps or (len(times) < max_reps and time.perf_counter() < end):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, min(times) * 1e3


class _Prepared(object):
    """Tensors and step functions for one case (kept between the run and the forced loop)."""

    def __init__(self, case, seed):
        torch = _import_torch()
        self.case = case
        dtype = getattr(torch, case.dtype)
        gen = torch.Generator().manual_seed(
            int(hashlib.sha256(("%d:%s" % (seed, case.name)).encode()).hexdigest()[:8], 16))
        shape_x = [case.batch, case.in_channels] + list(case.size)
        shape_w = [case.out_channels, case.in_channels // case.groups] + [case.kernel] * case.dim
        fan_in = (case.in_channels // case.groups) * case.kernel ** case.dim
        x = torch.randn(shape_x, generator=gen).to(dtype)
        w = (torch.randn(shape_w, generator=gen) / fan_in ** 0.5).to(dtype)
        b = (torch.randn([case.out_channels], generator=gen) * 0.1).to(dtype)
        if case.memory_format == "cl":
            fmt = torch.channels_last if case.dim == 2 else torch.channels_last_3d
            x = x.contiguous(memory_format=fmt)
            w = w.contiguous(memory_format=fmt)
        self.training = case.mode == "training"
        self.x, self.w, self.b = x, w, b
        if self.training:
            for t in (x, w, b):
                t.requires_grad_(True)
        self.conv = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d,
                     3: torch.nn.functional.conv3d}[case.dim]
        self.g = None
        if self.training:
            out_sz = [(s + 2 * case.padding - case.kernel) // case.stride + 1 for s in case.size]
            self.g = torch.randn([case.batch, case.out_channels] + out_sz, generator=gen).to(dtype)

    def forward(self):
        c = self.case
        return self.conv(self.x, self.w, self.b, c.stride, c.padding, 1, c.groups)

    def step(self):
        """One inference call, or one forward+backward. Returns the tensors to check."""
        torch = _import_torch()
        if not self.training:
            with torch.inference_mode():
                return {"output": self.forward()}
        for t in (self.x, self.w, self.b):
            t.grad = None
        y = self.forward()
        y.backward(self.g)
        return {"output": y.detach(), "grad_input": self.x.grad, "grad_weight": self.w.grad,
                "grad_bias": self.b.grad}

    def select(self):
        torch = _import_torch()
        c = self.case
        if self.training:
            return _selected_backend(self.x, self.w, self.b, c.stride, c.padding, c.groups, c.dim)
        with torch.inference_mode():
            return _selected_backend(self.x, self.w, self.b, c.stride, c.padding, c.groups, c.dim)

    def reference(self):
        torch = _import_torch()
        c = self.case
        x = self.x.detach().to(torch.float64)
        w = self.w.detach().to(torch.float64)
        b = self.b.detach().to(torch.float64)
        if not self.training:
            with torch.no_grad():
                return {"output": _reference(x, w, b, c.stride, c.padding, c.groups)}
        x.requires_grad_(True)
        w.requires_grad_(True)
        b.requires_grad_(True)
        with torch.enable_grad():
            y = _reference(x, w, b, c.stride, c.padding, c.groups)
            gx, gw, gb = torch.autograd.grad(y, (x, w, b), self.g.to(torch.float64))
        return {"output": y.detach(), "grad_input": gx, "grad_weight": gw, "grad_bias": gb}


def _trace_path(profile_dir, name, suffix=""):
    if not profile_dir:
        return None
    return os.path.join(profile_dir, "%s%s.json" % (name, suffix))


def _dtype_supported(dtype_name):
    torch = _import_torch()
    dtype = getattr(torch, dtype_name, None)
    if dtype is None:
        return False, "torch has no %s" % dtype_name
    try:
        x = torch.randn(1, 4, 5, 5).to(dtype)
        w = torch.randn(4, 1, 3, 3).to(dtype)
        torch.nn.functional.conv2d(x, w, None, 1, 1, 1, 4)
        x1 = torch.randn(1, 4, 9).to(dtype)
        torch.nn.functional.conv1d(x1, torch.randn(4, 1, 3).to(dtype), None, 1, 1, 1, 4)
    except Exception as e:  # noqa: BLE001
        return False, "%s conv unsupported here: %s" % (dtype_name, str(e).splitlines()[0])
    return True, ""


def _measure(prep, profile_dir, name, suffix, timing, groups):
    """Profile one step (counts), then time. Returns dict."""
    out = {}
    out["selected"] = prep.select()
    prep.step()  # warm-up (primitive creation, allocator)
    tensors, events = _profile(prep.step, _trace_path(profile_dir, name, suffix))
    out["tensors"] = tensors
    out["trace"] = _trace_path(profile_dir, name, suffix)
    sel = out["selected"]
    calls, ops, how, ev = count_backend_calls(events, "forward", sel, groups)
    out["forward"] = (calls, ops, how, ev)
    if prep.training:
        calls_b, ops_b, how_b, ev_b = count_backend_calls(events, "backward", sel, groups, 3)
        out["backward"] = (calls_b, ops_b, how_b, ev_b)
    out["time_ms"], out["time_min_ms"] = _time(prep.step) if timing else (None, None)
    return out


def _explain(case, selected, facts):
    """Why a case is expected to loop / not to be served, in this install (for the notes)."""
    notes = []
    if selected in LOOP_BACKENDS and case.groups > 1:
        notes.append("%s has no group support: _convolution runs it once per group, then "
                     "aten::cat" % selected)
        if facts.get("mkldnn_disabled_for_run"):
            notes.append("oneDNN disabled for this run (--no-mkldnn)")
        elif not facts.get("mkldnn_available"):
            notes.append("this torch has no oneDNN (USE_MKLDNN=0)")
        elif case.dtype == "float16":
            notes.append("oneDNN takes fp16 conv only where mkldnn_fp16_device_check() holds "
                         "(x86: AVX512-FP16/AMX-FP16; never on ARM)")
        elif case.dtype == "bfloat16":
            notes.append("oneDNN takes bf16 conv only where mkldnn_bf16_device_check() holds "
                         "(x86: AVX512-BF16 or AVX512BW/VL/DQ; ARM: bf16 hardware, not on "
                         "Xavier/Orin)")
    return notes


def run_case(case, opts, facts):
    torch = _import_torch()
    res = CaseResult(case)
    res.tolerance = TOLERANCES.get(case.dtype)
    try:
        prep = _Prepared(case, opts.seed)
        mk = False if opts.no_mkldnn else None
        with _mkldnn_enabled(mk):
            m = _measure(prep, opts.profile_dir, case.name, "", opts.timing, case.groups)
        res.selected = m["selected"]
        res.calls_forward, res.forward_ops, res.attribution["forward"], \
            res.loop_evidence["forward"] = m["forward"]
        if "backward" in m:
            res.calls_backward, res.backward_ops, res.attribution["backward"], \
                res.loop_evidence["backward"] = m["backward"]
        if m["trace"]:
            res.traces.append(m["trace"])
        res.time_ms, res.time_min_ms = m["time_ms"], m["time_min_ms"]
        ref = prep.reference()
        for key, val in ref.items():
            got = m["tensors"].get(key)
            res.errors[key] = _rel_err(got, val) if got is not None else float("inf")
        expected = EXPECTED_OPS.get(res.selected or "")
        for ops in (res.forward_ops, res.backward_ops):
            if expected and ops and not set(ops) & set(expected):
                res.rerouted = True
        if res.rerouted:
            res.notes.append("served by other ops than _select_conv_backend names (a routing "
                             "shim, e.g. --kernel-lib)")
        else:
            res.notes += _explain(case, res.selected, facts)
        # The forced group loop, for the speed-up.
        if opts.timing and opts.loop_baseline != "off":
            if res.loops:
                res.loop_forced, res.loop_time_ms, res.loop_calls = True, res.time_ms, \
                    max(c or 0 for c in (res.calls_forward, res.calls_backward))
                res.loop_note = "this case runs the group loop itself"
            elif opts.loop_baseline in ("auto", "inline"):
                _forced_loop_inline(prep, res, opts)
        del prep
    except Exception as e:  # noqa: BLE001
        res.status = "ERROR"
        res.message = "%s: %s" % (type(e).__name__, (str(e).splitlines() or [""])[0][:300])
        return res
    _set_status(res, opts)
    del torch
    return res


def _forced_loop_inline(prep, res, opts):
    case = prep.case
    with _env(GROUPED_CONV_ENV, "loop"), _mkldnn_enabled(False):
        m = _measure(prep, opts.profile_dir, case.name, ".loop", True, case.groups)
    calls = [m["forward"][0]] + ([m["backward"][0]] if "backward" in m else [])
    res.loop_selected = m["selected"]
    res.loop_calls = max(c or 0 for c in calls)
    if m["trace"]:
        res.traces.append(m["trace"])
    _apply_loop(res, res.loop_calls, m["time_ms"], m["selected"], "inline")


def _apply_loop(res, calls, t_ms, selected, how):
    res.loop_calls = calls
    res.loop_selected = selected
    if calls and calls > 1:
        res.loop_forced = True
        res.loop_time_ms = t_ms
        res.loop_note = ("forced %s: oneDNN off + %s=loop -> %s backend calls (%s)"
                         % (how, GROUPED_CONV_ENV, calls, selected))
        if res.time_ms:
            res.speedup = t_ms / res.time_ms
    else:
        res.loop_forced = False
        res.loop_time_ms = None
        res.speedup = None
        res.loop_note = ("group loop cannot be forced here (%s): oneDNN off + %s=loop still ran "
                         "%s backend call(s) via %s" % (how, GROUPED_CONV_ENV, calls, selected))


def _set_status(res, opts):
    if res.wrong:
        res.status = "WRONG"
    elif res.loops:
        res.status = "LOOP"
        if opts.allow_loop and filter_cases([res.case], opts.allow_loop):
            res.status = "LOOP-ALLOWED"
    else:
        res.status = "PASS"


def _baseline_subprocess(results, opts):
    """Force the loop in a fresh interpreter with the env var set before torch is imported
    (for builds that read PYTORCH_GROUPED_CONV_BACKEND once)."""
    todo = [r for r in results
            if r.time_ms and not r.loops and not r.failed and r.loop_forced is not True]
    if not todo:
        return
    names = ",".join(r.name for r in todo)
    fd, jpath = tempfile.mkstemp(suffix=".json", prefix="verify-loop-")
    os.close(fd)
    argv = [sys.executable, os.path.abspath(__file__), "--cases", names, "--no-mkldnn",
            "--loop-baseline", "off", "--json-file", jpath, "--json", "--seed", str(opts.seed)]
    if opts.kernel_lib:
        argv += ["--kernel-lib", os.path.abspath(opts.kernel_lib)]
    if opts.threads:
        argv += ["--threads", str(opts.threads)]
    if opts.full:
        argv.append("--full")
    env = dict(os.environ)
    env[GROUPED_CONV_ENV] = "loop"
    try:
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       check=False, timeout=3600)
        with open(jpath) as f:
            data = json.load(f)
    except Exception as e:  # noqa: BLE001
        for r in todo:
            r.loop_note = "%s; subprocess baseline failed: %s" % (r.loop_note or "", e)
        return
    finally:
        if os.path.exists(jpath):
            os.unlink(jpath)
    by_name = {c["name"]: c for c in data.get("cases", [])}
    for r in todo:
        c = by_name.get(r.name)
        if not c:
            continue
        calls = max(v or 0 for v in c["calls"].values())
        _apply_loop(r, calls, c["time_ms"] if calls > 1 else None, c["selected_backend"],
                    "in a subprocess" if r.loop_forced is None else
                    "inline, nor in a subprocess")


def run_verify(options=None, **kwargs):
    """Run the matrix; returns a Report. `options`: VerifyOptions, a dict, or None (+kwargs).

    With `wheel=PATH` the run happens in a fresh venv (see `--wheel`) and the Report is loaded
    from its JSON.
    """
    if options is None:
        options = VerifyOptions(**kwargs)
    elif isinstance(options, dict):
        options = VerifyOptions(**dict(options, **kwargs))
    if options.wheel:
        return _run_wheel(options)
    torch = _import_torch()
    if options.threads:
        torch.set_num_threads(int(options.threads))
    if options.kernel_lib:
        _load_kernel_lib(os.path.abspath(options.kernel_lib))
    facts = install_facts(options.kernel_lib, options.no_mkldnn)
    cases = full_matrix() if options.full else default_matrix()
    cases = filter_cases(cases, options.cases)
    if not cases:
        raise ValueError("--cases %r selects no case" % options.cases)
    supported = {}
    results = []
    t_start = time.time()
    for i, case in enumerate(cases):
        if case.dtype not in supported:
            supported[case.dtype] = _dtype_supported(case.dtype)
        ok, why = supported[case.dtype]
        if not ok:
            r = CaseResult(case)
            r.status = "SKIP"
            r.message = why
            results.append(r)
            continue
        if options.progress:
            sys.stderr.write("[%d/%d] %s\n" % (i + 1, len(cases), case.name))
            sys.stderr.flush()
        results.append(run_case(case, options, facts))
    if options.timing and options.loop_baseline in ("auto", "subprocess"):
        if options.loop_baseline == "subprocess" or facts["patched_routing"] or options.kernel_lib:
            _baseline_subprocess(results, options)
    facts["elapsed_s"] = round(time.time() - t_start, 2)
    return Report(facts, results, options)


# ---------------------------------------------------------------------------------------------
# --wheel: a fresh venv

def _run_wheel(opts, passthrough_stdout=False):
    """Create a venv, install the wheel (deps from the configured index, the wheel's folder as
    --find-links), and re-run this file inside it. Returns the child's Report."""
    wheel = os.path.abspath(opts.wheel)
    if not os.path.isfile(wheel):
        raise FileNotFoundError("wheel not found: %s" % wheel)
    python = opts.python or sys.executable
    tmp = None
    venv = opts.venv
    if not venv:
        tmp = tempfile.mkdtemp(prefix="verify-venv-")
        venv = os.path.join(tmp, "venv")
    vpy = os.path.join(venv, "Scripts" if os.name == "nt" else "bin",
                       "python.exe" if os.name == "nt" else "python")
    env = dict(os.environ)
    env["PYTHONNOUSERSITE"] = "1"
    env.pop("PYTHONPATH", None)
    try:
        if not os.path.exists(vpy):
            subprocess.run([python, "-m", "venv", venv], check=True)
        pip = [vpy, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               "--find-links", os.path.dirname(wheel)]
        if opts.offline:
            pip.append("--no-index")
        r = subprocess.run(pip + [wheel], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        if r.returncode != 0:
            raise RuntimeError("pip install %s failed:\n%s" % (wheel, r.stdout[-3000:]))
        fd, jpath = tempfile.mkstemp(suffix=".json", prefix="verify-")
        os.close(fd)
        argv = [vpy, os.path.abspath(__file__)] + opts.to_argv() + ["--json-file", jpath]
        if not passthrough_stdout:
            argv.append("--json")
        r = subprocess.run(argv, env=env, cwd=tmp or tempfile.gettempdir(),
                           stdout=None if passthrough_stdout else subprocess.DEVNULL)
        try:
            with open(jpath) as f:
                text = f.read()
        finally:
            os.unlink(jpath)
        if not text.strip():
            raise RuntimeError("verify inside the venv exited %d without a report" % r.returncode)
        report = Report.from_json(text)
        report.facts["wheel"] = wheel
        report.facts["venv"] = None if tmp else os.path.abspath(venv)
        report.child_returncode = r.returncode
        return report
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Output

def _fmt_err(v):
    if v is None:
        return "-"
    if v != v or v == float("inf"):
        return "inf"
    return "%.1e" % v


def _fmt_ms(v):
    if v is None:
        return "-"
    return "%.3f" % v if v < 1 else ("%.2f" % v if v < 100 else "%.0f" % v)


def _short_ops(ops, calls, attribution):
    if ops:
        return " + ".join(("%s x%s" % (k.split("::")[-1], v)) if v != 1 else k.split("::")[-1]
                          for k, v in sorted(ops.items(), key=lambda kv: -kv[1]))
    if calls is None:
        return "-"
    a = attribution or ""
    if a.startswith("group loop inferred"):
        return "loop x%s (inferred)" % calls
    return "(no op event)"


def format_report(data):
    facts = data.get("facts", {})
    lines = []
    cfg = facts.get("config") or {}
    bs = cfg.get("build_settings", {}) if isinstance(cfg, dict) else {}
    lines.append("torch %s (git %s) | python %s | %s | %s threads | CPU capability %s" % (
        facts.get("torch_version"), str(facts.get("git_version"))[:12], facts.get("python"),
        facts.get("machine"), facts.get("threads"), facts.get("cpu_capability")))
    lines.append("oneDNN (USE_MKLDNN) %s%s | ACL %s | XNNPACK compiled %s (flag only) | NNPACK %s"
                 % (facts.get("mkldnn_available"),
                    " [disabled for this run: --no-mkldnn]" if facts.get("mkldnn_disabled_for_run")
                    else "" if facts.get("mkldnn_enabled") in (True, None) else " [disabled]",
                    facts.get("acl"), facts.get("xnnpack_compiled"), facts.get("nnpack_available")))
    extra = []
    if bs.get("BLAS_INFO"):
        extra.append("BLAS %s" % bs["BLAS_INFO"])
    for l in (cfg.get("lines") or []) if isinstance(cfg, dict) else []:
        if "DNN" in l or "Compute Library" in l:
            extra.append(l)
    extra.append("_select_conv_backend %s" % ("yes" if facts.get("select_conv_backend") else "no"))
    extra.append("patched routing (CpuDepthwise2d) %s" % ("yes" if facts.get("patched_routing")
                                                          else "no"))
    if facts.get("patched_grouped_kernel"):
        extra.append("native grouped kernel (CpuGrouped2d) yes")
    if facts.get(GROUPED_CONV_ENV):
        extra.append("%s=%s" % (GROUPED_CONV_ENV, facts.get(GROUPED_CONV_ENV)))
    if facts.get("kernel_lib"):
        extra.append("kernel lib %s" % facts["kernel_lib"])
    if facts.get("addon"):
        extra.append("add-on torch-grouped-conv %s: %s" % (facts["addon"].get("version"),
                                                           facts["addon"].get("reason")))
    lines.append(" | ".join(extra))
    lines.append("")
    rows = [("case", "selected", "backend ops fwd / bwd", "calls", "max err (tol)", "ms",
             "loop ms", "speed-up", "status")]
    for c in data.get("cases", []):
        bo = c.get("backend_ops", {})
        calls = c.get("calls", {})
        att = c.get("attribution", {})
        ops = _short_ops(bo.get("forward"), calls.get("forward"), att.get("forward"))
        if calls.get("backward") is not None:
            ops += " / " + _short_ops(bo.get("backward"), calls.get("backward"),
                                      att.get("backward"))
        ncalls = "-" if calls.get("forward") is None else str(calls.get("forward"))
        if calls.get("backward") is not None:
            ncalls += "/%s" % calls.get("backward")
        errs = c.get("errors") or {}
        tol = c.get("tolerance")
        err = "-"
        if errs:
            worst = max(errs.values(), key=lambda v: float("inf") if v is None else v)
            err = "%s (%s)" % (_fmt_err(worst), _fmt_err(tol[0] if tol else None))
        sp = c.get("speedup")
        if sp is not None:
            sp_s = "%.1fx" % sp
        elif c.get("loop_forced") is False:
            sp_s = "n/a*"
        elif c.get("loops"):
            sp_s = "(loop)"
        else:
            sp_s = "-"
        status = c.get("status")
        sel = (c.get("selected_backend") or "?") + ("*" if c.get("rerouted") else "")
        rows.append((c["name"], sel, ops, ncalls, err,
                     _fmt_ms(c.get("time_ms")), _fmt_ms(c.get("loop_time_ms")), sp_s, status))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    widths[2] = min(widths[2], 56)
    for j, r in enumerate(rows):
        cells = []
        for i, v in enumerate(r):
            v = str(v)
            if i == 2 and len(v) > widths[2]:
                v = v[:widths[2] - 1] + "~"
            cells.append(v.rjust(widths[i]) if i in (3, 5, 6, 7) else v.ljust(widths[i]))
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("calls = backend kernel calls per conv (forward/backward); more than 1 is the "
                 "group loop. err = max|y - ref| / max|ref| vs float64 (worst of output and "
                 "grads). ms = median after warm-up (inference: one call; train: forward + "
                 "backward); loop ms = the same with the group loop forced.")
    cases = data.get("cases", [])
    if any(c.get("rerouted") for c in cases):
        lines.append("selected* = _select_conv_backend's answer, but other ops served the conv "
                     "(an out-of-tree routing shim): the profile is what counts.")
    unforced = [c for c in cases if c.get("loop_forced") is False]
    if unforced:
        lines.append("")
        lines.append("* no speed-up: the group loop could not be forced for %d case(s), e.g. %s: %s"
                     % (len(unforced), unforced[0]["name"], unforced[0].get("loop_note")))
    notes = {}
    for c in cases:
        for n in c.get("notes") or []:
            notes.setdefault(n, []).append(c["name"])
    skipped = [c for c in cases if c.get("status") == "SKIP"]
    for c in skipped:
        lines.append("SKIP %s: %s" % (c["name"], c.get("message")))
    allowed = [c for c in cases if c.get("status") == "LOOP-ALLOWED"]
    if allowed:
        lines.append("")
        lines.append("Loops allowed by --allow-loop (%d):" % len(allowed))
        for c in allowed:
            lines.append("  %s: %s" % (c["name"], c.get("reason")))
    lines.append("")
    summary = data.get("summary", {}).get("by_status", {})
    lines.append("%d case(s): %s; %.1f s" % (
        len(cases), ", ".join("%d %s" % (v, k) for k, v in sorted(summary.items())),
        facts.get("elapsed_s") or 0.0))
    fails = data.get("failures", [])
    if fails:
        lines.append("FAILED: %d case(s) loop, are wrong, or errored:" % len(fails))
        for f in fails:
            lines.append("  %s  %s" % (f["name"], f["reason"]))
        if notes:
            lines.append("Why (this install):")
            for n, names in notes.items():
                lines.append("  - %s (%d case(s))" % (n, len(names)))
    else:
        lines.append("OK: every grouped conv ran as ONE backend call and matched float64.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# CLI

def build_parser():
    p = argparse.ArgumentParser(
        prog="build.py verify",
        description="Check that grouped/depthwise convolutions run as ONE backend kernel, "
                    "correctly (vs float64), and how fast (vs the forced group loop).")
    p.add_argument("--wheel", metavar="PATH",
                   help="test this wheel in a fresh venv instead of the current torch")
    p.add_argument("--venv", metavar="DIR",
                   help="with --wheel: create/reuse the venv here (default: a temporary one)")
    p.add_argument("--python", metavar="EXE", help="with --wheel: interpreter for the venv")
    p.add_argument("--offline", action="store_true",
                   help="with --wheel: pip --no-index (deps must be in the wheel's folder)")
    p.add_argument("--json", action="store_true", help="print the report as JSON only")
    p.add_argument("--json-file", metavar="PATH", help="also write the JSON report here")
    p.add_argument("--profile", metavar="DIR", dest="profile_dir",
                   help="write a Chrome trace per case (and per forced loop) into DIR")
    p.add_argument("--full", action="store_true", help="the large matrix (minutes)")
    p.add_argument("--no-mkldnn", action="store_true",
                   help="run with oneDNN disabled (what a wheel without oneDNN does)")
    p.add_argument("--kernel-lib", metavar="PATH",
                   help="torch.ops.load_library(PATH) first (the out-of-tree native kernel)")
    p.add_argument("--cases", metavar="FILTER",
                   help="comma-separated alternatives; '+' = AND; globs or substrings of case "
                        "names (e.g. 'c384', '2d-dw+inf', '*fp16*'); 'list' lists the cases")
    p.add_argument("--allow-loop", metavar="FILTER",
                   help="cases (same syntax) whose loop is expected in this install: reported "
                        "as LOOP-ALLOWED, not a failure")
    p.add_argument("--no-timing", dest="timing", action="store_false",
                   help="counts and numerics only (no timings, no forced-loop baseline)")
    p.add_argument("--loop-baseline", choices=("auto", "inline", "subprocess", "off"),
                   default="auto",
                   help="how to force the group loop for the speed-up (default: inline; then a "
                        "subprocess with the env set at start for patched builds)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads(N)")
    p.add_argument("--seed", type=int, default=0, help="random seed for the data")
    p.add_argument("--progress", action="store_true", help="print each case as it starts")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.cases == "list":
        for c in (full_matrix() if args.full else default_matrix()):
            print(c.name)
        return EXIT_OK
    opts = VerifyOptions(wheel=args.wheel, full=args.full, no_mkldnn=args.no_mkldnn,
                         kernel_lib=args.kernel_lib, cases=args.cases,
                         profile_dir=args.profile_dir, timing=args.timing,
                         loop_baseline=args.loop_baseline, threads=args.threads,
                         allow_loop=args.allow_loop, venv=args.venv, python=args.python,
                         offline=args.offline, seed=args.seed,
                         progress=args.progress or (not args.json and sys.stderr.isatty()))
    try:
        if opts.wheel:
            report = _run_wheel(opts, passthrough_stdout=not args.json)
            if args.json:
                sys.stdout.write(report.to_json() + "\n")
            if args.json_file:
                with open(args.json_file, "w") as f:
                    f.write(report.to_json() + "\n")
            rc = getattr(report, "child_returncode", None)
            return rc if rc is not None else (EXIT_OK if report.ok else EXIT_FAILED)
        report = run_verify(opts)
    except ImportError as e:
        sys.stderr.write("verify: cannot import torch: %s\n" % e)
        return EXIT_SETUP
    except (ValueError, FileNotFoundError, RuntimeError, OSError,
            subprocess.CalledProcessError) as e:
        sys.stderr.write("verify: %s\n" % e)
        return EXIT_SETUP
    text = report.to_json()
    if args.json_file:
        with open(args.json_file, "w") as f:
            f.write(text + "\n")
    if args.json:
        sys.stdout.write(text + "\n")
    else:
        sys.stdout.write(report.format_table() + "\n")
    sys.stdout.flush()
    return EXIT_OK if report.ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
