"""Shared fixtures: the real PyTorch 2.6.0 source, the aarch64 emulation, cross compiling.

Policy when something cannot be obtained (no network, no root, ...): outside CI the test
is SKIPPED with the reason printed; under CI (env CI set to anything but ""/0/false) it
FAILS, so a green CI always means the real thing ran. Only "cannot obtain" errors
(SourceError, EmulationError, CrossBuildError) are turned into skips; any other exception
is a bug and errors the test as usual.

Markers are applied automatically from the fixtures a test uses:
  pytorch_source_tree / pytorch_source_pristine -> source_tree
  emulation / aarch64_torch                    -> aarch64
  aarch64_torch / cross_toolchain              -> crosscompile
  aarch64_addon                                -> aarch64, crosscompile
"""
import os
import sys
import types

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FIXTURE_MARKERS = {
    "pytorch_source_tree": ("source_tree",),
    "pytorch_source_pristine": ("source_tree",),
    "emulation": ("aarch64",),
    "aarch64_torch": ("aarch64", "crosscompile"),
    "cross_toolchain": ("crosscompile",),
    "patched_source_tree": ("source_tree",),
    "aarch64_addon": ("aarch64", "crosscompile"),
}


def in_ci():
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(what, err, module=False):
    """Skip (printing why) outside CI; fail under CI. The one way a test is skipped for a
    missing prerequisite (module=True: at import time, the whole file)."""
    msg = "%s unavailable: %s" % (what, err)
    if in_ci():
        pytest.fail(msg + "\n(CI is set: a missing prerequisite is a failure, not a skip)",
                    pytrace=False)
    sys.stderr.write("\nSKIP: %s\n" % msg)
    pytest.skip(msg, allow_module_level=module)


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the slow tier (tests marked `slow`: proofs too long for "
                          "CI's 60-minute budget; run them before resolving an issue)")


def run_slow_tier(config):
    return config.getoption("--slow") or os.environ.get("RECIPE_SLOW", "") not in ("", "0")


def pytest_collection_modifyitems(config, items):
    if not run_slow_tier(config):
        slow = [i for i in items if i.get_closest_marker("slow")]
        if slow:
            items[:] = [i for i in items if not i.get_closest_marker("slow")]
            config.hook.pytest_deselected(items=slow)
            config._recipe_slow_deselected = len(slow)
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marks in FIXTURE_MARKERS.items():
            if fixture in names:
                for m in marks:
                    if not item.get_closest_marker(m):
                        item.add_marker(getattr(pytest.mark, m))


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # a pytest-xdist worker: tell the controller
        session.config.workeroutput["recipe_slow_deselected"] = getattr(
            session.config, "_recipe_slow_deselected", 0)


try:
    import xdist  # noqa: F401  (tools/test.sh runs two workers)
except ImportError:
    pass
else:
    # optional: the hook exists only while the xdist plugin is active (not with -p no:xdist)
    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(node, error):
        n = getattr(node, "workeroutput", {}).get("recipe_slow_deselected", 0)
        # every worker collects every test: the same count from each
        node.config._recipe_slow_deselected = max(n, getattr(node.config, "_recipe_slow_deselected", 0))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    n = getattr(config, "_recipe_slow_deselected", 0)
    if n:
        terminalreporter.write_line(
            "slow tier: %d test(s) not run (they do not fit CI's time budget); run them with "
            "`bash tools/test.sh --slow -m slow`" % n)


@pytest.fixture(scope="session")
def pytorch_source_pristine():
    """Read-only path of the verified PyTorch 2.6.0 tree (Debian 2.6.0+dfsg-7). Do not
    modify it: use `pytorch_source_tree` for a writable copy."""
    from tests.harness.pytorch_source import SourceError, ensure_pytorch_source
    try:
        return ensure_pytorch_source()
    except SourceError as e:
        unavailable("PyTorch 2.6.0 source", e)


@pytest.fixture
def pytorch_source_tree(pytorch_source_pristine, tmp_path):
    """A fresh writable copy of the verified 2.6.0 tree (per test; ~1-2 s)."""
    from tests.harness.pytorch_source import fresh_copy
    return fresh_copy(str(tmp_path / "pytorch-v2.6.0"))


@pytest.fixture(scope="session")
def emulation():
    """The `tests.harness.emulation.Emulation` (arm64 rootfs + qemu + torch 2.6.0 aarch64)."""
    from tests.harness.emulation import EmulationError, ensure_emulation
    try:
        return ensure_emulation()
    except EmulationError as e:
        unavailable("aarch64 emulation", e)


@pytest.fixture(scope="session")
def cross_toolchain():
    """The `tests.harness.crossbuild` module, with both compilers and the 2.6.0 wheel headers and
    the oneDNN/ideep headers ready."""
    from tests.harness import crossbuild
    from tests.harness.emulation import EmulationError, ensure_host_packages, HOST_TOOLS
    try:
        ensure_host_packages([t for t in HOST_TOOLS if t[0].startswith("aarch64")]
                             + [("g++", "g++")])
        for arch in crossbuild.ARCHES:
            crossbuild.compiler(arch)
            crossbuild.extra_headers(arch)
        crossbuild.wheel_include()
    except (crossbuild.CrossBuildError, EmulationError) as e:
        unavailable("cross toolchain / torch 2.6.0 headers", e)
    return crossbuild


@pytest.fixture(scope="session")
def aarch64_torch(emulation, cross_toolchain):
    """Paths and a runner for the official torch 2.6.0 aarch64 wheel in the rootfs.

    Attributes: include (torch/include), api_include (.../torch/csrc/api/include),
    lib (torch/lib, host path), guest_lib (the same as seen inside the rootfs: use as
    rpath), site (host path of the torch package), python (= emulation.python:
    python(code_or_script, args=(), timeout=None, binds=(), cwd=None, env=None,
    check=False) -> CompletedProcess), build_graft (crossbuild.build_graft bound to this
    torch), emulation.
    """
    site = emulation.torch_site

    def build_graft(sources, out_so, **kw):
        kw.setdefault("torch_site", site)
        return cross_toolchain.build_graft(sources, out_so, arch="aarch64", **kw)

    return types.SimpleNamespace(
        include=emulation.torch_include,
        api_include=os.path.join(emulation.torch_include, "torch", "csrc", "api", "include"),
        lib=emulation.torch_lib,
        guest_lib=emulation.guest_torch_lib,
        site=site,
        python=emulation.python,
        build_graft=build_graft,
        emulation=emulation,
    )


@pytest.fixture(scope="session")
def patched_source_tree(pytorch_source_pristine, tmp_path_factory):
    """One copy of the real 2.6.0 tree with patches/2.6.0/series applied by the recipe's
    own patch step (shared by the compile-check and graft tests; treat it as read-only)."""
    from recipe import REPO_ROOT
    from tests.harness.pytorch_source import fresh_copy
    from recipe.steps.patch import apply_series
    root = tmp_path_factory.mktemp("patched")
    tree = fresh_copy(str(root / "pytorch-v2.6.0"))
    apply_series(os.path.join(REPO_ROOT, "patches", "2.6.0", "series"), tree,
                 str(root / "work"), log=lambda line: None)
    return tree


@pytest.fixture(scope="session")
def aarch64_addon(emulation, cross_toolchain, tmp_path_factory):
    """The add-on cross-built against the official torch 2.6.0 aarch64 wheel's headers
    (`build.py addon --torch 2.6.0 --arch aarch64`), installed by the rootfs's own pip into a
    folder beside the official 2.6.0 wheel (not into the shared rootfs: guest interpreters get
    it on PYTHONPATH). Attributes: wheel, site, emulation, python(code, env=None, args=(),
    timeout=1800) -> CompletedProcess of a fresh guest python3 that sees the add-on."""
    from recipe import addon
    from recipe.addon_headers import HeadersError
    from addon_helpers import guest_install
    try:
        wheel = addon.build_addon("2.6.0", "aarch64", out_dir=str(
            tmp_path_factory.mktemp("addon-aarch64")), quiet=True)
    except HeadersError as e:
        unavailable("the official torch 2.6.0 aarch64 wheel / cross compiler", e)
    site = guest_install(emulation, wheel, str(tmp_path_factory.mktemp("site-aarch64")))

    def python(code, env=None, args=(), timeout=1800, binds=()):
        full = {"PYTHONPATH": site}
        full.update(env or {})
        return emulation.python(code, args=args, env=full, timeout=timeout,
                                binds=[site] + list(binds))

    return types.SimpleNamespace(wheel=wheel, site=site, emulation=emulation, python=python)
