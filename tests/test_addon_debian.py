"""The add-on in a torch of the same version that someone else built: Debian's python3-torch
2.6.0+dfsg-7 (trixie, Python 3.13, soname libtorch_cpu.so.2.6, system oneDNN 3.6 without
ACL, another DispatchStub layout), in a trixie chroot made from this machine's Debian mirror
(tests/harness/debian_torch.py; cached). The add-on is built against the OFFICIAL 2.6.0 wheel's
headers, never Debian's, and pip-installed the way a Debian user does it: into a
`python3 -m venv --system-site-packages` venv. A fresh interpreter that does only `import
torch` must then run the seed case Conv2d(384, 384, 3, groups=384) on [1, 384, 56, 56] as
ONE kernel (no thnn_conv2d), oneDNN off and on, fp32/fp16/bf16, NCHW and channels_last,
forward and backward, matching float64.

* amd64 (default tier; no emulation): the add-on of tests/test_addon_x86.py's "other torch"
  build, i.e. x86_64 code from the official 2.6.0 (aarch64) wheel's headers with its C++11
  ABI (cached, so no extra compile). NOT the x86_64 prebuilt of the matrix: PyPI's x86_64
  2.6.0 is a pre-C++11-ABI build, Debian's is C++11-ABI, so that prebuilt cannot load into
  Debian's torch; the slow tier checks that `import torch` survives it with one warning.
* arm64 (slow tier; under qemu): THE prebuilt aarch64 add-on for 2.6.0 (the one
  tests/test_addon_aarch64.py runs beside the official wheel).
"""
from __future__ import annotations

import os
import sys

import pytest

# Slow tier: the trixie amd64 chroot with Debian's python3-torch costs minutes of cold set-up.
pytestmark = pytest.mark.slow

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import addon_helpers as ah  # noqa: E402
from conftest import unavailable  # noqa: E402

from recipe import addon, addon_headers  # noqa: E402

from tests.harness import debian_torch  # noqa: E402
from tests.harness.emulation import EmulationError  # noqa: E402


def chroot(arch):
    try:
        return debian_torch.ensure_debian_torch(arch)
    except EmulationError as e:
        unavailable("a trixie %s chroot with Debian's python3-torch %s"
                    % (arch, debian_torch.DEBIAN_VERSION), e)


class DebianTorch(object):
    """A venv (--system-site-packages) of the chroot with the add-on pip-installed."""

    def __init__(self, emu, wheel, root):
        self.emu, self.root = emu, str(root)
        self.python = debian_torch.make_venv(emu, os.path.join(self.root, "venv"))
        r = emu.run([self.python, "-m", "pip", "install", "--no-index", "--no-deps",
                     "--no-compile", "--disable-pip-version-check", wheel],
                    binds=[self.root, os.path.dirname(wheel)], timeout=1800)
        assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])

    def run(self, code, args=(), binds=(), timeout=1800):
        script = os.path.join(self.root, "main.py")
        with open(script, "w") as f:
            f.write(code)
        return self.emu.run([self.python, script] + list(args),
                            binds=[self.root] + list(binds), timeout=timeout)


def probe(debian):
    r = debian.run(ah.probe_code())
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    return ah.parse_result(r.stdout), r.stderr


VERSION_PROBE = r'''
import sys, torch
print("TORCH", torch.__version__, torch.__file__, sys.version_info[:2])
'''


# ----------------------------------------------------------------------------- amd64

@pytest.fixture(scope="module")
def debian_amd64(tmp_path_factory):
    emu = chroot("amd64")
    wheel = ah.build_other_torch_wheel(tmp_path_factory.mktemp("addon-260-x86"))
    return DebianTorch(emu, wheel, tmp_path_factory.mktemp("debian-amd64"))


def test_debian_amd64_torch_is_debians_own_build(debian_amd64):
    r = debian_amd64.run(VERSION_PROBE)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "TORCH 2.6.0+debian /usr/lib/python3/dist-packages/torch/__init__.py (3, 13)" \
        in r.stdout, r.stdout


def test_debian_amd64_import_torch_runs_every_seed_case_as_one_kernel(debian_amd64):
    res, stderr = probe(debian_amd64)
    assert res["loaded"], res["reason"]
    assert res["warnings"] == [] and ah.count_warnings(stderr) == 0
    ah.assert_every_case_one_kernel(res)


@pytest.mark.parametrize("flags", [[], ["--no-mkldnn"]], ids=["onednn", "no_onednn"])
def test_debian_amd64_verify_passes_every_case(debian_amd64, tmp_path, flags):
    """oneDNN on and off: every case passes, the grouped NON-depthwise ones too (the native
    grouped kernel where oneDNN does not run them)."""
    import json
    out = tmp_path / "verify.json"
    r = debian_amd64.run(ah.VERIFY_SCRIPT, args=[ah.REPO, str(out)] + flags,
                         binds=[ah.REPO, str(tmp_path)])
    data = json.loads(out.read_text())
    assert data["facts"]["torch_version"] == "2.6.0+debian", data["facts"]
    ah.assert_verify_passed_every_case(data)
    assert "EXIT 0" in r.stdout, r.stdout[-2000:]


@pytest.mark.slow
def test_debian_amd64_survives_the_pre_cxx11_abi_x86_prebuilt(tmp_path):
    """The matrix's x86_64 prebuilt for 2.6.0 follows PyPI's wheel (pre-C++11 ABI): it cannot
    load into Debian's C++11-ABI build. `import torch` still works, one warning says why and
    what to do, and the convolutions run stock (the group loop)."""
    emu = chroot("amd64")
    headers = addon_headers.official("2.6.0", "x86_64")
    assert headers.cxx11_abi == 0
    wheel = addon.build_addon(headers_from=headers, out_dir=str(tmp_path / "w"), quiet=True)
    debian = DebianTorch(emu, wheel, tmp_path / "d")
    res, stderr = probe(debian)
    assert not res["loaded"] and res["addon_imported"]
    assert len(res["warnings"]) == 1 and "build.py addon" in res["warnings"][0], res["warnings"]
    assert res["cases"]["no_onednn-float32-nchw"]["ops"]["aten::thnn_conv2d"] == 384


# ----------------------------------------------------------------------------- arm64

@pytest.mark.slow
def test_debian_arm64_runs_the_prebuilt_aarch64_addon_as_one_kernel(tmp_path):
    emu = chroot("arm64")
    try:
        wheel = addon.build_addon("2.6.0", "aarch64", out_dir=str(tmp_path / "w"), quiet=True)
    except addon_headers.HeadersError as e:
        unavailable("the official torch 2.6.0 aarch64 wheel / cross compiler", e)
    debian = DebianTorch(emu, wheel, tmp_path / "d")
    r = debian.run(VERSION_PROBE)
    assert "TORCH 2.6.0+debian /usr/lib/python3/dist-packages/torch/__init__.py (3, 13)" \
        in r.stdout, (r.stdout, r.stderr[-2000:])
    res, stderr = probe(debian)
    assert res["loaded"], res["reason"]
    assert res["warnings"] == [] and ah.count_warnings(stderr) == 0
    assert res["capability"] == "FP16"   # qemu's default CPU reports asimdhp
    ah.assert_every_case_one_kernel(res)
