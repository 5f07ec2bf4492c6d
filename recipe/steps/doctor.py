"""Step 1, doctor: is this host able to run the plan? Every failure says what to do.

Checks: host architecture and OS (L4T/JetPack on a Jetson), compilers, nvcc when CUDA is
planned, the build interpreter and its headers/packages, cmake/ninja/scons/git/patchelf,
OpenBLAS, free disk, and RAM + swap -> MAX_JOBS.

MAX_JOBS: PyTorch's heaviest translation units peak at about 1.5-2 GB each for C++
(RegisterCPU.cpp, the vectorized kernels) and 2.5-3+ GB for CUDA ones (flash attention,
CUTLASS). A Jetson shares its RAM with the GPU, and the OOM killer takes the compiler, not
the build, so a build with `-j` = cores dies hours in. We budget 2 GB per job for CPU-only
builds and 3 GB with CUDA, counting RAM + swap (swap is slow, but only the peaks hit it),
capped by the number of cores: AGX Orin 64 GB -> 12, AGX Orin 32 GB -> 8 (+swap),
AGX Xavier 32 GB CPU-only -> 8. `--jobs N` overrides.

In a dry run the findings are shown and nothing fails; in a real run any "fail" stops the
build before anything else happens.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil

from recipe import detect, proc
from recipe.config import version_tuple
from recipe.steps import StepError

NAME = "doctor"
TITLE = "check the host: arch/OS/JetPack, compilers, nvcc, Python, tools, disk, RAM+swap -> MAX_JOBS"
DEPENDS = ()
ALWAYS_RUN = True

GB = 1024 ** 3


# --------------------------------------------------------------------------- host facts

def probe_host(root="/"):
    """Cheap facts about this machine; `root` lets tests fake /etc and /proc."""
    def read(rel):
        try:
            with open(os.path.join(root, rel), "rb") as f:
                return f.read().decode("utf-8", "replace").replace("\x00", "").strip()
        except OSError:
            return None

    os_release = {}
    for line in (read("etc/os-release") or "").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            os_release[k] = v.strip().strip('"')
    meminfo = {}
    for line in (read("proc/meminfo") or "").splitlines():
        m = re.match(r"(\w+):\s+(\d+)\s*kB", line)
        if m:
            meminfo[m.group(1)] = int(m.group(2)) * 1024
    host = {
        "arch": platform.machine() if root == "/" else (read("arch") or platform.machine()),
        "os": os_release.get("ID", "unknown"),
        "os_version": os_release.get("VERSION_ID", ""),
        "os_name": os_release.get("PRETTY_NAME", platform.platform()),
        "cpus": os.cpu_count() or 1,
        "mem_bytes": meminfo.get("MemTotal", 0),
        "swap_bytes": meminfo.get("SwapTotal", 0),
    }
    host.update(detect.read_board(root))  # device_model, device_compatible, l4t, l4t_source
    return host


def is_jetson(host):
    return bool(host.get("l4t")) or "jetson" in (host.get("device_model") or "").lower()


def max_jobs(mem_bytes, swap_bytes, cpus, cuda):
    """Jobs that fit in RAM + swap at 2 GB (C++) / 3 GB (CUDA) each, at most one per core."""
    per_job = (3 if cuda else 2) * GB
    return max(1, min(cpus, int((mem_bytes + swap_bytes) // per_job)))


# --------------------------------------------------------------------------- checks

def _finding(check, status, value, fix=""):
    return {"check": check, "status": status, "value": value, "fix": fix}


def _tool_version(name, args=("--version",), env=None):
    exe = proc.which(name, env)
    if not exe:
        return None, None
    out = proc.output([exe] + list(args), env=env)
    m = re.search(r"(\d+\.\d+(\.\d+)?)", out or "")
    return exe, (m.group(1) if m else "?")


def _python_facts(python):
    code = (
        "import json,sys,sysconfig,os,importlib.util as u\n"
        "inc=sysconfig.get_paths().get('include','')\n"
        "print(json.dumps({'version':'%d.%d'%sys.version_info[:2],'full':sys.version.split()[0],"
        "'python_h':os.path.exists(os.path.join(inc,'Python.h')),'include':inc,"
        "'modules':{m:bool(u.find_spec(m)) for m in ('setuptools','yaml','typing_extensions','numpy','wheel')}}))"
    )
    out = proc.output([python, "-c", code])
    try:
        return json.loads(out) if out else None
    except ValueError:
        return None


def _nearest_existing(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check(plan, deep=False):
    """All findings for this plan on this host. deep=False reads only (the dry run's view)."""
    host, target, release = plan.host, plan.target, plan.release
    env = os.environ
    out = []
    native = host["arch"] == target["arch"]

    # -- architecture and OS
    out.append(_finding(
        "host arch", "ok" if native else "fail",
        "%s (target %s)" % (host["arch"], target["arch"]),
        "" if native else "this recipe builds natively: run it on the %s itself (or in the "
        "Dockerfile.jetson container on one)" % target["device"]["model"]))
    out.append(_finding("host OS", "info", host["os_name"]))
    jp = target.get("jetpack")
    if jp:
        want = jp["l4t"].split(".")[0]
        if host.get("l4t"):
            same = host["l4t"].split(".")[0] == want
            out.append(_finding(
                "L4T / JetPack", "ok" if same else "fail",
                "%s (target: %s = JetPack %s)" % (host["l4t"], jp["l4t"], jp["version"]),
                "" if same else "this Jetson runs %s; the target expects %s (JetPack %s): flash "
                "that JetPack or pick the matching target (--target jetson-agx detects it; python "
                "build.py list shows them)"
                % (host["l4t"], jp["l4t"], jp["version"])))
        else:
            out.append(_finding(
                "L4T / JetPack", "fail" if plan.cuda else "warn",
                "not a Jetson (no /etc/nv_tegra_release)",
                "CUDA for this target comes from JetPack %s: build on the Jetson" % jp["version"]
                if plan.cuda else "a CPU-only Jetson wheel can be built elsewhere only on aarch64"))
        model = host.get("device_model")
        if model:
            out.append(_finding("device", "info", model))

    # -- compilers
    for cc in ("gcc", "g++"):
        exe, ver = _tool_version(cc, ("-dumpfullversion", "-dumpversion"), env)
        if not exe:
            out.append(_finding(cc, "fail", "not found", "apt install build-essential"))
        elif version_tuple(ver) < version_tuple(release["build"]["gcc_min"]):
            out.append(_finding(cc, "fail", ver, "PyTorch %s needs GCC >= %s: install a newer one "
                                "(e.g. apt install gcc-10 g++-10) and export CC/CXX" % (
                                    release["torch"]["version"], release["build"]["gcc_min"])))
        else:
            out.append(_finding(cc, "ok", "%s (%s)" % (ver, exe)))
    if plan.cuda:
        home = plan.cuda.get("home") or "/usr/local/cuda"
        nvcc = proc.which("nvcc", env) or (os.path.join(home, "bin", "nvcc")
                                           if os.path.exists(os.path.join(home, "bin", "nvcc")) else None)
        if not nvcc:
            out.append(_finding("nvcc", "fail", "not found",
                                "install JetPack's CUDA (apt install nvidia-jetpack or cuda-toolkit-%s) "
                                "and put %s/bin on PATH" % (plan.cuda["version"].replace(".", "-"), home)))
        else:
            m = re.search(r"release (\d+\.\d+)", proc.output([nvcc, "--version"]) or "")
            ver = m.group(1) if m else "?"
            rng = release["cuda"]
            inside = m and version_tuple(rng["min"]) <= version_tuple(ver) <= version_tuple(rng["max"])
            out.append(_finding("nvcc", "ok" if inside else "fail", "%s (%s)" % (ver, nvcc),
                                "" if inside else "CUDA %s is outside %s's range %s-%s" % (
                                    ver, release["name"], rng["min"], rng["max"])))

    # -- the build interpreter
    py = _python_facts(plan.python_exe)
    if not py:
        out.append(_finding("python", "fail", plan.python_exe, "cannot run %s" % plan.python_exe))
    else:
        same = py["version"] == plan.python_version
        out.append(_finding(
            "python", "ok" if same else "fail", "%s (%s)" % (py["full"], plan.python_exe),
            "" if same else "the plan builds for Python %s; run build.py with that interpreter "
            "or pass --python PATH / --python-version %s" % (plan.python_version, py["version"])))
        out.append(_finding(
            "Python.h", "ok" if py["python_h"] else "fail", py["include"],
            "" if py["python_h"] else "apt install python%s-dev" % py["version"]))
        missing = [m for m in ("setuptools", "yaml", "typing_extensions") if not py["modules"][m]]
        out.append(_finding(
            "python packages", "fail" if missing else "ok",
            "missing: " + ", ".join(missing) if missing else "setuptools, pyyaml, typing_extensions",
            "%s -m pip install -r <source>/requirements.txt" % plan.python_exe if missing else ""))
        if not py["modules"]["numpy"]:
            out.append(_finding("numpy", "warn", "missing",
                                "%s -m pip install numpy (else torch is built without numpy support)"
                                % plan.python_exe))

    # -- tools
    needed = [("cmake", release["build"]["cmake_min"], "apt install cmake (or pip install cmake)"),
              ("ninja", None, "apt install ninja-build (or pip install ninja)"),
              ("git", None, "apt install git"),
              ("patchelf", None, "apt install patchelf"),
              ("readelf", None, "apt install binutils")]
    if plan.acl_enabled:
        needed.append(("scons", None, "apt install scons (or pip install scons)"))
    for name, minimum, fix in needed:
        exe, ver = _tool_version(name, env=env)
        if not exe:
            out.append(_finding(name, "fail", "not found", fix))
        elif minimum and ver != "?" and version_tuple(ver) < version_tuple(minimum):
            out.append(_finding(name, "fail", ver, "need >= %s: pip install -U %s" % (minimum, name)))
        else:
            out.append(_finding(name, "ok", "%s (%s)" % (ver, exe)))
    if target["arch"] == "aarch64" and native:
        cache = proc.output(["ldconfig", "-p"]) or ""
        has = "libopenblas" in cache
        out.append(_finding("OpenBLAS", "ok" if has else "fail", "found" if has else "not found",
                            "" if has else "apt install libopenblas-dev"))

    # -- disk, memory
    where = _nearest_existing(plan.work_dir)
    free = shutil.disk_usage(where).free / GB
    need = release["build"]["disk_gb"]
    out.append(_finding("free disk", "ok" if free >= need else "fail",
                        "%.0f GB at %s (need ~%d GB)" % (free, where, need),
                        "" if free >= need else "free space or pass --work-dir on a bigger disk "
                        "(NVMe on a Jetson)"))
    mem, swap = host["mem_bytes"] / GB, host["swap_bytes"] / GB
    out.append(_finding("RAM + swap", "info", "%.0f GB + %.0f GB, %d cores -> MAX_JOBS=%s%s" % (
        mem, swap, host["cpus"], plan.env.get("MAX_JOBS"),
        " (--jobs)" if plan.options.get("jobs") else " (%d GB per job%s)" % (
            3 if plan.cuda else 2, ", CUDA" if plan.cuda else ""))))
    if target["device"]["family"] == "jetson" and native and swap < 8:
        out.append(_finding("swap", "warn", "%.0f GB" % swap,
                            "add swap or the build gets OOM-killed: sudo fallocate -l 16G /swapfile && "
                            "sudo chmod 600 /swapfile && sudo mkswap /swapfile && sudo swapon /swapfile"))
    if not plan.launcher:
        out.append(_finding("compiler cache", "info", "none", "apt install ccache to make rebuilds fast"))
    elif not deep:
        out.append(_finding("compiler cache", "info", "%s (checked when the build runs)" % plan.launcher))
    else:
        from recipe import compile_cache  # its check writes a probe file: real runs only
        problems = compile_cache.check(plan.launcher, plan.options.get("cache_url"))
        out.append(_finding("compiler cache", "fail" if problems else "ok", plan.launcher,
                            "; ".join(problems)))
    return out


def failures(findings):
    return [f for f in findings if f["status"] == "fail"]


# --------------------------------------------------------------------------- step interface

def describe(plan):
    return {"skip": None, "commands": [], "inputs": {}, "outputs": []}


def run(ctx):
    findings = check(ctx.plan, deep=True)
    for f in findings:
        ctx.log("  %-16s %-4s %s" % (f["check"], f["status"], f["value"]))
    bad = failures(findings)
    if bad:
        raise StepError("the host is not ready:\n" + "\n".join(
            "  - %s: %s -> %s" % (f["check"], f["value"], f["fix"]) for f in bad))
    return {"findings": findings}
