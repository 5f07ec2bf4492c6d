"""The torch an add-on is built against: its headers, version, commit, C++ ABI and exports.

Three sources, one result (`TorchHeaders`):

* `installed_torch(python)`: the torch that `python` imports (any origin: PyPI, NVIDIA's
  ``2.5.0a0+...nv24.08``, Debian's, a build of this recipe). Read in a subprocess with
  autoloading off, so an add-on already installed there changes nothing.
* `from_torch_dir(path)`: an unpacked torch package (e.g. the aarch64 torch of the emulation
  root filesystem).
* `official(version, arch)`: the official wheel for that version and architecture, downloaded
  once with ``pip download --platform`` (the machine's ordinary pip and index), checked
  against the pin in `HEADER_WHEELS` (file name, size, sha256) and cached under
  ``recipe.cache_dir("addon", "wheels")``; only ``torch/include`` and a few small files are
  unpacked (``recipe.cache_dir("addon", "headers", ...)``) plus the list of symbols its
  libtorch_cpu / libc10 / libgomp export (what the add-on may use).

`HEADER_WHEELS` and `MATRIX` are the data of `build.py addon --matrix`: one pin per
(torch version, arch). A version without a pin is refused (``--allow-unpinned`` downloads it
anyway, records its sha256 in the build manifest and prints the pin line to add here).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

from recipe.log import logger
from recipe import download, locks
from recipe.errors import EXIT_MISSING, BadInput
from recipe.hashing import sha256_file
from recipe import cache_dir

ARCHES = ("aarch64", "x86_64")
WHEEL_PYTHON = "3.11"  # any CPython the wheel exists for: the headers do not depend on it
# pip download --platform for an unpinned version (a pin uses its file name's own tags).
WHEEL_PLATFORMS = {"aarch64": ("manylinux_2_28_aarch64", "manylinux2014_aarch64"),
                   "x86_64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64",
                              "manylinux1_x86_64")}

# (torch version, arch) -> (requirement, wheel file, size, sha256): the official wheels the
# prebuilt add-ons are compiled against, the latest patch of every minor release 2.5 ... 2.14
# (what `pip download torch==X --platform ...` serves, looked up late 2026; cp311: the headers
# do not depend on the Python). aarch64: CPU builds up to 2.10, CUDA 13 builds (+cu130) from
# 2.11. x86_64: CUDA builds (+cu124 ... +cu130, 0.5-0.9 GB), except 2.13.0 where the CPU-only
# build (same headers, a fraction of the download) is the one this machine's tests run. C++
# ABI: 2.5.1 (both arches) and 2.6.0 x86_64 are pre-C++11-ABI builds.
HEADER_WHEELS = {
    ("2.5.1", "aarch64"): (
        "torch==2.5.1", "torch-2.5.1-cp311-cp311-manylinux2014_aarch64.whl", 91919450,
        "340ce0432cad0d37f5a31be666896e16788f1adf8ad7be481196b503dad675b9"),
    ("2.6.0", "aarch64"): (
        "torch==2.6.0", "torch-2.6.0-cp311-cp311-manylinux_2_28_aarch64.whl", 95759416,
        "ccbd0320411fe1a3b3fec7b4d3185aa7d0c52adac94480ab024b5c8f74a0bf1d"),
    # JetPack 5's torch lines (NVIDIA's 2.0.0 / 2.1.0 wheels for Python 3.8); PyPI's 2.0.1 and
    # 2.1.2 aarch64 wheels are manylinux2014 (cp38-cp311), their C++ ABI the old one.
    ("2.0.1", "aarch64"): (
        "torch==2.0.1", "torch-2.0.1-cp311-cp311-manylinux2014_aarch64.whl", 74042514,
        "b6019b1de4978e96daa21d6a3ebb41e88a0b474898fe251fd96189587408873e"),
    ("2.1.2", "aarch64"): (
        "torch==2.1.2", "torch-2.1.2-cp311-cp311-manylinux2014_aarch64.whl", 84149869,
        "8f32ce591616a30304f37a7d5ea80b69ca9e1b94bba7f308184bf616fdaea155"),
    ("2.7.1", "aarch64"): (
        "torch==2.7.1", "torch-2.7.1-cp311-cp311-manylinux_2_28_aarch64.whl", 99093039,
        "236f501f2e383f1cb861337bdf057712182f910f10aeaf509065d54d339e49b2"),
    ("2.8.0", "aarch64"): (
        "torch==2.8.0", "torch-2.8.0-cp311-cp311-manylinux_2_28_aarch64.whl", 102073391,
        "220a06fd7af8b653c35d359dfe1aaf32f65aa85befa342629f716acb134b9710"),
    ("2.9.1", "aarch64"): (
        "torch==2.9.1", "torch-2.9.1-cp311-cp311-manylinux_2_28_aarch64.whl", 104220430,
        "62b3fd888277946918cba4478cf849303da5359f0fb4e3bfb86b0533ba2eaf8d"),
    ("2.10.0", "aarch64"): (
        "torch==2.10.0", "torch-2.10.0-cp311-cp311-manylinux_2_28_aarch64.whl", 145992610,
        "3282d9febd1e4e476630a099692b44fdc214ee9bf8ee5377732d9d9dfe5712e4"),
    ("2.11.0", "aarch64"): (
        "torch==2.11.0", "torch-2.11.0-cp311-cp311-manylinux_2_28_aarch64.whl", 419718178,
        "d91aac77f24082809d2c5a93f52a5f085032740a1ebc9252a7b052ef5a4fddc6"),
    ("2.12.1", "aarch64"): (
        "torch==2.12.1", "torch-2.12.1-cp311-cp311-manylinux_2_28_aarch64.whl", 426379894,
        "107df6888624bdea41508f9aeb6149d9333c737a5530ceecb56c904e811369ae"),
    ("2.13.0", "aarch64"): (
        "torch==2.13.0", "torch-2.13.0-cp311-cp311-manylinux_2_28_aarch64.whl", 427199369,
        "092790c696a760c729fd5722835f50b9d81fd7c8f141571f3f3cf4081a8f664c"),
    ("2.14.1", "aarch64"): (
        "torch==2.14.1", "torch-2.14.1-cp311-cp311-manylinux_2_28_aarch64.whl", 453982557,
        "ef1276fd07adb8d463ac402a24ea7482e45c9a42df8ebdac211aa757779200ba"),
    ("2.5.1", "x86_64"): (
        "torch==2.5.1", "torch-2.5.1-cp311-cp311-manylinux1_x86_64.whl", 906474467,
        "de5b7d6740c4b636ef4db92be922f0edc425b65ed78c5076c43c42d362a45457"),
    ("2.6.0", "x86_64"): (
        "torch==2.6.0", "torch-2.6.0-cp311-cp311-manylinux1_x86_64.whl", 766715424,
        "7979834102cd5b7a43cc64e87f2f3b14bd0e1458f06e9f88ffa386d07c7446e1"),
    ("2.7.1", "x86_64"): (
        "torch==2.7.1", "torch-2.7.1-cp311-cp311-manylinux_2_28_x86_64.whl", 821174704,
        "06eea61f859436622e78dd0cdd51dbc8f8c6d76917a9cf0555a333f9eac31ec1"),
    ("2.8.0", "x86_64"): (
        "torch==2.8.0", "torch-2.8.0-cp311-cp311-manylinux_2_28_x86_64.whl", 888063640,
        "c12fa219f51a933d5f80eeb3a7a5d0cbe9168c0a14bbb4055f1979431660879b"),
    ("2.9.1", "x86_64"): (
        "torch==2.9.1", "torch-2.9.1-cp311-cp311-manylinux_2_28_x86_64.whl", 899821446,
        "d033ff0ac3f5400df862a51bdde9bad83561f3739ea0046e68f5401ebfa67c1b"),
    # build tag 3: the file PyPI serves for 2.10.0 x86_64 cp311 (re-uploaded)
    ("2.10.0", "x86_64"): (
        "torch==2.10.0", "torch-2.10.0-3-cp311-cp311-manylinux_2_28_x86_64.whl", 915518691,
        "ac5bdcbb074384c66fa160c15b1ead77839e3fe7ed117d667249afce0acabfac"),
    ("2.11.0", "x86_64"): (
        "torch==2.11.0", "torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl", 530604548,
        "7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a"),
    ("2.12.1", "x86_64"): (
        "torch==2.12.1", "torch-2.12.1-cp311-cp311-manylinux_2_28_x86_64.whl", 532169264,
        "6e29e7e74d05bda7d955c75e99459f878ebd970ef851b4057edbd3b34a5eb4a3"),
    ("2.13.0", "x86_64"): (
        "torch==2.13.0+cpu", "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
        191794682, "6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b"),
    ("2.14.1", "x86_64"): (
        "torch==2.14.1", "torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl", 554581699,
        "305a61f61f35f128579f299c5bd33d475f6a01c6307336139632e30856c4854d"),
}
# Other official builds of a pinned version (checked for the symbols a prebuilt add-on needs,
# never built against): PyPI's CUDA build of 2.13.0 x86_64 beside the CPU build above.
OTHER_BUILDS = {
    ("2.13.0", "x86_64"): (
        "torch==2.13.0", "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl", 526574961,
        "60fcdcb2f3876e21146cb4524ef06397d727ca9ad5f020818547e25075fe3cb7"),
}
# Wheels larger than this are deleted once their headers and export list are unpacked (the
# CUDA builds; the unpacked part is all a build needs). Smaller ones stay for the emulation.
KEEP_WHEEL_BYTES = 200 * 1000 * 1000
# What `build.py addon --matrix` builds, and the versions named as not buildable (with why).
MATRIX = tuple(sorted(HEADER_WHEELS, key=lambda k: (tuple(int(x) for x in k[0].split(".")),
                                                     k[1])))
UNSUPPORTED = {}  # (version, arch) -> reason

# Files of a torch package the build reads besides include/ (small).
_META_FILES = ("torch/version.py", "torch/utils/cpp_extension.py",
               "torch/share/cmake/Torch/TorchConfig.cmake")
# Libraries whose exports an add-on may import (libgomp: torch's own OpenMP runtime).
_EXPORTING_LIBS = re.compile(r"^(libtorch_cpu|libc10|libgomp[^/]*)\.so")
_ELF_MACHINES = {0xB7: "aarch64", 0x3E: "x86_64"}
EXPORTS_FILE = "exports.txt"


class HeadersError(BadInput):
    """No usable torch to build against (a wrong --torch/--arch, no pinned wheel, headers
    that do not match); the message says what to do. Exit status 2."""


class TorchNotImportable(HeadersError):
    """No torch to build against: a missing prerequisite (exit status 3, README)."""
    exit_code = EXIT_MISSING


log = logger("addon")


class TorchHeaders(object):
    """Everything the build needs to know about one torch (see module docstring)."""

    def __init__(self, version, git_version, cxx11_abi, arch, include_dirs, cxx_std, exports,
                 origin, wheel=None, wheel_sha256=None):
        self.version = version              # torch.__version__, e.g. "2.6.0+cpu"
        self.git_version = git_version      # torch.version.git_version
        self.cxx11_abi = int(cxx11_abi)     # _GLIBCXX_USE_CXX11_ABI
        self.arch = arch                    # "aarch64" | "x86_64"
        self.include_dirs = list(include_dirs)
        self.cxx_std = cxx_std              # "c++17" | "c++20"
        self.exports = exports              # path of a sorted symbol list (EXPORTS_FILE)
        self.origin = origin                # "installed: /path" | "wheel: file" | "dir: /path"
        self.wheel = wheel
        self.wheel_sha256 = wheel_sha256

    @property
    def release(self):
        """'2.6.0' of '2.6.0+cpu', '2.5.0' of '2.5.0a0+872d972e41.nv24.08'."""
        return release_of(self.version)

    def to_dict(self):
        return {"version": self.version, "release": self.release,
                "git_version": self.git_version, "cxx11_abi": self.cxx11_abi,
                "arch": self.arch, "cxx_std": self.cxx_std, "origin": self.origin,
                "wheel": self.wheel, "wheel_sha256": self.wheel_sha256}

    def exported_symbols(self):
        with open(self.exports) as f:
            return set(f.read().split())

    def __repr__(self):
        return "TorchHeaders(%s, %s, abi %d, %s)" % (self.version, self.arch, self.cxx11_abi,
                                                     self.origin)


def release_of(version):
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)", version or "")
    if not m:
        m = re.match(r"^(\d+)\.(\d+)", version or "")
        return "%s.%s.0" % m.groups() if m else (version or "")
    return "%s.%s.%s" % m.groups()



def elf_arch(path):
    """'aarch64' / 'x86_64' from an ELF file's header, None if it is not one of those."""
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF" or len(head) < 20:
        return None
    endian = "<" if head[5] == 1 else ">"
    return _ELF_MACHINES.get(struct.unpack(endian + "H", head[18:20])[0])


def dynamic_symbols(path):
    """[(name, version or '', defined, weak)] of an ELF file's dynamic symbol table
    (readelf, which reads any architecture's ELF)."""
    exe = shutil.which("readelf")
    if exe is None:
        raise HeadersError("readelf not found (apt-get install binutils)")
    r = subprocess.run([exe, "-W", "--dyn-syms", path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    if r.returncode != 0:
        raise HeadersError("readelf %s failed: %s" % (path, r.stderr.strip()))
    out = []
    for line in r.stdout.splitlines():
        parts = line.split()
        # Num: Value Size Type Bind Vis Ndx Name [(n)]
        if len(parts) < 8 or not parts[0].endswith(":") or not parts[0][:-1].isdigit():
            continue
        typ, bind, ndx, name = parts[3], parts[4], parts[6], parts[7]
        if not name or typ in ("FILE", "SECTION"):
            continue
        version = ""
        if "@" in name:
            name, _, version = name.partition("@")
            version = version.lstrip("@")
        out.append((name, version, ndx != "UND", bind == "WEAK"))
    return out


def _write_exports(libs, dest):
    names = set()
    for lib in libs:
        names.update(n for n, _, defined, _ in dynamic_symbols(lib) if defined)
    tmp = dest + ".tmp-%d" % os.getpid()
    with open(tmp, "w") as f:
        f.write("\n".join(sorted(names)) + "\n")
    os.replace(tmp, dest)


def cxx_standard(cpp_extension_py):
    """The C++ standard torch's own extension builder passes (``cpp_flag_prefix + 'c++NN'``
    in torch/utils/cpp_extension.py): c++17 up to 2.11, c++20 from 2.12. (A docstring there
    shows ``-std=c++20`` from 2.7 on: not a guide.)"""
    try:
        with open(cpp_extension_py) as f:
            text = f.read()
    except OSError:
        return "c++17"
    m = re.search(r"cpp_flag_prefix \+ '(c\+\+\d+)'", text)
    return m.group(1) if m else "c++17"


def _abi_from_cmake(torch_cmake):
    try:
        with open(torch_cmake) as f:
            return 0 if "_GLIBCXX_USE_CXX11_ABI=0" in f.read() else 1
    except OSError:
        return 1


def _version_py(path):
    text = open(path).read()
    version = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)", text, re.M)
    git = re.search(r"^git_version\s*=\s*['\"]([^'\"]+)", text, re.M)
    if not version:
        raise HeadersError("%s has no __version__" % path)
    return version.group(1), git.group(1) if git else None


def _include_dirs(include):
    return [include, os.path.join(include, "torch", "csrc", "api", "include")]


# --------------------------------------------------------------------------- installed

_PROBE = r"""
import json, os, platform, sys
import torch
libs = []
with open("/proc/self/maps") as f:
    for line in f:
        p = line.split(None, 5)[-1].strip() if line.count(" ") >= 5 else ""
        if p.startswith("/") and p not in libs:
            libs.append(p)
from torch.utils import cpp_extension
print("TORCH_FACTS " + json.dumps({
    "version": torch.__version__, "git_version": torch.version.git_version,
    "cxx11_abi": int(bool(torch._C._GLIBCXX_USE_CXX11_ABI)), "arch": platform.machine(),
    "root": os.path.dirname(os.path.abspath(torch.__file__)),
    "include": cpp_extension.include_paths(), "cpp_extension": cpp_extension.__file__,
    "libs": libs}))
"""


def probe_env():
    """Environment that imports torch without any autoloaded add-on."""
    env = dict(os.environ)
    env["TORCH_DEVICE_BACKEND_AUTOLOAD"] = "0"
    env["TORCH_GROUPED_CONV"] = "0"
    return env


def installed_facts(python=None):
    """{version, git_version, cxx11_abi, arch, root, include, libs} of python's torch."""
    python = python or sys.executable
    r = subprocess.run([python, "-c", _PROBE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, env=probe_env(), timeout=600)
    lines = [l for l in r.stdout.splitlines() if l.startswith("TORCH_FACTS ")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise TorchNotImportable("%s cannot import torch (%s): install torch first, or build against "
                           "an official wheel with --torch X.Y.Z --arch ARCH" % (python, tail))
    return json.loads(lines[-1][len("TORCH_FACTS "):])


def installed_torch(python=None):
    facts = installed_facts(python)
    libs = [p for p in facts["libs"] if _EXPORTING_LIBS.match(os.path.basename(p))]
    if not any(os.path.basename(p).startswith("libtorch_cpu") for p in libs):
        raise HeadersError("torch %s at %s: libtorch_cpu is not among the libraries its import "
                           "loaded" % (facts["version"], facts["root"]))
    include = [d for d in facts["include"] if os.path.isdir(d)]
    if not any(os.path.exists(os.path.join(d, "ATen", "ATen.h")) for d in include):
        raise HeadersError("torch %s at %s ships no C++ headers (ATen/ATen.h): install its "
                           "development files (e.g. Debian: libtorch-dev), or build against the "
                           "official wheel's headers with --torch %s --arch %s"
                           % (facts["version"], facts["root"], release_of(facts["version"]),
                              facts["arch"]))
    exports = _cached_exports(libs)
    return TorchHeaders(facts["version"], facts["git_version"], facts["cxx11_abi"],
                        facts["arch"], include, cxx_standard(facts["cpp_extension"]), exports,
                        "installed: %s" % facts["root"])


def _cached_exports(libs):
    """Export list of these libraries, cached by their paths, sizes and mtimes."""
    import hashlib
    key = hashlib.sha256(json.dumps(
        [(os.path.realpath(p), os.path.getsize(p), int(os.path.getmtime(p))) for p in libs]
    ).encode()).hexdigest()[:24]
    dest = cache_dir("addon", "exports", key + ".txt")
    if not os.path.exists(dest):
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        _write_exports(libs, dest)
    return dest


# --------------------------------------------------------------------------- a torch dir

def from_torch_dir(torch_dir):
    """An unpacked torch package directory (site-packages/torch)."""
    torch_dir = os.path.abspath(torch_dir)
    vpy = os.path.join(torch_dir, "version.py")
    if not os.path.exists(vpy) or not os.path.isdir(os.path.join(torch_dir, "include")):
        raise HeadersError("%s is not a torch package directory (no version.py / include/)"
                           % torch_dir)
    version, git = _version_py(vpy)
    libdir = os.path.join(torch_dir, "lib")
    libs = [os.path.join(libdir, f) for f in sorted(os.listdir(libdir))
            if _EXPORTING_LIBS.match(f)]
    dot_libs = os.path.join(os.path.dirname(torch_dir), "torch.libs")
    if os.path.isdir(dot_libs):
        libs += [os.path.join(dot_libs, f) for f in sorted(os.listdir(dot_libs))
                 if f.startswith("libgomp")]
    cpu = [p for p in libs if os.path.basename(p).startswith("libtorch_cpu")]
    if not cpu:
        raise HeadersError("%s has no lib/libtorch_cpu.so" % torch_dir)
    return TorchHeaders(version, git, _abi_from_cmake(os.path.join(
        torch_dir, "share", "cmake", "Torch", "TorchConfig.cmake")), elf_arch(cpu[0]),
        _include_dirs(os.path.join(torch_dir, "include")),
        cxx_standard(os.path.join(torch_dir, "utils", "cpp_extension.py")),
        _cached_exports(libs), "dir: %s" % torch_dir)


# --------------------------------------------------------------------------- a wheel

def _wheel_name_facts(filename):
    """(version part of the file name, arch) of a torch wheel file name."""
    m = re.match(r"^torch-([^-]+)-[^-]+-[^-]+-(.+)\.whl$", filename)
    if not m:
        raise HeadersError("%s is not a torch wheel file name" % filename)
    arch = next((a for a in ARCHES if m.group(2).endswith(a)), None)
    if arch is None:
        raise HeadersError("%s: platform %s is none of %s" % (filename, m.group(2),
                                                             ", ".join(ARCHES)))
    return m.group(1), arch


def _headers_root(filename, digest):
    version, arch = _wheel_name_facts(filename)
    return cache_dir("addon", "headers", "torch-%s-%s-%s" % (version, arch, digest[:12]))


def _unpacked(root):
    return os.path.exists(os.path.join(root, ".complete"))


def from_wheel(wheel, sha256=None):
    """A torch wheel file: headers and export list unpacked once (cached by the wheel's
    sha256)."""
    wheel = os.path.abspath(wheel)
    digest = sha256 or sha256_file(wheel)
    root = _headers_root(os.path.basename(wheel), digest)
    if not _unpacked(root):
        with locks.waiting(cache_dir("addon", ".headers.lock")):
            if not _unpacked(root):
                _unpack_wheel(wheel, root)
    return _from_unpacked(root, os.path.basename(wheel), digest)


def _from_unpacked(root, filename, digest):
    torch_dir = os.path.join(root, "torch")
    version, git = _version_py(os.path.join(torch_dir, "version.py"))
    return TorchHeaders(version, git, _abi_from_cmake(os.path.join(
        torch_dir, "share", "cmake", "Torch", "TorchConfig.cmake")),
        _wheel_name_facts(filename)[1], _include_dirs(os.path.join(torch_dir, "include")),
        cxx_standard(os.path.join(torch_dir, "utils", "cpp_extension.py")),
        os.path.join(root, EXPORTS_FILE), "wheel: %s" % filename,
        wheel=filename, wheel_sha256=digest)


def _unpack_wheel(wheel, root):
    log("unpacking the headers of %s" % os.path.basename(wheel))
    tmp = root + ".tmp-%d" % os.getpid()
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        with zipfile.ZipFile(wheel) as z:
            names = z.namelist()
            z.extractall(tmp, [n for n in names
                               if n.startswith("torch/include/") or n in _META_FILES])
            libs = [n for n in names
                    if re.match(r"^torch(/lib|\.libs)/[^/]+$", n)
                    and _EXPORTING_LIBS.match(os.path.basename(n))]
            if not any(os.path.basename(n).startswith("libtorch_cpu") for n in libs):
                raise HeadersError("%s has no torch/lib/libtorch_cpu.so" % wheel)
            with tempfile.TemporaryDirectory(dir=os.path.dirname(root)) as scratch:
                paths = []
                for n in libs:  # only their symbol tables are kept
                    z.extract(n, scratch)
                    paths.append(os.path.join(scratch, n))
                _write_exports(paths, os.path.join(tmp, EXPORTS_FILE))
        open(os.path.join(tmp, ".complete"), "w").close()
        shutil.rmtree(root, ignore_errors=True)
        os.rename(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- official wheels

def wheel_dir():
    return cache_dir("addon", "wheels")


def pin_line(version, arch, requirement, filename, size, sha):
    return "    (%r, %r): (\n        %r, %r, %d,\n        %r)," % (
        version, arch, requirement, filename, size, sha)


def official(version, arch, allow_unpinned=False):
    """TorchHeaders of the official torch `version` wheel for `arch` (downloaded, verified)."""
    if arch not in ARCHES:
        raise HeadersError("--arch %r: use one of %s" % (arch, ", ".join(ARCHES)))
    if not re.match(r"^\d+\.\d+\.\d+$", version or ""):
        raise HeadersError("--torch %r: give a release X.Y.Z, e.g. 2.8.0" % version)
    pin = HEADER_WHEELS.get((version, arch))
    if pin is None and not allow_unpinned:
        have = ", ".join("%s/%s" % k for k in sorted(HEADER_WHEELS)) or "none"
        raise HeadersError(
            "no pinned official wheel for torch %s %s in recipe/addon_headers.py (pinned: %s). "
            "Pass --allow-unpinned to download it anyway (its sha256 is recorded in the "
            "manifest and printed as the pin to add)" % (version, arch, have))
    if pin is not None:
        return pinned_wheel_headers(pin)
    path = _pip_download("torch==%s" % version, arch, None)
    sha = sha256_file(path)
    log("UNPINNED download %s, sha256 %s; add to HEADER_WHEELS in recipe/addon_headers.py:\n%s"
        % (os.path.basename(path), sha, pin_line(version, arch, "torch==%s" % version,
                                                 os.path.basename(path),
                                                 os.path.getsize(path), sha)))
    return from_wheel(path, sha)


def pinned_wheel_headers(pin):
    """TorchHeaders of a pinned wheel (requirement, file, size, sha256): from its unpacked
    headers when they are cached, else downloaded (once), verified and unpacked; a wheel
    larger than KEEP_WHEEL_BYTES is deleted after unpacking."""
    requirement, filename, size, sha = pin
    root = _headers_root(filename, sha)
    if _unpacked(root):
        return _from_unpacked(root, filename, sha)
    path = os.path.join(wheel_dir(), filename)
    if not (os.path.isfile(path) and os.path.getsize(path) == size and sha256_file(path) == sha):
        arch = _wheel_name_facts(filename)[1]
        path = _pip_download(requirement, arch, sha, _file_platforms(filename))
        if os.path.basename(path) != filename or os.path.getsize(path) != size or \
                sha256_file(path) != sha:
            os.unlink(path)
            raise HeadersError("the downloaded %s does not match the pin (%s, %d bytes, "
                               "sha256 %s)" % (os.path.basename(path), filename, size, sha))
    headers = from_wheel(path, sha)
    if size > KEEP_WHEEL_BYTES and os.path.dirname(path) == wheel_dir():
        os.unlink(path)
    return headers


def _file_platforms(filename):
    """The platform tags of a wheel file name ("manylinux2014_aarch64.manylinux_2_17_...")."""
    return tuple(filename[:-len(".whl")].split("-")[-1].split("."))


def _pip_download(requirement, arch, sha, platforms=None):
    """pip download of one torch wheel for `arch` into wheel_dir(); returns its path. With a
    sha256 (--require-hashes) pip takes exactly that file, even where another build of the
    same version lies in a local find-links folder (e.g. 2.13.0+cpu beside PyPI's 2.13.0)."""
    platforms = platforms or WHEEL_PLATFORMS[arch]
    log("downloading %s for %s (pip download --platform %s)"
        % (requirement, arch, " ".join(platforms)))
    try:
        path, = download.pip_download([(requirement, sha)], wheel_dir(), platforms, WHEEL_PYTHON)
    except download.DownloadError as e:
        raise HeadersError(str(e))
    return path
