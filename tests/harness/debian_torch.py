"""A torch 2.6.0 that someone else built: Debian's python3-torch 2.6.0+dfsg-7 (trixie).

The add-on is prebuilt against the OFFICIAL 2.6.0 wheel's headers; a user may run another
build of the same version. Debian's is a real one (system oneDNN 3.6 without ACL,
XNNPACK, OpenMPI, Python 3.13, soname ``libtorch_cpu.so.2.6``, another DispatchStub
layout). `ensure_debian_torch(arch)` makes a trixie root filesystem with it installed:

* ``amd64``: an amd64 chroot on this x86_64 machine, no emulation (fast);
* ``arm64``: an arm64 chroot run under qemu-user through binfmt_misc (the emulation
  harness must work: `tests.harness.emulation.ensure_binfmt`).

Steps (once; cached under ``recipe.cache_dir("debian-torch", "trixie-<arch>")``, built in
``<dir>.tmp-<pid>`` and renamed when complete): ``debootstrap --variant=minbase trixie``
from this machine's own Debian mirror (`tests.harness.emulation.debian_mirror`), then inside the
chroot ``apt-get install --no-install-recommends python3-torch=2.6.0+dfsg-7
libtorch2.6=2.6.0+dfsg-7 python3-venv`` (apt resolves and verifies the dependencies
against the signed trixie index; the two torch packages are also checked against the
sha256 pinned in `PACKAGES` before apt's cache is emptied). ``dpkg-query`` of the result
is kept in ``/etc/torch-arm-recipe-debian.json``. python3-venv is there because a Debian
user pip-installs an add-on into ``python3 -m venv --system-site-packages DIR`` (PEP 668
keeps pip out of the system site): `make_venv` does that in a folder outside the rootfs.

Run commands with ``.run(argv)`` / ``.python(code)`` of the returned
`tests.harness.emulation.Emulation` (chroot mode: private mount namespace, the caller's bind
directories at the same paths).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

from recipe.log import logger
from recipe import cache_dir, locks
from tests.harness.emulation import (Emulation, EmulationError, binfmt_works, debian_mirror,
                              ensure_binfmt, is_root)
from recipe.hashing import sha256_file

SUITE = "trixie"
DEBIAN_VERSION = "2.6.0+dfsg-7"
ARCHES = ("amd64", "arm64")
LAYOUT = 1                     # bump to rebuild existing root filesystems
PYTHON = "/usr/bin/python3"
STAMP = "etc/torch-arm-recipe-debian.json"
# (package, architecture) -> (file in the pool, size, sha256), from trixie's Packages index.
PACKAGES = {
    ("python3-torch", "amd64"): ("python3-torch_2.6.0+dfsg-7_amd64.deb", 11422444,
                                 "8f0e1272b923adcd0e98bbbc287e73b1826894ccebe52c5fb9f96cd94e89ff4a"),
    ("libtorch2.6", "amd64"): ("libtorch2.6_2.6.0+dfsg-7_amd64.deb", 58053636,
                               "bfecd8ad54e9876c86c7072dde8ab7b5f58df45c009ac8b8e719ef4e15a5e6e8"),
    ("python3-torch", "arm64"): ("python3-torch_2.6.0+dfsg-7_arm64.deb", 10515576,
                                 "0088a7fecfe9afbdf6023aeabab4df74e4b1c6c3a9413dd4b5da2714c0a13596"),
    ("libtorch2.6", "arm64"): ("libtorch2.6_2.6.0+dfsg-7_arm64.deb", 44553092,
                               "9a94fdfbaf3c5c19390e91f9661c7c83fb839ff648f1e789f27c551b9575d2dc"),
}
EXTRA_PACKAGES = ("python3-venv",)
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


log = logger("debian-torch")


def rootfs_path(arch):
    return cache_dir("debian-torch", "%s-%s" % (SUITE, arch))


def _complete(root):
    try:
        with open(os.path.join(root, STAMP)) as f:
            return json.load(f).get("layout") == LAYOUT
    except (OSError, ValueError):
        return False


def _native(arch):
    import platform
    return HOST_ARCH.get(platform.machine()) == arch


def _emulation(root):
    return Emulation(root, "chroot")


def _check(r, what):
    if r.returncode != 0:
        raise EmulationError("%s failed (exit %d):\n%s\n%s"
                             % (what, r.returncode, (r.stdout or "")[-3000:],
                                (r.stderr or "")[-3000:]))
    return r


def _build(arch, final):
    mirror = debian_mirror()
    tmp = "%s.tmp-%d" % (final, os.getpid())
    parent = os.path.dirname(final)
    for name in os.listdir(parent):
        if name.startswith(os.path.basename(final) + ".tmp-"):
            subprocess.run(["rm", "-rf", "--one-file-system", os.path.join(parent, name)])
    debs = cache_dir("debian-torch", "debs-" + arch)
    os.makedirs(debs, exist_ok=True)
    t0 = time.time()
    log("debootstrap %s %s%s (minutes)" % (SUITE, arch, "" if _native(arch) else " under qemu"))
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "debootstrap",
                        "--arch=" + arch, "--variant=minbase", "--cache-dir=" + debs,
                        SUITE, tmp, mirror],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if r.returncode != 0:
        logfile = os.path.join(tmp, "debootstrap", "debootstrap.log")
        tail = open(logfile, errors="replace").read()[-3000:] if os.path.exists(logfile) else ""
        raise EmulationError("debootstrap %s %s failed (exit %d):\n%s\n%s"
                             % (SUITE, arch, r.returncode, r.stdout[-3000:], tail))
    log("debootstrap done in %.0f s" % (time.time() - t0))
    with open(os.path.join(tmp, "etc/apt/sources.list"), "w") as f:
        f.write("deb %s %s main\n" % (mirror, SUITE))
    shutil.copyfile("/etc/resolv.conf", os.path.join(tmp, "etc/resolv.conf"))
    emu = _emulation(tmp)
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    t1 = time.time()
    _check(emu.run(["apt-get", "update"], env=env, timeout=1800), "apt-get update (%s)" % arch)
    pins = ["%s=%s" % (pkg, DEBIAN_VERSION) for pkg, a in sorted(PACKAGES) if a == arch]
    _check(emu.run(["apt-get", "install", "-y", "--no-install-recommends"] + pins
                   + list(EXTRA_PACKAGES), env=env, timeout=7200),
           "apt-get install %s (%s)" % (" ".join(pins), arch))
    log("python3-torch %s installed in %.0f s" % (DEBIAN_VERSION, time.time() - t1))
    for (pkg, a), (fn, size, sha) in sorted(PACKAGES.items()):
        if a != arch:
            continue
        path = os.path.join(tmp, "var/cache/apt/archives", fn)
        if not (os.path.isfile(path) and os.path.getsize(path) == size
                and sha256_file(path) == sha):
            raise EmulationError("%s: apt installed a file that does not match the pinned "
                                 "size %d / sha256 %s" % (fn, size, sha))
    _check(emu.run(["apt-get", "clean"]), "apt-get clean")
    q = _check(emu.run(["dpkg-query", "-W", "-f", "${Package} ${Version} ${Architecture}\\n"]),
               "dpkg-query")
    with open(os.path.join(tmp, STAMP), "w") as f:
        json.dump({"layout": LAYOUT, "suite": SUITE, "arch": arch, "mirror": mirror,
                   "torch": DEBIAN_VERSION, "seconds": round(time.time() - t0),
                   "packages": q.stdout.split("\n")}, f, indent=1)
    os.rename(tmp, final)
    log("trixie %s with python3-torch %s ready in %.0f s: %s"
        % (arch, DEBIAN_VERSION, time.time() - t0, final))


def ensure_debian_torch(arch="amd64"):
    """The trixie `arch` chroot with Debian's torch 2.6.0 (built once); an Emulation."""
    if arch not in ARCHES:
        raise ValueError("arch must be one of %s, not %r" % (ARCHES, arch))
    root = rootfs_path(arch)
    if not is_root() or not shutil.which("unshare") or not shutil.which("debootstrap"):
        raise EmulationError("Debian's torch chroot needs root, unshare and debootstrap "
                             "(apt-get install debootstrap util-linux)")
    if not _native(arch) and not (binfmt_works() or ensure_binfmt()):
        raise EmulationError("an %s chroot needs qemu-user through binfmt_misc "
                             "(python3 -m tests.harness.emulation setup)" % arch)
    if _complete(root):
        return _emulation(root)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with locks.waiting(cache_dir("debian-torch", ".lock-" + arch)):
        if not _complete(root):
            if os.path.lexists(root):
                subprocess.run(["rm", "-rf", "--one-file-system", root])
            _build(arch, root)
    return _emulation(root)


def make_venv(emu, path):
    """`python3 -m venv --system-site-packages path` inside the chroot (path: a host folder,
    bound at the same path); returns the venv's python as the guest sees it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _check(emu.run([PYTHON, "-m", "venv", "--system-site-packages", path],
                   binds=[os.path.dirname(path)], timeout=1800), "python3 -m venv " + path)
    return os.path.join(path, "bin", "python3")


POOL = "pool/main/p/pytorch/"


def library_exports(arch):
    """What Debian's libtorch2.6 (`arch`) exports, without a chroot: the pinned .deb from
    the pool, unpacked once; returns (set of defined dynamic symbols of libtorch_cpu and
    libc10, {library file name: soname}, NEEDED of libtorch_cpu). OpenMP (GOMP_*, omp_*)
    is not among the exports: Debian's libtorch_cpu NEEDs the system's libgomp.so.1."""
    from recipe.addon_headers import dynamic_symbols
    from tests.harness.crossbuild import CrossBuildError, fetch_pool_file
    fn, size, sha = PACKAGES[("libtorch2.6", arch)]
    root = cache_dir("debian-torch", "libtorch2.6-" + arch)
    marker = os.path.join(root, ".complete")
    if not os.path.exists(marker):
        try:
            deb = fetch_pool_file(fn, POOL, size, sha, cache_dir("debian-torch", "debs-" + arch))
        except CrossBuildError as e:
            raise EmulationError(str(e))
        tmp = root + ".tmp-%d" % os.getpid()
        shutil.rmtree(tmp, ignore_errors=True)
        _check(subprocess.run(["dpkg-deb", "-x", deb, tmp], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True),
               "dpkg-deb -x " + fn)
        open(os.path.join(tmp, ".complete"), "w").close()
        shutil.rmtree(root, ignore_errors=True)
        os.rename(tmp, root)
    libs = sorted(p for p in glob.glob(os.path.join(root, "usr/lib/*-linux-gnu/lib*.so.*"))
                  if re.match(r"^lib(torch_cpu|c10)\.so\.\d+\.\d+$", os.path.basename(p)))
    if len(libs) != 2:
        raise EmulationError("%s: expected libtorch_cpu.so.* and libc10.so.*, found %s"
                             % (fn, [os.path.basename(p) for p in libs]))
    names, sonames, needed = set(), {}, []
    for lib in libs:
        names.update(n for n, _, defined, _ in dynamic_symbols(lib) if defined)
        r = subprocess.run(["readelf", "-W", "-d", lib], stdout=subprocess.PIPE,
                           universal_newlines=True)
        m = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", r.stdout)
        sonames[os.path.basename(lib)] = m.group(1) if m else None
        if os.path.basename(lib).startswith("libtorch_cpu"):
            needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)
    return names, sonames, needed


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m tests.harness.debian_torch",
                                description="trixie chroot with Debian's python3-torch %s"
                                            % DEBIAN_VERSION)
    p.add_argument("--arch", choices=ARCHES, default="amd64")
    a = p.parse_args(argv)
    try:
        emu = ensure_debian_torch(a.arch)
    except EmulationError as e:
        sys.stderr.write("error: %s\n" % e)
        return 2
    r = emu.run([PYTHON, "-c", "import torch, platform; print(platform.machine(), "
                               "torch.__version__, torch.__file__)"], timeout=1800)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr[-2000:])
    print(emu.rootfs)
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
