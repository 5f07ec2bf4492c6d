"""Helpers for the add-on tests: real add-on wheels built by recipe.addon (the library build is
cached under RECIPE_CACHE, so tests that share a torch share one compile), installed with real
pip into a --target folder (host pip, or the pip of the arm64 root filesystem under qemu), and
fresh interpreters that do only `import torch` with that folder on PYTHONPATH (entry points
are found on sys.path), so neither the host's nor the rootfs's site-packages is touched."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from recipe import addon  # noqa: E402
from tests.harness.emulation import GUEST_PYTHON  # noqa: E402

WARNING_TEXT = "torch-grouped-conv is not active"
SEED_SHAPE = (1, 384, 56, 56)

# What both probes below run first: profiler counts of the ops `keep` accepts, the error
# measure, and one inference conv of (x0, w0, b0) in a dtype and layout.
PROBE_HELPERS = r'''
import json, sys
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

def counts(fn, keep):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key: e.count for e in prof.key_averages() if keep(e.key)}

def err(y, ref):
    return ((y.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()

def inference(conv, x0, w0, b0, dtype, cl, keep):
    """(ops, y, (x, w, b)): conv(x, w, b) without grad, x, w, b = x0, w0, b0 in `dtype`,
    x channels_last if `cl`."""
    dt = getattr(torch, dtype)
    x, w, b = x0.to(dt), w0.to(dt), b0.to(dt)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    res = {}
    with torch.no_grad():
        ops = counts(lambda: res.setdefault("y", conv(x, w, b)), keep)
    return ops, res["y"], (x, w, b)
'''

# Runs in a fresh interpreter whose only import of note is `import torch`; prints one
# RESULT line of JSON: the add-on's state, per-case profiler counts and errors vs float64.
PROBE = r'''
import warnings
caught = []
warnings.showwarning = lambda m, c, *a, **k: caught.append("%s: %s" % (c.__name__, m))
''' + PROBE_HELPERS + r'''
addon = sys.modules.get("torch_grouped_conv")
out = {"addon_imported": addon is not None, "warnings": caught,
       "loaded": bool(addon and addon._state["loaded"]),
       "reason": addon._state["reason"] if addon else None, "cases": {}}
if out["loaded"]:
    out["capability"] = torch.ops.torch_grouped_conv.cpu_capability()
KEEP = ("aten::_conv_depthwise2d", "aten::thnn_conv2d", "aten::cat", "aten::mkldnn_convolution",
        "aten::_slow_conv2d_forward", "native_dwconv::conv_depthwise2d_backward",
        "aten::convolution_backward", "aten::_slow_conv2d_backward")
keep = lambda key: key in KEEP
conv = lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=SHAPE[1])

torch.manual_seed(0)
x0, w0, b0 = torch.randn(*SHAPE), torch.randn(SHAPE[1], 1, 3, 3), torch.randn(SHAPE[1])
for onednn in ONEDNN:
    torch.backends.mkldnn.enabled = onednn
    for dtype in DTYPES:
        for cl in LAYOUTS:
            ops, y, (x, w, b) = inference(conv, x0, w0, b0, dtype, cl, keep)
            ref = F.conv2d(x.double(), w.double(), b.double(), padding=1, groups=SHAPE[1])
            key = "%s-%s-%s" % ("onednn" if onednn else "no_onednn", dtype,
                                "cl" if cl else "nchw")
            out["cases"][key] = {"ops": ops, "err": err(y, ref)}
    if not TRAIN:
        continue
    # training: forward + backward of the seed layer (fp32), gradients vs float64
    x = x0.clone().requires_grad_()
    w = w0.clone().requires_grad_()
    b = b0.clone().requires_grad_()
    go = torch.randn(*SHAPE)
    ops = counts(lambda: conv(x, w, b).backward(go), keep)
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x0, w0, b0))
    F.conv2d(xd, wd, bd, padding=1, groups=SHAPE[1]).backward(go.double())
    out["cases"]["%s-train" % ("onednn" if onednn else "no_onednn")] = {
        "ops": ops, "err": max(err(x.grad, xd.grad), err(w.grad, wd.grad), err(b.grad, bd.grad))}
print("RESULT " + json.dumps(out))
'''

# A grouped NON-depthwise conv (ResNeXt-50 32x4d stage 1: Conv2d(128, 128, 3, groups=32) on
# [1, 128, 28, 28]) the same way: per (oneDNN, dtype, layout) the backend ops it ran and its
# error against stock PyTorch in float64 (routing shim off: stock's group loop), and one
# training step. RESULT line of JSON.
GROUPED_PROBE = PROBE_HELPERS + r"""
shim = torch.ops.native_dwconv.set_shim_enabled
N, C, H, G = 1, 128, 28, 32
STOCK = ("aten::thnn_conv2d", "aten::_slow_conv2d_forward", "aten::cat", "aten::mkldnn_convolution",
         "aten::_slow_conv2d_backward")
keep = lambda key: key.startswith("native_gconv::") or key in STOCK
conv = lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=G)

def stock64(x, w, b, go=None):
    prev = shim(False)
    try:
        xd, wd, bd = (t.detach().double().requires_grad_(go is not None) for t in (x, w, b))
        y = F.conv2d(xd, wd, bd, padding=1, groups=G)
        if go is None:
            return y
        y.backward(go.double())
        return xd.grad, wd.grad, bd.grad
    finally:
        shim(prev)

torch.manual_seed(0)
x0, w0, b0 = torch.randn(N, C, H, H), torch.randn(C, C // G, 3, 3), torch.randn(C)
out = {"cases": {}}
for onednn in (False, True):
    torch.backends.mkldnn.enabled = onednn
    tag = "onednn" if onednn else "no_onednn"
    for dtype in DTYPES:
        for cl in (False, True):
            ops, y, (x, w, b) = inference(conv, x0, w0, b0, dtype, cl, keep)
            out["cases"]["%s-%s-%s" % (tag, dtype, "cl" if cl else "nchw")] = {
                "ops": ops, "err": err(y, stock64(x, w, b))}
    x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
    go = torch.randn(N, C, H, H)
    ops = counts(lambda: conv(x, w, b).backward(go), keep)
    refs = stock64(x0, w0, b0, go)
    out["cases"][tag + "-train"] = {"ops": ops, "err": max(
        err(g, r) for g, r in zip((x.grad, w.grad, b.grad), refs))}
print("RESULT " + json.dumps(out))
"""


def grouped_probe_code(dtypes=("float32", "float16", "bfloat16")):
    return GROUPED_PROBE.replace("DTYPES", repr(list(dtypes)))


def assert_grouped_cases_one_kernel(res, onednn_runs_fp32):
    """Every case of a GROUPED_PROBE result ran ONE kernel (no group loop) and matched float64:
    the native grouped kernel, except fp32 inference with oneDNN on where `onednn_runs_fp32`
    (oneDNN's x86 JIT; on ACL builds the policy prefers the native kernel to oneDNN's
    reference gemm); training: one native forward and one native backward."""
    for key, case in sorted(res["cases"].items()):
        ops = case["ops"]
        if key.endswith("-train"):
            if key == "onednn-train" and onednn_runs_fp32:
                assert "native_gconv::grouped_conv2d" not in ops, (key, ops)
            else:
                assert ops == {"native_gconv::grouped_conv2d": 1,
                               "native_gconv::grouped_conv2d_backward": 1}, (key, ops)
            assert case["err"] <= TOLERANCE["train"], (key, case["err"])
            continue
        if onednn_runs_fp32 and key.startswith("onednn-float32-"):
            assert ops == {"aten::mkldnn_convolution": 1}, (key, ops)
        else:
            assert ops == {"native_gconv::grouped_conv2d": 1}, (key, ops)
        assert case["err"] <= TOLERANCE[key.split("-")[1]], (key, case["err"])


# max |y - ref| / max |ref| against float64 of the same rounded inputs (README's tolerances)
TOLERANCE = {"float32": 1e-5, "float16": 1e-2, "bfloat16": 1.6e-2, "train": 2e-5}


# The cases of a full PROBE result: (oneDNN, dtype, layout) inference, and training each way.
PROBE_CASES = ["%s-%s-%s" % (onednn, dtype, layout) for onednn in ("no_onednn", "onednn")
               for dtype in ("float32", "float16", "bfloat16") for layout in ("nchw", "cl")] + \
    ["no_onednn-train", "onednn-train"]


def assert_case_one_kernel(key, case):
    """One case of a PROBE result ran ONE kernel and matched float64. The policy's picks:
    oneDNN for an fp32 channels_last inference conv when oneDNN is on, the native kernel for
    the rest; training: one native forward and one native backward."""
    ops = case["ops"]
    assert "aten::thnn_conv2d" not in ops and "aten::cat" not in ops, (key, ops)
    if key.endswith("-train"):
        assert ops.get("aten::_conv_depthwise2d") == 1, (key, ops)
        assert ops.get("native_dwconv::conv_depthwise2d_backward") == 1, (key, ops)
        assert case["err"] <= TOLERANCE["train"], (key, case["err"])
        return
    if key == "onednn-float32-cl":
        assert ops == {"aten::mkldnn_convolution": 1}, (key, ops)
    else:
        assert ops == {"aten::_conv_depthwise2d": 1}, (key, ops)
    assert case["err"] <= TOLERANCE[key.split("-")[1]], (key, case["err"])


def assert_every_case_one_kernel(res):
    """Every case of a full PROBE result: assert_case_one_kernel."""
    assert sorted(res["cases"]) == sorted(PROBE_CASES), sorted(res["cases"])
    for key in PROBE_CASES:
        assert_case_one_kernel(key, res["cases"][key])


# `build.py verify --json-file OUT --no-timing FLAGS...` in a guest interpreter, argv: REPO OUT
# FLAGS...; its exit status is printed as `EXIT n`.
VERIFY_SCRIPT = r'''
import json, runpy, sys
repo, out = sys.argv[1], sys.argv[2]
sys.argv = ["build.py", "verify", "--json-file", out, "--no-timing"] + sys.argv[3:]
sys.path.insert(0, repo)
try:
    runpy.run_path(repo + "/build.py", run_name="__main__")
except SystemExit as e:
    print("EXIT", e.code)
'''


def assert_verify_passed_every_case(data):
    """verify's JSON report with the add-on loaded: every case of the default matrix PASS, the
    grouped NON-depthwise ones too."""
    assert data["facts"]["addon"]["loaded"] is True, data["facts"].get("addon")
    failed = [(c["name"], c["status"], c["reason"]) for c in data["cases"]
              if c["status"] != "PASS"]
    assert not failed and len(data["cases"]) >= 30, failed
    assert "2d-g16-c64-28x28-k3s1p1-fp32-nchw-inf" in {c["name"] for c in data["cases"]}


def assert_patched_tree_holds_the_kernel_sources(tree, *folders):
    """Every file patches/2.6.0/series `copy`s from one of `folders` (repo-relative, e.g.
    "kernels/grouped") is in the patched PyTorch `tree` byte for byte: the in-tree build
    compiles what the add-on compiles."""
    from recipe.steps.patch import parse_series
    copies = [e for e in parse_series(os.path.join(REPO, "patches", "2.6.0", "series"))
              if e.kind == "copy" and os.path.relpath(e.src, REPO).startswith(folders)]
    assert copies, folders
    for entry in copies:
        with open(entry.src, "rb") as a, open(os.path.join(tree, entry.dest), "rb") as b:
            assert a.read() == b.read(), entry.dest


def probe_code(dtypes=("float32", "float16", "bfloat16"), shape=SEED_SHAPE, full=True):
    """full=False: only fp32 NCHW inference with oneDNN off (is the stock group loop there?)."""
    return (PROBE.replace("SHAPE", repr(tuple(shape))).replace("DTYPES", repr(list(dtypes)))
            .replace("ONEDNN", "(False, True)" if full else "(False,)")
            .replace("LAYOUTS", "(False, True)" if full else "(False,)")
            .replace("TRAIN", repr(full)))


def parse_result(stdout):
    lines = [l for l in stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, "no RESULT line in:\n%s" % stdout[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def clean_env(extra=None):
    """No pip configuration of this machine, no routing override, no autoload switches."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") and k not in (
               "PYTHONPATH", "PYTORCH_GROUPED_CONV_BACKEND", "TORCH_GROUPED_CONV",
               "TORCH_DEVICE_BACKEND_AUTOLOAD", "TORCH_GROUPED_CONV_CPU_CAPABILITY",
               "ATEN_CPU_CAPABILITY")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra or {})
    return env


def pip_install_target(wheel, target, python=sys.executable):
    """Real pip, the verified local file only, into a --target folder."""
    r = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index",
                        "--no-compile", "--target", str(target), str(wheel)],
                       env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=600)
    assert r.returncode == 0, r.stdout
    return str(target)


def run_python(code, site=None, env=None, args=(), timeout=900, python=sys.executable):
    """A fresh host interpreter; `site` goes on PYTHONPATH (the installed add-on)."""
    extra = dict(env or {})
    if site:
        extra["PYTHONPATH"] = str(site)
    return subprocess.run([python, "-c", code] + [str(a) for a in args], env=clean_env(extra),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, cwd=REPO)


def guest_install(emulation, wheel, target):
    """pip of the arm64 rootfs (under qemu) installs the wheel into `target` (a host folder
    bound into the guest at the same path)."""
    os.makedirs(str(target), exist_ok=True)
    r = emulation.run([GUEST_PYTHON, "-m", "pip", "install", "--no-deps", "--no-index",
                       "--no-compile", "--disable-pip-version-check", "--target", str(target),
                       str(wheel)], binds=[os.path.dirname(str(wheel)), str(target)],
                      timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    return str(target)


def build_host_wheel(out_dir):
    """`python build.py addon` against the torch installed here (cached compile)."""
    return addon.build_addon(out_dir=str(out_dir), quiet=True)


def build_other_torch_wheel(out_dir):
    """An x86_64 add-on for torch 2.6.0 (the official 2.6.0 wheel's headers, DEFAULT
    capability only) to install beside the host's torch 2.13."""
    from conftest import unavailable
    from tests.harness.emulation import EmulationError, ensure_wheels
    try:
        wheel = [w for w in ensure_wheels() if os.path.basename(w).startswith("torch-2.6.0")][0]
    except EmulationError as e:
        unavailable("the official torch 2.6.0 wheel (headers)", e)
    return addon.build_addon(headers_from=wheel, arch="x86_64", capabilities=("DEFAULT",),
                             out_dir=str(out_dir), quiet=True)


def wheel_contents(wheel):
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n) for n in z.namelist()}


def count_warnings(text):
    return text.count(WARNING_TEXT)


def build_info(wheel):
    return json.loads(wheel_contents(wheel)["%s/build_info.json" % addon.PACKAGE])
