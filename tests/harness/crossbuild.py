"""Compile checks and graft libraries against the official torch 2.6.0 aarch64 wheel.

Two helpers for tests (no CMake, one compiler call each):

* `compile_check(tu, arch, include_dirs, defines)` compiles ONE translation unit of
  libtorch_cpu the way the real 2.6.0 build does (same defines, C++17), for ``aarch64``
  (Debian's ``aarch64-linux-gnu-g++``) or ``x86_64`` (host ``g++``), and returns a
  `CompileResult` (``.ok``, ``.output`` with GCC's ``file:line:`` diagnostics).
* `build_graft(sources, out_so, arch, torch_site)` builds a shared library linked against
  the wheel's ``libtorch_cpu``/``libc10`` with an rpath to the wheel's ``torch/lib`` as seen
  INSIDE the emulation rootfs, for ``torch.ops.load_library`` under qemu.

Headers (include order, first wins):
 1. the caller's ``include_dirs``;
 2. the (patched) source tree: ``<tree>/aten/src`` then ``<tree>`` (c10/, torch/), when
    ``source_tree`` is given: patched headers shadow the wheel's copies;
 3. the official 2.6.0 aarch64 wheel's ``torch/include`` and
    ``torch/include/torch/csrc/api/include``: the generated headers the Debian tree lacks
    (ATen/ops/*, ATen/Config.h, c10/macros/cmake_macros.h, ...) and third-party C headers
    the wheel ships. ``xnnpack.h`` comes from here: it is byte-identical to Debian trixie's
    libxnnpack-dev 0.0~git20241108.4ea82e5-2 header, i.e. XNNPACK commit 4ea82e5, the
    commit torch 2.6.0 pins (Debian's pytorch 2.6.0 build-depends on exactly that);
    the wheel copy is used so nothing extra is downloaded and it is the build's own.
    The SAME headers are used for x86_64 checks: they are arch-independent text
    (Config.h then says MKLDNN+ACL on, MKL off, which is the configuration this recipe
    builds; an x86 2.6.0 wheel from the index is the ~760 MB CUDA build: not worth it).
 4. ``extra_headers(arch)``: oneDNN and ideep C++ headers (and fmt, for torch/csrc TUs
    such as Module.cpp), which the wheel lacks (its
    ``dnnl.h`` only forwards to ``oneapi/dnnl/dnnl.h``) but ``ATen/native/mkldnn/*.h`` need
    because the wheel's Config.h has ``AT_MKLDNN_ENABLED() 1``. Source: Debian trixie
    ``libdnnl-dev 3.7.2+ds-2`` (arm64 / amd64 build; they differ only in
    DNNL_EXPERIMENTAL_UKERNEL), ``libideep-dev 0.0~git20250115.9873ffc-2`` and
    ``libfmt-dev 10.1.1+ds1-4`` -- what Debian builds its pytorch 2.6.0 with (torch pins
    fmt 11). recipe/devheaders.py holds the same pins (amd64 dnnl for both arches). torch 2.6.0 itself pins oneDNN 3.5.3 + ideep
    "pytorch-rls-v3.5.3-2"; the mismatch is fine for compile checks (the API torch uses
    is the same; checked: Convolution.cpp, mkldnn/Conv.cpp compile) but these headers are
    NOT put on a graft's include path (a graft must not inline oneDNN 3.7 code against
    the wheel's 3.5.3).

Defines (`TORCH_CPU_DEFINES` and `ARCH_DEFINES`), and why:
 * From the official 2.6.0 aarch64 wheel's ``torch.__config__.show()`` CXX_FLAGS:
   ``_GLIBCXX_USE_CXX11_ABI=1`` (also TorchConfig.cmake and
   ``torch._C._GLIBCXX_USE_CXX11_ABI == True``), ``USE_PTHREADPOOL``, ``NDEBUG``,
   ``USE_KINETO LIBKINETO_NOCUPTI LIBKINETO_NOROCTRACER LIBKINETO_NOXPUPTI=ON``,
   ``USE_PYTORCH_QNNPACK``, ``USE_XNNPACK``, ``SYMBOLICATE_MOBILE_DEBUG_HANDLE``;
   aarch64 only: ``AT_BUILD_ARM_VEC256_WITH_SLEEF`` (CMakeLists.txt adds it for aarch64;
   it changes inline Vectorized<float> code to call the wheel's Sleef_* exports).
 * ``HAVE_SVE_CPU_DEFINITION HAVE_SVE256_CPU_DEFINITION`` (aarch64) /
   ``HAVE_AVX512_CPU_DEFINITION HAVE_AVX2_CPU_DEFINITION`` (x86_64): added by
   cmake/Codegen.cmake to CMAKE_CXX_FLAGS; they change DispatchStub's layout and the
   signature of ``DispatchStubImpl::get_call_ptr``. Checked: the 2.6.0 aarch64
   libtorch_cpu.so exports ``DispatchStub<...>::SVE256`` members and
   ``get_call_ptr(DeviceType, void*, void*)``, so grafts need them too for ABI match.
 * ``AT_PER_OPERATOR_HEADERS``: INTERFACE definition of ATEN_CPU_FILES_GEN_LIB
   (Codegen.cmake), which every torch_cpu TU links; the wheel ships ATen/ops/*.h.
 * ``CAFFE2_BUILD_MAIN_LIB``: torch_cpu PRIVATE (in-tree TUs only, not grafts).
 * ``USE_DISTRIBUTED USE_C10D_GLOO USE_RPC USE_TENSORPIPE``: torch_cpu PUBLIC; the wheel
   is built with distributed + gloo + tensorpipe.
 * Directory-wide add_definitions of the build (Dependencies.cmake, CMakeLists.txt):
   ``HAVE_MMAP=1 _FILE_OFFSET_BITS=64 HAVE_SHM_OPEN=1 HAVE_SHM_UNLINK=1
   HAVE_MALLOC_USABLE_SIZE=1 USE_EXTERNAL_MZCRC MINIZ_DISABLE_ZIP_READER_CRC32_CHECKS
   FLASHATTENTION_DISABLE_ALIBI ONNX_NAMESPACE=onnx_torch ONNX_ML=1 ONNXIFI_ENABLE_EXT=1``.
 * Per-capability kernels (``native/cpu/*.cpp``, ``native/quantized/cpu/kernels/*.cpp``,
   compiled once per capability by Codegen.cmake): ``CPU_CAPABILITY=X CPU_CAPABILITY_X``
   plus that capability's flags (SVE256: ``-march=armv8.2-a+sve -DCPU_CAPABILITY_SVE
   -msve-vector-bits=256``; AVX2/AVX512 likewise). Other TUs get no CPU_CAPABILITY.
 * NOT defined globally: ``TORCH_ASSERT_ONLY_METHOD_OPERATORS`` /
   ``TORCH_ASSERT_NO_OPERATORS`` -- files that want them #define them on their first line
   (CMake adds them only for ATen_CORE_SRCS / attention kernels); ``USE_FBGEMM`` (x86
   wheels have it, but its headers are not available and no ARM TU needs it).
 * Flags: ``-std=gnu++17 -fPIC`` and the build's error-level warnings
   (``-Werror=return-type -Werror=non-virtual-dtor -Werror=range-loop-construct
   -Werror=bool-operation -Werror=format``). Default mode compiles to an object
   (``-c -O2 -o /dev/null``, ~7 s for Convolution.cpp) so codegen-time errors (intrinsics,
   always_inline target mismatches) are caught; ``mode="syntax"`` uses ``-fsyntax-only``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile

from recipe.log import logger
from recipe import cache_dir
from recipe import locks
from tests.harness.emulation import EmulationError, debian_mirror, ensure_wheels, GUEST_SITE, WHEELS
from recipe.hashing import sha256_file

ARCHES = ("aarch64", "x86_64")
COMPILERS = {"aarch64": "aarch64-linux-gnu-g++", "x86_64": "g++"}
COMPILER_PACKAGES = {"aarch64": "g++-aarch64-linux-gnu", "x86_64": "g++"}

# Defines every libtorch_cpu TU gets in the real 2.6.0 build (see module docstring).
TORCH_CPU_DEFINES = (
    "_GLIBCXX_USE_CXX11_ABI=1",
    "USE_PTHREADPOOL", "NDEBUG",
    "USE_KINETO", "LIBKINETO_NOCUPTI", "LIBKINETO_NOROCTRACER", "LIBKINETO_NOXPUPTI=ON",
    "USE_PYTORCH_QNNPACK", "USE_XNNPACK", "SYMBOLICATE_MOBILE_DEBUG_HANDLE",
    "AT_PER_OPERATOR_HEADERS",
    "USE_DISTRIBUTED", "USE_C10D_GLOO", "USE_RPC", "USE_TENSORPIPE",
    "HAVE_MMAP=1", "_FILE_OFFSET_BITS=64", "HAVE_SHM_OPEN=1", "HAVE_SHM_UNLINK=1",
    "HAVE_MALLOC_USABLE_SIZE=1", "USE_EXTERNAL_MZCRC", "MINIZ_DISABLE_ZIP_READER_CRC32_CHECKS",
    "FLASHATTENTION_DISABLE_ALIBI", "ONNX_NAMESPACE=onnx_torch", "ONNX_ML=1",
    "ONNXIFI_ENABLE_EXT=1",
)
IN_TREE_DEFINES = ("CAFFE2_BUILD_MAIN_LIB",)
ARCH_DEFINES = {
    "aarch64": ("AT_BUILD_ARM_VEC256_WITH_SLEEF", "HAVE_SVE_CPU_DEFINITION",
                "HAVE_SVE256_CPU_DEFINITION"),
    "x86_64": ("HAVE_AVX512_CPU_DEFINITION", "HAVE_AVX2_CPU_DEFINITION"),
}
CAPABILITY_FLAGS = {
    ("aarch64", "DEFAULT"): [],
    ("aarch64", "SVE256"): ["-march=armv8.2-a+sve", "-DCPU_CAPABILITY_SVE",
                            "-msve-vector-bits=256"],
    ("x86_64", "DEFAULT"): [],
    ("x86_64", "AVX2"): ["-mavx2", "-mfma", "-mf16c", "-mno-avx256-split-unaligned-load",
                         "-mno-avx256-split-unaligned-store"],
    ("x86_64", "AVX512"): ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
}
WARNING_FLAGS = ("-Werror=return-type", "-Werror=non-virtual-dtor",
                 "-Werror=range-loop-construct", "-Werror=bool-operation", "-Werror=format")
# Graft defaults (FACTS §6 + the ABI-relevant subset of TORCH_CPU_DEFINES).
GRAFT_DEFINES = ("CPU_CAPABILITY=DEFAULT", "CPU_CAPABILITY_DEFAULT",
                 "_GLIBCXX_USE_CXX11_ABI=1", "USE_PTHREADPOOL", "NDEBUG", "USE_XNNPACK",
                 "AT_PER_OPERATOR_HEADERS")

# Debian trixie header packages: (file, pool dir, size, sha256); hashes checked against
# the signed trixie Packages index (apt-get download) when pinned.
HEADER_DEBS = {
    "ideep": ("libideep-dev_0.0~git20250115.9873ffc-2_all.deb", "pool/main/i/ideep/",
              49824, "e3edfbd98bbe9ec1b68b261db7609e25e8933f76bc73bca15330c52c515ebe79"),
    "dnnl-aarch64": ("libdnnl-dev_3.7.2+ds-2_arm64.deb", "pool/main/o/onednn/", 118248,
                     "41b2a0d1a89333539c8855abc59ef5a65881dd9e1eb6a8fdf29a197a4222d70e"),
    "dnnl-x86_64": ("libdnnl-dev_3.7.2+ds-2_amd64.deb", "pool/main/o/onednn/", 118268,
                    "0c91dae973a7ff0bdcd875a5dca0e4c02f77b8d8cfce5e5db4bd57bd869e040d"),
    "fmt-aarch64": ("libfmt-dev_10.1.1+ds1-4_arm64.deb", "pool/main/f/fmtlib/", 177208,
                    "152c61a233ba6ca27af31df8b631ea3a29f302066fdd494108868994dc179807"),
    "fmt-x86_64": ("libfmt-dev_10.1.1+ds1-4_amd64.deb", "pool/main/f/fmtlib/", 177208,
                   "c084df80e2842bc57157e8def529f4ca6bc8743d005550b56a5ef96c9bc92f0f"),
    # The wheel's sleef.h is its aarch64 build (NEON/SVE entry points only); the AVX2 and
    # AVX512 kernels of an x86 build need the x86 declarations (Sleef 3.6.x, as 2.6.0 pins).
    "sleef-x86_64": ("libsleef-dev_3.6.1-3_amd64.deb", "pool/main/s/sleef/", 30008,
                     "1a91fed471e9ae1d2c1e1e4ffc87eb362e74f40af74538692bfdf6f7d4a6fb21"),
}
# Headers that must win over the wheel's own copy, per arch (see sleef above).
FIRST_HEADERS = {"aarch64": (), "x86_64": ("x86_64-linux-gnu/sleef.h",)}


def _header_keys(arch):
    return ["ideep", "dnnl-" + arch, "fmt-" + arch] + (["sleef-x86_64"] if arch == "x86_64" else [])


def _header_debs(arch):
    return [HEADER_DEBS[k] for k in _header_keys(arch)]


class CrossBuildError(RuntimeError):
    pass


log = logger("crossbuild")


class CompileResult(object):
    """Outcome of one compiler run. Truthy when it succeeded."""

    def __init__(self, ok, returncode, cmd, output, seconds):
        self.ok = ok
        self.returncode = returncode
        self.cmd = cmd
        self.output = output        # compiler stdout + stderr (GCC: "file:line:col: error:")
        self.seconds = seconds

    def __bool__(self):
        return self.ok

    def command_line(self):
        return " ".join(_shell_quote(c) for c in self.cmd)

    def check(self):
        """Raise CrossBuildError with the command and diagnostics unless ok."""
        if not self.ok:
            raise CrossBuildError("compile failed (exit %s):\n$ %s\n%s"
                                  % (self.returncode, self.command_line(), self.output[-20000:]))
        return self

    def __repr__(self):
        return "CompileResult(ok=%r, returncode=%r, seconds=%.1f)" % (
            self.ok, self.returncode, self.seconds)


def _shell_quote(s):
    import shlex
    return shlex.quote(s)


def compiler(arch):
    """The C++ compiler for `arch`; raises CrossBuildError naming the package to install."""
    if arch not in COMPILERS:
        raise ValueError("arch must be one of %s, not %r" % (ARCHES, arch))
    exe = shutil.which(COMPILERS[arch])
    if exe is None:
        raise CrossBuildError("%s not found: apt-get install -y %s (or run "
                              "`python3 -m tests.harness.emulation setup`, which installs it)"
                              % (COMPILERS[arch], COMPILER_PACKAGES[arch]))
    return exe


# --------------------------------------------------------------------------- headers

def _torch_wheel():
    for req, fn, size, sha in WHEELS:
        if req.startswith("torch=="):
            return fn
    raise AssertionError("no torch wheel pinned")


def wheel_include():
    """`torch/include` of the official 2.6.0 aarch64 wheel, unpacked once from the verified
    wheel (no rootfs or qemu needed). Returns the include directory."""
    root = cache_dir("crossbuild", "torch-2.6.0-aarch64-headers")
    inc = os.path.join(root, "torch", "include")
    marker = os.path.join(root, ".complete")
    if os.path.exists(marker):
        return inc
    with locks.waiting(cache_dir("crossbuild", ".lock")):
        if os.path.exists(marker):
            return inc
        try:
            wheels = ensure_wheels()
        except EmulationError as e:
            raise CrossBuildError(str(e))
        whl = [w for w in wheels if os.path.basename(w) == _torch_wheel()][0]
        if os.path.exists(root):
            shutil.rmtree(root)
        tmp = root + ".tmp-%d" % os.getpid()
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        with zipfile.ZipFile(whl) as z:
            names = [n for n in z.namelist()
                     if n.startswith(("torch/include/", "torch/share/cmake/"))]
            z.extractall(tmp, names)
        open(os.path.join(tmp, ".complete"), "w").close()
        os.rename(tmp, root)
    return inc


def _fetch_deb(key, dest_dir):
    fn, pool, size, sha = HEADER_DEBS[key]
    return fetch_pool_file(fn, pool, size, sha, dest_dir)


def fetch_pool_file(fn, pool, size, sha, dest_dir):
    """A file of Debian's pool (this machine's mirror), verified by size + sha256, kept in
    dest_dir; returns its path. Raises CrossBuildError."""
    os.makedirs(dest_dir, exist_ok=True)
    path = os.path.join(dest_dir, fn)
    if os.path.exists(path) and os.path.getsize(path) == size and sha256_file(path) == sha:
        return path
    url = "%s/%s%s" % (debian_mirror(), pool, fn)
    tmp = path + ".part"
    try:
        with urllib.request.urlopen(url, timeout=120) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as e:
        raise CrossBuildError("cannot download %s: %s" % (url, e))
    if os.path.getsize(tmp) != size or sha256_file(tmp) != sha:
        os.unlink(tmp)
        raise CrossBuildError("%s does not match the pinned size/sha256" % url)
    os.replace(tmp, path)
    return path


def extra_headers(arch):
    """Directory with oneDNN + ideep (+ fmt) C++ headers from Debian trixie (see the
    module docstring); downloaded by pinned size/sha256, unpacked once, atomically."""
    if arch not in ARCHES:
        raise ValueError(arch)
    root = cache_dir("crossbuild", "extra-headers-" + arch)
    marker = os.path.join(root, ".complete")
    inc = os.path.join(root, "usr", "include")
    want = "\n".join(d[0] for d in _header_debs(arch)) + "\n"

    def done():
        try:
            with open(marker) as f:
                return f.read() == want
        except OSError:
            return False

    if done():
        return inc
    with locks.waiting(cache_dir("crossbuild", ".lock")):
        if done():
            return inc
        debdir = cache_dir("crossbuild", "debs")
        os.makedirs(debdir, exist_ok=True)
        if shutil.which("dpkg-deb") is None:
            raise CrossBuildError("dpkg-deb not found (apt-get install dpkg)")
        tmp = root + ".tmp-%d" % os.getpid()
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for key in _header_keys(arch):
            deb = _fetch_deb(key, debdir)
            subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
        first = os.path.join(tmp, "first")
        os.makedirs(first)
        for name in FIRST_HEADERS[arch]:
            shutil.copy(os.path.join(tmp, "usr", "include", name),
                        os.path.join(first, os.path.basename(name)))
        with open(os.path.join(tmp, ".complete"), "w") as f:
            f.write(want)
        shutil.rmtree(root, ignore_errors=True)
        os.rename(tmp, root)
    return inc


def torch_include_dirs(torch_include=None):
    inc = torch_include or wheel_include()
    return [inc, os.path.join(inc, "torch", "csrc", "api", "include")]


# --------------------------------------------------------------------------- compile

def _norm_defines(defines):
    if defines is None:
        return []
    if isinstance(defines, dict):
        return ["%s=%s" % (k, v) if v is not None else k for k, v in defines.items()]
    return [d[2:] if d.startswith("-D") else d for d in defines]


def capability_for(tu_path):
    """'DEFAULT' for per-capability kernel files (native/cpu, quantized/cpu/kernels)."""
    p = os.path.abspath(tu_path).replace(os.sep, "/")
    if "/native/cpu/" in p or "/native/quantized/cpu/kernels/" in p:
        return "DEFAULT"
    return None


def compile_flags(arch, include_dirs=(), defines=(), source_tree=None,
                  cpu_capability="auto", tu_path=None, torch_include=None, in_tree=True,
                  extra_include=True):
    """Compiler flags (without the compiler and mode) the way compile_check uses them."""
    if arch not in ARCHES:
        raise ValueError("arch must be one of %s, not %r" % (ARCHES, arch))
    flags = ["-std=gnu++17", "-fPIC"] + list(WARNING_FLAGS)
    defs = list(TORCH_CPU_DEFINES) + list(ARCH_DEFINES[arch])
    if in_tree:
        defs += list(IN_TREE_DEFINES)
    cap = cpu_capability
    if cap == "auto":
        cap = capability_for(tu_path) if tu_path else None
    if cap:
        if (arch, cap) not in CAPABILITY_FLAGS:
            raise ValueError("capability %s not built for %s" % (cap, arch))
        defs += ["CPU_CAPABILITY=" + cap, "CPU_CAPABILITY_" + cap]
        flags += CAPABILITY_FLAGS[(arch, cap)]
    defs += _norm_defines(defines)
    flags += ["-D" + d for d in defs]
    incs = [os.path.abspath(d) for d in include_dirs]
    if source_tree:
        incs += [os.path.join(source_tree, "aten", "src"), os.fspath(source_tree)]
    if extra_include:
        incs.append(os.path.join(os.path.dirname(os.path.dirname(extra_headers(arch))), "first"))
    incs += torch_include_dirs(torch_include)
    if extra_include:
        incs.append(extra_headers(arch))
    flags += ["-I" + d for d in incs]
    return flags


def compile_check(tu_path, arch="aarch64", include_dirs=(), defines=(), source_tree=None,
                  cpu_capability="auto", mode="object", torch_include=None, in_tree=True,
                  extra_flags=(), timeout=900):
    """Compile one translation unit like the real libtorch_cpu build; returns CompileResult.

    tu_path: the .cpp to compile. arch: "aarch64" (aarch64-linux-gnu-g++) or "x86_64"
    (host g++). include_dirs: searched first. defines: extra "NAME" / "NAME=VALUE" (or a
    dict). source_tree: the (patched) PyTorch tree, searched before the wheel headers.
    cpu_capability: "auto" (DEFAULT for native/cpu kernels, none otherwise), None, or a
    capability name (DEFAULT, SVE256, AVX2, AVX512). mode: "object" (-c -O2 -o /dev/null)
    or "syntax" (-fsyntax-only). in_tree: add CAFFE2_BUILD_MAIN_LIB (a libtorch_cpu TU).
    """
    cxx = compiler(arch)
    flags = compile_flags(arch, include_dirs, defines, source_tree, cpu_capability,
                          tu_path, torch_include, in_tree)
    if mode == "object":
        flags += ["-O2", "-c", "-o", "/dev/null"]
    elif mode == "syntax":
        flags += ["-fsyntax-only"]
    else:
        raise ValueError("mode must be 'object' or 'syntax'")
    cmd = [cxx] + flags + list(extra_flags) + [os.path.abspath(tu_path)]
    return _run(cmd, timeout)


def _run(cmd, timeout):
    t0 = time.time()
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.output if isinstance(e.output, str) else (e.output or b"").decode(
            "utf-8", "replace")
        return CompileResult(False, None, cmd, out + "\n[timed out after %ss]" % timeout,
                             time.time() - t0)
    return CompileResult(r.returncode == 0, r.returncode, cmd, r.stdout, time.time() - t0)


def _abi_flag(torch_site):
    """-D_GLIBCXX_USE_CXX11_ABI=N from the torch install's TorchConfig.cmake (default 1)."""
    cfg = os.path.join(torch_site, "share", "cmake", "Torch", "TorchConfig.cmake")
    try:
        with open(cfg) as f:
            text = f.read()
        if "_GLIBCXX_USE_CXX11_ABI=0" in text:
            return "_GLIBCXX_USE_CXX11_ABI=0"
    except OSError:
        pass
    return "_GLIBCXX_USE_CXX11_ABI=1"


def build_graft(sources, out_so, arch="aarch64", torch_site=None, extra_flags=(),
                include_dirs=(), defines=(), source_tree=None, rpath=None, timeout=1800):
    """Build a shared library from `sources` linked against a torch install's libs.

    arch "aarch64": torch_site defaults to the emulation rootfs's aarch64 torch 2.6.0
    (``ensure_emulation().torch_site``); the rpath is the wheel's lib dir as seen INSIDE the
    rootfs (``/opt/torch-aarch64/site-packages/torch/lib``). arch "x86_64": torch_site is
    required (e.g. the host's torch; its own headers are used) and the rpath is its lib
    dir. Flags: ``-std=c++17 -O2 -fPIC -shared`` + GRAFT_DEFINES (CPU_CAPABILITY=DEFAULT,
    the wheel's ABI flag, ...) + for aarch64 the SVE/Sleef defines the wheel was built with
    (DispatchStub ABI); ``-Wl,--no-undefined`` so a symbol the wheel does not export fails
    at link time, not at load time. Raises CrossBuildError with the diagnostics on failure;
    returns `out_so`.
    """
    cxx = compiler(arch)
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if torch_site is None:
        if arch != "aarch64":
            raise ValueError("build_graft(arch='x86_64') needs torch_site")
        from tests.harness.emulation import ensure_emulation
        torch_site = ensure_emulation().torch_site
    torch_site = os.path.abspath(torch_site)
    lib = os.path.join(torch_site, "lib")
    libs_dir = os.path.join(os.path.dirname(torch_site), "torch.libs")
    if rpath is None:
        rpath = GUEST_SITE + "/torch/lib" if arch == "aarch64" else lib
    defs = [d for d in GRAFT_DEFINES if not d.startswith("_GLIBCXX_USE_CXX11_ABI")]
    defs.append(_abi_flag(torch_site))
    if arch == "aarch64":
        defs += list(ARCH_DEFINES["aarch64"])
    defs += _norm_defines(defines)
    incs = [os.path.abspath(d) for d in include_dirs]
    if source_tree:
        incs += [os.path.join(source_tree, "aten", "src"), os.fspath(source_tree)]
    incs += torch_include_dirs(os.path.join(torch_site, "include"))
    out_so = os.path.abspath(os.fspath(out_so))
    os.makedirs(os.path.dirname(out_so), exist_ok=True)
    cmd = ([cxx, "-std=c++17", "-O2", "-fPIC", "-shared"] + list(WARNING_FLAGS)
           + ["-D" + d for d in defs] + ["-I" + d for d in incs]
           + list(extra_flags)
           + [os.path.abspath(os.fspath(s)) for s in sources]
           + ["-o", out_so, "-L" + lib, "-ltorch_cpu", "-lc10",
              "-Wl,--no-undefined", "-Wl,-rpath," + rpath,
              "-Wl,-rpath-link," + lib, "-Wl,-rpath-link," + libs_dir])
    res = _run(cmd, timeout)
    if not res.ok:
        raise CrossBuildError("graft build failed (exit %s):\n$ %s\n%s"
                              % (res.returncode, res.command_line(), res.output[-20000:]))
    return out_so


def main(argv=None):
    """python -m tests.harness.crossbuild check TU [--arch A] [--tree DIR]: one compile check."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m tests.harness.crossbuild")
    p.add_argument("tu")
    p.add_argument("--arch", default="aarch64", choices=ARCHES)
    p.add_argument("--tree", default=None, help="(patched) PyTorch source tree")
    p.add_argument("--syntax", action="store_true", help="-fsyntax-only")
    p.add_argument("-D", dest="defines", action="append", default=[])
    p.add_argument("-I", dest="includes", action="append", default=[])
    a = p.parse_args(argv)
    r = compile_check(a.tu, a.arch, a.includes, a.defines, source_tree=a.tree,
                      mode="syntax" if a.syntax else "object")
    sys.stdout.write(r.output)
    print("%s in %.1f s: %s" % ("OK" if r.ok else "FAILED", r.seconds, r.command_line()))
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
