"""aarch64 emulation harness: an arm64 Debian root filesystem run under qemu-user.

What `ensure_emulation()` sets up (idempotent, cached under ``recipe.cache_dir("emu")``,
never in the repository):

1. Host tools (``qemu-user-static binfmt-support debootstrap g++-aarch64-linux-gnu ...``):
   installed with apt-get when missing and we are root; otherwise a clear error says what
   to install.
2. binfmt_misc: mounted when ``/proc/sys/fs/binfmt_misc`` is empty, ``update-binfmts
   --enable qemu-aarch64``; then *probed* by executing a 132-byte aarch64 ELF (built here,
   no compiler needed) that exits with status 42.
3. An arm64 ``bookworm`` root filesystem (debootstrap, variant minbase, with python3,
   pip, venv and dev headers; Python 3.11 there, hence cp311 wheels). It is built in
   ``rootfs-bookworm-arm64.tmp-<pid>`` and renamed into place only when complete, so a
   killed run never leaves a half rootfs that looks finished. Debian's mirror is read
   from this machine's apt configuration at run time (or ``RECIPE_DEBIAN_MIRROR``).
4. The official aarch64 wheels (torch 2.6.0 and its runtime dependencies, exact versions,
   sizes and sha256 pinned in ``WHEELS``) downloaded on the host with ``pip download
   --platform manylinux_2_28_aarch64 --python-version 3.11 --implementation cp
   --only-binary=:all: --no-deps --require-hashes`` and installed OFFLINE inside the rootfs
   by the rootfs's own pip (``--no-index --no-compile --no-deps --require-hashes --target
   /opt/torch-aarch64/site-packages``). A ``.pth`` file in the rootfs puts that directory
   on ``sys.path`` of the rootfs's ``python3``. Bytecode is written lazily on first import
   (a warm-up import at the end of setup caches the common modules).

How commands run inside (two modes, chosen automatically, override with
``RECIPE_EMU_MODE=chroot|qemu-L``):

* ``chroot`` (default when root and binfmt works): ``unshare --mount --propagation private``
  then ``/proc``, ``/dev``, ``/sys`` and the caller's bind directories are mounted into the
  rootfs, a fresh tmpfs on its ``/tmp``, and ``chroot``. The mounts live in a private mount
  namespace: they vanish with the process, nothing leaks to the host even when killed.
* ``qemu-L`` (fallback when binfmt_misc cannot be used, e.g. an unprivileged container):
  ``qemu-aarch64-static -L ROOTFS ROOTFS/usr/bin/python3``; ``QEMU_LD_PREFIX`` is set so
  aarch64 children find the rootfs too. qemu looks a path up in the rootfs first and falls
  back to the host path, so host directories are visible at their own paths. Without
  binfmt, debootstrap's second stage cannot run: the rootfs is then built with
  ``debootstrap --foreign`` and every downloaded package is unpacked with ``dpkg-deb``
  (no maintainer scripts; enough for python3 + pip).

Passing files in and out: ``Emulation.python(..., binds=[host_dir, ...])`` makes each host
directory visible inside at the SAME absolute path (bind mount, read-write), so tests can
hand paths around unchanged. Code strings are written to a private exchange directory that
is bound the same way.

Under qemu, cpuinfo prints "Error in cpuinfo: failed to parse the list of possible
processors": harmless. Timings under qemu mean nothing; correctness does.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

from recipe import cache_dir, download, locks
from recipe.hashing import sha256_file
from recipe.log import logger

SUITE = "bookworm"
DEB_ARCH = "arm64"
QEMU = "qemu-aarch64-static"
# python3-dev: aarch64 Python.h/pyconfig.h for anyone cross-compiling a Python extension.
ROOTFS_PACKAGES = ("python3", "python3-pip", "python3-venv", "python3-dev")
ROOTFS_LAYOUT = 1            # bump to force a rebuild of existing root filesystems
GUEST_SITE = "/opt/torch-aarch64/site-packages"
GUEST_PYTHON = "/usr/bin/python3"
PY_VERSION = "3.11"
PLATFORM = "manylinux_2_28_aarch64"

# Host tool -> Debian package that provides it.
HOST_TOOLS = (
    ("qemu-aarch64-static", "qemu-user-static"),
    ("update-binfmts", "binfmt-support"),
    ("debootstrap", "debootstrap"),
    ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
    ("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu"),
    ("dpkg-deb", "dpkg"),
    ("unshare", "util-linux"),
    ("xz", "xz-utils"),
    # debootstrap's default keyring for Debian suites (absent on e.g. Ubuntu hosts).
    ("/usr/share/keyrings/debian-archive-keyring.gpg", "debian-archive-keyring"),
)

# (requirement, file name, size in bytes, sha256). torch 2.6.0's Requires-Dist on Linux
# aarch64 is filelock, typing-extensions>=4.10, sympy==1.13.1 (-> mpmath<1.4), networkx,
# jinja2 (-> MarkupSafe), fsspec. `pip download --platform` cannot resolve them (it
# evaluates the nvidia/triton markers against the host), so the set is spelled out and
# downloaded with --no-deps. Measured under qemu: `import torch` + F.conv2d +
# torch.profiler load only typing_extensions (and numpy when present: without it torch
# warns "Failed to initialize NumPy"); sympy, networkx, jinja2, fsspec, filelock are lazy
# (torch.fx symbolic shapes, torch.compile, hub). The full declared set is installed
# anyway (about 9 MB, seconds) so the install is consistent and tests may use torch.fx /
# torch.export; numpy is included for float64 references. Hashes: what the index serves
# (pip checks them with --require-hashes on download and again on install).
WHEELS = (
    ("torch==2.6.0", "torch-2.6.0-cp311-cp311-manylinux_2_28_aarch64.whl", 95759416,
     "ccbd0320411fe1a3b3fec7b4d3185aa7d0c52adac94480ab024b5c8f74a0bf1d"),
    ("numpy==2.4.6",
     "numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl", 15966692,
     "0ab0a9c4ffb1a6d95ef519fe4247dba8eb6b18ad93999f76b7f657039acabd47"),
    ("typing-extensions==4.16.0", "typing_extensions-4.16.0-py3-none-any.whl", 45571,
     "481caa481374e813c1b176ada14e97f1f67a4539ce9cfeb3f350d78d6370c2e8"),
    ("sympy==1.13.1", "sympy-1.13.1-py3-none-any.whl", 6189177,
     "db36cdc64bf61b9b24578b6f7bab1ecdd2452cf008f34faa33776680c26d66f8"),
    ("mpmath==1.3.0", "mpmath-1.3.0-py3-none-any.whl", 536198,
     "a0b2b9fe80bbcd81a6647ff13108738cfb482d481d826cc0e02f5b35e5c88d2c"),
    ("filelock==4.2.12", "filelock-4.2.12-py3-none-any.whl", 222442,
     "21decfec02f116ed4c954433cdb31f28c3b346b784543177b6d7059da2702ee9"),
    ("fsspec==2026.9.0", "fsspec-2026.9.0-py3-none-any.whl", 221738,
     "8dd6e646e99ea382bd85f97a45e6b526a442d79423a7dc673f1e2756d05fcb5f"),
    ("jinja2==3.1.6", "jinja2-3.1.6-py3-none-any.whl", 134899,
     "85ece4451f492d0c13c5dd7c13a64681a86afae63a5f347908daf103ce6d2f67"),
    ("MarkupSafe==3.0.4",
     "markupsafe-3.0.4-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64"
     ".manylinux_2_28_aarch64.whl", 24321,
     "849dd2bb0e5e4ab2b71c7191726a4a8d5aa8a610daa584728cbee0b710ddc4ef"),
    ("networkx==3.6.1", "networkx-3.6.1-py3-none-any.whl", 2068504,
     "d47fbf302e7d9cbbb9e2555a0d267983d2aa476bac30e90dfbe5669bd57f3762"),
)
TORCH_VERSION = "2.6.0"

CPUINFO_WARNING = "Error in cpuinfo: failed to parse the list of possible processors"


class EmulationError(RuntimeError):
    """The harness cannot be set up; the message says what to install or do."""


log = logger("emulation")


# --------------------------------------------------------------------------- host helpers



def is_root():
    return os.geteuid() == 0


def _apt_env():
    env = dict(os.environ)
    env["DEBIAN_FRONTEND"] = "noninteractive"
    return env


def _have_tool(exe):
    if exe.startswith("/"):
        return os.path.exists(exe)
    return shutil.which(exe) is not None or os.path.exists(os.path.join("/usr/sbin", exe))


def ensure_host_packages(tools=HOST_TOOLS):
    """Install the Debian packages providing `tools` ((exe, package) pairs) when missing."""
    missing = sorted({pkg for exe, pkg in tools if not _have_tool(exe)})
    if not missing:
        return []
    if not is_root() or shutil.which("apt-get") is None:
        raise EmulationError(
            "missing host packages: %s. Install them (Debian/Ubuntu: `sudo apt-get install -y %s`)"
            " and run `python3 -m tests.harness.emulation setup` again."
            % (", ".join(missing), " ".join(missing)))
    log("installing host packages: %s" % " ".join(missing))
    subprocess.run(["apt-get", "update"], check=True, env=_apt_env())
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends"] + missing,
                   check=True, env=_apt_env())
    return missing


def _apt_source_entries():
    """Yield (types, uris, suites) from the host's apt configuration (one-line and deb822)."""
    one_line = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in one_line:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            typ = parts[0]
            rest = parts[1:]
            if rest and rest[0].startswith("["):
                while rest and not rest[0].endswith("]"):
                    rest = rest[1:]
                rest = rest[1:]
            if len(rest) >= 2:
                yield [typ], [rest[0]], [rest[1]]
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.split()
            if fields.get("enabled", ["yes"])[0].lower() == "no":
                continue
            if "uris" in fields and "suites" in fields:
                yield fields.get("types", ["deb"]), fields["uris"], fields["suites"]


DEBIAN_CODENAMES = ("bookworm", "trixie", "forky", "sid", "bullseye", "buster",
                    "stable", "testing", "unstable", "oldstable")


def debian_mirror():
    """The Debian archive mirror URL this machine's apt uses (env RECIPE_DEBIAN_MIRROR wins).

    Picks the first configured URI serving a Debian codename suite that is not a security
    or updates suite. Raises EmulationError with instructions when there is none (e.g. an
    Ubuntu host: set RECIPE_DEBIAN_MIRROR to a Debian mirror's .../debian URL).
    """
    env = os.environ.get("RECIPE_DEBIAN_MIRROR")
    if env:
        return env.rstrip("/")
    for types, uris, suites in _apt_source_entries():
        if not any(t in ("deb", "deb-src") for t in types):
            continue
        for suite in suites:
            if suite in DEBIAN_CODENAMES:
                for uri in uris:
                    if uri.startswith(("http://", "https://", "file:/")) \
                            and "security" not in uri:
                        return uri.rstrip("/")
    raise EmulationError(
        "no Debian archive mirror found in /etc/apt/sources.list{,.d/*}: set "
        "RECIPE_DEBIAN_MIRROR to the URL of a Debian mirror (the directory holding dists/ "
        "and pool/)")


# --------------------------------------------------------------------------- binfmt

# Minimal static aarch64 ELF: movz x0,#42; movz x8,#93 (exit); svc #0.
def _probe_elf():
    code = struct.pack("<3I", 0xD2800540, 0xD2800BA8, 0xD4000001)
    base = 0x400000
    ehsize, phsize = 64, 56
    entry = base + ehsize + phsize
    total = ehsize + phsize + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, 0xB7, 1, entry, ehsize, 0, 0,
                               ehsize, phsize, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, total, total, 0x1000)
    return ehdr + phdr + code


def _probe_path():
    path = cache_dir("emu", "probe-aarch64")
    data = _probe_elf()
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return path
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


def binfmt_works():
    """True when the kernel runs aarch64 ELF files directly (binfmt_misc + qemu)."""
    try:
        return subprocess.run([_probe_path()], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=30).returncode == 42
    except (OSError, subprocess.SubprocessError):
        return False


BINFMT_DIR = "/proc/sys/fs/binfmt_misc"


def binfmt_entry():
    """Contents of the qemu-aarch64 binfmt entry as a dict (empty when not registered)."""
    out = {}
    try:
        with open(os.path.join(BINFMT_DIR, "qemu-aarch64")) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    out["enabled"] = bool(lines) and lines[0].strip() == "enabled"
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        out[key.strip().rstrip(":")] = value.strip()
    return out


def ensure_binfmt():
    """Mount binfmt_misc and enable qemu-aarch64. Returns True when aarch64 ELFs execute."""
    if binfmt_works():
        return True
    if not is_root():
        log("binfmt_misc is not usable and we are not root: falling back to qemu -L")
        return False
    if not os.path.exists(os.path.join(BINFMT_DIR, "register")):
        r = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
        if r.returncode != 0:
            log("cannot mount binfmt_misc (%s): falling back to qemu -L" % r.stdout.strip())
            return False
    if shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if not binfmt_entry():
        # binfmt-support did not register it (e.g. no /usr/share/binfmts entry): do it by
        # hand, with the F flag so the interpreter works inside a chroot.
        qemu = shutil.which(QEMU)
        if qemu:
            magic = (r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00")
            mask = (r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff"
                    r"\xff\xff")
            try:
                with open(os.path.join(BINFMT_DIR, "register"), "w") as f:
                    f.write(":qemu-aarch64:M::%s:%s:%s:PF" % (magic, mask, qemu))
            except OSError as e:
                log("cannot register qemu-aarch64 with binfmt_misc: %s" % e)
    ok = binfmt_works()
    if not ok:
        log("binfmt_misc could not be enabled for aarch64: falling back to qemu -L")
    return ok


# --------------------------------------------------------------------------- wheels

def wheel_dir():
    return cache_dir("emu", "wheels")


def ensure_wheels(verify=False, wheels=WHEELS):
    """Download (on the host) and verify pinned aarch64 wheels (default: the rootfs's set,
    WHEELS; entries are (requirement, file name, size, sha256)); returns their paths."""
    wdir = wheel_dir()
    os.makedirs(wdir, exist_ok=True)
    stamp = os.path.join(wdir, ".verified.json")
    want = [(fn, size, sha) for _, fn, size, sha in wheels]
    todo = []
    for req, fn, size, sha in wheels:
        path = os.path.join(wdir, fn)
        # Hash once; later runs trust the stamp (size still checked) unless verify=True.
        if not (os.path.isfile(path) and os.path.getsize(path) == size and
                ((not verify and _stamp_has(stamp, fn, sha)) or sha256_file(path) == sha)):
            todo.append((req, fn, size, sha))
    if todo:
        log("downloading %d aarch64 wheel(s) with pip (host side, --platform %s)"
            % (len(todo), PLATFORM))
        try:
            # older wheels (torch 2.1) are tagged manylinux2014 only; hashes pin the files
            download.pip_download([(req, sha) for req, _, _, sha in todo], wdir,
                                  [PLATFORM, "manylinux2014_aarch64"], PY_VERSION,
                                  expected={fn: (size, sha) for _, fn, size, sha in todo})
        except download.DownloadError as e:
            raise EmulationError(str(e))
    known = {}
    with contextlib.suppress(OSError, ValueError):
        with open(stamp) as f:
            known = json.load(f)
    known.update({fn: sha for fn, size, sha in want})
    with open(stamp + ".tmp", "w") as f:
        json.dump(known, f, indent=1)
    os.replace(stamp + ".tmp", stamp)
    return [os.path.join(wdir, fn) for _, fn, _, _ in wheels]


def _stamp_has(stamp, fn, sha):
    try:
        with open(stamp) as f:
            return json.load(f).get(fn) == sha
    except (OSError, ValueError):
        return False


def _wheel_set_id():
    return hashlib.sha256(json.dumps([w[3] for w in WHEELS]).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- rootfs

def rootfs_path():
    return cache_dir("emu", "rootfs-%s-%s" % (SUITE, DEB_ARCH))


ROOTFS_STAMP = "etc/torch-arm-recipe-rootfs.json"
SITE_STAMP = "opt/torch-aarch64/.complete.json"


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _rootfs_complete(root):
    st = _read_json(os.path.join(root, ROOTFS_STAMP))
    return bool(st) and st.get("layout") == ROOTFS_LAYOUT


def _site_complete(root):
    st = _read_json(os.path.join(root, SITE_STAMP))
    return bool(st) and st.get("wheels") == _wheel_set_id()


def _rmtree(path):
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)


def build_rootfs(mode):
    """debootstrap the arm64 rootfs into a temporary dir and rename it into place."""
    final = rootfs_path()
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    for stale in glob.glob(final + ".tmp-*"):
        log("removing unfinished rootfs %s" % stale)
        _rmtree(stale)
    if os.path.lexists(final):
        log("removing incomplete or outdated rootfs %s" % final)
        _rmtree(final)
    tmp = "%s.tmp-%d" % (final, os.getpid())
    mirror = debian_mirror()
    debs = cache_dir("emu", "debs")
    os.makedirs(debs, exist_ok=True)
    t0 = time.time()
    cmd = ["debootstrap", "--arch=" + DEB_ARCH, "--variant=minbase",
           "--include=" + ",".join(ROOTFS_PACKAGES), "--cache-dir=" + debs]
    if mode == "qemu-L":
        cmd.append("--foreign")
    cmd += [SUITE, tmp, mirror]
    log("debootstrap %s %s (%s mode; takes a few minutes)" % (SUITE, DEB_ARCH, mode))
    # A private mount namespace: whatever debootstrap mounts in the target (proc, sys)
    # disappears with it, even when it is killed.
    r = subprocess.run(["unshare", "--mount", "--propagation", "private"] + cmd,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    if r.returncode != 0:
        logfile = os.path.join(tmp, "debootstrap", "debootstrap.log")
        tail = ""
        if os.path.exists(logfile):
            with open(logfile, errors="replace") as f:
                tail = f.read()[-3000:]
        raise EmulationError("debootstrap failed (exit %d):\n%s\n%s"
                             % (r.returncode, r.stdout[-3000:], tail))
    if mode == "qemu-L":
        _extract_all_debs(tmp)
    # No network inside; offline installs only. Keep the host's CA bundle for humans who
    # want to pip-install something by hand inside (e.g. behind a TLS-intercepting proxy).
    host_ca = "/etc/ssl/certs/ca-certificates.crt"
    if os.path.isfile(host_ca):
        os.makedirs(os.path.join(tmp, "etc/ssl/certs"), exist_ok=True)
        shutil.copyfile(host_ca, os.path.join(tmp, "etc/ssl/certs/ca-certificates.crt"))
    # torch on sys.path of the rootfs python (works in chroot and in qemu -L mode).
    for pth_dir in glob.glob(os.path.join(tmp, "usr/lib/python3/dist-packages")):
        with open(os.path.join(pth_dir, "torch-arm-recipe.pth"), "w") as f:
            f.write(GUEST_SITE + "\n")
    for deb in glob.glob(os.path.join(tmp, "var/cache/apt/archives/*.deb")):
        os.unlink(deb)
    with open(os.path.join(tmp, ROOTFS_STAMP), "w") as f:
        json.dump({"layout": ROOTFS_LAYOUT, "suite": SUITE, "arch": DEB_ARCH,
                   "packages": list(ROOTFS_PACKAGES), "built_by": mode,
                   "seconds": round(time.time() - t0, 1)}, f, indent=1)
    os.rename(tmp, final)
    log("rootfs ready in %.0f s: %s" % (time.time() - t0, final))
    return final


def _extract_all_debs(root):
    """qemu-L fallback: unpack every package debootstrap --foreign downloaded."""
    debs = sorted(glob.glob(os.path.join(root, "var/cache/apt/archives/*.deb")))
    if not debs:
        raise EmulationError("debootstrap --foreign left no packages in %s" % root)
    log("unpacking %d packages without maintainer scripts (no binfmt)" % len(debs))
    for deb in debs:
        p1 = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
        p2 = subprocess.run(["tar", "-x", "--keep-directory-symlink", "-f", "-", "-C", root],
                            stdin=p1.stdout)
        p1.stdout.close()
        if p1.wait() != 0 or p2.returncode != 0:
            raise EmulationError("cannot unpack %s" % deb)


def install_wheels(emu, wheels):
    """Install the pinned wheels offline with the rootfs's own pip (staged, then renamed)."""
    root = emu.rootfs
    site = root + GUEST_SITE
    stage = site + ".tmp"
    _rmtree(stage)
    _rmtree(site)
    stamp = os.path.join(root, SITE_STAMP)
    if os.path.exists(stamp):
        os.unlink(stamp)
    wdir = os.path.dirname(wheels[0])
    reqs_dir = tempfile.mkdtemp(prefix="torch-arm-recipe-reqs-")
    try:
        reqs = os.path.join(reqs_dir, "requirements.txt")
        with open(reqs, "w") as f:
            for req, fn, size, sha in WHEELS:
                f.write("%s --hash=sha256:%s\n" % (req, sha))
        guest_stage = GUEST_SITE + ".tmp"
        if emu.mode == "qemu-L":
            guest_stage = stage  # qemu -L: host paths are what the guest sees
        t0 = time.time()
        log("installing %d wheels offline inside the rootfs (pip under qemu)" % len(WHEELS))
        r = emu.run([GUEST_PYTHON, "-m", "pip", "install", "--no-index", "--no-compile",
                     "--no-deps", "--require-hashes", "--disable-pip-version-check",
                     "--no-warn-script-location", "--find-links", wdir,
                     "--target", guest_stage, "-r", reqs],
                    binds=[wdir, reqs_dir], timeout=3600)
        if r.returncode != 0:
            raise EmulationError("offline pip install inside the rootfs failed:\n%s%s"
                                 % (r.stdout[-3000:], r.stderr[-3000:]))
        os.rename(stage, site)
        log("wheels installed in %.0f s" % (time.time() - t0))
    finally:
        shutil.rmtree(reqs_dir, ignore_errors=True)
    # Warm-up: first import under qemu writes the .pyc files of the common modules.
    t0 = time.time()
    r = emu.python(
        "import platform, torch, torch.nn.functional as F, torch.profiler\n"
        "x = F.conv2d(torch.ones(1, 2, 4, 4), torch.ones(2, 1, 3, 3), groups=2)\n"
        "assert float(x.sum()) == 2 * 4 * 9, x\n"
        "print(platform.machine(), torch.__version__)\n", timeout=1800)
    if r.returncode != 0 or "aarch64 %s" % TORCH_VERSION not in r.stdout:
        raise EmulationError("smoke test of torch inside the rootfs failed:\n%s%s"
                             % (r.stdout[-3000:], r.stderr[-3000:]))
    log("smoke test passed in %.0f s: %s" % (time.time() - t0, r.stdout.strip()))
    with open(stamp + ".tmp", "w") as f:
        json.dump({"wheels": _wheel_set_id(), "site": GUEST_SITE,
                   "requirements": [w[0] for w in WHEELS]}, f, indent=1)
    os.replace(stamp + ".tmp", stamp)


# --------------------------------------------------------------------------- running

class Emulation(object):
    """A ready aarch64 rootfs. Construct with `ensure_emulation()`."""

    def __init__(self, rootfs, mode):
        self.rootfs = rootfs
        self.mode = mode            # "chroot" or "qemu-L"

    # Paths -----------------------------------------------------------------
    @property
    def guest_site(self):
        """site-packages holding torch, as the guest sees it."""
        return GUEST_SITE

    @property
    def site_packages(self):
        """Host path of that site-packages directory."""
        return self.rootfs + GUEST_SITE

    @property
    def torch_site(self):
        """Host path of the aarch64 torch package (has include/ and lib/)."""
        return os.path.join(self.site_packages, "torch")

    @property
    def torch_include(self):
        return os.path.join(self.torch_site, "include")

    @property
    def torch_lib(self):
        return os.path.join(self.torch_site, "lib")

    @property
    def guest_torch_lib(self):
        """torch/lib as seen from inside the rootfs (use it as the rpath of grafts)."""
        return GUEST_SITE + "/torch/lib"

    def guest_path(self, host_path):
        """Path under which a host file inside the rootfs is seen by the guest."""
        host_path = os.path.abspath(host_path)
        root = self.rootfs.rstrip("/")
        if host_path == root or host_path.startswith(root + "/"):
            return host_path[len(root):] or "/"
        return host_path

    def __repr__(self):
        return "Emulation(rootfs=%r, mode=%r)" % (self.rootfs, self.mode)

    # Running ---------------------------------------------------------------
    def command(self, argv, binds=(), cwd=None, env=None):
        """The host argv (and env) that runs guest `argv` in the rootfs."""
        base_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb",
                    "PYTHONUNBUFFERED": "1"}
        if env:
            base_env.update(env)
        root = self.rootfs.rstrip("/")
        checked = []
        for b in binds:
            b = os.path.abspath(os.fspath(b))
            if not os.path.isdir(b):
                raise ValueError("bind path is not a directory: %s" % b)
            if b == "/":
                raise ValueError("refusing to bind the host's / into the rootfs")
            if b == root or b.startswith(root + "/"):
                continue  # already inside: the guest sees it at guest_path(b)
            if b not in checked:
                checked.append(b)
        binds = checked
        if self.mode == "chroot":
            r = shlex.quote(self.rootfs)
            lines = ["set -e",
                     "mount -t tmpfs -o mode=1777 tmpfs %s/tmp" % r,
                     "mount --rbind /dev %s/dev" % r,
                     "mount -t proc proc %s/proc" % r,
                     "mount --rbind /sys %s/sys" % r]
            for b in binds:
                target = shlex.quote(self.rootfs + b)
                lines.append("mkdir -p %s && mount --bind %s %s"
                             % (target, shlex.quote(b), target))
            envargs = " ".join(shlex.quote("%s=%s" % kv) for kv in sorted(base_env.items()))
            inner = "cd %s && exec \"$@\"" % shlex.quote(cwd or "/")
            lines.append("exec chroot %s /usr/bin/env -i %s /bin/sh -c %s sh \"$@\""
                         % (r, envargs, shlex.quote(inner)))
            return (["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                     "\n".join(lines), "emu"] + list(argv), None, None)
        # qemu -L: host paths are visible as themselves; the rootfs shadows what it has.
        qemu = shutil.which(QEMU) or QEMU
        host_env = dict(base_env)
        host_env["QEMU_LD_PREFIX"] = self.rootfs
        exe = argv[0]
        if exe.startswith("/"):
            exe = self.rootfs + exe
        else:
            for d in base_env["PATH"].split(":"):
                if os.path.exists(self.rootfs + d + "/" + exe):
                    exe = self.rootfs + d + "/" + exe
                    break
        return ([qemu, "-L", self.rootfs, exe] + list(argv[1:]), host_env, cwd)

    def run(self, argv, binds=(), cwd=None, env=None, timeout=None, input=None):
        """Run guest argv; returns CompletedProcess (text stdout/stderr)."""
        cmd, host_env, host_cwd = self.command(argv, binds=binds, cwd=cwd, env=env)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.PIPE if input is not None else
                                subprocess.DEVNULL,
                                universal_newlines=True, env=host_env, cwd=host_cwd,
                                start_new_session=True)
        try:
            out, err = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(cmd, timeout, output=out, stderr=err)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def python(self, code_or_script, args=(), timeout=None, binds=(), cwd=None, env=None,
               check=False):
        """Run python3 (3.11, with the aarch64 torch) inside the rootfs.

        `code_or_script`: Python source text, or the path of a host .py file (its
        directory is bound at the same path). `binds`: host directories made visible inside
        at the same absolute paths (read-write) to pass files in and out. `cwd`: working
        directory inside (default: the script's directory). Returns CompletedProcess with
        text stdout/stderr; `check=True` raises EmulationError with both on failure.
        """
        binds = list(binds)
        is_path = isinstance(code_or_script, os.PathLike) or (
            isinstance(code_or_script, str) and "\n" not in code_or_script
            and code_or_script.endswith(".py") and os.path.isfile(code_or_script))
        xchg = None
        try:
            if is_path:
                script = os.path.abspath(os.fspath(code_or_script))
                binds.append(os.path.dirname(script))
            else:
                xchg = tempfile.mkdtemp(prefix="emu-xchg-")
                script = os.path.join(xchg, "main.py")
                with open(script, "w") as f:
                    f.write(code_or_script)
                binds.append(xchg)
            r = self.run([GUEST_PYTHON, script] + [str(a) for a in args], binds=binds,
                         cwd=cwd or os.path.dirname(script), env=env, timeout=timeout)
        finally:
            if xchg:
                shutil.rmtree(xchg, ignore_errors=True)
        if check and r.returncode != 0:
            raise EmulationError("python inside the aarch64 rootfs failed (exit %d):\n"
                                 "--- stdout\n%s\n--- stderr\n%s"
                                 % (r.returncode, r.stdout[-6000:], r.stderr[-6000:]))
        return r


def _choose_mode(binfmt_ok):
    forced = os.environ.get("RECIPE_EMU_MODE", "auto")
    if forced not in ("auto", "chroot", "qemu-L"):
        raise EmulationError("RECIPE_EMU_MODE must be auto, chroot or qemu-L, not %r" % forced)
    if forced == "chroot" and not (binfmt_ok and is_root()):
        raise EmulationError("RECIPE_EMU_MODE=chroot needs root and a working binfmt_misc "
                             "qemu-aarch64 entry (apt-get install qemu-user-static "
                             "binfmt-support; update-binfmts --enable qemu-aarch64)")
    if forced != "auto":
        return forced
    return "chroot" if (binfmt_ok and is_root() and shutil.which("unshare")) else "qemu-L"


def _quick_state():
    """Emulation if everything is already in place (no locks, no subprocess but the probe)."""
    root = rootfs_path()
    if not (_rootfs_complete(root) and _site_complete(root)):
        return None
    forced = os.environ.get("RECIPE_EMU_MODE", "auto")
    if forced == "qemu-L":
        return Emulation(root, "qemu-L")
    ok = binfmt_works()
    if not ok:
        return None
    return Emulation(root, _choose_mode(ok))


def ensure_emulation(verbose=True):
    """Set up (first run ~10 min) or reuse (seconds) the harness; returns an Emulation."""
    emu = _quick_state()
    if emu is not None:
        return emu
    with locks.waiting(cache_dir("emu", ".lock")):
        emu = _quick_state()
        if emu is not None:
            return emu
        t0 = time.time()
        forced = os.environ.get("RECIPE_EMU_MODE", "auto")
        tools = HOST_TOOLS if forced != "qemu-L" else tuple(
            t for t in HOST_TOOLS if t[0] != "update-binfmts")
        ensure_host_packages(tools)
        ok = ensure_binfmt() if forced != "qemu-L" else False
        mode = _choose_mode(ok)
        wheels = ensure_wheels()
        root = rootfs_path()
        if not _rootfs_complete(root):
            if not is_root():
                raise EmulationError("building the arm64 rootfs needs root (debootstrap, "
                                     "chroot): run `sudo python3 -m tests.harness.emulation setup`")
            build_rootfs(mode)
        emu = Emulation(root, mode)
        if not _site_complete(root):
            install_wheels(emu, wheels)
        log("emulation ready (%s mode) in %.0f s" % (mode, time.time() - t0))
        return emu


def status():
    root = rootfs_path()
    info = {
        "cache": cache_dir("emu"),
        "rootfs": root,
        "rootfs_complete": _rootfs_complete(root),
        "rootfs_info": _read_json(os.path.join(root, ROOTFS_STAMP)),
        "torch_installed": _site_complete(root),
        "torch_site": root + GUEST_SITE + "/torch",
        "binfmt_mounted": os.path.exists(os.path.join(BINFMT_DIR, "register")),
        "binfmt_qemu_aarch64": binfmt_entry(),
        "binfmt_works": binfmt_works(),
        "mode_env": os.environ.get("RECIPE_EMU_MODE", "auto"),
        "wheels": {fn: os.path.isfile(os.path.join(wheel_dir(), fn)) for _, fn, _, _ in WHEELS},
        "host_tools_missing": sorted({p for e, p in HOST_TOOLS if not _have_tool(e)}),
    }
    try:
        info["debian_mirror"] = debian_mirror()
    except EmulationError as e:
        info["debian_mirror"] = "NONE: %s" % e
    return info


def _cwd_bind():
    cwd = os.getcwd()
    return [cwd] if cwd != "/" else []


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tests.harness.emulation",
                                description="aarch64 qemu-user emulation harness")
    sub = p.add_subparsers(dest="cmd")
    sub.add_parser("setup", help="set up (or verify) the rootfs, binfmt and wheels")
    sub.add_parser("status", help="show what is set up (JSON)")
    pr = sub.add_parser("run", help="run a command inside the rootfs: run -- CMD ARGS...")
    pr.add_argument("--bind", action="append", default=[],
                    help="host directory visible inside at the same path (repeatable)")
    pr.add_argument("argv", nargs=argparse.REMAINDER)
    pp = sub.add_parser("python", help="run python code inside the rootfs: python CODE [ARGS]")
    pp.add_argument("--bind", action="append", default=[])
    pp.add_argument("code")
    pp.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    try:
        if a.cmd == "setup":
            t0 = time.time()
            emu = ensure_emulation()
            print("rootfs:     %s\nmode:       %s\ntorch_site: %s\nready in %.1f s"
                  % (emu.rootfs, emu.mode, emu.torch_site, time.time() - t0))
            return 0
        if a.cmd == "status":
            print(json.dumps(status(), indent=2))
            return 0
        if a.cmd == "run":
            argv_ = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
            if not argv_:
                p.error("run needs a command: run -- CMD ARGS...")
            r = ensure_emulation().run(argv_, binds=a.bind + _cwd_bind(), cwd=os.getcwd())
            sys.stdout.write(r.stdout)
            sys.stderr.write(r.stderr)
            return r.returncode
        if a.cmd == "python":
            code = a.code
            r = ensure_emulation().python(code, args=a.args, binds=a.bind + _cwd_bind(),
                                          cwd=os.getcwd())
            sys.stdout.write(r.stdout)
            sys.stderr.write(r.stderr)
            return r.returncode
    except EmulationError as e:
        sys.stderr.write("error: %s\n" % e)
        return 2
    p.print_help()
    return 1


if __name__ == "__main__":
    sys.exit(main())
