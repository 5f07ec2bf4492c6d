"""The cases: one convolution configuration each, the default and the `--full` matrix, and
`--cases FILTER`."""
from __future__ import annotations

import fnmatch

from recipe.verify.base import DTYPE_SHORT


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
