"""`python build.py bench --emulated aarch64`: what each depthwise conv EXECUTES on aarch64.

Without a board, wall time under qemu means nothing, but qemu can count exactly what the
real aarch64 binaries do. For each case of the shape suite (recipe/bench.py; a subset by
default, ``--cases all`` for every one), batch 1, and each backend

* ``native``      -- the native kernel as the add-on ships it (recipe/addon.py: cross-compiled
  against the official wheel's headers; its DEFAULT = ARMv8-A and FP16 =
  ``-march=armv8.2-a+fp16`` kernels, chosen at run time from HWCAP asimdhp, which every
  ``--cpu`` model here has: the FP16 build runs, as on the boards), fp32, NCHW and
  channels_last;
* ``native-fp16`` -- the same library on fp16 data (fp16 vector arithmetic and accumulation),
  NCHW and channels_last;
* ``onednn``      -- ``F.conv2d`` / ``F.conv1d`` as the official torch 2.6.0 aarch64 wheel
  runs them (mkldnn enabled: one ``mkldnn_convolution``, i.e. oneDNN with ACL), NCHW and
  NHWC; the oneDNN implementation that ran is recorded from ``ONEDNN_VERBOSE``;
* ``loop``        -- the same call with mkldnn disabled: stock PyTorch's group loop
  (``groups`` x ``thnn_conv2d`` + ``cat``), NCHW;
* ``onednn-2.14`` / ``onednn-2.14-fp16`` (opt-in with ``--backends``) -- ``F.conv2d`` as
  the CUDA-era official aarch64 wheel, torch 2.14.1+cu130 (what JetPack 7 users get from
  pip), runs it on the CPU, fp32 and fp16, NCHW and NHWC: the newest oneDNN we can run (it has
  an ASIMD JIT depthwise kernel of its own, but measured under neoverse-n1 it still hands
  every case to ACL: ``depthwise_convolution:acl``, recorded per row). The wheel and its CUDA runtime
  wheels (3.1 GB, pinned) come from tests/harness/emulation_cuda.py, which also supplies the
  ARM ``/proc/cpuinfo`` that torch 2.14's cpuinfo needs under qemu 7.2 (bind-mounted in a
  private mount namespace around the counting qemu: root, as for that harness);

it reports executed instructions and modelled L1D / L2 misses per output element, for the
convolution call ALONE, under the chosen ``--cpu`` model (`CPU_MODELS`: which board it
stands for, its cache geometry).

Method: the rootfs's python runs under the plugin-enabled qemu of tests/harness/qemu_plugins.py
(``insn`` and ``cache`` plugins; one guest thread, ``torch.set_num_threads(1)``). For a
measurement the guest process builds the inputs, runs the call once under the profiler
(which ops, which oneDNN implementation), warms up, then fork()s three children that run
the call 0, 0 and R times and exit; the plugins report cumulative counts at every exit,
the children all start from the parent's state, so per call = (c3 - c2 - (c2 - c1)) / R
(c2 - c1 is what the parent itself did between two forks). The cache model starts at the
first measurement (a marker syscall, see qemu_plugins), so Python's start-up is not
modelled. Each result also carries the call's error against a float64 sum of shifted inputs
(`max_rel_err`): what was counted computes the convolution. Addresses are not randomised, guest randomness is seeded, bytecode comes from a
private cache: the same command gives the same numbers.

Limits: no timing at all. The cache plugin is a cache MODEL (L1I, L1D, one L2 per core,
LRU, no L3 / system cache, no prefetcher, no TLB), not a pipeline model: instructions are
not cycles (a NEON FMA and a scalar add count one each). ACL and oneDNN choose their
kernels from the hwcaps of the ``-cpu`` model; they cannot read a MIDR under qemu-user
(the host's /sys), so uarch-specific tuning is not exercised. The per-board estimate
(`estimate_us`) is labelled as such: time >= max(instructions / (IPC x clock x cores),
bytes / DRAM bandwidth), all cores assumed to scale perfectly, IPC assumed `IPC`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

from recipe.errors import MissingPrerequisite, RecipeError
from recipe.log import logger

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# An aarch64 syscall number Linux does not have (ENOSYS): starts the cache model.
MARKER_SYSCALL = 4000
# What runs inside the rootfs (standard library + torch only; host paths are seen through
# qemu's -L fallback, but a folder that also exists in the rootfs is the rootfs's).
GUEST_SCRIPT = os.path.join(REPO, "recipe", "emulated_guest.py")
# qemu 7.2 shows aarch64 guests the host's /proc/cpuinfo (torch 2.14's cpuinfo crashes on an
# x86 one): the counting qemu of the CUDA-era torch runs with an ARM one bound over it.
CPUINFO_WRAPPER = ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /proc/cpuinfo && exec "$@"']
WARMUP = 2
REPS = 2
LINE_BYTES = 64


def _cache_geometry(l2_bytes, l2_assoc, l1i_bytes=65536):
    """The cache plugin's arguments: L1D 64 KiB 4-way, L1I `l1i_bytes` 4-way, the given L2;
    64-byte lines everywhere."""
    return {"dcachesize": 65536, "dassoc": 4, "dblksize": LINE_BYTES,
            "icachesize": l1i_bytes, "iassoc": 4, "iblksize": LINE_BYTES,
            "l2cachesize": l2_bytes, "l2assoc": l2_assoc, "l2blksize": LINE_BYTES}


# --cpu -> the qemu model, the board it stands for and that board's caches (per core).
CPU_MODELS = {
    "neoverse-n1": {
        "qemu_cpu": "neoverse-n1", "board": "orin",
        "stands_for": "Jetson AGX Orin, Cortex-A78AE (ARMv8.2: fp16 + dotprod, no SVE)",
        "caches": "L1D 64 KiB 4-way, L2 256 KiB 8-way (Orin: 256 KiB L2 per core; its 2 MiB "
                  "L3 per cluster and 4 MiB system cache are not modelled)",
        "plugin": _cache_geometry(l2_bytes=262144, l2_assoc=8)},
    "cortex-a76": {
        "qemu_cpu": "cortex-a76", "board": "xavier",
        "stands_for": "Jetson AGX Xavier, Carmel (ARMv8.2: fp16, no dotprod, no SVE). qemu has "
                      "no Carmel model and cannot drop dotprod from a76; fp32/fp16 convs do "
                      "not use dotprod",
        "caches": "L1D 64 KiB 4-way, L2 2 MiB 16-way (Carmel: 2 MiB L2 per 2-core cluster, "
                  "modelled as one core's; 4 MiB L3 not modelled)",
        "plugin": _cache_geometry(l2_bytes=2097152, l2_assoc=16, l1i_bytes=131072)},
    "max": {
        "qemu_cpu": "max,sve-default-vector-length=16", "board": "thor",
        "stands_for": "Jetson AGX Thor, Neoverse-V3AE (SVE2, 128-bit vectors): qemu's max "
                      "model with 128-bit SVE",
        "caches": "L1D 64 KiB 4-way, L2 1 MiB 8-way; SVE code's loads/stores are not seen by "
                  "the cache model (qemu 7.2 does them in helpers): its miss columns are invalid",
        "plugin": _cache_geometry(l2_bytes=1048576, l2_assoc=8)},
}
# Estimate constants (FACTS section 4); IPC is an assumption, stated with every estimate.
BOARDS = {"xavier": {"cores": 8, "ghz": 2.26, "dram_gbps": 137.0},
          "orin": {"cores": 12, "ghz": 2.2, "dram_gbps": 204.8}}
IPC = 2.0

# 2-D only: the group loop of mamba-conv1d-1536xL1024-k4 (1536 thnn_conv2d calls) was not
# done after 26 min under the cache model on 2 heavily shared cores (`--cases mamba` counts it).
DEFAULT_CASES = ("seed-384x56-k3", "mnv2-144x56-k3", "mnv2-96x112-k3s2", "effb0-240x28-k5",
                 "convnext-96x56-k7")
# (backend, guest process, dtype, layout); the guest processes run in parallel (--jobs)
MEASUREMENTS = (
    ("native", "native", "float32", "nchw"),
    ("native", "native", "float32", "channels_last"),
    ("native-fp16", "native", "float16", "nchw"),
    ("native-fp16", "native", "float16", "channels_last"),
    ("onednn", "onednn", "float32", "nchw"),
    ("onednn", "onednn", "float32", "channels_last"),
    ("loop", "loop", "float32", "nchw"),
    ("onednn-2.14", "onednn-2.14", "float32", "nchw"),
    ("onednn-2.14", "onednn-2.14", "float32", "channels_last"),
    ("onednn-2.14-fp16", "onednn-2.14", "float16", "nchw"),
    ("onednn-2.14-fp16", "onednn-2.14", "float16", "channels_last"),
)
# What a plain run counts; the CUDA-era wheel's oneDNN costs a 3.1 GB download: opt-in.
BACKENDS = ("native", "native-fp16", "onednn", "loop")
ALL_BACKENDS = BACKENDS + ("onednn-2.14", "onednn-2.14-fp16")
PRIME_CASE = ("prime-8x4-k3", 8, 4, 3, 1, 1)


class BenchError(RecipeError):
    """A counting run failed (exit status 1); the message says how."""


log = logger("bench-emulated")


# --------------------------------------------------------------------------- host side

def native_library():
    """The add-on's library (recipe/addon.py, the one build path) cross-compiled against the
    official torch 2.6.0 aarch64 wheel's headers (cached): DEFAULT (ARMv8-A) and FP16
    (-march=armv8.2-a+fp16) kernels, chosen at run time from HWCAP asimdhp, as on a board."""
    from recipe import addon
    headers = addon.resolve_headers("2.6.0", "aarch64")
    return addon.build_library(headers, quiet=True)[0]


def _onednn_impls(stdout, index):
    """Implementation names of the oneDNN convolutions in check block `index`."""
    impls, inside = [], False
    for line in stdout.splitlines():
        if line == "@@check %d" % index:
            inside = True
        elif line == "@@end %d" % index:
            break
        elif inside and line.startswith("onednn_verbose,") and ",exec," in line:
            fields = line.split(",")
            at = fields.index("exec")
            if fields[at + 2] == "convolution":
                impls.append(fields[at + 3])
    return impls


class GuestTorch(object):
    """Which torch a guest process imports: its site-packages folder (on PYTHONPATH: the guest
    runs ``python3 -S``) and the host command put in front of the counting qemu."""

    def __init__(self, site, wrapper=()):
        self.site, self.wrapper = site, list(wrapper)


def guest_torch(emu, process):
    """The official 2.6.0 wheel of the root filesystem, or for the ``onednn-2.14`` process
    torch 2.14.1+cu130 (its venv's site-packages, the rootfs's own python 3.11)."""
    from tests.harness.emulation import GUEST_SITE
    if process != "onednn-2.14":
        return GuestTorch(GUEST_SITE)
    from tests.harness import emulation_cuda
    cuda = emulation_cuda.ensure_cuda_torch()
    return GuestTorch(cuda.site, CPUINFO_WRAPPER + [emulation_cuda.cpuinfo_path()])


def run_process(emu, qemu, cpu, library, measurements, workdir, warmup=WARMUP, reps=REPS,
                cache_model=True, timeout=7200, torch_site=None):
    """One guest process for `measurements` (same library and torch: `torch_site`, a
    GuestTorch, default the rootfs's 2.6.0); returns one dict per measurement."""
    from recipe import cache_dir
    from tests.harness.emulation import GUEST_PYTHON
    from tests.harness.qemu_plugins import parse_log
    torch_site = torch_site or guest_torch(emu, "onednn")
    model = CPU_MODELS[cpu]
    os.makedirs(workdir, exist_ok=True)
    config = os.path.join(workdir, "config.json")
    result = os.path.join(workdir, "result.json")
    log_path = os.path.join(workdir, "plugins.log")
    for p in (result, log_path):
        if os.path.exists(p):
            os.unlink(p)
    with open(config, "w") as f:
        json.dump({"library": library, "marker_syscall": MARKER_SYSCALL, "warmup": warmup, "reps": reps, "result": result,
                   "loader": os.path.join(REPO, "addon", "torch_grouped_conv", "_loader.py"),
                   "measurements": [dict(backend=b, case=list(c), dtype=d, layout=l)
                                    for b, c, d, l in measurements]}, f)
    cache_args = dict(model["plugin"], limit=0, start_syscall=MARKER_SYSCALL) \
        if cache_model else None
    cmd = torch_site.wrapper + qemu.command(emu.rootfs, [GUEST_PYTHON, "-S", GUEST_SCRIPT, config],
                                            model["qemu_cpu"], log_path, cache_args=cache_args)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
           "PYTHONHASHSEED": "0", "PYTHONPATH": torch_site.site,
           "PYTHONPYCACHEPREFIX": cache_dir("bench-emulated", "pycache"),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "QEMU_LD_PREFIX": emu.rootfs}
    t0 = time.time()
    try:
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError("the counting run did not finish in %d s (%d measurements)"
                         % (timeout, len(measurements)))
    if r.returncode != 0 or not os.path.exists(result):
        raise BenchError("the counting run failed (exit %d):\n%s\n%s"
                         % (r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
    with open(result) as f:
        guest = json.load(f)
    with open(log_path) as f:
        records = parse_log(f.read())
    # three children per measurement, then the parent itself
    if len(records) != 3 * len(measurements) + 1:
        raise BenchError("%s: %d plugin reports for %d measurements"
                         % (log_path, len(records), len(measurements)))
    rows = []
    for i, ((backend, case, dtype, layout), g) in enumerate(zip(measurements, guest)):
        c1, c2, c3 = records[3 * i:3 * i + 3]
        per_call = {key: (c3[key] - c2[key] - (c2[key] - c1[key])) / reps for key in c1}
        rows.append({"case": case[0], "C": case[1], "size": case[2], "k": case[3],
                     "stride": case[4], "pad": case[5], "backend": backend, "dtype": dtype,
                     "layout": layout, "out_elems": g["out_elems"], "bytes": g["bytes"],
                     "per_call": per_call, "ops": g["ops"], "torch": g["torch"],
                     "capability": g["capability"], "max_rel_err": g["max_rel_err"],
                     "onednn_impl": _onednn_impls(r.stdout, i)})
    log("%d measurement(s) counted in %.0f s (%s, %s)" % (
        len(rows), time.time() - t0, measurements[0][0], cpu))
    return rows


def prime_bytecode_cache(emu, qemu, cpu, workdir, torch_site, backend="onednn"):
    """Fill the private bytecode cache once per guest torch (a short guest run, instructions
    only): a first run writes .pyc files while importing, so its history, and its counts,
    would differ from every later run's."""
    from recipe import cache_dir
    stamp = cache_dir("bench-emulated", "pycache", ".primed-%s" % hashlib.sha256(
        torch_site.site.encode()).hexdigest()[:12])
    if os.path.exists(stamp):
        return
    log("first run with %s: filling the private bytecode cache (once)" % torch_site.site)
    run_process(emu, qemu, cpu, None, [(backend, PRIME_CASE, "float32", "nchw"),
                                       ("loop", PRIME_CASE, "float32", "nchw")],
                os.path.join(workdir, "prime-" + backend), warmup=1, reps=1, cache_model=False,
                torch_site=torch_site)
    with open(stamp, "w") as f:
        f.write("primed\n")


def estimate_us(row, board):
    """ESTIMATE (not a measurement) of one call on `board`, all cores, IPC assumed."""
    b = BOARDS[board]
    pc = row["per_call"]
    compute = pc["insns"] / (IPC * b["ghz"] * 1e9 * b["cores"])
    traffic = max(row["bytes"], pc.get("l2_misses", 0) * LINE_BYTES)
    return 1e6 * max(compute, traffic / (b["dram_gbps"] * 1e9))


def per_output(row, key):
    return row["per_call"][key] / row["out_elems"]


def select_cases(spec):
    from recipe.bench_shapes import SUITE
    if spec in (None, "", "default"):
        names = DEFAULT_CASES
        return [c for n in names for c in SUITE if c[0] == n]
    if spec == "all":
        return list(SUITE)
    picked = [c for c in SUITE if any(s in c[0] for s in spec.split(","))]
    if not picked:
        raise BenchError("--cases %s matches no case of the suite (%s)"
                         % (spec, ", ".join(c[0] for c in SUITE)))
    return picked


def measure(cases, cpu="neoverse-n1", backends=BACKENDS, warmup=WARMUP, reps=REPS,
            workdir=None, jobs=None):
    """Count every (case, backend) of MEASUREMENTS, `jobs` guest processes at a time (default:
    one per CPU); returns the result rows. Counts do not depend on what runs beside them."""
    import concurrent.futures
    from tests.harness.emulation import ensure_emulation
    from tests.harness.qemu_plugins import ensure_qemu_plugins
    emu = ensure_emulation(verbose=False)
    qemu = ensure_qemu_plugins()
    library = native_library() if {"native", "native-fp16"} & set(backends) else None
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="bench-emulated-")
    rows = []
    try:
        processes = []
        for process in ("native", "onednn", "loop", "onednn-2.14"):
            todo = [(b, c, d, l) for c in cases for b, p, d, l in MEASUREMENTS
                    if p == process and b in backends]
            if todo:
                processes.append((process, todo))
        sites = {process: guest_torch(emu, process) for process, _ in processes}
        prime_bytecode_cache(emu, qemu, cpu, workdir, guest_torch(emu, "onednn"))
        if "onednn-2.14" in sites:
            prime_bytecode_cache(emu, qemu, cpu, workdir, sites["onednn-2.14"], "onednn-2.14")
        log("counting %s in %d guest process(es)" % (
            ", ".join("%d %s" % (len(todo), p) for p, todo in processes), len(processes)))
        with concurrent.futures.ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:
            futures = [pool.submit(run_process, emu, qemu, cpu,
                                   library if process == "native" else None, todo,
                                   os.path.join(workdir, process), warmup, reps,
                                   torch_site=sites[process])
                       for process, todo in processes]
            for fut in futures:
                rows += fut.result()
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    return rows


def _pick(rows, case, backend, layout):
    for r in rows:
        if r["case"] == case and r["backend"] == backend and r["layout"] == layout:
            return r
    return None


def _geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


# (summary key, numerator (backend, layout), denominator (backend, layout), goal text, ok)
RATIOS = (
    ("native/onednn insns NCHW", ("native", "nchw"), ("onednn", "nchw"), "< 1", lambda v: v < 1),
    ("native/onednn insns NHWC", ("native", "channels_last"), ("onednn", "channels_last"),
     "<= 0.7", lambda v: v <= 0.7),
    ("loop/native insns NCHW", ("loop", "nchw"), ("native", "nchw"), ">= 20", lambda v: v >= 20),
    ("fp16/fp32 native insns NCHW", ("native-fp16", "nchw"), ("native", "nchw"), "<= 0.6",
     lambda v: v <= 0.6),
    ("fp16/fp32 native insns NHWC", ("native-fp16", "channels_last"), ("native", "channels_last"),
     "<= 0.6", lambda v: v <= 0.6),
    # against the CUDA-era wheel's newer oneDNN (opt-in backends)
    ("native/onednn-2.14 insns NCHW", ("native", "nchw"), ("onednn-2.14", "nchw"), "< 1",
     lambda v: v < 1),
    ("native/onednn-2.14 insns NHWC", ("native", "channels_last"), ("onednn-2.14", "channels_last"),
     "< 1", lambda v: v < 1),
    ("fp16 native/onednn-2.14 insns NCHW", ("native-fp16", "nchw"), ("onednn-2.14-fp16", "nchw"),
     "< 1", lambda v: v < 1),
    ("fp16 native/onednn-2.14 insns NHWC", ("native-fp16", "channels_last"),
     ("onednn-2.14-fp16", "channels_last"), "< 1", lambda v: v < 1),
)


def summarize(rows):
    cases = []
    for r in rows:
        if r["case"] not in cases:
            cases.append(r["case"])
    out = {}
    for key, (nb, nl), (db, dl), goal, ok in RATIOS:
        ratios = {}
        for c in cases:
            n, d = _pick(rows, c, nb, nl), _pick(rows, c, db, dl)
            if n and d:
                ratios[c] = per_output(n, "insns") / per_output(d, "insns")
        if not ratios:
            continue
        gm = _geomean(list(ratios.values()))
        out[key] = {"per_case": ratios, "geomean": gm, "goal": goal, "geomean_meets_goal": ok(gm),
                    "failing_cases": sorted(c for c, v in ratios.items() if not ok(v))}
    return out


def print_table(rows, cpu, summary):
    model = CPU_MODELS[cpu]
    board = model["board"]
    est = board in BOARDS
    hdr = "%-27s %-16s %-4s %-5s %10s %8s %8s %8s%s" % (
        "case", "backend", "dt", "lay", "Minsn/call", "insn/out", "L1D/out", "L2/out",
        "  est us (%s)" % board if est else "")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print("%-27s %-16s %-4s %-5s %10.2f %8.2f %8.3f %8.3f%s" % (
            r["case"], r["backend"], r["dtype"].replace("float", "f"),
            "NCHW" if r["layout"] == "nchw" else "NHWC", r["per_call"]["insns"] / 1e6,
            per_output(r, "insns"), per_output(r, "l1d_misses"), per_output(r, "l2_misses"),
            "  %10.1f" % estimate_us(r, board) if est else ""))
    print()
    print("cpu model: -cpu %s = %s; caches: %s" % (model["qemu_cpu"], model["stands_for"],
                                                   model["caches"]))
    if est:
        b = BOARDS[board]
        print("est us: ESTIMATE, not a measurement: max(insns / (IPC %.0f x %.2f GHz x %d cores), "
              "max(tensor bytes, L2 misses x 64 B) / %.1f GB/s)" % (IPC, b["ghz"], b["cores"],
                                                                  b["dram_gbps"]))
    impls = sorted({"%s %s: %s" % (r["backend"], r["layout"], "/".join(r["onednn_impl"]))
                    for r in rows if r["onednn_impl"]})
    for line in impls:
        print("oneDNN implementation, %s" % line)
    for key, s in summary.items():
        print("%-30s geomean %.3f (goal %s: %s)%s" % (
            key, s["geomean"], s["goal"], "met" if s["geomean_meets_goal"] else "NOT met",
            "; not met in " + ", ".join(s["failing_cases"]) if s["failing_cases"] else ""))


def build_parser():
    p = argparse.ArgumentParser(prog="python build.py bench --emulated aarch64",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--emulated", choices=("aarch64",), required=True,
                   help="count instructions and modelled cache misses under qemu")
    p.add_argument("--cpu", choices=sorted(CPU_MODELS), default="neoverse-n1",
                   help="qemu CPU model: neoverse-n1 ~ Orin (default), cortex-a76 ~ Xavier, "
                        "max ~ Thor")
    p.add_argument("--cases", default="default",
                   help="'default' (%s), 'all', or comma-separated substrings of case names"
                        % ", ".join(DEFAULT_CASES))
    p.add_argument("--backends", default=",".join(BACKENDS),
                   help="comma-separated subset of %s (default: the first four; the "
                        "onednn-2.14 ones download torch 2.14.1+cu130 and its CUDA runtime, "
                        "3.1 GB, once)" % ",".join(ALL_BACKENDS))
    p.add_argument("--reps", type=int, default=REPS, help="counted calls per measurement")
    p.add_argument("--jobs", type=int, default=None,
                   help="guest processes at a time (default: one per CPU; at most 4)")
    p.add_argument("--json", metavar="OUT", help="write all results as JSON")
    return p


def main(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    backends = tuple(a.backends.split(","))
    unknown = [b for b in backends if b not in ALL_BACKENDS]
    if unknown:
        p.error("--backends: unknown %s (allowed: %s)" % (",".join(unknown), ",".join(ALL_BACKENDS)))
    if a.json and not os.path.isdir(os.path.dirname(os.path.abspath(a.json))):
        p.error("--json %s: its folder does not exist (name a file in an existing folder)"
                % a.json)
    for option, value in (("--reps", a.reps), ("--jobs", a.jobs)):
        if value is not None and value < 1:
            p.error("%s %d: must be >= 1" % (option, value))
    try:
        from tests.harness.emulation import EmulationError
        from tests.harness.qemu_plugins import QemuBuildError
    except ModuleNotFoundError as e:  # an installed recipe without its tests/ folder
        if not (e.name or "").startswith("tests"):
            raise
        raise MissingPrerequisite("bench --emulated runs on the test harness of a source "
                                  "checkout (tests/harness/, %s): run it from one" % e)
    from recipe.addon import AddonBuildError
    from recipe.addon_headers import HeadersError
    try:
        cases = select_cases(a.cases)
    except BenchError as e:
        p.error(str(e))
    t0 = time.time()
    try:
        rows = measure(cases, a.cpu, backends, reps=a.reps, jobs=a.jobs)
    except (EmulationError, QemuBuildError, HeadersError, AddonBuildError) as e:
        sys.stderr.write("error: the emulation harness is not available: %s\n" % e)
        return 3
    except BenchError as e:
        sys.stderr.write("error: %s\n" % e)
        return 1
    summary = summarize(rows)
    print_table(rows, a.cpu, summary)
    seconds = time.time() - t0
    log("done in %.0f s" % seconds)
    if a.json:
        from tests.harness.qemu_plugins import ensure_qemu_plugins
        with open(a.json, "w") as f:
            json.dump({"cpu": a.cpu, "model": CPU_MODELS[a.cpu], "ipc_assumed": IPC,
                       "boards": BOARDS, "qemu": ensure_qemu_plugins().info(),
                       "method": "fork children 0/0/%d calls; per call = (c3-c2-(c2-c1))/%d"
                                 % (a.reps, a.reps),
                       "seconds": seconds, "summary": summary, "results": rows}, f, indent=1)
        log("wrote %s" % a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
