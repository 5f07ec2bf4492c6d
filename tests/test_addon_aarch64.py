"""The add-on on aarch64: cross-built against the official torch 2.6.0 aarch64 wheel's headers,
installed (by the rootfs's pip) beside that wheel in the arm64 root filesystem, and run under
qemu-user by fresh interpreters that only `import torch`. The seed case
Conv2d(384, 384, 3, groups=384) on [1, 384, 56, 56] runs ONE kernel with oneDNN off (what a
Jetson wheel does) and on (the fp16 cases that loop in the stock wheel), matches float64,
trains with one native backward call, and `build.py verify` passes every case, oneDNN on and
off. A grouped NON-depthwise conv (ResNeXt's Conv2d(128, 128, 3, groups=32)) runs ONE native
grouped call too, oneDNN off and on (ACL refuses it; oneDNN would run its reference gemm). Under qemu the
CPU reports ARMv8.2 FP16 (HWCAP asimdhp): the FP16 kernels run; the ARMv8.0 ones are checked
under qemu's Cortex-A57 model (tests/test_native_depthwise_aarch64.py).
Timings under qemu mean nothing."""
from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import addon_helpers as ah  # noqa: E402


@pytest.fixture(scope="module")
def autoloaded(aarch64_addon):
    r = aarch64_addon.python(ah.probe_code())
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    return ah.parse_result(r.stdout), r.stderr


def test_wheel_is_an_aarch64_manylinux_wheel_built_for_260(aarch64_addon):
    name = os.path.basename(aarch64_addon.wheel)
    assert name.startswith("torch_grouped_conv-0.1.0+torch2.6.0-py3-none-manylinux_2_")
    assert name.endswith("_aarch64.whl")
    info = ah.build_info(aarch64_addon.wheel)
    assert info["torch"]["git_version"] == "2236df1770800ffea5697b11b0bb0d910b2e59e1"
    assert info["torch"]["wheel_sha256"] == \
        "ccbd0320411fe1a3b3fec7b4d3185aa7d0c52adac94480ab024b5c8f74a0bf1d"
    assert info["capabilities"] == ["DEFAULT", "FP16"]
    assert not [n for n in info["symbols"]["needed"] if "torch" in n or "c10" in n]


def test_import_torch_alone_loads_it_without_a_warning(autoloaded):
    res, stderr = autoloaded
    assert res["loaded"], res["reason"]
    assert res["warnings"] == [] and ah.count_warnings(stderr) == 0
    assert res["capability"] == "FP16"


@pytest.mark.parametrize("key", ah.PROBE_CASES)
def test_every_case_runs_one_kernel_and_matches_float64(autoloaded, key):
    # inference with oneDNN on, fp32 channels_last: the policy's pick is oneDNN (ACL)
    ah.assert_case_one_kernel(key, autoloaded[0]["cases"][key])


@pytest.mark.parametrize("flags", [[], ["--no-mkldnn"]], ids=["onednn", "no_onednn"])
def test_verify_inside_the_emulation(aarch64_addon, tmp_path, flags):
    """oneDNN on (the official wheel: oneDNN + ACL) and off (what a Jetson wheel does): every
    case passes, the grouped NON-depthwise ones too (the native grouped kernel)."""
    out = tmp_path / "verify.json"
    r = aarch64_addon.python(ah.VERIFY_SCRIPT, args=[ah.REPO, str(out)] + flags,
                             binds=[ah.REPO, str(tmp_path)], timeout=3000)
    assert "EXIT" in r.stdout, (r.stdout[-3000:], r.stderr[-3000:])
    data = json.loads(out.read_text())
    assert data["facts"]["machine"] == "aarch64"
    ah.assert_verify_passed_every_case(data)
    assert "EXIT 0" in r.stdout


def test_a_grouped_non_depthwise_conv_runs_one_kernel(aarch64_addon):
    r = aarch64_addon.python(ah.grouped_probe_code())
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    res = ah.parse_result(r.stdout)
    assert len(res["cases"]) == 14, sorted(res["cases"])
    ah.assert_grouped_cases_one_kernel(res, onednn_runs_fp32=False)


def test_status_command_inside_the_emulation(aarch64_addon):
    r = aarch64_addon.python("import runpy; runpy.run_module('torch_grouped_conv', "
                             "run_name='__main__')")
    assert r.returncode == 0, (r.stdout, r.stderr[-2000:])
    assert "cpu capability in use: FP16" in r.stdout and "policy: native" in r.stdout


def test_matrix_builds_every_pinned_entry_and_names_the_unsupported(aarch64_addon, tmp_path,
                                                                    monkeypatch, capsys):
    """`build.py addon --matrix`: one line per (version, arch); a failure does not stop the
    others; UNSUPPORTED entries are named with their reason. (The full matrix: 11b's slow
    tier; here one cached entry, one that cannot be built, one named unsupported.)"""
    from recipe import addon, addon_headers
    monkeypatch.setattr(addon_headers, "MATRIX", (("2.6.0", "aarch64"), ("2.4.1", "aarch64")))
    monkeypatch.setattr(addon_headers, "UNSUPPORTED", {("2.4.1", "x86_64"): "before 2.5"})
    rc = addon.main(["--matrix", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "torch 2.4.1   x86_64   NOT SUPPORTED: before 2.5" in out
    assert os.path.basename(aarch64_addon.wheel) in out
    assert "torch 2.4.1   aarch64  FAILED: no pinned official wheel" in out
