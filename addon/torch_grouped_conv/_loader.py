"""Load the add-on's shared library into the running torch.

The library has no NEEDED entry for torch's libraries (their sonames differ between builds:
``libtorch_cpu.so`` in PyPI's wheels, ``libtorch_cpu.so.2.6`` in Debian's); its undefined
symbols are resolved from the libraries this process already loaded. torch loads them
RTLD_LOCAL, so they are first promoted to RTLD_GLOBAL (dlopen with RTLD_NOLOAD: the same
objects, never a second copy; glibc promotes their dependencies too, e.g. torch's libgomp).

The library registers nothing while it is loaded: `register()` runs its registrations
(``torch_grouped_conv_register``, addon/csrc/Registration.h), so that one the running torch
refuses (another operator schema, a namespace already defined) is an exception here and not
std::terminate inside dlopen.

No package-relative imports: recipe/kernel.py loads this file by path.
"""
import ctypes
import os
import re

_TORCH_LIBS = re.compile(r"^(libtorch_cpu|libc10)\.so")


def loaded_torch_libraries():
    """Paths of libtorch_cpu and libc10 as mapped into this process (/proc/self/maps)."""
    found = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) < 6:
                continue
            path = parts[5].strip()
            if _TORCH_LIBS.match(os.path.basename(path)) and path not in found and \
                    os.path.exists(path):
                found.append(path)
    return found


def promote_torch_libraries():
    """Make the loaded libtorch_cpu/libc10 (and their dependencies) RTLD_GLOBAL."""
    libs = loaded_torch_libraries()
    if not any(os.path.basename(p).startswith("libtorch_cpu") for p in libs):
        raise OSError("libtorch_cpu is not loaded in this process: import torch first")
    for path in libs:
        ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_GLOBAL | os.RTLD_NOLOAD)
    return libs


REGISTER_SYMBOL = "torch_grouped_conv_register"  # recipe/addon.py exports only this one


class RegistrationError(RuntimeError):
    """The running torch refused one of the library's operator registrations; none of them
    is in effect (torch runs as before)."""


def register(path):
    """Run the loaded library's operator registrations (once per copy of the library)."""
    function = getattr(ctypes.CDLL(path), REGISTER_SYMBOL)
    function.restype = ctypes.c_int
    function.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
    message = ctypes.create_string_buffer(4096)
    if function(message, len(message)) != 0:
        text = " ".join(message.value.decode("utf-8", "replace").split())
        raise RegistrationError("the running torch refused the add-on's operator "
                                "registrations, none is in effect: %s" % text)


def load_library(path):
    """promote_torch_libraries() + torch.ops.load_library(path) + register(path)."""
    import torch
    promote_torch_libraries()
    torch.ops.load_library(path)
    register(path)
    return path


def missing_symbols(names):
    """Which of these symbols the process cannot resolve now (after promotion)."""
    process = ctypes.CDLL(None)
    return [n for n in names if not hasattr(process, n)]
