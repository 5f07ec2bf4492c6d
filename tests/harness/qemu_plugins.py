"""Harness: a qemu-aarch64 (linux-user) with TCG plugins, to COUNT what aarch64 code executes.

Debian's qemu-user-static has no plugin support, so `ensure_qemu_plugins()` builds one
(idempotent, cached under ``recipe.cache_dir("qemu-plugins", ...)``, never in the repo):

1. Source: Debian's ``qemu 1:7.2+dfsg-7+deb12u18`` (bookworm, the qemu-user this harness
   already runs). ``apt-get source --download-only`` through a PRIVATE deb-src list (the
   host's apt state is untouched; apt checks the archive signature and the Sources hashes),
   falling back to the pool for the orig tarball alone when that Debian revision has been
   superseded. Every file is then checked against the size and sha256 pinned below; only
   the upstream ("orig") tarball is unpacked, Debian's own patches are not applied.
2. ``configure --target-list=aarch64-linux-user --enable-plugins --disable-system
   --disable-tools --disable-docs --without-default-features --disable-install-blobs``
   (Debian's dfsg tarball lacks the firmware blobs), ``ninja qemu-aarch64``: a dynamic
   binary for this host (glib, zlib), run from the host with ``-L ROOTFS``. Measured cold
   on 2 cores shared with other jobs: unpack 8 s, configure 38 s, build 859 s (~15 min; the
   timings are kept in the build's build.json). CI must keep this cache between runs.
3. Two of qemu's own plugins, compiled against its ``qemu-plugin.h``:
   ``tests/plugin/insn.c`` (``inline=on``: an inline counter of executed guest
   instructions) and ``contrib/plugins/cache.c`` (set-associative L1I/L1D/L2 models, LRU;
   "insn accesses" is again the executed-instruction count). cache.c gets ONE small patch
   (`CACHE_START_SYSCALL_PATCH`): ``start_syscall=N`` leaves the program uninstrumented
   until the guest's first syscall number N, then flushes the translated code and models
   from there on. Without it every run pays the model for the whole Python + torch
   start-up (5.5e9 instructions: ~5 minutes here) before the first convolution.
   qemu itself gets the upstream fix of a lock that 7.2 never releases after a plugin
   reset (`LOADER_UNLOCK_PATCH`).

Running (`CountingQemu.command`): ``setarch <arch> -R`` (no address randomisation),
``qemu-aarch64 -seed 1`` (deterministic guest randomness), a fixed environment, ``-cpu``
the chosen model, ``-plugin ... -d plugin -D LOG``. The plugins print at every guest
process exit (also of fork()ed children), in exit order; `parse_log` reads those records.
"""
from __future__ import annotations

import glob
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
import urllib.request

from recipe import cache_dir, locks
from recipe.hashing import sha256_file
from recipe.log import logger
from tests.harness.emulation import EmulationError, debian_mirror, ensure_host_packages
# The private deb-src apt configuration pytorch_source.py uses for Debian's pytorch.
from tests.harness.pytorch_source import KEYRING, _apt_opts

PACKAGE = "qemu"
DEBIAN_VERSION = "1:7.2+dfsg-7+deb12u18"
DEBIAN_SUITE = "bookworm"
POOL_PATH = "pool/main/q/qemu/"
ORIG_TARBALL = "qemu_7.2+dfsg.orig.tar.xz"
TOP_DIR = "qemu-7.2.0"
# file -> (size, sha256): what `apt-get source --download-only` fetches for that version.
PINNED_FILES = {
    ORIG_TARBALL: (23523172, "91aca71520040edc40b8d437aa3004dae614f58e286cf653ee8996c07af2962f"),
    "qemu_7.2+dfsg-7+deb12u18.dsc":
        (6909, "6b6bd27b947ec89e40a1d6b26d9c9f3c698ca691da13163e0483f6061bbb20b3"),
    "qemu_7.2+dfsg-7+deb12u18.debian.tar.xz":
        (405636, "28a1c86310ee53b6bf1854cffe6f6be6ed29a08db7d05759f8ac57b8d6a6cb2f"),
}
CONFIGURE_FLAGS = ("--target-list=aarch64-linux-user", "--enable-plugins", "--disable-system",
                   "--disable-tools", "--disable-docs", "--without-default-features",
                   "--disable-install-blobs", "--disable-werror")
PLUGINS = {"insn": "tests/plugin/insn.c", "cache": "contrib/plugins/cache.c"}
PLUGIN_CFLAGS = ("-O2", "-shared", "-fPIC", "-Wall")
BUILD_LAYOUT = 1            # bump to force a rebuild of cached builds
# Host tool (or file) -> Debian package; also in tools/test.sh's APT_PACKAGES.
BUILD_TOOLS = (
    ("meson", "meson"),
    ("ninja", "ninja-build"),
    ("pkg-config", "pkg-config"),
    ("/usr/include/glib-2.0/glib.h", "libglib2.0-dev"),
    ("gcc", "gcc"),
    ("patch", "patch"),
    ("xz", "xz-utils"),
    ("setarch", "util-linux"),
    ("apt-get", "apt"),
    (KEYRING, "debian-archive-keyring"),
)

# qemu 7.2's plugin_reset_destroy() takes plugin.lock twice (a recursive mutex) instead of
# taking and releasing it, so after a qemu_plugin_reset() any other guest thread that exits
# (e.g. one the profiler starts) waits for that lock forever. Upstream qemu releases it.
LOADER_UNLOCK_PATCH = r"""--- a/plugins/loader.c
+++ b/plugins/loader.c
@@ -374,7 +374,7 @@
 {
     qemu_rec_mutex_lock(&plugin.lock);
     plugin_reset_destroy__locked(data);
-    qemu_rec_mutex_lock(&plugin.lock);
+    qemu_rec_mutex_unlock(&plugin.lock);
 }
 
 static void plugin_flush_destroy(CPUState *cpu, run_on_cpu_data arg)
"""
# contrib/plugins/cache.c: model from a marker syscall on (see the module docstring).
CACHE_START_SYSCALL_PATCH = r"""--- a/contrib/plugins/cache.c
+++ b/contrib/plugins/cache.c
@@ -720,6 +720,32 @@
     g_hash_table_destroy(miss_ht);
 }
 
+/*
+ * start_syscall=N: model nothing until the guest's first syscall number N, then
+ * flush the translated code (qemu_plugin_reset) and instrument from there on, so
+ * that only what follows the marker (e.g. a benchmark after its start-up) is paid
+ * for and counted. Without it the model runs from the first instruction.
+ */
+static int64_t start_syscall;
+static bool started;
+
+static void start_model(qemu_plugin_id_t id)
+{
+    qemu_plugin_register_vcpu_tb_trans_cb(id, vcpu_tb_trans);
+    qemu_plugin_register_atexit_cb(id, plugin_exit, NULL);
+}
+
+static void vcpu_syscall(qemu_plugin_id_t id, unsigned int vcpu_index,
+                         int64_t num, uint64_t a1, uint64_t a2,
+                         uint64_t a3, uint64_t a4, uint64_t a5,
+                         uint64_t a6, uint64_t a7, uint64_t a8)
+{
+    if (num == start_syscall &&
+        !__atomic_exchange_n(&started, true, __ATOMIC_SEQ_CST)) {
+        qemu_plugin_reset(id, start_model);
+    }
+}
+
 static void policy_init(void)
 {
     switch (policy) {
@@ -788,6 +814,8 @@
             l1_dcachesize = STRTOLL(tokens[1]);
         } else if (g_strcmp0(tokens[0], "limit") == 0) {
             limit = STRTOLL(tokens[1]);
+        } else if (g_strcmp0(tokens[0], "start_syscall") == 0) {
+            start_syscall = STRTOLL(tokens[1]);
         } else if (g_strcmp0(tokens[0], "cores") == 0) {
             cores = STRTOLL(tokens[1]);
         } else if (g_strcmp0(tokens[0], "l2cachesize") == 0) {
@@ -851,8 +879,12 @@
     l1_icache_locks = g_new0(GMutex, cores);
     l2_ucache_locks = use_l2 ? g_new0(GMutex, cores) : NULL;
 
-    qemu_plugin_register_vcpu_tb_trans_cb(id, vcpu_tb_trans);
-    qemu_plugin_register_atexit_cb(id, plugin_exit, NULL);
+    if (start_syscall) {
+        qemu_plugin_register_vcpu_syscall_cb(id, vcpu_syscall);
+        qemu_plugin_register_atexit_cb(id, plugin_exit, NULL);
+    } else {
+        start_model(id);
+    }
 
     miss_ht = g_hash_table_new_full(NULL, g_direct_equal, NULL, insn_free);
 
"""

PATCHES = (("loader-unlock", LOADER_UNLOCK_PATCH),
           ("cache-start-syscall", CACHE_START_SYSCALL_PATCH))


class QemuBuildError(RuntimeError):
    """The plugin-enabled qemu cannot be obtained or built; the message says why."""


log = logger("qemu-plugins")


# --------------------------------------------------------------------------- source

def _verify(path, name):
    size, sha = PINNED_FILES[name]
    if not os.path.isfile(path) or os.path.getsize(path) != size:
        raise QemuBuildError("%s: not the pinned %d bytes of %s (Debian %s %s)"
                             % (path, size, name, PACKAGE, DEBIAN_VERSION))
    digest = sha256_file(path)
    if digest != sha:
        raise QemuBuildError("%s: sha256 %s != pinned %s: refusing to use it"
                             % (path, digest, sha))


def _fetch_with_apt(mirror, work):
    for d in ("lists/partial", "cache/archives/partial", "dl"):
        os.makedirs(os.path.join(work, d), exist_ok=True)
    with open(os.path.join(work, "sources.list"), "w") as f:
        f.write("deb-src [signed-by=%s] %s %s main\n" % (KEYRING, mirror, DEBIAN_SUITE))
    for args, cwd in ((["update"], work),
                      (["source", "--download-only", "%s=%s" % (PACKAGE, DEBIAN_VERSION)],
                       os.path.join(work, "dl"))):
        r = subprocess.run(["apt-get", "-q"] + _apt_opts(work) + args, cwd=cwd,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
        if r.returncode != 0:
            raise QemuBuildError("apt-get %s failed:\n%s" % (args[0], r.stdout[-3000:]))
    for name in PINNED_FILES:
        _verify(os.path.join(work, "dl", name), name)
    return os.path.join(work, "dl", ORIG_TARBALL)


def _fetch_from_pool(mirror, work):
    url = "%s/%s%s" % (mirror, POOL_PATH, ORIG_TARBALL)
    path = os.path.join(work, "pool-" + ORIG_TARBALL)
    log("downloading %s" % url)
    with urllib.request.urlopen(url, timeout=120) as resp, open(path, "wb") as out:
        shutil.copyfileobj(resp, out, 1 << 20)
    _verify(path, ORIG_TARBALL)
    return path


def ensure_tarball():
    """The verified orig tarball, cached under cache_dir("qemu-plugins", "src")."""
    dest = cache_dir("qemu-plugins", "src", ORIG_TARBALL)
    if os.path.exists(dest):
        try:
            _verify(dest, ORIG_TARBALL)
            return dest
        except QemuBuildError as e:
            log("cached tarball rejected, fetching again: %s" % e)
            os.unlink(dest)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    try:
        mirror = debian_mirror()
    except EmulationError as e:
        raise QemuBuildError(str(e))
    work = tempfile.mkdtemp(prefix=".fetch-", dir=os.path.dirname(dest))
    errors = []
    try:
        for name, fetch in (("apt-get source", _fetch_with_apt), ("pool", _fetch_from_pool)):
            try:
                t0 = time.time()
                got = fetch(mirror, work)
                os.replace(got, dest)
                log("fetched %s via %s in %.1f s" % (ORIG_TARBALL, name, time.time() - t0))
                return dest
            except (QemuBuildError, OSError) as e:
                errors.append("%s: %s" % (name, e))
                log("%s failed: %s" % (name, (str(e).strip().splitlines() or [""])[-1]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    raise QemuBuildError("cannot obtain %s (Debian %s %s) from %s:\n%s"
                         % (ORIG_TARBALL, PACKAGE, DEBIAN_VERSION, mirror, "\n".join(errors)))


# --------------------------------------------------------------------------- build

def _glib_flags(what):
    r = subprocess.run(["pkg-config", what, "glib-2.0"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    if r.returncode != 0:
        raise QemuBuildError("pkg-config %s glib-2.0 failed (apt-get install libglib2.0-dev): %s"
                             % (what, r.stdout.strip()))
    return r.stdout.split()


def build_key():
    h = hashlib.sha256(json.dumps({
        "version": DEBIAN_VERSION, "orig": PINNED_FILES[ORIG_TARBALL][1],
        "configure": CONFIGURE_FLAGS, "plugins": PLUGINS, "cflags": PLUGIN_CFLAGS,
        "patches": PATCHES, "layout": BUILD_LAYOUT,
        "host": platform.machine()}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def build_dir():
    return cache_dir("qemu-plugins", "qemu-7.2-%s" % build_key())


class CountingQemu(object):
    """A built qemu-aarch64 with the insn and cache plugins (construct with
    `ensure_qemu_plugins()`)."""

    def __init__(self, root):
        self.root = root
        self.qemu = os.path.join(root, "qemu-aarch64")
        self.plugins = {name: os.path.join(root, "lib%s.so" % name) for name in PLUGINS}

    def info(self):
        with open(os.path.join(self.root, "build.json")) as f:
            return json.load(f)

    def command(self, rootfs, argv, cpu, log_path, insn=True, cache_args=None):
        """Host argv running guest `argv` (argv[0] a guest path) under this qemu with -L.

        cache_args: dict of cache-plugin options (None: no cache model)."""
        cmd = ["setarch", platform.machine(), "-R", self.qemu, "-seed", "1",
               "-L", rootfs, "-cpu", cpu]
        if insn:
            cmd += ["-plugin", self.plugins["insn"] + ",inline=on"]
        if cache_args is not None:
            cmd += ["-plugin", self.plugins["cache"] + "".join(
                ",%s=%s" % kv for kv in sorted(cache_args.items()))]
        exe = argv[0]
        if exe.startswith("/"):
            exe = rootfs.rstrip("/") + exe
        return cmd + ["-d", "plugin", "-D", log_path, exe] + list(argv[1:])


def _complete(root):
    try:
        with open(os.path.join(root, "build.json")) as f:
            return json.load(f).get("key") == build_key()
    except (OSError, ValueError):
        return False


def _run(cmd, cwd, what, timeout=3600):
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=timeout)
    if r.returncode != 0:
        raise QemuBuildError("%s failed (exit %d):\n$ %s\n%s"
                             % (what, r.returncode, " ".join(cmd), r.stdout[-4000:]))
    return r.stdout


def build(tarball, dest):
    """Unpack, patch, configure and build into a temporary sibling of `dest`, then rename."""
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".build-", dir=parent)
    seconds = {}
    try:
        t0 = time.time()
        _run(["tar", "-xJf", tarball, "-C", work, "--no-same-owner"], work, "unpacking")
        src = os.path.join(work, TOP_DIR)
        for name, text in PATCHES:
            r = subprocess.run(["patch", "-p1", "--forward", "--batch"], cwd=src, input=text,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True)
            if r.returncode != 0:
                raise QemuBuildError("patch %s does not apply to %s:\n%s"
                                     % (name, TOP_DIR, r.stdout))
        seconds["unpack"] = time.time() - t0
        bdir = os.path.join(work, "build")
        os.makedirs(bdir)
        t0 = time.time()
        log("configure %s (aarch64-linux-user, plugins)" % TOP_DIR)
        _run([os.path.join(src, "configure")] + list(CONFIGURE_FLAGS), bdir, "configure")
        seconds["configure"] = time.time() - t0
        t0 = time.time()
        log("ninja qemu-aarch64 (a few minutes)")
        _run(["ninja", "qemu-aarch64"], bdir, "ninja qemu-aarch64")
        seconds["build"] = time.time() - t0
        out = os.path.join(work, "out")
        os.makedirs(out)
        shutil.copy2(os.path.join(bdir, "qemu-aarch64"), out)
        cflags = _glib_flags("--cflags") + ["-I" + os.path.join(src, "include", "qemu")]
        for name, rel in sorted(PLUGINS.items()):
            _run(["gcc"] + list(PLUGIN_CFLAGS) + cflags
                 + [os.path.join(src, rel), "-o", os.path.join(out, "lib%s.so" % name)]
                 + _glib_flags("--libs"), src, "compiling the %s plugin" % name)
        version = _run([os.path.join(out, "qemu-aarch64"), "--version"], out,
                       "qemu-aarch64 --version").splitlines()[0]
        with open(os.path.join(out, "build.json"), "w") as f:
            json.dump({"key": build_key(), "debian_version": DEBIAN_VERSION,
                       "patches": [name for name, _ in PATCHES],
                       "orig_sha256": PINNED_FILES[ORIG_TARBALL][1], "qemu": version,
                       "configure": list(CONFIGURE_FLAGS), "plugins": PLUGINS,
                       "seconds": {k: round(v, 1) for k, v in seconds.items()}}, f, indent=1)
        if os.path.lexists(dest):
            shutil.rmtree(dest)
        os.rename(out, dest)
        for stale in glob.glob(os.path.join(parent, "qemu-7.2-*")):
            if stale != dest:
                shutil.rmtree(stale, ignore_errors=True)   # builds of older build keys
        log("built in %.0f s: %s" % (sum(seconds.values()), dest))
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_qemu_plugins():
    """The cached plugin-enabled qemu (built on first use: ~15 min on 2 shared cores)."""
    root = build_dir()
    if _complete(root):
        return CountingQemu(root)
    with locks.waiting(cache_dir("qemu-plugins", ".lock")):
        if _complete(root):
            return CountingQemu(root)
        try:
            ensure_host_packages(BUILD_TOOLS)
        except EmulationError as e:
            raise QemuBuildError(str(e))
        build(ensure_tarball(), root)
    return CountingQemu(root)


# --------------------------------------------------------------------------- results

_INSNS = re.compile(r"^insns: (\d+)$", re.M)
_CACHE = re.compile(r"^core #, data accesses.*\n0\s+(.+)$", re.M)
CACHE_FIELDS = ("l1d_accesses", "l1d_misses", "insn_accesses", "l1i_misses",
                "l2_accesses", "l2_misses")


def parse_log(text):
    """[{"insns": N, "l1d_misses": ..., ...}] per guest process, in the order they exited.

    The insn plugin prints "insns: N"; the cache plugin a header line and a line of
    counts and rates per modelled core (one here)."""
    insns = [int(m) for m in _INSNS.findall(text)]
    caches = []
    for line in _CACHE.findall(text):
        numbers = [v for v in line.split() if not v.endswith("%")]
        caches.append(dict(zip(CACHE_FIELDS, (int(v) for v in numbers))))
    if caches and len(caches) != len(insns):
        raise QemuBuildError("plugin log: %d instruction counts but %d cache reports"
                             % (len(insns), len(caches)))
    return [dict(caches[i] if caches else {}, insns=n) for i, n in enumerate(insns)]


def main(argv=None):
    """python -m tests.harness.qemu_plugins: build (or find) it; prints the build directory."""
    t0 = time.time()
    try:
        q = ensure_qemu_plugins()
    except QemuBuildError as e:
        sys.stderr.write("error: %s\n" % e)
        return 3
    print(q.root)
    log("ready in %.1f s: %s" % (time.time() - t0, q.info()["qemu"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
