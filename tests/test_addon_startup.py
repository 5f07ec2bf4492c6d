"""The add-on's start-up hook for torch < 2.5 (addon/torch_grouped_conv_startup.{py,pth}).

Here the hook runs at real interpreter start-up (a venv's site-packages, the .pth processed by
`site`), on this Python and on Python 3.8 (JetPack 5's), around STAND-INS for `torch` and
`torch_grouped_conv`: torch 2.0 / 2.1 has no Python 3.8 aarch64 interpreter here, and these
tests are about the ordering and the failure modes, which a stand-in shows exactly. The real
add-on wheel in the real torch 2.1.2 aarch64 wheel is tests/test_addon_jp5.py.
"""
import glob
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from recipe import REPO_ROOT
from tests.conftest import unavailable

ADDON = os.path.join(REPO_ROOT, "addon")

# a torch whose __init__ takes a while and marks its end; it can be told to fail
TORCH = textwrap.dedent("""
    import os, sys
    if os.environ.get("STANDIN_TORCH_FAILS"):
        raise ImportError("stand-in torch failed on purpose")
    import torch.sub  # a submodule imported from inside __init__, as torch._C is
    print("torch: executing", flush=True)
    __version__ = "2.1.2"
    ready = True
""")
# the add-on: must see a complete torch; can be told to fail
ADDON_PKG = textwrap.dedent("""
    import os, sys
    import torch
    if os.environ.get("STANDIN_ADDON_FAILS"):
        raise OSError("libtorch_grouped_conv.so: undefined symbol (stand-in)")
    print("addon: activated, torch ready=%s, loader restored=%s" % (
        getattr(torch, "ready", False),
        type(torch.__loader__).__name__ != "_AfterTorchLoader"), flush=True)
""")


def python38():
    """A working Python 3.8 interpreter (pyenv's shims may point at a version not selected)."""
    cands = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    cands += [p for p in (shutil.which("python3.8"),) if p]
    for py in cands:
        try:
            if subprocess.run([py, "-c", "import venv"], timeout=30).returncode == 0:
                return py
        except (OSError, subprocess.SubprocessError):
            pass
    return None


def pythons():
    return [pytest.param(sys.executable, id="this-python"), pytest.param("3.8", id="python3.8")]


@pytest.fixture(params=pythons())
def venv(request, tmp_path):
    python = python38() if request.param == "3.8" else request.param
    if not python:
        unavailable("Python 3.8 (JetPack 5's)", "no working python3.8 on PATH or in ~/.pyenv")
    env_dir = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    py = str(env_dir / "bin" / "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout.strip()
    for f in ("torch_grouped_conv_startup.py", "torch_grouped_conv_startup.pth"):
        shutil.copy(os.path.join(ADDON, f), site)
    os.makedirs(os.path.join(site, "torch"))
    with open(os.path.join(site, "torch", "__init__.py"), "w") as f:
        f.write(TORCH)
    with open(os.path.join(site, "torch", "sub.py"), "w") as f:
        f.write("import torch\n")
    os.makedirs(os.path.join(site, "torch_grouped_conv"))
    with open(os.path.join(site, "torch_grouped_conv", "__init__.py"), "w") as f:
        f.write(ADDON_PKG)
    return py


def run(py, code, **env):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("TORCH_", "STANDIN_"))}
    e.update(env)
    return subprocess.run([py, "-W", "always", "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env=e, timeout=60)


def test_only_import_torch_activates_it_after_torch_completed(venv):
    r = run(venv, "import torch; import sys; print('finder left:', any("
                  "type(f).__name__ == '_WaitForTorch' for f in sys.meta_path))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["torch: executing", "addon: activated, torch ready=True, "
                                     "loader restored=True", "finder left: False"]
    assert r.stderr == ""


def test_a_script_without_torch_loads_nothing(venv):
    r = run(venv, "import sys, json; print(sorted(m for m in sys.modules if 'torch' in m))")
    assert r.returncode == 0 and r.stdout.strip() == "['torch_grouped_conv_startup']", r.stdout + r.stderr


def test_failures_never_change_what_import_torch_does(venv):
    r = run(venv, "import torch", STANDIN_TORCH_FAILS="1")
    # the same exception (the traceback shows one more frame, the hook's exec_module)
    assert r.returncode == 1 and r.stderr.splitlines()[-1] == "ImportError: stand-in torch failed on purpose"
    assert r.stdout == ""
    r = run(venv, "import torch; print('ready', torch.ready)", STANDIN_ADDON_FAILS="1")
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "ready True"
    warnings = [l for l in r.stderr.splitlines() if "RuntimeWarning" in l]
    assert len(warnings) == 1 and "torch runs unchanged" in warnings[0] and "undefined symbol" in warnings[0]


@pytest.mark.parametrize("switch", ["TORCH_GROUPED_CONV", "TORCH_DEVICE_BACKEND_AUTOLOAD"])
def test_the_off_switch(venv, switch):
    r = run(venv, "import torch, sys; print('torch_grouped_conv' in sys.modules)", **{switch: "0"})
    assert r.returncode == 0 and r.stdout.splitlines() == ["torch: executing", "False"], r.stdout + r.stderr
    # the hook imports nothing more; what `import torch_grouped_conv` by hand does with
    # TORCH_GROUPED_CONV=0 is the package's own switch (tests/test_addon_jp5.py, real package)
    r = run(venv, "import torch, torch_grouped_conv", **{switch: "0"})
    assert r.returncode == 0 and "addon: activated, torch ready=True" in r.stdout
