"""The supported matrix: torch 2.5 ... 2.14 (latest patch of each minor release) x aarch64,
x86_64. Every (version, arch) is cross-built with the real compilers against the official
wheel's headers (`build.py addon --torch X --arch A`, pins in recipe/addon_headers.py), and
every symbol the library imports from torch is looked up in the export list of THAT wheel's
libtorch_cpu / libc10 / libgomp (readelf of the real libraries): the proof that the prebuilt
add-on will load there. Then the same library against other builds of its version: Debian's
libtorch2.6 (arm64: the .deb of the pool, no chroot needed) and PyPI's CUDA build of 2.13.0
beside the CPU build it was built against.

Tiers: 2.5.1 aarch64 (the oldest release, a pre-C++11-ABI build, 92 MB) and 2.6.0 aarch64
(the same build tests/test_addon_aarch64.py makes: cached) run in CI with 11a's 2.13.0 x86_64
build; every other row is slow tier (one build is ~4 CPU-minutes for aarch64 and ~7 for
x86_64's three capabilities; the x86 wheels are 0.5-0.9 GB downloads)."""
from __future__ import annotations

import os
import re
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from recipe import addon, addon_headers  # noqa: E402
from recipe.addon_headers import HeadersError  # noqa: E402
from conftest import unavailable  # noqa: E402

MINOR_RELEASES = ["2.%d" % m for m in range(5, 15)]
CI_ROWS = {("2.5.1", "aarch64"), ("2.6.0", "aarch64")}
OPENMP = re.compile(r"^(GOMP_|omp_)")


def matrix_params():
    return [pytest.param(v, a, id="%s-%s" % (v, a),
                         marks=() if (v, a) in CI_ROWS else pytest.mark.slow)
            for v, a in addon_headers.MATRIX]


def build(version, arch):
    """(headers, library path, build record) of the add-on for the official wheel (cached)."""
    try:
        headers = addon_headers.official(version, arch)
        addon.compiler_for(arch)
    except HeadersError as e:
        unavailable("the official torch %s %s wheel / compiler" % (version, arch), e)
    so, record = addon.build_library(headers, quiet=True)
    return headers, so, record


def test_every_minor_release_is_pinned_for_both_arches_or_named_unsupported():
    for minor in MINOR_RELEASES:
        for arch in addon_headers.ARCHES:
            pins = [v for v, a in addon_headers.HEADER_WHEELS
                    if a == arch and v.rsplit(".", 1)[0] == minor]
            unsupported = [v for v, a in addon_headers.UNSUPPORTED
                           if a == arch and v.rsplit(".", 1)[0] == minor]
            assert len(pins) + len(unsupported) == 1, (minor, arch, pins, unsupported)
    for (version, arch), (req, fn, size, sha) in addon_headers.HEADER_WHEELS.items():
        assert req.split("+")[0] == "torch==" + version, req
        assert fn.startswith("torch-%s" % req.split("==")[1]) and fn.endswith(arch + ".whl")
        assert all(t.endswith("_" + arch) for t in addon_headers._file_platforms(fn)), fn
        assert re.match(r"^[0-9a-f]{64}$", sha) and size > 10 ** 7
    assert addon_headers.MATRIX == tuple(sorted(
        addon_headers.HEADER_WHEELS,
        key=lambda k: (tuple(int(x) for x in k[0].split(".")), k[1])))


@pytest.mark.parametrize("version,arch", matrix_params())
def test_version_cross_builds_and_its_wheel_exports_every_symbol_it_needs(version, arch):
    headers, so, record = build(version, arch)
    pin = addon_headers.HEADER_WHEELS[(version, arch)]
    assert headers.release == version and headers.wheel_sha256 == pin[3]
    assert addon_headers.elf_arch(so) == arch
    assert record["torch"]["cxx11_abi"] == headers.cxx11_abi
    assert "-D_GLIBCXX_USE_CXX11_ABI=%d" % headers.cxx11_abi in record["build"]["common_flags"]
    assert "-std=" + headers.cxx_std in record["build"]["common_flags"]
    # nothing of torch is NEEDED (its sonames differ between builds) ...
    needed = addon.needed_libraries(so)
    assert needed and all(addon.SYSTEM_LIBS.match(n) for n in needed), needed
    # ... and every symbol taken from the running torch is exported by this wheel
    imported = sorted({n for n, ver, defined, weak in addon_headers.dynamic_symbols(so)
                       if not defined and not ver and not weak})
    assert len(imported) > 20, imported  # c10::Error, TORCH_LIBRARY, at::parallel_for ...
    exports = headers.exported_symbols()
    assert [n for n in imported if n not in exports] == []
    assert not [n for n in imported if addon.STUB_SYMBOL.search(n)]
    assert record["platform_tag"].endswith("_" + arch)


def test_prebuilt_260_aarch64_needs_only_what_debians_arm64_build_exports():
    """Debian's libtorch2.6 (arm64) is another build of 2.6.0: soname libtorch_cpu.so.2.6 and
    another DispatchStub layout (FACTS 7). The add-on built against the OFFICIAL wheel names
    no torch library and imports only symbols Debian's build exports as well."""
    from tests.harness.debian_torch import library_exports
    from tests.harness.emulation import EmulationError
    _, so, _ = build("2.6.0", "aarch64")
    try:
        exports, sonames, cpu_needed = library_exports("arm64")
    except EmulationError as e:
        unavailable("Debian's libtorch2.6 arm64 package", e)
    assert sonames == {"libtorch_cpu.so.2.6": "libtorch_cpu.so.2.6",
                       "libc10.so.2.6": "libc10.so.2.6"}
    assert not [n for n in addon.needed_libraries(so) if "torch" in n or "c10" in n]
    imported = sorted({n for n, ver, defined, weak in addon_headers.dynamic_symbols(so)
                       if not defined and not ver and not weak})
    assert [n for n in imported if n not in exports and not OPENMP.match(n)] == []
    # OpenMP comes from the libgomp Debian's libtorch_cpu itself loads
    assert "libgomp.so.1" in cpu_needed
    # and Debian's DispatchStubImpl differs from the official wheel's (why no stub is used)
    official = addon_headers.official("2.6.0", "aarch64").exported_symbols()
    stub = re.compile(r"DispatchStubImpl\d*get_call_ptr")
    assert {n for n in exports if stub.search(n)} != {n for n in official if stub.search(n)}


@pytest.mark.slow
def test_prebuilt_2130_x86_needs_only_what_pypis_cuda_build_exports():
    """Built against the CPU build of 2.13.0 (the pin), checked against PyPI's CUDA build of
    the same version, which is what `pip install torch==2.13.0` gives on x86_64."""
    _, so, _ = build("2.13.0", "x86_64")
    try:
        cuda = addon_headers.pinned_wheel_headers(addon_headers.OTHER_BUILDS[("2.13.0",
                                                                              "x86_64")])
    except HeadersError as e:
        unavailable("PyPI's torch 2.13.0 x86_64 wheel", e)
    assert cuda.version == "2.13.0+cu130"
    exports = cuda.exported_symbols()
    imported = [n for n, ver, defined, weak in addon_headers.dynamic_symbols(so)
                if not defined and not ver and not weak]
    assert imported and [n for n in imported if n not in exports] == []
