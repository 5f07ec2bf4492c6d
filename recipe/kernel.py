"""`python build.py kernel`: the add-on's library for the installed torch, for developers.

The same build as the add-on wheel (`recipe.addon.build_library`: every kernel family, once
per CPU capability, the add-on's own capability tables instead of torch's DispatchStub, no
torch library linked), without the wheel: the last line printed is the path of the cached
shared library, for ``torch.ops.load_library``-style use in a session or a test. Loading it
needs torch's libraries promoted to RTLD_GLOBAL first (they are not linked): `load_kernel()`
does that, exactly as the installed add-on does at ``import torch``.

Python API::

    from recipe.kernel import build_kernel, load_kernel
    path = build_kernel()          # compile (or reuse the cache), return the .so path
    load_kernel()                  # build_kernel() + load into this process's torch, once
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os

from recipe import addon, addon_headers

_loaded = {}


def _loader():
    """addon/torch_grouped_conv/_loader.py, the add-on's own loader (loaded by path: the
    package itself would try to autoload a wheel's library)."""
    if "module" not in _loaded:
        path = os.path.join(addon.PACKAGE_DIR, "_loader.py")
        spec = importlib.util.spec_from_file_location("torch_grouped_conv_loader", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _loaded["module"] = module
    return _loaded["module"]


def build_kernel(force=False, cxx=None, quiet=False, verbose=False, python=None):
    """Compile the add-on's library against the installed torch (or reuse the cached
    build); returns the path of the shared library."""
    headers = addon_headers.installed_torch(python)
    path, _ = addon.build_library(headers, cxx=cxx, force=force, quiet=quiet, verbose=verbose)
    return path


def load_kernel(**kwargs):
    """build_kernel(**kwargs) + load it into this process's torch (once); returns the path."""
    path = build_kernel(**kwargs)
    if path not in _loaded:
        _loader().load_library(path)
        _loaded[path] = True
    return path


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python build.py kernel",
        description="Compile the add-on's kernel library against the installed torch "
                    "(cached; the same build as `build.py addon`, without the wheel) and print "
                    "its path as the last line. Load it with recipe.kernel.load_kernel() (or "
                    "install the add-on: `build.py addon --install`).")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.add_argument("--cxx", default=None, help="C++ compiler (default: $CXX or g++)")
    p.add_argument("--print-plan", action="store_true",
                   help="print the compiler flags and cache key, build nothing")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    if a.print_plan:
        headers = addon_headers.installed_torch()
        plan = addon.build_plan(headers, cxx=a.cxx)
        print(json.dumps(plan, indent=1))
        print(os.path.join(addon.library_cache(plan), addon.LIB_NAME))
        return 0
    path = build_kernel(force=a.force, cxx=a.cxx, verbose=a.verbose)
    print(path)
    return 0

