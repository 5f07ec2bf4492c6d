"""`python build.py kernel`: build the native CPU depthwise kernel against the installed torch.

The sources in kernels/depthwise/ are the same files the 2.6.0 patch series installs into
the PyTorch tree; here they are compiled the way PyTorch's own build compiles them:

* ``DepthwiseConv2dNativeKernel.cpp`` once per CPU capability the installed torch
  dispatches to, with ``-DCPU_CAPABILITY=X -DCPU_CAPABILITY_X`` and that capability's
  flags (cmake/Codegen.cmake): x86_64 DEFAULT (no ISA flags), AVX2 (``-mavx2 -mfma
  -mf16c -mno-avx256-split-unaligned-load -mno-avx256-split-unaligned-store``), AVX512
  (``-mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma``); aarch64 DEFAULT (NEON), plus
  ``-march=armv8.2-a+fp16`` when the build machine has fp16 vector arithmetic (see
  below). At run time torch's DispatchStub picks the slot for the CPU
  (``torch.backends.cpu.get_cpu_capability()``, env ``ATEN_CPU_CAPABILITY``).
* ``DepthwiseConv2dNative.cpp`` (DEFINE_DISPATCH, checks) and ``out_of_tree.cpp``
  (operator registrations + routing shim) once, without CPU_CAPABILITY.
* The grouped family (kernels/grouped/: ``GroupedConv2dNativeKernel.cpp`` per capability,
  ``GroupedConv2dNative.cpp`` and its ``out_of_tree.cpp`` with the native_gconv operators)
  the same way, into the same library (``FAMILIES``).
* Every TU gets the ``HAVE_*_CPU_DEFINITION`` macros torch itself was built with: they
  change the layout of DispatchStub and the signature of the exported
  ``DispatchStubImpl`` methods, so they are read off the installed libtorch_cpu (the
  number of ``void*`` arguments of ``DispatchStubImpl::choose_cpu_impl``). Slots for
  capabilities not compiled here (aarch64 SVE) are defined empty, and DispatchStub
  falls back to DEFAULT for them.

aarch64 and fp16: the DEFAULT capability of an aarch64 torch is plain ARMv8-A (NEON, no
fp16 arithmetic), so it runs on every 64-bit ARM CPU. fp16 vector arithmetic
(``__ARM_FEATURE_FP16_VECTOR_ARITHMETIC``, ARMv8.2-A FP16: Xavier's Carmel, Orin's A78AE,
Graviton2+) lets the kernel accumulate fp16 convs in fp16 (8 lanes per register instead of
4). DispatchStub has no "NEON+fp16" slot, so the choice is made at build time: this command
builds for the machine it runs on (the .so is a local, cached build), and adds
``-march=armv8.2-a+fp16`` to the kernel TU when /proc/cpuinfo lists ``asimdhp``
(``--fp16-arith off`` to disable). The in-tree build makes the same choice through the
target's compiler flags (Jetson targets: ``-march=armv8.2-a+fp16``).

The shared library is cached under ``recipe.cache_dir("kernels", <key>)``, the key being a
hash of the sources, the compiler command lines, the compiler version and the torch
version/location, so a second run is instant. The last line printed is the library's
path; load it with ``torch.ops.load_library(path)`` or use `load_kernel()`.

Python API::

    from recipe.kernel import build_kernel, load_kernel
    path = build_kernel()          # compile (or reuse the cache), return the .so path
    load_kernel()                  # build_kernel() + torch.ops.load_library(), once
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

from recipe import REPO_ROOT, cache_dir

ROUTING_DIR = os.path.join(REPO_ROOT, "kernels", "routing")
# Kernel families built into the one library: (folder under kernels/, header, TU compiled
# per CPU capability, TUs compiled once). The depthwise family's out_of_tree.cpp holds
# the routing shim for all of them.
FAMILIES = (
    ("depthwise", "DepthwiseConv2dNative.h", "DepthwiseConv2dNativeKernel.cpp",
     ("DepthwiseConv2dNative.cpp", "out_of_tree.cpp")),
    ("grouped", "GroupedConv2dNative.h", "GroupedConv2dNativeKernel.cpp",
     ("GroupedConv2dNative.cpp", "out_of_tree.cpp")),
)
LIB_NAME = "libnative_dwconv.so"
BUILD_VERSION = "3"  # bump to invalidate cached builds when this file's logic changes

# cmake/Codegen.cmake (2.6 .. 2.13)
X86_CAPABILITY_FLAGS = {
    "DEFAULT": [],
    "AVX2": ["-mavx2", "-mfma", "-mf16c", "-mno-avx256-split-unaligned-load",
             "-mno-avx256-split-unaligned-store"],
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
}
AARCH64_FP16_FLAGS = ["-march=armv8.2-a+fp16"]
OPT_FLAGS = ["-O3"]
# at::parallel_for is inline OpenMP (ATen/ParallelOpenMP.h): without -fopenmp it runs on ONE
# thread. The runtime is the libgomp torch ships in torch/lib (never a second OpenMP runtime).
OPENMP_COMPILE = ["-fopenmp"]
OPENMP_LINK = ["-l:libgomp.so.1"]

_loaded = {}


class KernelBuildError(RuntimeError):
    pass


def log(msg, quiet=False):
    if not quiet:
        sys.stderr.write("[kernel] %s\n" % msg)
        sys.stderr.flush()


# --------------------------------------------------------------------------- torch info

def torch_info():
    """Facts about the installed torch the build needs (imports torch)."""
    import torch
    root = os.path.dirname(os.path.abspath(torch.__file__))
    lib = os.path.join(root, "lib")
    return {
        "version": torch.__version__,
        "root": root,
        "include": [os.path.join(root, "include"),
                    os.path.join(root, "include", "torch", "csrc", "api", "include")],
        "lib": lib,
        "cxx11_abi": int(bool(torch._C._GLIBCXX_USE_CXX11_ABI)),
        "arch": platform.machine(),
        "dispatch_slots": dispatch_slots(os.path.join(lib, "libtorch_cpu.so")),
        "cxx_std": cxx_standard(root),
    }


def cxx_standard(torch_root):
    """The C++ standard torch's own extension builder uses (c++17 up to 2.8, c++20 after)."""
    try:
        with open(os.path.join(torch_root, "utils", "cpp_extension.py")) as f:
            text = f.read()
    except OSError:
        return "c++17"
    return "c++20" if "'-std=c++20'" in text else "c++17"


def dispatch_slots(libtorch_cpu):
    """Number of per-capability pointers DispatchStubImpl takes in this libtorch_cpu
    (DEFAULT + the HAVE_*_CPU_DEFINITION capabilities it was built with)."""
    lib = ctypes.CDLL(libtorch_cpu)
    base = "_ZN2at6native16DispatchStubImpl15choose_cpu_implEPv"
    for n in range(1, 6):
        if hasattr(lib, base + "S2_" * (n - 1)):
            return n
    raise KernelBuildError("cannot find DispatchStubImpl::choose_cpu_impl in %s" % libtorch_cpu)


def has_fp16_arith():
    """aarch64 build machine with FP16 vector arithmetic (asimdhp)?"""
    if platform.machine() not in ("aarch64", "arm64"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("features") and "asimdhp" in line.split():
                    return True
    except OSError:
        pass
    return False


def capability_plan(arch, slots, fp16_arith=False):
    """(defines for every TU, [(capability, flags)] for the kernel TU, empty slots).

    slots: dispatch_slots() of the installed torch.
    """
    if arch in ("x86_64", "AMD64", "amd64"):
        if slots >= 3:
            have = ["HAVE_AVX512_CPU_DEFINITION", "HAVE_AVX2_CPU_DEFINITION"]
            caps = ["DEFAULT", "AVX2", "AVX512"]
        elif slots == 2:
            have = ["HAVE_AVX2_CPU_DEFINITION"]
            caps = ["DEFAULT", "AVX2"]
        else:
            have, caps = [], ["DEFAULT"]
        return have, [(c, X86_CAPABILITY_FLAGS[c]) for c in caps], []
    if arch in ("aarch64", "arm64"):
        flags = list(AARCH64_FP16_FLAGS) if fp16_arith else []
        if slots >= 2:
            # 2.6: one SVE256 slot (HAVE_SVE256_CPU_DEFINITION); 2.7+: SVE128 + SVE256
            # (HAVE_SVE_CPU_DEFINITION). Define both; the header uses what it knows.
            have = ["HAVE_SVE_CPU_DEFINITION", "HAVE_SVE256_CPU_DEFINITION"]
            empty = ["SVE256"] if slots == 2 else ["SVE128", "SVE256"]
        else:
            have, empty = [], []
        return have, [("DEFAULT", flags)], empty
    if slots != 1:
        raise KernelBuildError("unsupported architecture %s with %d dispatch slots" % (arch, slots))
    return [], [("DEFAULT", [])], []


# --------------------------------------------------------------------------- build

def _compiler(cxx=None):
    exe = cxx or os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not exe or not shutil.which(exe):
        raise KernelBuildError("no C++ compiler (install g++ or set CXX)")
    return shutil.which(exe)


def _compiler_version(cxx):
    try:
        return subprocess.run([cxx, "--version"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True,
                              timeout=60).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def _sources():
    out = [os.path.join(REPO_ROOT, "kernels", folder, f)
           for folder, header, cap_tu, plain in FAMILIES for f in (header, cap_tu) + plain]
    out.append(os.path.join(ROUTING_DIR, "ConvRouting.h"))
    for p in out:
        if not os.path.exists(p):
            raise KernelBuildError("missing source %s" % p)
    return out


def tree_sources(tree):
    """(headers, per-capability TUs, plain TUs) of the library as the patch series installs
    them into a PyTorch tree (out_of_tree.cpp files stay in this repo): for grafts of the
    in-tree sources into an installed torch."""
    native = os.path.join(tree, "aten", "src", "ATen", "native")
    headers, cap_tus, plain_tus = [], [], []
    for folder, header, cap_tu, plain in FAMILIES:
        headers.append(os.path.join(native, header))
        cap_tus.append(os.path.join(native, "cpu", cap_tu))
        plain_tus += [os.path.join(REPO_ROOT, "kernels", folder, tu) if tu == "out_of_tree.cpp"
                      else os.path.join(native, tu) for tu in plain]
    return headers, cap_tus, plain_tus


def build_plan(info=None, cxx=None, fp16_arith="auto", extra_flags=()):
    """The compiler command lines (without output paths) and the cache key."""
    info = info or torch_info()
    cxx = _compiler(cxx)
    fp16 = has_fp16_arith() if fp16_arith == "auto" else bool(fp16_arith)
    have, caps, empty = capability_plan(info["arch"], info["dispatch_slots"], fp16)
    common = (["-std=" + info["cxx_std"], "-fPIC", "-DNDEBUG", "-DAT_PER_OPERATOR_HEADERS",
               "-DDWCONV_OUT_OF_TREE", "-D_GLIBCXX_USE_CXX11_ABI=%d" % info["cxx11_abi"],
               "-Wall", "-Wno-unused-function", "-Wno-unused-variable",
               "-Wno-sign-compare", "-Wno-maybe-uninitialized"] + OPENMP_COMPILE
              + ["-D" + h for h in have] + ["-DDWCONV_EMPTY_SLOT_" + e for e in empty]
              + list(extra_flags))
    units = []  # (kernels/-relative source, object, flags)
    for folder, _, cap_tu, plain in FAMILIES:
        for cap, flags in caps:
            units.append((folder + "/" + cap_tu, "%s.kernel.%s.o" % (folder, cap),
                          OPT_FLAGS + flags + ["-DCPU_CAPABILITY=" + cap,
                                               "-DCPU_CAPABILITY_" + cap]))
        for tu in plain:
            units.append((folder + "/" + tu, "%s.%s" % (folder, tu.replace(".cpp", ".o")),
                          ["-O2"]))
    h = hashlib.sha256()
    for p in _sources():
        with open(p, "rb") as f:
            h.update(os.path.basename(p).encode() + b"\0" + f.read() + b"\0")
    h.update(json.dumps({"cxx": cxx, "cxx_version": _compiler_version(cxx), "common": common,
                         "units": units, "torch": info["version"], "root": info["root"],
                         "abi": info["cxx11_abi"], "slots": info["dispatch_slots"],
                         "arch": info["arch"], "build_version": BUILD_VERSION},
                        sort_keys=True).encode())
    return {"cxx": cxx, "common": common, "units": units, "key": h.hexdigest()[:24],
            "info": info, "capabilities": [c for c, _ in caps], "fp16_arith": fp16}


@contextlib.contextmanager
def _lock(path):
    import fcntl
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_kernel(force=False, cxx=None, fp16_arith="auto", extra_flags=(), quiet=False,
                 verbose=False):
    """Compile the native depthwise library against the installed torch (or reuse the
    cached build); returns the path of the shared library."""
    plan = build_plan(cxx=cxx, fp16_arith=fp16_arith, extra_flags=extra_flags)
    info = plan["info"]
    out_dir = cache_dir("kernels", plan["key"])
    so = os.path.join(out_dir, LIB_NAME)
    with _lock(cache_dir("kernels", ".lock")):
        if os.path.exists(so) and not force:
            log("cached: torch %s, capabilities %s" % (info["version"],
                                                       ",".join(plan["capabilities"])), quiet)
            return so
        log("building for torch %s (%s), capabilities %s%s" % (
            info["version"], info["arch"], ",".join(plan["capabilities"]),
            ", fp16 arithmetic" if plan["fp16_arith"] else ""), quiet)
        work = tempfile.mkdtemp(prefix="dwconv-build-", dir=cache_dir("kernels"))
        try:
            staged = os.path.join(work, "include", "ATen", "native")
            os.makedirs(staged)
            for folder, header, _, _ in FAMILIES:
                shutil.copy(os.path.join(REPO_ROOT, "kernels", folder, header),
                            os.path.join(staged, header))
            incs = [os.path.join(work, "include"), ROUTING_DIR] + info["include"]
            objs = []
            for tu, obj, flags in plan["units"]:
                cmd = ([plan["cxx"]] + plan["common"] + flags + ["-I" + i for i in incs]
                       + ["-c", os.path.join(REPO_ROOT, "kernels", tu), "-o",
                          os.path.join(work, obj)])
                _run(cmd, "compile %s -> %s" % (tu, obj), quiet, verbose)
                objs.append(os.path.join(work, obj))
            tmp_so = os.path.join(work, LIB_NAME)
            cmd = ([plan["cxx"], "-shared", "-fPIC", "-o", tmp_so] + objs
                   + ["-L" + info["lib"], "-Wl,-rpath," + info["lib"], "-ltorch_cpu", "-lc10"]
                   + OPENMP_LINK + ["-Wl,--no-undefined"])
            _run(cmd, "link %s" % LIB_NAME, quiet, verbose)
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "build.json"), "w") as f:
                json.dump({"torch": info["version"], "capabilities": plan["capabilities"],
                           "fp16_arith": plan["fp16_arith"], "common_flags": plan["common"],
                           "units": plan["units"], "cxx": plan["cxx"]}, f, indent=1)
            os.replace(tmp_so, so)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return so


def _run(cmd, what, quiet, verbose):
    t0 = time.time()
    if verbose:
        log("$ " + " ".join(cmd), quiet)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    if r.returncode != 0:
        raise KernelBuildError("%s failed (exit %d):\n$ %s\n%s" % (
            what, r.returncode, " ".join(cmd), r.stdout[-20000:]))
    log("%s (%.0f s)" % (what, time.time() - t0), quiet)
    if verbose and r.stdout.strip():
        sys.stderr.write(r.stdout)


def load_kernel(**kwargs):
    """build_kernel(**kwargs) + torch.ops.load_library (once per process); returns the path."""
    import torch
    path = build_kernel(**kwargs)
    if path not in _loaded:
        torch.ops.load_library(path)
        _loaded[path] = True
    return path


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python build.py kernel",
        description="Compile the native CPU depthwise conv kernel against the installed torch "
                    "(cached); prints the shared library's path as the last line. Use it with "
                    "torch.ops.load_library(path): aten::_conv_depthwise2d then runs on CPU, "
                    "and F.conv1d/conv2d depthwise calls are routed to it (see "
                    "kernels/depthwise/out_of_tree.cpp).")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.add_argument("--cxx", default=None, help="C++ compiler (default: $CXX or g++)")
    p.add_argument("--fp16-arith", choices=("auto", "on", "off"), default="auto",
                   help="aarch64: compile the kernel with -march=armv8.2-a+fp16 "
                        "(auto: when this CPU has fp16 vector arithmetic)")
    p.add_argument("--print-plan", action="store_true",
                   help="print the compiler flags and cache key, build nothing")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    fp16 = {"auto": "auto", "on": True, "off": False}[a.fp16_arith]
    try:
        if a.print_plan:
            plan = build_plan(cxx=a.cxx, fp16_arith=fp16)
            plan = dict(plan)
            print(json.dumps({k: v for k, v in plan.items() if k != "info"}, indent=1))
            print(cache_dir("kernels", plan["key"], LIB_NAME))
            return 0
        path = build_kernel(force=a.force, cxx=a.cxx, fp16_arith=fp16, verbose=a.verbose)
    except KernelBuildError as e:
        sys.stderr.write("error: %s\n" % e)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
