"""`python build.py addon`: the add-on wheel `torch-grouped-conv` for an installed torch.

    python build.py addon [--install]                       # against the torch installed here
    python build.py addon --torch 2.8.0 --arch aarch64 --out DIR   # the official wheel's headers
    python build.py addon --headers-from PATH               # a torch package dir or torch wheel
    python build.py addon --matrix --out DIR                # every pinned version x arch

The last line printed is the wheel's path (the matrix prints one line per build).

What is compiled (the ONE build path; `build.py kernel` uses it too, for the installed torch):
every kernel family of `KERNEL_FAMILIES` (depthwise, grouped), with the sources exactly as
the patch series installs them in-tree:

* the family's ``*Kernel.cpp`` once per CPU capability of `CAPABILITIES` (x86_64: DEFAULT,
  AVX2, AVX512 with torch's own flags from cmake/Codegen.cmake; aarch64: DEFAULT = ARMv8-A
  NEON and FP16 = ``-march=armv8.2-a+fp16``), ``-DCPU_CAPABILITY=X -DCPU_CAPABILITY_X``;
* its other sources and ``addon/csrc/capability_dispatch.cpp`` once;
* every TU force-includes ``addon/csrc/CapabilityDispatch.h``: DECLARE/DEFINE/REGISTER_DISPATCH
  become the add-on's own per-capability tables, chosen at run time from cpuid /
  getauxval(AT_HWCAP). No DispatchStub of torch is used (its layout differs between builds).

Linking: no torch library is linked (``libtorch_cpu.so`` vs Debian's ``libtorch_cpu.so.2.6``;
the loader resolves the symbols from the running process), only the system C/C++ runtime; a
version script keeps every symbol of the library local but `torch_grouped_conv_register` (the
loader's explicit registration call), so nothing of it interposes on torch.
Objects are linked DEFAULT-first: an inline function compiled into several capability objects
is then taken from the copy every CPU can run. Afterwards the library is checked: its NEEDED
entries are system libraries only, every symbol it imports from torch is exported by the
torch it was built against (`addon_headers.TorchHeaders.exports`), none is a DispatchStub,
and the wheel's platform tag is the lowest manylinux level whose glibc / libstdc++ symbol
versions cover what the library needs (auditwheel 6.8.2's policy numbers), else linux_<arch>.

Wheel: ``torch_grouped_conv-<recipe version>+torch<X.Y.Z>-py3-none-<platform>.whl`` (no
Python extension inside: any CPython), no Requires-Dist on torch (pip must never replace the
user's torch; vendor versions like ``2.5.0a0+872d972e41.nv24.08`` must not be rejected), the
entry point ``torch_grouped_conv = torch_grouped_conv:_autoload`` in group
``torch.backends``, ``torch_grouped_conv/build_info.json`` (torch version, git commit, C++
ABI, compiler and flags, sources' sha256, symbols, platform) and ``<wheel>.manifest.json``
beside it (the same plus the wheel's sha256, for `publish`).

Python API::

    from recipe.addon import build_addon, build_library
    wheel = build_addon()                                    # the torch installed here
    wheel = build_addon("2.8.0", "aarch64", out_dir="dist")  # official wheel's headers
    wheel = build_addon(headers_from="/path/site-packages/torch", out_dir="dist")
    lib = build_library(headers)                             # just the .so (cached)
"""
from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

from recipe import locks
from recipe.errors import RecipeError
from recipe.log import logger
from recipe import REPO_ROOT, RECIPE_VERSION, cache_dir
from recipe import addon_headers
from recipe.addon_headers import HeadersError, TorchHeaders, dynamic_symbols

PROJECT = "torch-grouped-conv"
PACKAGE = "torch_grouped_conv"
LIB_NAME = "libtorch_grouped_conv.so"
PACKAGE_DIR = os.path.join(REPO_ROOT, "addon", PACKAGE)
CSRC_DIR = os.path.join(REPO_ROOT, "addon", "csrc")
ROUTING_DIR = os.path.join(REPO_ROOT, "kernels", "routing")
FORCED_INCLUDE = os.path.join(CSRC_DIR, "CapabilityDispatch.h")
# Force-included after it: what torch 2.0/2.1 lack (a no-op for newer torch).
COMPAT_INCLUDE = os.path.join(REPO_ROOT, "kernels", "compat", "torch_compat.h")
# The one symbol the library exports: the loader calls it to register the operators.
REGISTRATION_HEADER = "addon/csrc/Registration.h"
REGISTER_SYMBOL = "torch_grouped_conv_register"
# torch < 2.5 has no `torch.backends` autoload: these go to the wheel's root (site-packages),
# the .pth activates the add-on once `import torch` has finished.
STARTUP_HOOK = ("torch_grouped_conv_startup.py", "torch_grouped_conv_startup.pth")
AUTOLOAD_SINCE = (2, 5)
ENTRY_POINT = "torch_grouped_conv = torch_grouped_conv:_autoload"
DEFAULT_OUT = os.path.join(REPO_ROOT, "wheels")
BUILD_VERSION = "1"  # bump to invalidate cached libraries when this file's logic changes

# A kernel family: its headers are staged as <ATen/native/NAME> (their in-tree path);
# kernel_sources are compiled once per capability, sources once.
KernelFamily = collections.namedtuple("KernelFamily",
                                      "name directory headers kernel_sources sources")
KERNEL_FAMILIES = (
    KernelFamily("depthwise", "kernels/depthwise", ("DepthwiseConv2dNative.h",),
                 ("DepthwiseConv2dNativeKernel.cpp",),
                 ("DepthwiseConv2dNative.cpp", "out_of_tree.cpp")),
    KernelFamily("grouped", "kernels/grouped", ("GroupedConv2dNative.h",),
                 ("GroupedConv2dNativeKernel.cpp",),
                 ("GroupedConv2dNative.cpp", "out_of_tree.cpp")),
)
SHARED_SOURCES = ("addon/csrc/capability_dispatch.cpp", "addon/csrc/registration.cpp")
# Headers every family includes (kernels/common/), staged at their in-tree path under include/.
SHARED_HEADERS = (("kernels/common/NativeConvChecks.h", "ATen/native/NativeConvChecks.h"),
                  ("kernels/common/NativeConvKernelUtils.h",
                   "ATen/native/cpu/NativeConvKernelUtils.h"))

# cmake/Codegen.cmake (2.5 .. 2.14) for x86; aarch64 FP16 = ARMv8.2-A FP16 vector arithmetic.
CAPABILITIES = {
    "x86_64": (("DEFAULT", ()),
               ("AVX2", ("-mavx2", "-mfma", "-mf16c", "-mno-avx256-split-unaligned-load",
                         "-mno-avx256-split-unaligned-store")),
               ("AVX512", ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"))),
    "aarch64": (("DEFAULT", ()),
                ("FP16", ("-march=armv8.2-a+fp16",))),
}
ARCH_FLAGS = {"x86_64": (), "aarch64": ("-march=armv8-a",)}
ARCH_LINK_FLAGS = {"x86_64": (), "aarch64": ("-Wl,-z,max-page-size=0x10000",)}
CROSS_COMPILERS = {"aarch64": "aarch64-linux-gnu-g++", "x86_64": "x86_64-linux-gnu-g++"}
COMPILER_PACKAGES = {"aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
                     "x86_64-linux-gnu-g++": "g++-x86-64-linux-gnu", "g++": "g++"}
# at::parallel_for is inline OpenMP (ATen/ParallelOpenMP.h): -fopenmp when compiling; at run
# time GOMP_* come from torch's own libgomp (no second OpenMP runtime is linked).
WARNINGS = ("-Wall", "-Wno-unused-function", "-Wno-unused-variable", "-Wno-sign-compare",
            "-Wno-maybe-uninitialized", "-Werror=return-type")
SYSTEM_LIBS = re.compile(r"^(libstdc\+\+\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libc\.so\.6|"
                         r"ld-linux[-\w.]*\.so\.\d|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1)$")
STUB_SYMBOL = re.compile(r"DispatchStub|_stubE$")

# Lowest glibc level first: (manylinux_2_N, max GLIBC, GLIBCXX, CXXABI, GCC[x86_64, aarch64])
# from auditwheel 6.8.2's manylinux-policy.json (aarch64's 2_17 allows GLIBC_2.18).
MANYLINUX = (
    (17, "2.17", "3.4.19", "1.3.7", ("4.8.0", "4.7.0")),
    (24, "2.24", "3.4.22", "1.3.10", ("4.8.0", "4.7.0")),
    (27, "2.27", "3.4.24", "1.3.11", ("7.0.0", "7.0.0")),
    (28, "2.28", "3.4.24", "1.3.11", ("7.0.0", "7.0.0")),
    (31, "2.31", "3.4.28", "1.3.12", ("7.0.0", "7.0.0")),
    (34, "2.34", "3.4.29", "1.3.13", ("7.0.0", "11.0")),
    (35, "2.35", "3.4.30", "1.3.13", ("12.0.0", "11.0")),
    (36, "2.36", "3.4.30", "1.3.13", ("12.0.0", "11.0")),
    (38, "2.38", "3.4.30", "1.3.13", ("12.0.0", "11.0")),
    (39, "2.39", "3.4.33", "1.3.15", ("14.0.0", "14.0.0")),
    (40, "2.40", "3.4.33", "1.3.15", ("14.0.0", "14.0.0")),
    (41, "2.41", "3.4.33", "1.3.15", ("14.0.0", "14.0.0")),
)


class AddonBuildError(RecipeError):
    pass


log = logger("addon")


def _vtuple(v):
    return tuple(int(x) for x in re.findall(r"\d+", v))


def _sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def _sha256(path):
    with open(path, "rb") as f:
        return _sha256_bytes(f.read())


# --------------------------------------------------------------------------- compiler

def compiler_for(arch, cxx=None):
    """The C++ compiler that targets `arch` from this machine."""
    if cxx:
        exe = shutil.which(cxx)
        if not exe:
            raise HeadersError("--cxx %s: not found" % cxx)
        return exe
    if arch == platform.machine():
        name = os.environ.get("CXX") or "g++"
    else:
        name = CROSS_COMPILERS[arch]
    exe = shutil.which(name)
    if not exe:
        raise HeadersError("%s not found: apt-get install %s (or pass --cxx)"
                           % (name, COMPILER_PACKAGES.get(name, name)))
    return exe


def compiler_version(cxx):
    try:
        return subprocess.run([cxx, "--version"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True,
                              timeout=60).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


# --------------------------------------------------------------------------- plan

def source_files(families=KERNEL_FAMILIES):
    """Repo-relative paths of every file that goes into the library."""
    files = []
    for fam in families:
        files += [os.path.join(fam.directory, f)
                  for f in fam.headers + fam.kernel_sources + fam.sources]
    files += list(SHARED_SOURCES)
    files += [src for src, _ in SHARED_HEADERS]
    files += [os.path.relpath(FORCED_INCLUDE, REPO_ROOT), os.path.relpath(COMPAT_INCLUDE, REPO_ROOT),
              os.path.join("kernels", "routing", "ConvRouting.h"), REGISTRATION_HEADER]
    for f in files:
        if not os.path.exists(os.path.join(REPO_ROOT, f)):
            raise AddonBuildError("missing source %s" % f)
    return files


def build_plan(headers, cxx=None, capabilities=None, families=KERNEL_FAMILIES, extra_flags=()):
    """Compiler command lines (sources and objects as repo-relative / bare names) + cache key."""
    arch = headers.arch
    if arch not in CAPABILITIES:
        raise HeadersError("no add-on build for architecture %r (only %s)"
                           % (arch, ", ".join(sorted(CAPABILITIES))))
    cxx = compiler_for(arch, cxx)
    caps = [c for c in CAPABILITIES[arch] if capabilities is None or c[0] in capabilities]
    if not caps or caps[0][0] != "DEFAULT":
        raise HeadersError("capabilities must include DEFAULT (have: %s)"
                           % ", ".join(c for c, _ in CAPABILITIES[arch]))
    common = (["-std=" + headers.cxx_std, "-fPIC", "-fvisibility=hidden",
               "-fvisibility-inlines-hidden", "-fopenmp", "-DNDEBUG",
               "-DAT_PER_OPERATOR_HEADERS", "-DDWCONV_OUT_OF_TREE",
               "-D_GLIBCXX_USE_CXX11_ABI=%d" % headers.cxx11_abi]
              + list(ARCH_FLAGS[arch]) + list(WARNINGS) + list(extra_flags))
    units = []  # plain sources first, then DEFAULT kernels, then the others (link order)
    for fam in families:
        for src in fam.sources:
            units.append({"source": os.path.join(fam.directory, src), "capability": None,
                          "object": "%s.%s.o" % (fam.name, src[:-4]), "flags": ["-O2"]})
    for src in SHARED_SOURCES:
        units.append({"source": src, "capability": None,
                      "object": "shared.%s.o" % os.path.basename(src)[:-4], "flags": ["-O2"]})
    for cap, flags in caps:
        for fam in families:
            for src in fam.kernel_sources:
                units.append({"source": os.path.join(fam.directory, src), "capability": cap,
                              "object": "%s.%s.%s.o" % (fam.name, src[:-4], cap),
                              "flags": ["-O3"] + list(flags)
                              + ["-DCPU_CAPABILITY=" + cap, "-DCPU_CAPABILITY_" + cap]})
    link = ["-shared", "-fPIC", "-Wl,--version-script=<script>", "-Wl,-z,noexecstack"] \
        + list(ARCH_LINK_FLAGS[arch])
    h = hashlib.sha256()
    for f in source_files(families):
        with open(os.path.join(REPO_ROOT, f), "rb") as fh:
            h.update(f.encode() + b"\0" + fh.read() + b"\0")
    h.update(json.dumps({"cxx": cxx, "cxx_version": compiler_version(cxx), "common": common,
                         "units": units, "link": link, "torch": headers.to_dict(),
                         "include": headers.include_dirs, "build_version": BUILD_VERSION},
                        sort_keys=True).encode())
    return {"cxx": cxx, "cxx_version": compiler_version(cxx), "common": common, "units": units,
            "link": link, "capabilities": [c for c, _ in caps],
            "families": [f.name for f in families], "key": h.hexdigest()[:24], "arch": arch}


# --------------------------------------------------------------------------- library

def _run(cmd, what, quiet, verbose):
    t0 = time.time()
    if verbose:
        log("$ " + " ".join(cmd), quiet)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    if r.returncode != 0:
        raise AddonBuildError("%s failed (exit %d):\n$ %s\n%s" % (
            what, r.returncode, " ".join(cmd), r.stdout[-20000:]))
    log("%s (%.0f s)" % (what, time.time() - t0), quiet)
    if verbose and r.stdout.strip():
        sys.stderr.write(r.stdout)


def library_cache(plan):
    return cache_dir("addon", "lib", plan["key"])


def build_library(headers, cxx=None, capabilities=None, families=KERNEL_FAMILIES,
                  extra_flags=(), jobs=None, force=False, quiet=False, verbose=False):
    """Compile and check the add-on's library against `headers` (or reuse the cached build).
    Returns (path of the .so, build record dict)."""
    plan = build_plan(headers, cxx, capabilities, families, extra_flags)
    out_dir = library_cache(plan)
    so = os.path.join(out_dir, LIB_NAME)
    record_path = os.path.join(out_dir, "build.json")
    with locks.waiting(out_dir + ".lock"):  # per build: other builds run in parallel
        if os.path.exists(so) and os.path.exists(record_path) and not force:
            log("cached: torch %s (%s), capabilities %s" % (
                headers.version, headers.arch, ",".join(plan["capabilities"])), quiet)
            with open(record_path) as f:
                return so, json.load(f)
        log("building for torch %s (%s, %s), capabilities %s" % (
            headers.version, headers.arch, headers.origin, ",".join(plan["capabilities"])),
            quiet)
        os.makedirs(cache_dir("addon", "lib"), exist_ok=True)
        work = tempfile.mkdtemp(prefix="build-", dir=cache_dir("addon", "lib"))
        try:
            record = _compile_and_link(plan, headers, families, work, jobs, quiet, verbose)
            shutil.rmtree(out_dir, ignore_errors=True)
            os.makedirs(out_dir)
            os.replace(os.path.join(work, LIB_NAME), so)
            with open(record_path, "w") as f:
                json.dump(record, f, indent=1, sort_keys=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return so, record


def _compile_and_link(plan, headers, families, work, jobs, quiet, verbose):
    t0 = time.time()
    staged = os.path.join(work, "include", "ATen", "native")
    os.makedirs(staged)
    for fam in families:
        for hdr in fam.headers:
            shutil.copy(os.path.join(REPO_ROOT, fam.directory, hdr), os.path.join(staged, hdr))
    for src, dest in SHARED_HEADERS:
        dest = os.path.join(work, "include", dest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy(os.path.join(REPO_ROOT, src), dest)
    incs = [os.path.join(work, "include"), ROUTING_DIR, CSRC_DIR] + headers.include_dirs
    commands = []
    for u in plan["units"]:
        commands.append(([plan["cxx"]] + plan["common"] + u["flags"]
                         + ["-include", FORCED_INCLUDE, "-include", COMPAT_INCLUDE]
                         + ["-I" + i for i in incs]
                         + ["-c", os.path.join(REPO_ROOT, u["source"]),
                            "-o", os.path.join(work, u["object"])],
                         "compile %s%s" % (u["source"],
                                           " [%s]" % u["capability"] if u["capability"] else "")))
    jobs = max(1, jobs or os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(_run, cmd, what, quiet, verbose) for cmd, what in commands]
        for fut in futures:
            fut.result()
    script = os.path.join(work, "exports.map")
    with open(script, "w") as f:
        f.write("{ global: %s; local: *; };\n" % REGISTER_SYMBOL)
    tmp_so = os.path.join(work, LIB_NAME)
    link = [a.replace("<script>", script) for a in plan["link"]]
    _run([plan["cxx"]] + link + ["-o", tmp_so]
         + [os.path.join(work, u["object"]) for u in plan["units"]],
         "link %s" % LIB_NAME, quiet, verbose)
    symbols = check_library(tmp_so, headers)
    return {
        "library": LIB_NAME,
        "families": plan["families"],
        "capabilities": plan["capabilities"],
        "torch": headers.to_dict(),
        "build": {"compiler": os.path.basename(plan["cxx"]),
                  "compiler_version": plan["cxx_version"],
                  "common_flags": plan["common"],
                  "forced_include": os.path.relpath(FORCED_INCLUDE, REPO_ROOT),
                  "units": plan["units"], "link_flags": plan["link"],
                  "seconds": round(time.time() - t0, 1), "key": plan["key"]},
        "sources": {f: _sha256(os.path.join(REPO_ROOT, f)) for f in source_files(families)},
        "symbols": symbols,
        "platform_tag": symbols["platform_tag"],
        "platform_reason": symbols["platform_reason"],
    }


def needed_libraries(path):
    exe = shutil.which("readelf")
    r = subprocess.run([exe, "-W", "-d", path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)


def check_library(path, headers):
    """The checks of the module docstring; returns the symbol facts for the build record,
    raises AddonBuildError naming what is wrong."""
    needed = needed_libraries(path)
    bad = [n for n in needed if not SYSTEM_LIBS.match(n)]
    if bad:
        raise AddonBuildError("%s needs %s: only system libraries may be NEEDED (torch's are "
                              "found in the running process)" % (path, ", ".join(bad)))
    syms = dynamic_symbols(path)
    from_torch = sorted({n for n, ver, defined, weak in syms
                         if not defined and not ver and not weak})
    stubs = [n for n in from_torch if STUB_SYMBOL.search(n)]
    if stubs:
        raise AddonBuildError("%s imports DispatchStub objects of torch (%s): their layout "
                              "differs between torch builds; a kernel header included by the "
                              "add-on calls one of torch's stubs" % (path, ", ".join(stubs[:5])))
    exports = headers.exported_symbols()
    missing = [n for n in from_torch if n not in exports]
    if missing:
        raise AddonBuildError(
            "%s imports %d symbol(s) that torch %s (%s) does not export, e.g. %s"
            % (path, len(missing), headers.version, headers.origin, ", ".join(missing[:5])))
    versions = {}
    for n, ver, defined, weak in syms:
        m = re.match(r"^(GLIBC|GLIBCXX|CXXABI|GCC)_([\d.]+)$", ver)
        if not defined and m:
            k = m.group(1)
            if k not in versions or _vtuple(m.group(2)) > _vtuple(versions[k]):
                versions[k] = m.group(2)
    tag, reason = platform_tag(headers.arch, versions)
    exported = [n for n, ver, defined, weak in syms if defined]
    return {"needed": needed, "from_torch": from_torch, "max_versions": versions,
            "exported": exported, "platform_tag": tag, "platform_reason": reason}


def platform_tag(arch, versions):
    """(tag, reason): the lowest manylinux level covering the symbol versions."""
    gcc_col = 0 if arch == "x86_64" else 1
    for n, glibc, glibcxx, cxxabi, gcc in MANYLINUX:
        limits = {"GLIBC": "2.18" if (n == 17 and arch == "aarch64") else glibc,
                  "GLIBCXX": glibcxx, "CXXABI": cxxabi, "GCC": gcc[gcc_col]}
        if all(_vtuple(v) <= _vtuple(limits[k]) for k, v in versions.items()):
            need = ", ".join("%s_%s" % kv for kv in sorted(versions.items())) or "nothing"
            return ("manylinux_2_%d_%s" % (n, arch),
                    "needs %s: manylinux_2_%d allows up to GLIBC_%s, GLIBCXX_%s, CXXABI_%s"
                    % (need, n, limits["GLIBC"], glibcxx, cxxabi))
    return ("linux_%s" % arch, "needs %s: newer than every manylinux policy known here"
            % ", ".join("%s_%s" % kv for kv in sorted(versions.items())))


# --------------------------------------------------------------------------- wheel

def addon_version(headers):
    return "%s+torch%s" % (RECIPE_VERSION, headers.release)


def wheel_name(version, tag):
    return "%s-%s-py3-none-%s.whl" % (PACKAGE, version, tag)


def _record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(
        b"=").decode()


def _metadata(version, record):
    t = record["torch"]
    return ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n"
            "Summary: Every grouped/depthwise convolution of torch %s on the CPU as one kernel "
            "call (autoloaded at import torch)\nRequires-Python: >=3.8\n"
            "Description-Content-Type: text/plain\n\n"
            "Built for torch %s (git %s, C++ ABI %s, %s) with %s; kernel families %s, CPU "
            "capabilities %s.\nNo dependency on torch is declared on purpose: pip must never "
            "replace the torch you have. `python -m torch_grouped_conv` shows what it does "
            "on your machine.\n"
            % (PROJECT, version, t["release"], t["version"], t["git_version"], t["cxx11_abi"],
               t["arch"], record["build"]["compiler_version"], ", ".join(record["families"]),
               ", ".join(record["capabilities"])))


def write_wheel(so, record, out_dir, headers):
    """The wheel + its manifest in out_dir; returns the wheel's path."""
    version = addon_version(headers)
    tag = record["platform_tag"]
    info = dict(record, project=PROJECT, version=version, recipe_version=RECIPE_VERSION)
    files = {}
    for name in sorted(os.listdir(PACKAGE_DIR)):
        if name.endswith(".py"):
            with open(os.path.join(PACKAGE_DIR, name), "rb") as f:
                files["%s/%s" % (PACKAGE, name)] = f.read()
    top_level = [PACKAGE]
    if _vtuple(headers.release)[:2] < AUTOLOAD_SINCE:
        for name in STARTUP_HOOK:
            with open(os.path.join(REPO_ROOT, "addon", name), "rb") as f:
                files[name] = f.read()
        top_level.append(STARTUP_HOOK[0][:-3])
    with open(so, "rb") as f:
        files["%s/lib/%s" % (PACKAGE, LIB_NAME)] = f.read()
    lib_bytes = files["%s/lib/%s" % (PACKAGE, LIB_NAME)]
    info["library_sha256"] = _sha256_bytes(lib_bytes)  # the loader checks it before dlopen
    info["library_size"] = len(lib_bytes)
    files["%s/build_info.json" % PACKAGE] = (json.dumps(info, indent=1, sort_keys=True)
                                            + "\n").encode()
    distinfo = "%s-%s.dist-info" % (PACKAGE, version)
    files[distinfo + "/METADATA"] = _metadata(version, record).encode()
    files[distinfo + "/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: torch-arm-recipe %s\n"
                                  "Root-Is-Purelib: false\nTag: py3-none-%s\n"
                                  % (RECIPE_VERSION, tag)).encode()
    files[distinfo + "/entry_points.txt"] = ("[torch.backends]\n%s\n" % ENTRY_POINT).encode()
    files[distinfo + "/top_level.txt"] = "".join(t + "\n" for t in top_level).encode()
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, wheel_name(version, tag))
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".addon-", suffix=".whl")
    os.close(fd)
    records = []
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc in sorted(files):  # fixed order and time stamps: the same input, the same wheel
            zi = zipfile.ZipInfo(arc, date_time=(1980, 1, 1, 0, 0, 0))
            zi.external_attr = (0o755 if arc.endswith(".so") else 0o644) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, files[arc])
            records.append("%s,%s,%d" % (arc, _record_hash(files[arc]), len(files[arc])))
        records.append(distinfo + "/RECORD,,")
        zi = zipfile.ZipInfo(distinfo + "/RECORD", date_time=(1980, 1, 1, 0, 0, 0))
        zi.external_attr = 0o644 << 16
        zf.writestr(zi, "\n".join(records) + "\n")
    os.replace(tmp, path)
    manifest = {
        "manifest_version": 1, "kind": "addon", "project": PROJECT,
        "recipe_version": RECIPE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wheel": {"file": os.path.basename(path), "sha256": _sha256(path),
                  "size": os.path.getsize(path), "version": version, "platform": tag,
                  "platform_reason": record["platform_reason"]},
        "addon": info,
        "host": {"machine": platform.machine(), "python": platform.python_version()},
    }
    with open(path + ".manifest.json", "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    return path


# --------------------------------------------------------------------------- API

def resolve_headers(torch_version=None, arch=None, headers_from=None, python=None,
                    allow_unpinned=False):
    """The TorchHeaders to build against (see build_addon)."""
    if isinstance(headers_from, TorchHeaders):
        headers = headers_from
    elif headers_from:
        if os.path.isdir(headers_from):
            headers = addon_headers.from_torch_dir(headers_from)
        elif headers_from.endswith(".whl") and os.path.isfile(headers_from):
            headers = addon_headers.from_wheel(headers_from)
        else:
            raise HeadersError("--headers-from %s: neither a torch package directory nor a "
                               "torch wheel file" % headers_from)
    elif torch_version:
        headers = addon_headers.official(torch_version, arch or platform.machine(),
                                         allow_unpinned=allow_unpinned)
    else:
        headers = addon_headers.installed_torch(python)
    if torch_version and headers.release != torch_version:
        raise HeadersError("--torch %s, but the headers are torch %s (%s)"
                           % (torch_version, headers.version, headers.origin))
    if arch and headers.arch != arch:
        if headers_from and not torch_version:
            # headers are text: an x86 build against an aarch64 wheel's headers (or back)
            headers = TorchHeaders(headers.version, headers.git_version, headers.cxx11_abi,
                                   arch, headers.include_dirs, headers.cxx_std,
                                   headers.exports, headers.origin + " (headers of a %s build)"
                                   % headers.arch, headers.wheel, headers.wheel_sha256)
        else:
            raise HeadersError("--arch %s, but torch %s (%s) is %s" % (
                arch, headers.version, headers.origin, headers.arch))
    return headers


def build_addon(torch_version=None, arch=None, out_dir=None, headers_from=None, python=None,
                cxx=None, capabilities=None, jobs=None, allow_unpinned=False, force=False,
                quiet=False, verbose=False):
    """Build the add-on wheel; returns its path (manifest beside it).

    torch_version=None, headers_from=None: against the torch `python` (default: this
    interpreter) imports. torch_version="2.8.0": against the official wheel's headers for
    `arch` (default: this machine's), downloaded and checked against its pin.
    headers_from: a torch package directory, a torch wheel file or a TorchHeaders.
    capabilities: a subset of CAPABILITIES[arch] (DEFAULT required); default all.
    """
    headers = resolve_headers(torch_version, arch, headers_from, python, allow_unpinned)
    so, record = build_library(headers, cxx=cxx, capabilities=capabilities, jobs=jobs,
                               force=force, quiet=quiet, verbose=verbose)
    path = write_wheel(so, record, out_dir or DEFAULT_OUT, headers)
    log("wheel: %s (%s)" % (path, record["platform_reason"]), quiet)
    return path


def build_matrix(out_dir, jobs=None, allow_unpinned=False, quiet=False, verbose=False):
    """Every (version, arch) of addon_headers.MATRIX; returns [(version, arch, wheel or None,
    error or None)] (a failure does not stop the others)."""
    results = []
    for version, arch in addon_headers.MATRIX:
        try:
            wheel = build_addon(version, arch, out_dir=out_dir, jobs=jobs,
                                allow_unpinned=allow_unpinned, quiet=quiet, verbose=verbose)
            results.append((version, arch, wheel, None))
        except (HeadersError, AddonBuildError) as e:
            results.append((version, arch, None, str(e).splitlines()[0]))
    return results


def install_wheel(wheel, python=None):
    """pip install the wheel (no dependencies: it declares none) into python's environment."""
    cmd = [python or sys.executable, "-m", "pip", "install", "--no-deps", "--force-reinstall",
           wheel]
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)


# --------------------------------------------------------------------------- CLI

def build_parser():
    p = argparse.ArgumentParser(
        prog="python build.py addon",
        description="Build the add-on wheel torch-grouped-conv: installed next to a torch, it "
                    "makes every grouped/depthwise CPU convolution ONE kernel call at `import "
                    "torch` (entry point group torch.backends). Default: against the torch "
                    "this Python imports. The last line printed is the wheel's path.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--torch", metavar="X.Y.Z",
                     help="build against the official torch X.Y.Z wheel's headers (downloaded "
                          "with pip --platform, checked against recipe/addon_headers.py's pin)")
    src.add_argument("--headers-from", metavar="PATH",
                     help="a torch package directory (site-packages/torch) or a torch wheel")
    src.add_argument("--matrix", action="store_true",
                     help="build every pinned torch version x arch (recipe/addon_headers.py)")
    p.add_argument("--arch", choices=sorted(CAPABILITIES),
                   help="target architecture (default: this machine's; cross compilers: "
                        "aarch64-linux-gnu-g++ / x86_64-linux-gnu-g++)")
    p.add_argument("--out", default=None, help="output folder (default: wheels/)")
    p.add_argument("--install", action="store_true",
                   help="pip install the wheel into this Python's environment afterwards")
    p.add_argument("--python", default=None,
                   help="interpreter whose torch to build against / install into "
                        "(default: this one)")
    p.add_argument("--cxx", default=None, help="C++ compiler (default: $CXX, g++ or the "
                                               "cross compiler for --arch)")
    p.add_argument("--jobs", type=int, default=None, help="parallel compiles (default: CPUs)")
    p.add_argument("--allow-unpinned", action="store_true",
                   help="--torch/--matrix: download a version without a pin (its sha256 is "
                        "recorded and printed)")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.install and (args.matrix or args.torch or args.headers_from or args.arch):
        print("error: --install goes with a build against the installed torch (no --torch, "
              "--headers-from, --matrix or --arch)", file=sys.stderr)
        return 2
    out = args.out or DEFAULT_OUT
    if args.matrix:
        results = build_matrix(out, jobs=args.jobs, allow_unpinned=args.allow_unpinned,
                               verbose=args.verbose)
        for (version, arch), reason in sorted(addon_headers.UNSUPPORTED.items()):
            print("torch %-7s %-8s NOT SUPPORTED: %s" % (version, arch, reason))
        for version, arch, wheel, error in results:
            print("torch %-7s %-8s %s" % (version, arch, wheel or "FAILED: " + error))
        return 1 if any(e for _, _, _, e in results) else 0
    wheel = build_addon(args.torch, args.arch, out, args.headers_from, args.python,
                        cxx=args.cxx, jobs=args.jobs, allow_unpinned=args.allow_unpinned,
                        force=args.force, verbose=args.verbose)
    if args.install:
        rc = install_wheel(wheel, args.python)
        if rc != 0:
            print("error: pip install of %s failed (exit %d)" % (wheel, rc), file=sys.stderr)
            return 1
        subprocess.call([args.python or sys.executable, "-m", PACKAGE])
    print(wheel)
    return 0

