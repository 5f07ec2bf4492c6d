"""Handing the verified wheel to pip."""
from __future__ import annotations

import subprocess
import sys

from recipe.pull.base import PROJECT


def installed_version(python, dist=PROJECT):
    code = ("import sys\ntry:\n from importlib.metadata import version\n"
            " print(version(sys.argv[1]))\nexcept Exception:\n print('')\n")
    res = subprocess.run([python, "-c", code, dist], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, universal_newlines=True)
    return res.stdout.strip() or None


def install(wheel_path, version, no_deps=False, pip_args=(), python=None):
    python = python or sys.executable
    cmd = [python, "-m", "pip", "install"]
    if installed_version(python) == version:
        # same version already there (maybe another build of it): replace torch only,
        # its dependencies were installed with it
        cmd += ["--force-reinstall", "--no-deps"]
    elif no_deps:
        cmd.append("--no-deps")
    cmd += list(pip_args) + [wheel_path]
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)
