"""torch-grouped-conv: every grouped / depthwise convolution of an installed PyTorch on the
CPU as ONE kernel call, with no code change.

torch >= 2.5 calls this package's entry point (group ``torch.backends``) at the end of
``import torch``; for older torch, ``import torch_grouped_conv`` does the same. Loading
registers the native depthwise kernel as the CPU kernel of ``aten::_conv_depthwise2d`` and a
routing shim on ``aten::convolution`` / ``aten::convolution_backward`` (see the
torch-arm-recipe README); where the running torch already has these kernels in-tree (a torch
built by torch-arm-recipe) only the missing pieces are added.

It never breaks ``import torch``: a torch of another version than the one this wheel was
built for, a missing symbol or any load error gives ONE warning (installed version, built-for
version, the fix) and torch runs unchanged. ``TORCH_GROUPED_CONV=0`` turns it off
(torch's ``TORCH_DEVICE_BACKEND_AUTOLOAD=0`` skips every autoloaded extension);
``TORCH_GROUPED_CONV_IGNORE_VERSION=1`` tries another release line of torch too.
``python -m torch_grouped_conv`` prints what was built for what and what happened here.
"""
import json
import os
import platform
import re
import warnings

from . import _loader

__all__ = ["load", "status", "build_info", "TorchGroupedConvWarning", "DISABLE_ENV",
           "IGNORE_VERSION_ENV"]

DISABLE_ENV = "TORCH_GROUPED_CONV"
# Try to load into a torch of another release line too (a torch whose version string says
# nothing, e.g. a fork); a load failure still only warns.
IGNORE_VERSION_ENV = "TORCH_GROUPED_CONV_IGNORE_VERSION"
_HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY = os.path.join(_HERE, "lib", "libtorch_grouped_conv.so")
_BUILD_INFO = os.path.join(_HERE, "build_info.json")
FIX = ("build the add-on for this torch on this machine: `python build.py addon --install` "
       "(in a torch-arm-recipe checkout), or install a prebuilt one for it: "
       "`python build.py pull --addon`")

_state = {"attempted": False, "loaded": False, "reason": "not loaded yet", "warned": False}
_info = {}


class TorchGroupedConvWarning(UserWarning):
    """The add-on is installed but not active (the message says why and what to do)."""


def build_info():
    """What this wheel was built from and for (written by `build.py addon`)."""
    if not _info:
        with open(_BUILD_INFO) as f:
            _info.update(json.load(f))
    return _info


def _minor(version):
    m = re.match(r"^(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _disabled():
    value = os.environ.get(DISABLE_ENV, "").strip().lower()
    return value in ("0", "off", "false", "no")


def _built_for():
    t = build_info()["torch"]
    return "torch %s (git %s, C++ ABI %s, %s)" % (t["version"], (t.get("git_version") or "?")[:10],
                                                 t["cxx11_abi"], t["arch"])


def _library_problem():
    """A library file that is not the one this wheel was built with (truncated, replaced):
    dlopen of a broken ELF file can kill the process instead of failing."""
    info = build_info()
    try:
        size = os.path.getsize(LIBRARY)
    except OSError as e:
        return "cannot read %s: %s" % (LIBRARY, e.strerror)
    if size != info.get("library_size"):
        return "%s has %d bytes, the build made %s (reinstall the wheel)" % (
            LIBRARY, size, info.get("library_size"))
    import hashlib
    with open(LIBRARY, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != info.get("library_sha256"):
        return "%s is not the library of this build (sha256 %s; reinstall the wheel)" % (
            LIBRARY, digest[:16])
    return None


def _mismatch(torch):
    """Why this build cannot load into the running torch, or None."""
    t = build_info()["torch"]
    ignore_version = os.environ.get(IGNORE_VERSION_ENV, "") not in ("", "0")
    if _minor(torch.__version__) != _minor(t["version"]) and not ignore_version:
        return "built for %s, but this is torch %s" % (_built_for(), torch.__version__)
    abi = int(bool(torch._C._GLIBCXX_USE_CXX11_ABI))
    if abi != int(t["cxx11_abi"]):
        return ("built for %s, but this torch %s uses C++ ABI %d"
                % (_built_for(), torch.__version__, abi))
    if platform.machine() != t["arch"]:
        return "built for %s, but this machine is %s" % (_built_for(), platform.machine())
    return None


def _fail(reason):
    _state["loaded"] = False
    _state["reason"] = reason
    if _state["warned"]:
        return
    _state["warned"] = True
    try:
        import torch
        installed = torch.__version__
    except Exception:  # noqa: BLE001 - only for the message
        installed = "?"
    try:
        warnings.warn("torch-grouped-conv is not active (%s; installed torch %s, built for %s). "
                      "Convolutions run as stock PyTorch runs them. Fix: %s. %s=0 turns the "
                      "add-on off." % (reason, installed, _built_for(), FIX, DISABLE_ENV),
                      TorchGroupedConvWarning, stacklevel=3)
    except Exception:  # noqa: BLE001 - a warnings filter set to "error" must not break torch
        pass


def load():
    """Load the library into the running torch (once); True when active. Never raises."""
    if _state["attempted"]:
        return _state["loaded"]
    _state["attempted"] = True
    try:
        if _disabled():
            _state["reason"] = "disabled by %s=%s" % (DISABLE_ENV, os.environ[DISABLE_ENV])
            return False
        import torch
        problem = _mismatch(torch) or _library_problem()
        if problem:
            _fail(problem)
            return False
        _loader.load_library(LIBRARY)
        _state["loaded"] = True
        _state["reason"] = "loaded %s" % LIBRARY
        return True
    except Exception as e:  # noqa: BLE001 - anything: a missing symbol, a bad file, ...
        text = str(e)
        if e.__cause__ is not None:  # torch.ops.load_library wraps dlopen's own message
            text += " (%s)" % e.__cause__
        _fail("load error: %s: %s" % (type(e).__name__, " ".join(text.split())[:500]))
        return False


def _autoload():
    """Entry point of group torch.backends: torch >= 2.5 calls it at the end of
    `import torch`, where an exception would make `import torch` itself fail."""
    try:
        load()
    except BaseException as e:  # noqa: BLE001 - never let anything escape into import torch
        if isinstance(e, KeyboardInterrupt):
            raise


def status():
    """Built-for facts, the running torch, and what happened here (a dict)."""
    from ._status import collect
    return collect(_state, build_info(), LIBRARY)


_autoload()  # `import torch_grouped_conv` loads it too (torch < 2.5, or autoload disabled)
