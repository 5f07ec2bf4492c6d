"""The add-on for JetPack 5's torch lines 2.0 and 2.1: active after a bare `import torch`.

`build.py addon --torch X --arch aarch64` (X = 2.0.1, 2.1.2) cross-builds the add-on wheel
against the official torch X aarch64 wheel from PyPI (kernel, routing shim and registrations,
with kernels/compat/torch_compat.h force-included; for torch < 2.5 the wheel carries the
start-up hook addon/torch_grouped_conv_startup.{py,pth}). pip installs it into a venv inside
the arm64 rootfs beside that torch, and a script that only does `import torch` runs the seed
case under qemu: one kernel call forward and backward, numerics against float64, with oneDNN
on and off (a Jetson wheel has no oneDNN). With the off switch the same script shows the stock
group loop.

Not the real thing: the rootfs's Python is 3.11 (cp311 wheels; PyPI has cp38-cp311 for both
releases), so Python 3.8 itself did not run this (tests/test_addon_startup.py runs the hook on
a real Python 3.8); NVIDIA's own 2.0 / 2.1 builds were not available; CUDA is not involved.

Slow tier: the cross build takes minutes of both cores (python3 -m pytest --slow -m slow ...).
"""
from __future__ import annotations

import json
import os
import shutil
import textwrap
import zipfile

import pytest

from recipe import cache_dir
from recipe.addon_headers import HEADER_WHEELS

pytestmark = pytest.mark.slow

JP5_TORCH = ("2.0.1", "2.1.2")  # the latest patches of NVIDIA's JetPack 5 lines 2.0 / 2.1
# torch 2.1's profiler compares versions with `packaging` (2.6.0 no longer needs it)
PACKAGING = ("packaging==24.2", "packaging-24.2-py3-none-any.whl", 65451,
             "09abb1bccd265c01f4a3aa3f7a7db064b36514d2cba19a2f694fe6150451a759")

SEED = textwrap.dedent("""
    import json, sys
    import torch
    import torch.nn.functional as F
    from torch.profiler import profile, ProfilerActivity
    out = {"torch": torch.__version__, "addon_active": "torch_grouped_conv" in sys.modules}
    err = lambda a, r: ((a.double() - r).abs().max() / r.abs().max().clamp_min(1e-30)).item()
    for mkldnn in (False, True):
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(384, 384, 3, padding=1, groups=384)
        x = torch.randn(1, 384, 56, 56, requires_grad=True)
        with torch.backends.mkldnn.flags(enabled=mkldnn):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                y = conv(x)
                y.backward(torch.ones_like(y))
        calls = {e.key: e.count for e in prof.key_averages()}
        xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, conv.weight, conv.bias))
        yd = F.conv2d(xd, wd, bd, 1, 1, 1, 384)
        yd.backward(torch.ones_like(yd))
        out["mkldnn" if mkldnn else "no_mkldnn"] = {
            "calls": {k: v for k, v in calls.items() if "conv" in k or k == "aten::cat"},
            "err": [err(y.detach(), yd.detach()), err(x.grad, xd.grad), err(conv.weight.grad, wd.grad),
                    err(conv.bias.grad, bd.grad)]}
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module", params=JP5_TORCH)
def venv_jp5(emulation, request):
    """A venv in the rootfs with the official torch aarch64 wheel of one JetPack 5 line
    (the pin the add-on is built against; cached)."""
    from tests.harness.emulation import WHEELS, ensure_wheels
    version = request.param
    pin = HEADER_WHEELS[(version, "aarch64")]
    deps = [w for w in WHEELS if not w[0].startswith(("torch==", "numpy=="))]
    wheels = ensure_wheels(wheels=(pin, PACKAGING) + tuple(deps))
    venv = cache_dir("jp5-addon", "venv-torch-%s" % version)
    site = os.path.join(venv, "lib", "python3.11", "site-packages")
    done = os.path.join(venv, ".complete")
    if not os.path.exists(done):
        tmp = venv + ".tmp-%d" % os.getpid()
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(os.path.dirname(venv), exist_ok=True)  # a cold cache has no jp5-addon/ yet
        binds = [os.path.dirname(venv), os.path.dirname(wheels[0])]
        r = emulation.run(["/usr/bin/python3", "-m", "venv", "--without-pip", tmp], binds=binds,
                          timeout=900)
        assert r.returncode == 0, r.stderr
        r = emulation.run(["/usr/bin/python3", "-m", "pip", "install", "--no-index", "--no-deps",
                           "--no-compile", "--disable-pip-version-check", "--target",
                           os.path.join(tmp, "lib", "python3.11", "site-packages")] + wheels,
                          binds=binds, timeout=1800)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        shutil.rmtree(venv, ignore_errors=True)
        os.replace(tmp, venv)
        with open(done, "w") as f:
            f.write(pin[1] + "\n")
    return {"python": os.path.join(venv, "bin", "python"), "site": site,
            "torch": os.path.join(site, "torch"), "version": version}


@pytest.fixture(scope="module")
def addon_jp5(venv_jp5, emulation, tmp_path_factory):
    """The add-on wheel `build.py addon --torch X --arch aarch64` makes, pip-installed."""
    from recipe.addon import build_addon
    venv = venv_jp5
    out = str(tmp_path_factory.mktemp("addon-%s" % venv["version"]))
    wheel = build_addon(venv["version"], "aarch64", out_dir=out)
    names = zipfile.ZipFile(wheel).namelist()
    assert "torch_grouped_conv_startup.pth" in names and "torch_grouped_conv_startup.py" in names
    for old in ("torch_grouped_conv", "torch_grouped_conv_startup.py", "torch_grouped_conv_startup.pth"):
        path = os.path.join(venv["site"], old)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.unlink(path)
    r = emulation.run(["/usr/bin/python3", "-m", "pip", "install", "--no-index", "--no-deps",
                       "--no-compile", "--disable-pip-version-check", "--upgrade", "--target",
                       venv["site"], wheel], binds=[cache_dir("jp5-addon"), out], timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return venv


def run_seed(emulation, venv, tmp_path, **env):
    script = tmp_path / "seed.py"
    script.write_text(SEED)
    r = emulation.run([venv["python"], str(script)], binds=[cache_dir("jp5-addon"), str(tmp_path)],
                      env=env, timeout=1800)
    lines = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_import_torch_alone_runs_the_seed_case_as_one_kernel(emulation, addon_jp5, tmp_path):
    out = run_seed(emulation, addon_jp5, tmp_path)
    assert out["torch"] == addon_jp5["version"] and out["addon_active"] is True
    for mode in ("no_mkldnn", "mkldnn"):
        calls, errs = out[mode]["calls"], out[mode]["err"]
        assert calls.get("aten::_conv_depthwise2d") == 1, (mode, calls)
        assert calls.get("native_dwconv::conv_depthwise2d_backward") == 1, (mode, calls)
        assert "aten::thnn_conv2d" not in calls and "aten::mkldnn_convolution" not in calls, (mode, calls)
        assert max(errs) <= 1e-5, (mode, errs)  # forward, grad_input, grad_weight, grad_bias


def test_the_off_switch_leaves_stock_torch(emulation, addon_jp5, tmp_path):
    out = run_seed(emulation, addon_jp5, tmp_path, TORCH_GROUPED_CONV="0")
    assert out["addon_active"] is False
    assert out["no_mkldnn"]["calls"].get("aten::thnn_conv2d") == 384  # the group loop of the report
    assert "aten::_conv_depthwise2d" not in out["mkldnn"]["calls"]
