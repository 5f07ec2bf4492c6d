"""The grouped-conv routing policy (kernels/routing/ConvRouting.h), compiled for real.

The header is plain C++17, so the exact code that Convolution.cpp includes is built
into a small driver that prints its decision for all 512 combinations of case facts
times every override value; the driver runs natively on x86_64 and, linked
statically, under qemu-user as an aarch64 binary. Both must agree with the order
documented in the README (restated below as the spec) and with each other.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from recipe import REPO_ROOT

ROUTING_DIR = os.path.join(REPO_ROOT, "kernels", "routing")
DRIVER = os.path.join(REPO_ROOT, "tests", "cpp", "routing_policy_main.cpp")
FIELDS = ("depthwise", "channels_last", "need_backward", "acl",
          "mkldnn", "xnnpack", "winograd", "native", "native_grouped")

# The documented default order (README "Routing"), one list per kind of case.
# "native" is the native depthwise kernel for depthwise convs and the native grouped kernel
# for the others (both print as "native").
def documented_order(f):
    if f["need_backward"]:
        if f["depthwise"]:
            return ["native", "mkldnn"]
        return ["native", "mkldnn"] if f["acl"] else ["mkldnn", "native"]
    if f["depthwise"]:
        if f["channels_last"]:
            return ["mkldnn", "xnnpack", "native"]
        return ["native", "winograd", "xnnpack", "mkldnn"]
    return ["xnnpack", "native", "mkldnn"] if f["acl"] else ["mkldnn", "native", "xnnpack"]


def accepts(f, kernel):
    if kernel == "loop":
        return True
    if kernel in ("xnnpack", "winograd") and f["need_backward"]:
        return False
    if kernel == "winograd" and not f["depthwise"]:
        return False
    if kernel == "native":
        return bool(f["native"] if f["depthwise"] else f["native_grouped"])
    return bool(f[kernel])


def expected(f, override):
    if override != "auto" and accepts(f, override):
        return override
    for kernel in documented_order(f):
        if accepts(f, kernel):
            return kernel
    return "loop"


@pytest.fixture(scope="module")
def routing_header_tree(tmp_path_factory):
    # The driver includes <ATen/native/ConvRouting.h>, the in-tree path.
    root = tmp_path_factory.mktemp("routing_include")
    dest = root / "ATen" / "native"
    dest.mkdir(parents=True)
    shutil.copy(os.path.join(ROUTING_DIR, "ConvRouting.h"), str(dest / "ConvRouting.h"))
    return str(root)


def _run_driver(compiler, runner, tmp_path, include_root, extra):
    exe = str(tmp_path / ("policy-" + compiler))
    if shutil.which(compiler) is None:
        pytest.fail("%s not found: apt-get install g++-aarch64-linux-gnu (or run .ci/run)" % compiler)
    subprocess.run([compiler, "-std=c++17", "-O2", "-Wall", "-Werror", "-I", include_root,
                    DRIVER, "-o", exe] + extra, check=True)
    proc = subprocess.run(runner + [exe], stdout=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode == 0, "driver exit %d (2: an override name did not parse, 3: a typo was accepted)" % proc.returncode
    return proc.stdout.splitlines()


def _decisions(lines):
    table = {}
    for line in lines:
        bits, override, kernel = line.split()
        facts = dict(zip(FIELDS, (b == "1" for b in bits)))
        table[(bits, override)] = (facts, kernel)
    return table


def _check_against_spec(table):
    assert len(table) == 512 * 6
    wrong = [(key, kernel, expected(facts, key[1])) for key, (facts, kernel) in table.items()
             if kernel != expected(facts, key[1])]
    assert not wrong, "policy differs from the documented order (case, got, want): %s" % wrong[:10]


def test_policy_matches_documented_order_on_x86_64(tmp_path, routing_header_tree):
    lines = _run_driver("g++", [], tmp_path, routing_header_tree, [])
    _check_against_spec(_decisions(lines))


@pytest.mark.crosscompile
def test_policy_is_identical_on_aarch64_under_qemu(tmp_path, routing_header_tree):
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    if qemu is None:
        pytest.fail("qemu-user not found: apt-get install qemu-user-static (or run .ci/run)")
    native = _run_driver("g++", [], tmp_path, routing_header_tree, [])
    emulated = _run_driver("aarch64-linux-gnu-g++", [qemu], tmp_path, routing_header_tree, ["-static"])
    arch = subprocess.run(["file", "-b", str(tmp_path / "policy-aarch64-linux-gnu-g++")],
                          stdout=subprocess.PIPE, universal_newlines=True).stdout
    assert "aarch64" in arch or "ARM aarch64" in arch, arch
    assert emulated == native
    _check_against_spec(_decisions(emulated))


def test_key_decisions_read_like_the_readme(tmp_path, routing_header_tree):
    table = _decisions(_run_driver("g++", [], tmp_path, routing_header_tree, []))

    def pick(override="auto", **facts):
        bits = "".join("1" if facts.get(name) else "0" for name in FIELDS)
        return table[(bits, override)][1]

    everything = dict(mkldnn=True, xnnpack=True, winograd=True, native=True)
    # Jetson wheel built by this recipe (oneDNN+ACL, XNNPACK, Winograd, native kernel):
    assert pick(depthwise=True, acl=True, **everything) == "native"              # NCHW depthwise
    assert pick(depthwise=True, channels_last=True, acl=True, **everything) == "mkldnn"  # ACL NHWC
    assert pick(acl=True, mkldnn=True, xnnpack=True) == "xnnpack"                # grouped, ACL refuses
    assert pick(mkldnn=True, xnnpack=True) == "mkldnn"                           # grouped on x86
    # The native grouped kernel: before oneDNN's reference gemm on ACL builds (fp16/bf16
    # and training, which XNNPACK cannot take), after oneDNN's JIT elsewhere, and wherever
    # oneDNN is off or absent.
    assert pick(acl=True, mkldnn=True, native_grouped=True) == "native"
    assert pick(acl=True, mkldnn=True, xnnpack=True, native_grouped=True) == "xnnpack"
    assert pick(need_backward=True, acl=True, mkldnn=True, native_grouped=True) == "native"
    assert pick(need_backward=True, mkldnn=True, native_grouped=True) == "mkldnn"
    assert pick(mkldnn=True, native_grouped=True) == "mkldnn"
    assert pick(native_grouped=True, xnnpack=True) == "native"                   # oneDNN off
    assert pick("native", mkldnn=True, native_grouped=True) == "native"         # override
    assert pick("native", depthwise=True, mkldnn=True, native_grouped=True) == "mkldnn"
    # Training never picks the inference-only kernels.
    assert pick(depthwise=True, need_backward=True, xnnpack=True, winograd=True) == "loop"
    assert pick(depthwise=True, need_backward=True, **everything) == "native"
    # Overrides: honoured where they apply, ignored where they cannot run the case.
    assert pick("loop", depthwise=True, **everything) == "loop"
    assert pick("winograd", depthwise=True, **everything) == "winograd"
    assert pick("native", mkldnn=True, xnnpack=True, native=True) == "mkldnn"    # grouped: no grouped kernel
    assert pick("xnnpack", depthwise=True, need_backward=True, **everything) == "native"
    # Without any single kernel the loop is the answer (what verify reports as a loop).
    assert pick(depthwise=True) == "loop"
