"""The real PyTorch 2.6.0 source tree: Debian's `pytorch 2.6.0+dfsg-7` (suite trixie).

`ensure_pytorch_source()` fetches the upstream ("orig") tarball of that Debian source
package, verifies its size and sha256 BEFORE unpacking anything, unpacks it once into
``recipe.cache_dir("sources", "pytorch-2.6.0+dfsg")`` and returns the tree
(``.../tree/pytorch-v2.6.0``: aten/, c10/, torch/ intact, third_party stripped by Debian).
Debian's own patches (debian.tar.xz) are NOT applied.

Fetching, in order:
1. ``RECIPE_PYTORCH_ORIG_TARBALL=/path/to/pytorch_2.6.0+dfsg.orig.tar.xz`` (offline use;
   still verified).
2. ``apt-get source --download-only pytorch=2.6.0+dfsg-7`` with a PRIVATE deb-src list
   (``Dir::Etc::SourceList``, ``Dir::Etc::SourceParts=/dev/null``, private
   ``Dir::State::Lists`` and ``Dir::Cache``): the host's apt state is not touched. The
   mirror is read from this machine's apt configuration at run time
   (`tests.harness.emulation.debian_mirror`). apt checks the archive signature and the hashes in
   the Sources index.
3. If apt cannot (no apt-get/keyring, or the archive has moved on to a newer Debian
   revision of 2.6.0 so `=2.6.0+dfsg-7` is no longer indexed; the orig tarball is shared by
   all revisions): a direct download of ``pool/main/p/pytorch/<orig tarball>`` from the
   same mirror.
Whatever the route, the pinned size and sha256 below decide.

Idempotence: the tree is unpacked into ``tree.tmp-<pid>``, a marker file is written
inside after a complete unpack, and the directory is renamed to ``tree``. A tree without
the marker (killed run) is deleted and unpacked again, never reused.

Writable copies (`fresh_copy`): a full copy (``cp -a --reflink=auto``: copy-on-write
clones on filesystems that have them, else a real copy; 158 MB / 15,550 files, ~1 s
measured on ext4 with a warm page cache). A hard-link farm was rejected: `git apply` and
GNU `patch` do replace files (checked: unlink + create, the pristine inode keeps its
content), but the patch series' ``copy`` entries, ``shutil.copyfile`` and any
``open(path, "w")`` write IN PLACE and would silently modify the cached pristine tree
through the shared inode (and file modes do not stop root).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from recipe.log import logger
from recipe import cache_dir
from recipe import locks
from tests.harness.emulation import debian_mirror, EmulationError
from recipe.hashing import sha256_file

PACKAGE = "pytorch"
DEBIAN_VERSION = "2.6.0+dfsg-7"
DEBIAN_SUITE = "trixie"
ORIG_TARBALL = "pytorch_2.6.0+dfsg.orig.tar.xz"
ORIG_SIZE = 27212640
ORIG_SHA256 = "099a9601bc40d67656e75735c44abedb0fbe92d08817852ab7472eebb7e6ddff"
POOL_PATH = "pool/main/p/pytorch/"
TOP_DIR = "pytorch-v2.6.0"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MARKER = ".torch-arm-recipe-unpacked"
# Files that must exist in a complete tree (cheap sanity check after unpacking).
EXPECTED_FILES = (
    "version.txt",
    "aten/src/ATen/native/Convolution.cpp",
    "aten/src/ATen/native/cpu/DepthwiseConvKernel.cpp",
    "c10/macros/Macros.h",
    "CMakeLists.txt",
)


class SourceError(RuntimeError):
    """The PyTorch source cannot be obtained or failed verification."""


log = logger("pytorch-source")


def source_root():
    return cache_dir("sources", "pytorch-2.6.0+dfsg")


def tarball_path():
    return os.path.join(source_root(), ORIG_TARBALL)


def tree_path():
    """Where the verified, unpacked tree lives (may not exist yet)."""
    return os.path.join(source_root(), "tree", TOP_DIR)


def verify_tarball(path):
    """Raise SourceError unless `path` has the pinned size and sha256."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise SourceError("cannot read %s: %s" % (path, e))
    if size != ORIG_SIZE:
        raise SourceError("%s: size %d != pinned %d (not %s of Debian %s %s)"
                          % (path, size, ORIG_SIZE, ORIG_TARBALL, PACKAGE, DEBIAN_VERSION))
    digest = sha256_file(path)
    if digest != ORIG_SHA256:
        raise SourceError("%s: sha256 %s != pinned %s: refusing to unpack"
                          % (path, digest, ORIG_SHA256))


def _apt_opts(work):
    return ["-o", "Dir::Etc::SourceList=" + os.path.join(work, "sources.list"),
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", "Dir::State::Lists=" + os.path.join(work, "lists"),
            "-o", "Dir::Cache=" + os.path.join(work, "cache"),
            "-o", "Acquire::Languages=none",
            "-o", "APT::Sandbox::User=root" if os.geteuid() == 0 else "Debug::NoLocking=1"]


def _fetch_with_apt(mirror, work):
    if shutil.which("apt-get") is None:
        raise SourceError("apt-get not found")
    if not os.path.exists(KEYRING):
        raise SourceError("%s missing (apt-get install debian-archive-keyring)" % KEYRING)
    for d in ("lists/partial", "cache/archives/partial", "dl"):
        os.makedirs(os.path.join(work, d), exist_ok=True)
    with open(os.path.join(work, "sources.list"), "w") as f:
        f.write("deb-src [signed-by=%s] %s %s main\n" % (KEYRING, mirror, DEBIAN_SUITE))
    opts = _apt_opts(work)
    for args, cwd in ((["update"], work),
                      (["source", "--download-only", "%s=%s" % (PACKAGE, DEBIAN_VERSION)],
                       os.path.join(work, "dl"))):
        r = subprocess.run(["apt-get", "-q"] + opts + args, cwd=cwd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        if r.returncode != 0:
            raise SourceError("apt-get %s failed:\n%s" % (args[0], r.stdout[-3000:]))
    path = os.path.join(work, "dl", ORIG_TARBALL)
    if not os.path.exists(path):
        raise SourceError("apt-get source did not produce %s" % ORIG_TARBALL)
    return path


def _fetch_from_pool(mirror, work):
    url = "%s/%s%s" % (mirror, POOL_PATH, ORIG_TARBALL)
    path = os.path.join(work, "pool-" + ORIG_TARBALL)
    log("downloading %s" % url)
    with urllib.request.urlopen(url, timeout=120) as resp, open(path, "wb") as out:
        shutil.copyfileobj(resp, out, 1 << 20)
    return path


def ensure_tarball():
    """The verified orig tarball in the cache (downloaded when missing)."""
    dest = tarball_path()
    if os.path.exists(dest):
        try:
            verify_tarball(dest)
            return dest
        except SourceError as e:
            log("cached tarball rejected, fetching again: %s" % e)
            os.unlink(dest)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    errors = []
    local = os.environ.get("RECIPE_PYTORCH_ORIG_TARBALL")
    if local:
        verify_tarball(local)
        shutil.copyfile(local, dest + ".tmp")
        verify_tarball(dest + ".tmp")
        os.replace(dest + ".tmp", dest)
        return dest
    try:
        mirror = debian_mirror()
    except EmulationError as e:
        raise SourceError(str(e))
    work = tempfile.mkdtemp(prefix=".fetch-", dir=os.path.dirname(dest))
    try:
        for name, fetch in (("apt-get source", _fetch_with_apt), ("pool", _fetch_from_pool)):
            try:
                t0 = time.time()
                got = fetch(mirror, work)
                verify_tarball(got)
                os.replace(got, dest)
                log("fetched %s via %s in %.1f s" % (ORIG_TARBALL, name, time.time() - t0))
                return dest
            except (SourceError, OSError) as e:
                errors.append("%s: %s" % (name, e))
                log("%s failed: %s" % (name, str(e).strip().splitlines()[-1:] or e))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    raise SourceError("cannot obtain %s (Debian %s %s) from %s:\n%s\nProvide it with "
                      "RECIPE_PYTORCH_ORIG_TARBALL=/path/to/%s (it is verified by sha256)."
                      % (ORIG_TARBALL, PACKAGE, DEBIAN_VERSION, mirror, "\n".join(errors),
                         ORIG_TARBALL))


def unpack_tarball(tarball, dest_root):
    """Verify `tarball` (size + sha256), then unpack it to `dest_root`/pytorch-v2.6.0.

    Nothing is written under `dest_root` unless the tarball verifies. The tree appears
    atomically (unpacked in a temporary sibling, marker written, renamed).
    Returns the tree path.
    """
    verify_tarball(tarball)
    final = os.path.join(dest_root, TOP_DIR)
    os.makedirs(dest_root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".unpack-", dir=dest_root)
    try:
        t0 = time.time()
        r = subprocess.run(["tar", "-xJf", tarball, "-C", tmp, "--no-same-owner"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
        if r.returncode != 0:
            raise SourceError("tar failed on %s (is xz-utils installed?):\n%s"
                              % (tarball, r.stdout[-2000:]))
        tree = os.path.join(tmp, TOP_DIR)
        missing = [p for p in EXPECTED_FILES if not os.path.exists(os.path.join(tree, p))]
        if missing:
            raise SourceError("unpacked tree lacks %s" % ", ".join(missing))
        with open(os.path.join(tree, MARKER), "w") as f:
            f.write("%s %s %s\n" % (ORIG_TARBALL, ORIG_SHA256, DEBIAN_VERSION))
        if os.path.lexists(final):
            shutil.rmtree(final)
        os.rename(tree, final)
        log("unpacked in %.1f s: %s" % (time.time() - t0, final))
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tree_complete(tree):
    try:
        with open(os.path.join(tree, MARKER)) as f:
            return ORIG_SHA256 in f.read()
    except OSError:
        return False


def ensure_pytorch_source():
    """Path of the verified, unpacked PyTorch 2.6.0 tree (read-only by convention)."""
    tree = tree_path()
    if _tree_complete(tree):
        return tree
    with locks.waiting(os.path.join(source_root(), ".lock")):
        if _tree_complete(tree):
            return tree
        if os.path.lexists(tree):
            log("removing incomplete tree %s" % tree)
            shutil.rmtree(tree)
        return unpack_tarball(ensure_tarball(), os.path.dirname(tree))


def fresh_copy(dest):
    """A writable copy of the verified tree at `dest` (must not exist); returns `dest`.

    Full copy (reflink clone where the filesystem supports it), never hard links: see the
    module docstring.
    """
    src = ensure_pytorch_source()
    dest = os.fspath(dest)
    if os.path.lexists(dest):
        raise FileExistsError(dest)
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    if shutil.which("cp"):
        r = subprocess.run(["cp", "-a", "--reflink=auto", src, dest],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
        if r.returncode != 0:
            raise SourceError("cp -a %s %s failed: %s" % (src, dest, r.stdout))
    else:
        shutil.copytree(src, dest, symlinks=True)
    marker = os.path.join(dest, MARKER)
    if os.path.exists(marker):
        os.unlink(marker)  # a copy is not the pristine cache
    return dest


def main(argv=None):
    t0 = time.time()
    try:
        print(ensure_pytorch_source())
    except SourceError as e:
        sys.stderr.write("error: %s\n" % e)
        return 2
    log("ready in %.1f s" % (time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
