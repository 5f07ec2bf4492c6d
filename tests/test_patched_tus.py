"""Ladder step 3: every translation unit the 2.6.0 series touches compiles, for aarch64
(Debian's aarch64-linux-gnu-g++) and for x86_64 (host g++), in every CPU capability the
real build compiles it in, against the official torch 2.6.0 aarch64 wheel's headers.

The list of TUs comes from patches/2.6.0/series itself, so a new patch is checked the
day it is added. Compiling goes to an object file (-O2 -c), with the defines the wheel's
build used (recipe.crossbuild.TORCH_CPU_DEFINES). What the wheel and the stripped Debian
tree lack (oneDNN C++/ideep/fmt headers) comes from Debian trixie (crossbuild.extra_headers, added by compile_check).
For x86_64 the wheel's ATen/Config.h is overridden to say "no ACL", as an x86 build would.
"""
from __future__ import annotations

import os
import re

import pytest

from recipe import REPO_ROOT
from recipe.steps.patch import parse_series

SERIES = os.path.join(REPO_ROOT, "patches", "2.6.0", "series")
CAPABILITIES = {"aarch64": ("DEFAULT", "SVE256"), "x86_64": ("DEFAULT", "AVX2", "AVX512")}


def touched_files():
    files = []
    for entry in parse_series(SERIES):
        for rel in entry.affected():
            if rel not in files:
                files.append(rel)
    return files


TOUCHED = touched_files()
TUS = [f for f in TOUCHED if f.endswith(".cpp")]


# Compiled to an object (and disassembled) by tests/test_fp16_runtime_dispatch.py instead.
COMPILED_ELSEWHERE = {("aten/src/ATen/native/cpu/DepthwiseConv2dNativeKernel.cpp", "aarch64", "DEFAULT")}


def _cases():
    for rel in TUS:
        for arch in ("aarch64", "x86_64"):
            per_capability = "/native/cpu/" in "/" + rel
            for cap in (CAPABILITIES[arch] if per_capability else (None,)):
                if (rel, arch, cap) in COMPILED_ELSEWHERE:
                    continue
                yield pytest.param(rel, arch, cap, id="%s-%s%s" % (rel.split("/")[-1], arch,
                                                                   "-" + cap if cap else ""))


@pytest.fixture(scope="module")
def x86_config_overlay(tmp_path_factory, cross_toolchain):
    """ATen/Config.h of the wheel with ACL switched off (an x86 build has no ACL)."""
    root = tmp_path_factory.mktemp("x86_config")
    with open(os.path.join(cross_toolchain.wheel_include(), "ATen", "Config.h")) as f:
        text = f.read()
    assert "#define AT_MKLDNN_ACL_ENABLED() 1" in text
    os.makedirs(str(root / "ATen"))
    (root / "ATen" / "Config.h").write_text(
        text.replace("#define AT_MKLDNN_ACL_ENABLED() 1", "#define AT_MKLDNN_ACL_ENABLED() 0"))
    return str(root)


def _python_includes(arch, emulation, scratch):
    if arch == "x86_64":
        import sysconfig
        return [sysconfig.get_paths()["include"]]
    # aarch64 Python.h and pyconfig.h from the arm64 rootfs's python3-dev. Its pyconfig.h
    # includes <aarch64-linux-gnu/python3.11/pyconfig.h>: expose just that folder (the
    # rootfs's /usr/include as a whole would shadow the cross compiler's glibc headers).
    multiarch = os.path.join(scratch, "aarch64-linux-gnu")
    os.makedirs(multiarch, exist_ok=True)
    link = os.path.join(multiarch, "python3.11")
    if not os.path.exists(link):
        os.symlink(os.path.join(emulation.rootfs, "usr/include/aarch64-linux-gnu/python3.11"), link)
    return [os.path.join(emulation.rootfs, "usr/include/python3.11"), scratch]


def test_series_touches_the_expected_translation_units():
    # Guards the parametrisation below against a series that silently stops parsing.
    assert "aten/src/ATen/native/Convolution.cpp" in TUS
    assert "aten/src/ATen/native/cpu/DepthwiseConvKernel.cpp" in TUS
    assert "aten/src/ATen/native/cpu/DepthwiseConv2dNativeKernel.cpp" in TUS
    assert "torch/csrc/Module.cpp" in TUS


def test_every_touched_header_is_compiled_through_a_touched_tu(patched_source_tree):
    headers = [f for f in TOUCHED if f.endswith(".h")]
    assert headers, "the series touches no header?"
    sources = "".join(open(os.path.join(patched_source_tree, tu)).read() for tu in TUS)
    for header in headers:
        include = re.sub(r"^aten/src/", "", header)
        assert "#include <%s>" % include in sources, "%s is not included by any checked TU" % header


@pytest.mark.parametrize("rel,arch,capability", list(_cases()))
def test_patched_tu_compiles(rel, arch, capability, patched_source_tree, cross_toolchain,
                             x86_config_overlay, emulation, tmp_path):
    include_dirs = [x86_config_overlay] if arch == "x86_64" else []
    if rel.startswith("torch/csrc/"):
        include_dirs += _python_includes(arch, emulation, str(tmp_path))
        include_dirs.append(os.path.join(cross_toolchain.wheel_include(), "kineto"))
    result = cross_toolchain.compile_check(
        os.path.join(patched_source_tree, rel), arch=arch, include_dirs=include_dirs,
        source_tree=patched_source_tree, cpu_capability=capability or None)
    assert result.ok, "%s (%s %s) does not compile:\n$ %s\n%s" % (
        rel, arch, capability or "", " ".join(result.cmd), result.output[-6000:])
