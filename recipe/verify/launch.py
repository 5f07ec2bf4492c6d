"""How verify starts itself in another interpreter: the venv of `--wheel` and the fresh process
of the forced-loop baseline run `python -m recipe.verify ARGS` with the folder that holds
`recipe/` (this checkout) first on PYTHONPATH. Only the standard library and torch are needed
there (Python 3.8+): `recipe/__init__.py` and this package import nothing else at import time.

Once `recipe.verify` is imported, `forget_checkout()` takes the checkout off `sys.path` again
(`recipe/verify/__main__.py` calls it): nothing else of it (`build.py`, `tests/`) can then shadow
a module that torch imports.
"""
from __future__ import annotations

import os
import sys

# The folder that holds recipe/ (recipe/verify/launch.py -> three levels up).
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = "recipe.verify"


def command(python, argv):
    """The argv that runs verify with `argv` under the interpreter `python`."""
    return [python, "-m", MODULE] + list(argv)


def environ(base=None, keep_pythonpath=True):
    """`base` (default os.environ) with PACKAGE_PARENT first on PYTHONPATH; with
    keep_pythonpath=False it is the only entry (a venv that must see nothing of this one)."""
    env = dict(os.environ if base is None else base)
    rest = (env.get("PYTHONPATH") or "").split(os.pathsep) if keep_pythonpath else []
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT] + forget_checkout([p for p in rest if p]))
    return env


def forget_checkout(path=None):
    """Remove every entry naming PACKAGE_PARENT from `path` (default sys.path), in place."""
    path = sys.path if path is None else path
    path[:] = [p for p in path if os.path.abspath(p or os.curdir) != PACKAGE_PARENT]
    return path
