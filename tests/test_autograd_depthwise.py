"""Autograd of a direct aten::_conv_depthwise2d call (the op the native kernel implements).

Stock derivatives.yaml (2.6.0, unchanged upstream through 2.14) passes groups=1 to
convolution_backward, which fails for every depthwise weight [C*m, 1, kh, kw] ("Given
groups=1, weight of size [8, 1, 3, 3], expected input[1, 8, 10, 10] to have 1 channels"). CUDA
users never call the op directly; with a CPU kernel the README documents exactly that call.

* In tree: torchgen's autograd generator (tools/autograd, the tree's own) runs on the patched
  tree; the generated ConvDepthwise2DBackward0 formula (Functions.cpp) is compiled unchanged
  into a test library for the official torch 2.6.0 aarch64 wheel and run under qemu on real
  tensors: its gradients must match float64 autograd of F.conv2d(groups=C). The same formula
  generated from the pristine tree must fail as above (the defect; slow tier).
* Out of tree (`python build.py kernel` against the host torch): backward() through
  torch.ops.aten._conv_depthwise2d must work and match float64.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from recipe import REPO_ROOT

CPP = os.path.join(REPO_ROOT, "tests", "cpp")
FORMULA = "ConvDepthwise2DBackward0_apply_functional"

# (batch, channels, multiplier, kernel, stride, padding, dilation, H, W, bias, channels_last)
CASES = [
    (1, 8, 1, 3, 1, 1, 1, 10, 10, True, False),   # the shape
    (2, 6, 2, 3, 2, 1, 1, 9, 11, False, False),   # multiplier 2, stride 2, no bias
    (2, 16, 1, 5, 1, 2, 2, 12, 12, True, True),   # dilation, channels_last
]
TOLERANCE = 1e-5  # max |g - ref| / max |ref|, fp32 against float64


def generated_formula(tree, out_dir):
    """The generated C++ of aten::_conv_depthwise2d's backward formula for `tree`."""
    proc = subprocess.run(
        [sys.executable, "-m", "tools.autograd.gen_autograd",
         "aten/src/ATen/native/native_functions.yaml", "aten/src/ATen/native/tags.yaml",
         str(out_dir), "tools/autograd"],
        cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode == 0, "tools.autograd.gen_autograd failed:\n" + proc.stdout[-4000:]
    with open(os.path.join(str(out_dir), "Functions.cpp")) as f:
        text = f.read()
    m = re.search(r"^static variable_list %s\(.*?^}\n" % FORMULA, text, re.M | re.S)
    assert m, "no %s in the generated Functions.cpp" % FORMULA
    return m.group(0)


@pytest.fixture(scope="module")
def formulas(patched_source_tree, pytorch_source_pristine, tmp_path_factory):
    return {name: generated_formula(tree, tmp_path_factory.mktemp("gen_autograd_" + name))
            for name, tree in (("patched", patched_source_tree),
                               ("pristine", pytorch_source_pristine))}


def test_generated_formula_passes_the_channel_count_as_groups(formulas):
    # torchgen saves self.sym_size(1) as self_sym_argsize_1 (not the whole size list)
    assert "/*groups=*/ self_sym_argsize_1," in formulas["patched"]
    assert "/*groups=*/ 1," in formulas["pristine"]


# Saved values of ConvDepthwise2DBackward0 (generated parameter name -> the graft's variable).
SAVED = {"bias_sym_sizes_opt": "bias_sizes", "dilation": "dilation_", "padding": "padding_",
         "self": "self_", "self_sym_argsize_1": "self_size_1", "stride": "stride_",
         "weight": "weight_"}


def _graft(aarch64_torch, formula, out_dir):
    params = re.search(r"std::array<bool,3> needs_input_grad, (.*?)\)\s*\{", formula, re.S).group(1)
    names = [p.strip().split("&")[-1].strip() for p in params.split(",")]
    unknown = [n for n in names if n not in SAVED]
    assert not unknown, "the generated formula saves %s: teach SAVED about it" % unknown
    inc = os.path.join(out_dir, "formula.inc")
    with open(inc, "w") as f:
        f.write(formula + "\n#define GRAFT_FORMULA_ARGS %s\n" % ", ".join(SAVED[n] for n in names))
    return aarch64_torch.build_graft([os.path.join(CPP, "graft_autograd_depthwise.cpp")],
                                     os.path.join(out_dir, "libgraft_autograd.so"),
                                     defines=['GRAFT_FORMULA="%s"' % inc])


SCRIPT = """
import json, torch, torch.nn.functional as F
torch.ops.load_library(LIB)
torch.manual_seed(0)
out = []
for n, c, m, k, s, p, d, h, w, with_bias, cl in CASES:
    x = torch.randn(n, c, h, w)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    wt = torch.randn(c * m, 1, k, k)
    b = torch.randn(c * m) if with_bias else None
    y = F.conv2d(x, wt, b, s, p, d, c)
    go = torch.randn_like(y)
    try:
        grads = torch.ops.graft_autograd.conv_depthwise2d_backward(
            go, x, wt, with_bias, [s, s], [p, p], [d, d])
    except RuntimeError as e:
        out.append([str(e).splitlines()[0], None])
        continue
    xd, wd = x.double().requires_grad_(), wt.double().requires_grad_()
    bd = b.double().requires_grad_() if with_bias else None
    F.conv2d(xd, wd, bd, s, p, d, c).backward(go.double())
    refs = [xd.grad, wd.grad] + ([bd.grad] if with_bias else [])
    errs = [((g.double() - r).abs().max() / r.abs().max()).item() for g, r in zip(grads, refs)]
    out.append([None, errs])
print("RESULT " + json.dumps(out))
"""


def _run(aarch64_torch, lib):
    code = textwrap.dedent(SCRIPT).replace("LIB", repr(lib)).replace("CASES", repr(CASES))
    proc = aarch64_torch.python(code, binds=[os.path.dirname(lib)], timeout=900)
    assert proc.returncode == 0, "aarch64 python failed:\n%s\n%s" % (proc.stdout, proc.stderr[-4000:])
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_generated_formula_runs_and_matches_float64_on_aarch64(formulas, aarch64_torch, tmp_path):
    patched = _run(aarch64_torch, _graft(aarch64_torch, formulas["patched"], str(tmp_path)))
    for case, (error, errs) in zip(CASES, patched):
        assert error is None, "%s: the generated backward fails: %s" % (case, error)
        assert len(errs) == (3 if case[9] else 2)
        assert max(errs) <= TOLERANCE, "%s: relative errors %s" % (case, errs)


@pytest.mark.slow  # the defect on the pristine tree: shows the test above can fail
def test_pristine_formula_fails_on_depthwise_weights(formulas, aarch64_torch, tmp_path):
    """The defect, so the test above can fail."""
    pristine = _run(aarch64_torch, _graft(aarch64_torch, formulas["pristine"], str(tmp_path)))
    for error, _ in pristine:
        assert error is not None and "Given groups=1" in error, error


def test_out_of_tree_backward_through_aten_conv_depthwise2d_matches_float64():
    import torch
    import torch.nn.functional as F
    from recipe.kernel import load_kernel
    load_kernel(quiet=True)
    torch.manual_seed(0)
    for n, c, m, k, s, p, d, h, w, with_bias, cl in CASES:
        case = (n, c, m, k, s, p, d, h, w, with_bias, cl)
        x = torch.randn(n, c, h, w)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_()
        wt = torch.randn(c * m, 1, k, k, requires_grad=True)
        b = torch.randn(c * m, requires_grad=True) if with_bias else None
        y = torch.ops.aten._conv_depthwise2d(x, wt, [k, k], b, [s, s], [p, p], [d, d])
        go = torch.randn_like(y)
        y.backward(go)
        xd, wd = x.detach().double().requires_grad_(), wt.detach().double().requires_grad_()
        bd = b.detach().double().requires_grad_() if with_bias else None
        F.conv2d(xd, wd, bd, s, p, d, c).backward(go.double())
        pairs = [(x.grad, xd.grad), (wt.grad, wd.grad)] + ([(b.grad, bd.grad)] if with_bias else [])
        for got, ref in pairs:
            err = ((got.double() - ref).abs().max() / ref.abs().max()).item()
            assert err <= TOLERANCE, "%s: relative error %.3g" % (case, err)
