"""`verify` in other environments: a fresh venv from a wheel, the official aarch64 2.6.0 wheel
under qemu (the emulation harness), and with the out-of-tree native depthwise kernel loaded.

Each test skips with a printed reason when its environment is not available here.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import unavailable  # noqa: E402

from recipe import cache_dir, verify  # noqa: E402

SEED = "2d-dw-c384-56x56-k3s1p1-fp32-nchw-inf"
SEED_TRAIN = "2d-dw-c384-56x56-k3s1p1-fp32-nchw-train"
G16 = "2d-g16-c64-28x28-k3s1p1-fp32-nchw-inf"
DW1D = "1d-dw-c128-512-k3s1p1-fp32-nchw-inf"
DW3D = "3d-dw-c32-8x16x16-k3s1p1-fp32-nchw-inf"
DW_TRAIN = "2d-dw-c64-28x28-k7s2p3-fp32-nchw-train"


def _skip(reason):
    unavailable("a local torch wheel", reason)


def run_cli(args, timeout=600):
    env = dict(os.environ)
    env.pop("PYTORCH_GROUPED_CONV_BACKEND", None)
    r = subprocess.run([sys.executable, os.path.join(REPO, "build.py"), "verify"] + list(args),
                       cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


# ----------------------------------------------------------------------------- --wheel

def _local_torch_wheel():
    """A wheel of the torch installed here, from the local wheel folders pip is configured
    with (pip download --no-index: never a 200 MB download from an index in a test)."""
    wanted = os.environ.get("RECIPE_TEST_TORCH_WHEEL")
    if wanted:
        return wanted if os.path.isfile(wanted) else None
    import torch
    dest = cache_dir("verify", "wheels")
    os.makedirs(dest, exist_ok=True)
    base = torch.__version__
    pat = os.path.join(dest, "torch-%s-*.whl" % base)
    found = glob.glob(pat)
    if not found:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-index", "--no-deps",
                            "--only-binary=:all:", "-d", dest, "torch==%s" % base],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=300)
        found = glob.glob(pat)
        if r.returncode != 0 or not found:
            return None
    return found[0]


def test_wheel_runs_in_a_fresh_venv():
    wheel = _local_torch_wheel()
    if not wheel:
        _skip("no local wheel of the installed torch (set RECIPE_TEST_TORCH_WHEEL=PATH)")
    tag = "py%d%d-%s" % (sys.version_info[0], sys.version_info[1],
                         os.path.basename(wheel).split("-")[1])
    venv = cache_dir("verify", "venv-" + tag)
    rc, out, err = run_cli(["--wheel", wheel, "--venv", venv, "--json", "--no-timing",
                            "--threads", "1", "--no-mkldnn", "--cases", "%s,%s" % (SEED, DW3D)])
    assert out.strip(), err
    data = json.loads(out)
    facts = data["facts"]
    assert facts["wheel"] == os.path.abspath(wheel)
    assert os.path.realpath(facts["torch_file"]).startswith(os.path.realpath(venv))
    assert facts["torch_version"].split("+")[0] == os.path.basename(wheel).split("-")[1]\
        .split("+")[0]
    cases = {c["name"]: c for c in data["cases"]}
    assert cases[SEED]["calls"]["forward"] == 384 and cases[SEED]["status"] == "LOOP"
    assert cases[DW3D]["status"] == "PASS"
    assert rc == verify.EXIT_FAILED
    # the Python API the build step uses returns the venv's report
    report = verify.run_verify(wheel=wheel, venv=venv, cases=DW3D, timing=False, threads=1)
    assert report.ok and report.facts["wheel"] == os.path.abspath(wheel)


# ----------------------------------------------------------------------------- aarch64 / qemu

AARCH64_SCRIPT = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from recipe import verify
    out = {}
    for key, no_mkldnn in (("onednn", False), ("no_mkldnn", True)):
        report = verify.run_verify(cases=sys.argv[2], timing=False, no_mkldnn=no_mkldnn)
        out[key] = report.to_dict()
    with open(sys.argv[3], "w") as f:
        json.dump(out, f)
''')


@pytest.mark.aarch64
def test_official_aarch64_wheel_under_qemu(emulation, tmp_path):
    """The official aarch64 torch 2.6.0 wheel: oneDNN (+ACL) on -> one call; off -> the loop
    (384 x thnn_conv2d for the original case). Counts and numerics; timings mean nothing.
    `emulation` (tests/conftest.py) skips with the reason printed when qemu/the rootfs cannot
    be set up (fails under CI)."""
    emu = emulation
    out = tmp_path / "aarch64.json"
    cases = ",".join([SEED, G16, DW1D, DW3D, DW_TRAIN])
    r = emu.python(AARCH64_SCRIPT, args=[REPO, cases, str(out)], binds=[REPO, str(tmp_path)],
                   timeout=1200)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    data = json.loads(out.read_text())
    on, off = data["onednn"], data["no_mkldnn"]
    facts = on["facts"]
    assert facts["machine"] == "aarch64"
    assert facts["torch_version"].startswith("2.6.0")
    assert facts["mkldnn_available"] is True
    assert facts["acl"] is True                       # official wheel: oneDNN built with ACL
    assert facts["xnnpack_compiled"] is True          # 2.6.0 aarch64: flag on (conv unused)
    assert facts["select_conv_backend"] is True
    on_c = {c["name"]: c for c in on["cases"]}
    off_c = {c["name"]: c for c in off["cases"]}
    for name in (SEED, G16, DW1D, DW_TRAIN):
        c = on_c[name]
        assert c["status"] == "PASS", (name, c["reason"], c["message"])
        assert c["selected_backend"] == "Mkldnn"
        assert c["backend_ops"]["forward"] == {"aten::mkldnn_convolution": 1}
    assert on_c[DW_TRAIN]["calls"] == {"forward": 1, "backward": 1}
    assert on["ok"] is True
    seed = off_c[SEED]
    assert seed["status"] == "LOOP" and seed["selected_backend"] == "Slow2d"
    assert seed["backend_ops"]["forward"] == {"aten::thnn_conv2d": 384}
    assert seed["errors"]["output"] < 1e-4
    assert off_c[G16]["calls"]["forward"] == 16
    assert off_c[DW1D]["calls"]["forward"] == 128
    assert off_c[DW_TRAIN]["calls"] == {"forward": 64, "backward": 64}
    assert off_c[DW3D]["status"] == "PASS"
    assert {f["name"] for f in off["failures"]} == {SEED, G16, DW1D, DW_TRAIN}
    for c in list(on["cases"]) + list(off["cases"]):
        assert not c["wrong"], (c["name"], c["errors"])


# ----------------------------------------------------------------------------- native kernel

def _kernel_lib():
    from recipe.kernel import build_kernel
    return build_kernel()  # a kernel that does not build fails here, with the compiler's error


def test_native_kernel_depthwise_without_onednn():
    """With the out-of-tree kernel loaded and oneDNN off, depthwise convs (Conv2d multiplier
    1 and 2, Conv1d; NCHW and channels_last; inference and training) run as ONE
    aten::_conv_depthwise2d call (and one backward op) and match float64."""
    lib = _kernel_lib()
    rc, out, err = run_cli(["--no-mkldnn", "--kernel-lib", lib, "--no-timing", "--threads", "1",
                            "--json", "--cases", "2d-dw-+fp32,2d-dw2-+fp32,1d-dw-+fp32"])
    data = json.loads(out)
    assert data["facts"]["kernel_lib"] == os.path.abspath(lib)
    names = [c["name"] for c in data["cases"]]
    assert len(names) >= 12 and any(n.endswith("-train") for n in names), names
    for c in data["cases"]:
        assert c["status"] == "PASS", (c["name"], c["reason"], c["message"])
        assert c["backend_ops"]["forward"] == {"aten::_conv_depthwise2d": 1}, c["name"]
        if c["case"]["mode"] == "training":
            assert c["calls"]["backward"] == 1, (c["name"], c["attribution"])
        # stock _select_conv_backend still says Slow2d: the profile shows the shim served it
        if c["selected_backend"] == "Slow2d":
            assert c["rerouted"] is True
    assert rc == 0, err
