"""A CUDA-era aarch64 torch under qemu: PyPI's torch 2.14.1+cu130 with its CUDA 13 runtime.

From 2.11 PyPI's aarch64 torch wheels are CUDA 13 builds (the ones JetPack 7 / AGX Thor
users get from `pip install torch`). They cannot even be imported without their CUDA runtime
wheels: ``libtorch_cuda.so`` NEEDs cudart, cuBLAS, cuDNN, NCCL, ... (torch/__init__.py
preloads them from site-packages/nvidia). No GPU is needed for that: the driver (libcuda) is
only opened on first CUDA use, and ``torch.cuda.is_available()`` is False.

`ensure_cuda_torch()` (idempotent, cached under ``recipe.cache_dir("emu-cuda")``, never in
the shared emulation rootfs):

1. downloads, once, the torch wheel and every wheel of its Linux aarch64 / CPython 3.11
   Requires-Dist closure (`WHEELS`: 28 files, 3.1 GB, sha256 pinned; pip download
   ``--no-deps --require-hashes`` with the NVIDIA wheels' manylinux tags, which go down to
   manylinux2014). The closure was resolved with ``pip install --dry-run --report R
   --ignore-installed --target T --only-binary=:all: --python-version 3.11 --implementation
   cp --abi cp311 --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 ...
   --platform manylinux_2_28_aarch64 torch==2.14.1``; `requirement_gaps()` re-checks it
   against the Requires-Dist of the downloaded wheels (markers evaluated for Linux aarch64,
   Python 3.11; extras such as ``cuda-toolkit[cublas,...]`` followed);
2. makes a venv with the rootfs's own Python (``python3 -m venv --without-pip``, run inside
   the emulation: 2 s) in a host folder, and installs the wheels into its site-packages with
   the host's pip (``--target --platform ... --no-index --no-deps``: pip only unpacks
   wheels; 5.1 GB in ~2 min natively, where the guest's pip under qemu would take far
   longer). The venv does not see the rootfs's torch 2.6.0 (no system site packages).

`CudaTorch.run(argv)` runs a guest command with that venv's python in front of PATH and one
fix of the emulated machine: an ARM ``/proc/cpuinfo`` (bind-mounted over /proc/cpuinfo in the
command's private mount namespace). Why: bookworm's qemu-user (7.2) does not emulate
/proc/cpuinfo for aarch64 guests (qemu 8.2 and later do), so the guest reads the HOST's x86
/proc/cpuinfo; the cpuinfo library bundled in torch 2.14.1's libtorch.so then crashes
(SIGSEGV in ``cpuinfo_arm_linux_init``, called by ``at::init_num_threads`` from torch._C's
module init: measured with gdb-multiarch on qemu's gdbstub), so `import torch` dies with a
segmentation fault. torch 2.6.0's older cpuinfo only prints "failed to parse the list of
possible processors". The file written here is what a Neoverse-N1 (fp16 + dotprod, no SVE)
shows, one entry per host CPU (matching /sys/devices/system/cpu/possible, which the guest
also reads from the host). Needs the chroot mode of the harness (root + binfmt_misc).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from recipe import cache_dir, download, locks
from recipe.log import logger
from tests.harness.emulation import EmulationError, PY_VERSION, ensure_emulation, WHEELS as ROOTFS_WHEELS
from recipe.hashing import sha256_file

TORCH_VERSION = "2.14.1"
LOCAL_VERSION = "2.14.1+cu130"
LAYOUT = 1  # bump to reinstall the venv
PLATFORMS = (("manylinux2014_aarch64", "linux_aarch64")
             + tuple("manylinux_2_%d_aarch64" % n for n in range(17, 29)))
# (requirement, file, size, sha256)
WHEELS = (
    ("torch==2.14.1", "torch-2.14.1-cp311-cp311-manylinux_2_28_aarch64.whl",
     453982557, "ef1276fd07adb8d463ac402a24ea7482e45c9a42df8ebdac211aa757779200ba"),
    ("nvidia-cudnn-cu13==9.24.0.43", "nvidia_cudnn_cu13-9.24.0.43-py3-none-manylinux_2_27_aarch64.whl",
     650976863, "a6812a554a1ff0413e9c52b84c26c050380649ab9615f9c16bded368ce9f421f"),
    ("nvidia-cusparselt-cu13==0.8.1", "nvidia_cusparselt_cu13-0.8.1-py3-none-manylinux2014_aarch64.whl",
     221051344, "4dca476c50bf4780d46cd0bfbd82e2bc10a08e4fef7950917ce8d7578d22a23f"),
    ("nvidia-nccl-cu13==2.30.7", "nvidia_nccl_cu13-2.30.7-py3-none-manylinux_2_18_aarch64.whl",
     215983881, "ca786ffa5a647c75d4d1f5cc72a6c4f537947e2ba8823d7c8aaf768e7a7b9f77"),
    ("nvidia-nvshmem-cu13==3.4.5",
     "nvidia_nvshmem_cu13-3.4.5-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
     60215947, "6dc2a197f38e5d0376ad52cd1a2a3617d3cdc150fd5966f4aee9bcebb1d68fe9"),
    ("nvidia-cublas==13.1.1.3", "nvidia_cublas-13.1.1.3-py3-none-manylinux_2_27_aarch64.whl",
     542848918, "b7a210458267ac818974c53038fbec2e969d5c99f305ab15c72522fa9f001dd5"),
    ("nvidia-cuda-cupti==13.0.85", "nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_aarch64.whl",
     10310827, "796bd679890ee55fb14a94629b698b6db54bcfd833d391d5e94017dd9d7d3151"),
    ("nvidia-cuda-nvrtc==13.0.88",
     "nvidia_cuda_nvrtc-13.0.88-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
     43015449, "d27f20a0ca67a4bb34268a5e951033496c5b74870b868bacd046b1b8e0c3267b"),
    ("nvidia-cuda-runtime==13.0.96",
     "nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
     2261060, "ef9bcbe90493a2b9d810e43d249adb3d02e98dd30200d86607d8d02687c43f55"),
    ("nvidia-cufft==12.0.0.61",
     "nvidia_cufft-12.0.0.61-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
     214053554, "2708c852ef8cd89d1d2068bdbece0aa188813a0c934db3779b9b1faa8442e5f5"),
    ("nvidia-cufile==1.15.1.6", "nvidia_cufile-1.15.1.6-py3-none-manylinux_2_27_aarch64.whl",
     1136992, "bdc0deedc61f548bddf7733bdc216456c2fdb101d020e1ab4b88d232d5e2f6d1"),
    ("nvidia-curand==10.4.0.35", "nvidia_curand-10.4.0.35-py3-none-manylinux_2_27_aarch64.whl",
     61962106, "133df5a7509c3e292aaa2b477afd0194f06ce4ea24d714d616ff36439cee349a"),
    ("nvidia-cusolver==12.0.4.66", "nvidia_cusolver-12.0.4.66-py3-none-manylinux_2_27_aarch64.whl",
     223467760, "02c2457eaa9e39de20f880f4bd8820e6a1cfb9f9a34f820eb12a155aa5bc92d2"),
    ("nvidia-cusparse==12.6.3.3",
     "nvidia_cusparse-12.6.3.3-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
     162155568, "80bcc4662f23f1054ee334a15c72b8940402975e0eab63178fc7e670aa59472c"),
    ("nvidia-nvtx==13.0.85",
     "nvidia_nvtx-13.0.85-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
     148878, "cb7780edb6b14107373c835bf8b72e7a178bac7367e23da7acb108f973f157a6"),
    ("nvidia-nvjitlink==13.5.37",
     "nvidia_nvjitlink-13.5.37-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
     45253761, "893f6f9a55b2720ed94913b5ba3332e972da8c78dfa2863d0244403dbd528ffc"),
    ("cuda-toolkit==13.0.3.0", "cuda_toolkit-13.0.3.0-py2.py3-none-any.whl",
     2512, "d693caaa261214ddd7dbb60d68e71cbed884e68c2be7509778f3051da0b91c3f"),
    ("cuda-bindings==13.5.0",
     "cuda_bindings-13.5.0-cp311-cp311-manylinux_2_24_aarch64.manylinux_2_28_aarch64.whl",
     7434875, "71c15ed97099a8ef416515d80ddd10770e0f6339234e16855a526d2896516631"),
    ("cuda-pathfinder==1.9.1", "cuda_pathfinder-1.9.1-py3-none-any.whl",
     63462, "b743c132f90ad2d1e71d43fd28f31ebcde518f943e50fd44aca62b2a80d5230d"),
    ("triton==3.8.0",
     "triton-3.8.0-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
     226467015, "372285307d4c44ee74cee32de0b4f04bd157e071427e38c6f4ee3e3beb2194f4"),
    ("fsspec==2026.9.0", "fsspec-2026.9.0-py3-none-any.whl",
     221738, "8dd6e646e99ea382bd85f97a45e6b526a442d79423a7dc673f1e2756d05fcb5f"),
    ("networkx==3.6.1", "networkx-3.6.1-py3-none-any.whl",
     2068504, "d47fbf302e7d9cbbb9e2555a0d267983d2aa476bac30e90dfbe5669bd57f3762"),
    ("setuptools==84.2.1", "setuptools-84.2.1-py3-none-any.whl",
     876263, "ca140b45d5325a9478f880e351484f62fef15f336462e449ca0c03c873d589c2"),
    ("sympy==1.14.0", "sympy-1.14.0-py3-none-any.whl",
     6299353, "e091cc3e99d2141a0ba2847328f5479b05d94a6635cb96148ccb3f34671bd8f5"),
    ("mpmath==1.3.0", "mpmath-1.3.0-py3-none-any.whl",
     536198, "a0b2b9fe80bbcd81a6647ff13108738cfb482d481d826cc0e02f5b35e5c88d2c"),
    ("typing_extensions==4.16.0", "typing_extensions-4.16.0-py3-none-any.whl",
     45571, "481caa481374e813c1b176ada14e97f1f67a4539ce9cfeb3f350d78d6370c2e8"),
    ("filelock==4.3.1", "filelock-4.3.1-py3-none-any.whl",
     244559, "79e43df8e9fe509cd83a3899a7c186c8077cbbe4d200a1ed3705c2f3bb6bc487"),
    ("Jinja2==3.1.6", "jinja2-3.1.6-py3-none-any.whl",
     134899, "85ece4451f492d0c13c5dd7c13a64681a86afae63a5f347908daf103ce6d2f67"),
    ("MarkupSafe==3.0.4",
     "markupsafe-3.0.4-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64"
     ".manylinux_2_28_aarch64.whl",
     24321, "849dd2bb0e5e4ab2b71c7191726a4a8d5aa8a610daa584728cbee0b710ddc4ef"),
)
# numpy (float64 references, and torch warns without it): the rootfs's pinned aarch64 wheel.
NUMPY = [w for w in ROOTFS_WHEELS if w[0].startswith("numpy==")][0]
VENV_STAMP = ".torch-arm-recipe-venv.json"
# /proc/cpuinfo of a Neoverse-N1 core (ARMv8.2-A: fp16 and dotprod, no SVE).
CPUINFO_ENTRY = ("processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull "
                 "sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp "
                 "ssbs\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\n"
                 "CPU part\t: 0xd0c\nCPU revision\t: 1\n\n")


log = logger("emulation-cuda")


def wheel_dir():
    return cache_dir("emu-cuda", "wheels")


def venv_path():
    return cache_dir("emu-cuda", "venv-torch-%s" % LOCAL_VERSION)


def site_packages(venv=None):
    return os.path.join(venv or venv_path(), "lib", "python%s" % PY_VERSION, "site-packages")


def _ok(path, size, sha):
    return os.path.isfile(path) and os.path.getsize(path) == size and sha256_file(path) == sha


def ensure_wheels():
    """Download (once) and verify every pinned wheel; returns their paths."""
    wdir = wheel_dir()
    os.makedirs(wdir, exist_ok=True)
    todo = [w for w in WHEELS if not _ok(os.path.join(wdir, w[1]), w[2], w[3])]
    if todo:
        t0 = time.time()
        log("downloading %d wheel(s), %.1f GB (pip download --platform ..._aarch64)"
            % (len(todo), sum(w[2] for w in todo) / 1e9))
        try:
            download.pip_download([(req, sha) for req, _, _, sha in todo], wdir, PLATFORMS,
                                  PY_VERSION, expected={fn: (size, sha) for _, fn, size, sha in todo})
        except download.DownloadError as e:
            raise EmulationError(str(e))
        log("downloaded in %.0f s" % (time.time() - t0))
    from tests.harness.emulation import ensure_wheels as ensure_rootfs_wheels
    numpy = [p for p in ensure_rootfs_wheels() if os.path.basename(p) == NUMPY[1]]
    return [os.path.join(wdir, w[1]) for w in WHEELS] + numpy


def _metadata(wheel):
    import zipfile
    with zipfile.ZipFile(wheel) as z:
        name = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")][0]
        return z.read(name).decode("utf-8", "replace")


def requirement_gaps(wheels=None):
    """Requirements of the pinned set (Requires-Dist of every wheel, markers evaluated for
    CPython 3.11 on Linux aarch64, requested extras followed) that no pinned wheel
    satisfies: [] when the set is the complete closure."""
    from email.parser import Parser
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    wheels = wheels or ensure_wheels()
    meta = {}
    for w in wheels:
        m = Parser().parsestr(_metadata(w))
        meta[canonicalize_name(m["Name"])] = (m["Version"], m.get_all("Requires-Dist") or [])
    env = {"platform_system": "Linux", "platform_machine": "aarch64", "sys_platform": "linux",
           "os_name": "posix", "python_version": PY_VERSION, "python_full_version":
           PY_VERSION + ".2", "implementation_name": "cpython",
           "platform_python_implementation": "CPython"}
    gaps, todo, seen = [], [("torch", "")], set()
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        for line in meta[name][1]:
            req = Requirement(line)
            if req.marker and not req.marker.evaluate(dict(env, extra=extra)):
                continue
            dep = canonicalize_name(req.name)
            if dep not in meta or not req.specifier.contains(meta[dep][0], prereleases=True):
                gaps.append("%s (from %s%s): %s" % (line.split(";")[0].strip(), name,
                                                   "[%s]" % extra if extra else "",
                                                   meta.get(dep, ("not pinned",))[0]))
                continue
            todo.append((dep, ""))
            todo.extend((dep, e) for e in req.extras)
    return gaps


def cpuinfo_path():
    """An ARM /proc/cpuinfo with one entry per CPU of this machine (see module docstring)."""
    n = os.cpu_count() or 1
    path = cache_dir("emu-cuda", "proc-cpuinfo-%d" % n)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            f.write("".join(CPUINFO_ENTRY % i for i in range(n)))
        os.replace(path + ".tmp", path)
    return path


class CudaTorch(object):
    """The venv with torch 2.14.1+cu130 inside the emulation (see `ensure_cuda_torch`)."""

    def __init__(self, emu, venv):
        self.emu = emu
        self.venv = venv
        self.python = os.path.join(venv, "bin", "python3")
        self.site = site_packages(venv)

    def run(self, argv, binds=(), env=None, timeout=3600):
        """Guest argv with the ARM /proc/cpuinfo in place; venv and binds visible at their
        host paths. Returns CompletedProcess (text)."""
        cpuinfo = cpuinfo_path()
        wrapped = ["/bin/sh", "-c", 'mount --bind "$0" /proc/cpuinfo && exec "$@"', cpuinfo]
        full_env = {"PATH": os.path.join(self.venv, "bin") + ":/usr/local/bin:/usr/bin:/bin"}
        full_env.update(env or {})
        return self.emu.run(wrapped + list(argv),
                            binds=[self.venv, os.path.dirname(cpuinfo)] + list(binds),
                            env=full_env, timeout=timeout)

    def python_code(self, code, args=(), binds=(), env=None, timeout=3600):
        """Run Python source `code` with the venv's python (a fresh interpreter)."""
        xchg = tempfile.mkdtemp(prefix="emu-cuda-")
        try:
            script = os.path.join(xchg, "main.py")
            with open(script, "w") as f:
                f.write(code)
            return self.run([self.python, script] + [str(a) for a in args],
                            binds=[xchg] + list(binds), env=env, timeout=timeout)
        finally:
            shutil.rmtree(xchg, ignore_errors=True)


def _venv_complete(venv, wheels):
    try:
        with open(os.path.join(venv, VENV_STAMP)) as f:
            st = json.load(f)
    except (OSError, ValueError):
        return False
    return st.get("layout") == LAYOUT and st.get("wheels") == sorted(os.path.basename(w)
                                                                     for w in wheels)


def ensure_cuda_torch():
    """Download, install (once) and return a CudaTorch; raises EmulationError."""
    emu = ensure_emulation()
    if emu.mode != "chroot":
        raise EmulationError("the CUDA-era torch needs the chroot mode of the emulation "
                             "(root + binfmt_misc): the ARM /proc/cpuinfo is bind-mounted")
    wheels = ensure_wheels()
    venv = venv_path()
    if _venv_complete(venv, wheels):
        return CudaTorch(emu, venv)
    with locks.waiting(cache_dir("emu-cuda", ".lock")):
        if _venv_complete(venv, wheels):
            return CudaTorch(emu, venv)
        t0 = time.time()
        tmp = venv + ".tmp-%d" % os.getpid()
        for path in (tmp, venv):
            subprocess.run(["rm", "-rf", "--one-file-system", path])
        r = emu.run(["/usr/bin/python3", "-m", "venv", "--without-pip", tmp],
                    binds=[os.path.dirname(tmp)], timeout=600)
        if r.returncode != 0:
            raise EmulationError("python3 -m venv inside the rootfs failed:\n%s%s"
                                 % (r.stdout[-2000:], r.stderr[-2000:]))
        log("installing %d wheels (%.1f GB) into the venv with the host's pip (unpack only)"
            % (len(wheels), sum(os.path.getsize(w) for w in wheels) / 1e9))
        cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps",
               "--no-compile", "--only-binary=:all:", "--python-version", PY_VERSION,
               "--implementation", "cp", "--abi", "cp" + PY_VERSION.replace(".", ""),
               "--target", site_packages(tmp), "--disable-pip-version-check", "-q"]
        for tag in PLATFORMS:
            cmd += ["--platform", tag]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
        r = subprocess.run(cmd + wheels, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, env=env)
        if r.returncode != 0:
            raise EmulationError("pip install --target of the CUDA 13 wheels failed:\n%s"
                                 % r.stdout[-3000:])
        with open(os.path.join(tmp, VENV_STAMP), "w") as f:
            json.dump({"layout": LAYOUT, "torch": LOCAL_VERSION,
                       "wheels": sorted(os.path.basename(w) for w in wheels),
                       "seconds": round(time.time() - t0)}, f, indent=1)
        os.rename(tmp, venv)
        log("venv ready in %.0f s: %s" % (time.time() - t0, venv))
    return CudaTorch(emu, venv)


def main(argv=None):
    """python3 -m tests.harness.emulation_cuda: set up, then `import torch` once under qemu."""
    try:
        ct = ensure_cuda_torch()
    except EmulationError as e:
        sys.stderr.write("error: %s\n" % e)
        return 2
    t0 = time.time()
    r = ct.python_code("import platform, torch\nprint(platform.machine(), torch.__version__, "
                       "torch.cuda.is_available())\n")
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr[-2000:])
    print("venv: %s\nimport torch under qemu: %.0f s" % (ct.venv, time.time() - t0))
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
