"""`python build.py bench --emulated aarch64`: what each depthwise conv EXECUTES on aarch64.

Without a board, wall time under qemu means nothing, but qemu can count exactly what the
real aarch64 binaries do. For each case of the shape suite (recipe/bench.py; a subset by
default, ``--cases all`` for every one), batch 1, and each backend

* ``native``      -- the native kernel (kernels/depthwise, cross-compiled for plain
  ARMv8-A: the wheel's DEFAULT capability), fp32, NCHW and channels_last;
* ``native-fp16`` -- the same kernel built with ``-march=armv8.2-a+fp16`` (fp16 vector
  arithmetic, the Jetson targets' flags), fp16 data, NCHW and channels_last;
* ``onednn``      -- ``F.conv2d`` / ``F.conv1d`` as the official torch 2.6.0 aarch64 wheel
  runs them (mkldnn enabled: one ``mkldnn_convolution``, i.e. oneDNN with ACL), NCHW and
  NHWC; the oneDNN implementation that ran is recorded from ``ONEDNN_VERBOSE``;
* ``loop``        -- the same call with mkldnn disabled: stock PyTorch's group loop
  (``groups`` x ``thnn_conv2d`` + ``cat``), NCHW;

it reports executed instructions and modelled L1D / L2 misses per output element, for the
convolution call ALONE, under the chosen ``--cpu`` model (`CPU_MODELS`: which board it
stands for, its cache geometry).

Method: the rootfs's python runs under the plugin-enabled qemu of recipe/qemu_plugins.py
(``insn`` and ``cache`` plugins; one guest thread, ``torch.set_num_threads(1)``). For a
measurement the guest process builds the inputs, runs the call once under the profiler
(which ops, which oneDNN implementation), warms up, then fork()s three children that run
the call 0, 0 and R times and exit; the plugins report cumulative counts at every exit,
the children all start from the parent's state, so per call = (c3 - c2 - (c2 - c1)) / R
(c2 - c1 is what the parent itself did between two forks). The cache model starts at the
first measurement (a marker syscall, see qemu_plugins), so Python's start-up is not
modelled. Addresses are not randomised, guest randomness is seeded, bytecode comes from a
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# An aarch64 syscall number Linux does not have (ENOSYS): starts the cache model.
MARKER_SYSCALL = 4000
WARMUP = 2
REPS = 2
LINE_BYTES = 64

# --cpu -> the qemu model, the board it stands for and that board's caches (per core).
CPU_MODELS = {
    "neoverse-n1": {
        "qemu_cpu": "neoverse-n1", "board": "orin",
        "stands_for": "Jetson AGX Orin, Cortex-A78AE (ARMv8.2: fp16 + dotprod, no SVE)",
        "caches": "L1D 64 KiB 4-way, L2 256 KiB 8-way (Orin: 256 KiB L2 per core; its 2 MiB "
                  "L3 per cluster and 4 MiB system cache are not modelled)",
        "plugin": {"dcachesize": 65536, "dassoc": 4, "dblksize": 64,
                   "icachesize": 65536, "iassoc": 4, "iblksize": 64,
                   "l2cachesize": 262144, "l2assoc": 8, "l2blksize": 64}},
    "cortex-a76": {
        "qemu_cpu": "cortex-a76", "board": "xavier",
        "stands_for": "Jetson AGX Xavier, Carmel (ARMv8.2: fp16, no dotprod, no SVE). qemu has "
                      "no Carmel model and cannot drop dotprod from a76; fp32/fp16 convs do "
                      "not use dotprod",
        "caches": "L1D 64 KiB 4-way, L2 2 MiB 16-way (Carmel: 2 MiB L2 per 2-core cluster, "
                  "modelled as one core's; 4 MiB L3 not modelled)",
        "plugin": {"dcachesize": 65536, "dassoc": 4, "dblksize": 64,
                   "icachesize": 131072, "iassoc": 4, "iblksize": 64,
                   "l2cachesize": 2097152, "l2assoc": 16, "l2blksize": 64}},
    "max": {
        "qemu_cpu": "max,sve-default-vector-length=16", "board": "thor",
        "stands_for": "Jetson AGX Thor, Neoverse-V3AE (SVE2, 128-bit vectors): qemu's max "
                      "model with 128-bit SVE",
        "caches": "L1D 64 KiB 4-way, L2 1 MiB 8-way",
        "plugin": {"dcachesize": 65536, "dassoc": 4, "dblksize": 64,
                   "icachesize": 65536, "iassoc": 4, "iblksize": 64,
                   "l2cachesize": 1048576, "l2assoc": 8, "l2blksize": 64}},
}
# Estimate constants (FACTS section 4); IPC is an assumption, stated with every estimate.
BOARDS = {"xavier": {"cores": 8, "ghz": 2.26, "dram_gbps": 137.0},
          "orin": {"cores": 12, "ghz": 2.2, "dram_gbps": 204.8}}
IPC = 2.0

DEFAULT_CASES = ("seed-384x56-k3", "mnv2-144x56-k3", "mnv2-96x112-k3s2", "effb0-240x28-k5",
                 "convnext-96x56-k7", "mamba-conv1d-1536xL1024-k4")
# (backend, guest process, dtype, layout)
MEASUREMENTS = (
    ("native", "native-fp32", "float32", "nchw"),
    ("native", "native-fp32", "float32", "channels_last"),
    ("native-fp16", "native-fp16", "float16", "nchw"),
    ("native-fp16", "native-fp16", "float16", "channels_last"),
    ("onednn", "stock", "float32", "nchw"),
    ("onednn", "stock", "float32", "channels_last"),
    ("loop", "stock", "float32", "nchw"),
)
BACKENDS = ("native", "native-fp16", "onednn", "loop")
PRIME_CASE = ("prime-8x4-k3", 8, 4, 3, 1, 1)


class BenchError(RuntimeError):
    pass


def log(msg):
    sys.stderr.write("[bench-emulated] %s\n" % msg)
    sys.stderr.flush()


# --------------------------------------------------------------------------- guest side

def _guest_inputs(torch, case, dtype, layout):
    """(x, w, b, x4, w4, conv args, output elements, tensor bytes) as recipe/bench.py makes them."""
    name, C, S, k, s, p = case
    g = torch.Generator().manual_seed(0)
    if "conv1d" in name:
        if layout == "channels_last":   # (N, L, C) activations seen as (N, C, L)
            x = torch.randn(1, S, C, generator=g).to(dtype).transpose(1, 2)
        else:
            x = torch.randn(1, C, S, generator=g).to(dtype)
        w = torch.randn(C, 1, k, generator=g).to(dtype)
        x4, w4 = x.unsqueeze(2), w.unsqueeze(2)
        args4 = ([1, k], [1, s], [0, p], [1, 1])
        out_elems = C * ((S + 2 * p - k) // s + 1)
    else:
        x = torch.randn(1, C, S, S, generator=g).to(dtype)
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        w = torch.randn(C, 1, k, k, generator=g).to(dtype)
        x4, w4 = x, w
        args4 = ([k, k], [s, s], [p, p], [1, 1])
        out_elems = C * ((S + 2 * p - k) // s + 1) ** 2
    b = torch.randn(C, generator=g).to(dtype)
    nbytes = (x.numel() + out_elems + w.numel() + C) * x.element_size()
    return x, w, b, x4, w4, args4, out_elems, nbytes


def _guest_call(torch, F, backend, case, x, w, b, x4, w4, args4):
    name, C, S, k, s, p = case
    if backend.startswith("native"):
        ks, st, pd, dl = args4
        return lambda: torch.ops.aten._conv_depthwise2d(x4, w4, ks, b, st, pd, dl)
    conv = F.conv1d if "conv1d" in name else F.conv2d
    return lambda: conv(x, w, b, s, p, 1, C)


def guest_main(config_path):
    """Runs INSIDE the aarch64 rootfs (python 3.11 + the official torch wheel)."""
    import ctypes
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile
    with open(config_path) as f:
        cfg = json.load(f)
    torch.set_num_threads(1)
    if cfg["library"]:
        torch.ops.load_library(cfg["library"])
    libc = ctypes.CDLL(None)
    results = []
    for i, m in enumerate(cfg["measurements"]):
        case = tuple(m["case"])
        x, w, b, x4, w4, args4, out_elems, nbytes = _guest_inputs(
            torch, case, getattr(torch, m["dtype"]), m["layout"])
        call = _guest_call(torch, F, m["backend"], case, x, w, b, x4, w4, args4)
        torch.backends.mkldnn.enabled = m["backend"] != "loop"
        call()
        # What runs: aten ops (profiler) and, for oneDNN, its verbose lines on stdout.
        print("@@check %d" % i)
        sys.stdout.flush()
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                y = call()
        sys.stdout.flush()
        print("@@end %d" % i)
        ops = {e.key: e.count for e in prof.key_averages()}
        if i == 0:
            libc.syscall(MARKER_SYSCALL)   # the cache model starts here
        for _ in range(cfg["warmup"]):
            call()
        for reps in (0, 0, cfg["reps"]):
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                for _ in range(reps):
                    call()
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            if status != 0:
                raise SystemExit("measurement child exited with status %d" % status)
        results.append({"ops": ops, "out_elems": out_elems, "bytes": nbytes,
                        "out_shape": list(y.shape), "torch": torch.__version__})
    torch.backends.mkldnn.enabled = True
    with open(cfg["result"], "w") as f:
        json.dump(results, f)


# --------------------------------------------------------------------------- host side

def native_library(fp16_arith):
    """The native kernel cross-compiled for aarch64 against the rootfs's torch 2.6.0 (cached):
    plain ARMv8-A, or -march=armv8.2-a+fp16 (recipe.kernel's plan for such a CPU)."""
    from recipe import cache_dir
    from recipe.crossbuild import build_graft, compiler
    from recipe.emulation import ensure_emulation
    from recipe.kernel import CAPABILITY_TU, HEADER, KERNEL_DIR, PLAIN_TUS, ROUTING_DIR, \
        OPT_FLAGS, capability_plan
    emu = ensure_emulation()
    have, units, empty = capability_plan("aarch64", slots=2, fp16_arith=fp16_arith)
    (capability, flags), = units
    sources = [os.path.join(KERNEL_DIR, f) for f in (CAPABILITY_TU,) + PLAIN_TUS]
    defines = ["DWCONV_OUT_OF_TREE"] + have + ["DWCONV_EMPTY_SLOT_" + e for e in empty]
    extra = OPT_FLAGS + flags
    h = hashlib.sha256(json.dumps([defines, extra, subprocess.run(
        [compiler("aarch64"), "--version"], stdout=subprocess.PIPE,
        universal_newlines=True).stdout, emu.torch_site]).encode())
    for p in sources + [os.path.join(KERNEL_DIR, HEADER), os.path.join(ROUTING_DIR,
                                                                       "ConvRouting.h")]:
        with open(p, "rb") as f:
            h.update(f.read())
    out_dir = cache_dir("bench-emulated", "native-%s-%s" % (
        "fp16" if fp16_arith else "fp32", h.hexdigest()[:16]))
    lib = os.path.join(out_dir, "libnative_dwconv.so")
    if os.path.exists(lib):
        return lib
    os.makedirs(os.path.dirname(out_dir), exist_ok=True)
    work = tempfile.mkdtemp(prefix=".build-", dir=os.path.dirname(out_dir))
    try:
        staged = os.path.join(work, "include", "ATen", "native")
        os.makedirs(staged)
        shutil.copy(os.path.join(KERNEL_DIR, HEADER), staged)
        log("cross-compiling the native kernel for aarch64%s" % (
            " (-march=armv8.2-a+fp16)" if fp16_arith else ""))
        build_graft(sources, os.path.join(work, "libnative_dwconv.so"),
                    torch_site=emu.torch_site,
                    include_dirs=[os.path.join(work, "include"), ROUTING_DIR],
                    defines=defines, extra_flags=extra)
        os.makedirs(out_dir, exist_ok=True)
        os.replace(os.path.join(work, "libnative_dwconv.so"), lib)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return lib


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


def run_process(emu, qemu, cpu, library, measurements, workdir, warmup=WARMUP, reps=REPS,
                site=None, cache_model=True, timeout=7200):
    """One guest process for `measurements` (same library); returns one dict per measurement.

    site: the guest site-packages holding torch (default: the official 2.6.0 wheel's)."""
    from recipe import cache_dir
    from recipe.emulation import GUEST_PYTHON, GUEST_SITE
    from recipe.qemu_plugins import parse_log
    model = CPU_MODELS[cpu]
    os.makedirs(workdir, exist_ok=True)
    config = os.path.join(workdir, "config.json")
    result = os.path.join(workdir, "result.json")
    log_path = os.path.join(workdir, "plugins.log")
    for p in (result, log_path):
        if os.path.exists(p):
            os.unlink(p)
    with open(config, "w") as f:
        json.dump({"library": library, "warmup": warmup, "reps": reps, "result": result,
                   "measurements": [dict(backend=b, case=list(c), dtype=d, layout=l)
                                    for b, c, d, l in measurements]}, f)
    cache_args = dict(model["plugin"], limit=0, start_syscall=MARKER_SYSCALL) \
        if cache_model else None
    cmd = qemu.command(emu.rootfs, [GUEST_PYTHON, "-S", os.path.abspath(__file__),
                                    "--guest", config],
                       model["qemu_cpu"], log_path, cache_args=cache_args)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
           "PYTHONHASHSEED": "0", "PYTHONPATH": site or GUEST_SITE,
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
        if site:
            backend = "%s@%s" % (backend, g["torch"])
        rows.append({"case": case[0], "C": case[1], "size": case[2], "k": case[3],
                     "stride": case[4], "pad": case[5], "backend": backend, "dtype": dtype,
                     "layout": layout, "out_elems": g["out_elems"], "bytes": g["bytes"],
                     "per_call": per_call, "ops": g["ops"], "torch": g["torch"],
                     "onednn_impl": _onednn_impls(r.stdout, i)})
    log("%d measurement(s) counted in %.0f s (%s)" % (len(rows), time.time() - t0, cpu))
    return rows


def prime_bytecode_cache(emu, qemu, cpu, workdir):
    """Fill the private bytecode cache once (a short guest run, instructions only): a first
    run writes .pyc files while importing, so its history, and its counts, would differ
    from every later run's."""
    from recipe import cache_dir
    stamp = cache_dir("bench-emulated", "pycache", ".primed-%s" % hashlib.sha256(
        emu.torch_site.encode()).hexdigest()[:12])
    if os.path.exists(stamp):
        return
    log("first run: filling the private bytecode cache (once)")
    run_process(emu, qemu, cpu, None, [("onednn", PRIME_CASE, "float32", "nchw"),
                                       ("loop", PRIME_CASE, "float32", "nchw")],
                os.path.join(workdir, "prime"), warmup=1, reps=1, cache_model=False)
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
    from recipe.bench import SUITE
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
            workdir=None):
    """Count every (case, backend) of MEASUREMENTS; returns the result rows."""
    from recipe.emulation import ensure_emulation
    from recipe.qemu_plugins import ensure_qemu_plugins
    emu = ensure_emulation(verbose=False)
    qemu = ensure_qemu_plugins()
    libs = {"native-fp32": native_library(False) if "native" in backends else None,
            "native-fp16": native_library(True) if "native-fp16" in backends else None,
            "stock": None}
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="bench-emulated-")
    rows = []
    try:
        prime_bytecode_cache(emu, qemu, cpu, workdir)
        for process in ("native-fp32", "native-fp16", "stock"):
            todo = [(b, c, d, l) for c in cases for b, p, d, l in MEASUREMENTS
                    if p == process and b in backends]
            if todo:
                log("counting %d measurement(s) in one guest process (%s)" % (len(todo), process))
                rows += run_process(emu, qemu, cpu, libs[process], todo,
                                    os.path.join(workdir, process), warmup, reps)
        if "onednn" in backends:
            for version, site in sorted(newer_torch_sites(emu.rootfs).items()):
                todo = [(b, c, d, l) for c in cases for b, p, d, l in MEASUREMENTS
                        if b == "onednn"]
                log("counting oneDNN of torch %s (%s)" % (version, site))
                rows += run_process(emu, qemu, cpu, None, todo,
                                    os.path.join(workdir, "stock-" + version), warmup, reps,
                                    site=site)
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
    hdr = "%-27s %-12s %-4s %-5s %10s %8s %8s %8s%s" % (
        "case", "backend", "dt", "lay", "Minsn/call", "insn/out", "L1D/out", "L2/out",
        "  est us (%s)" % board if est else "")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print("%-27s %-12s %-4s %-5s %10.2f %8.2f %8.3f %8.3f%s" % (
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


def newer_torch_sites(rootfs):
    """{version: guest site-packages} of torch >= 2.9 (CUDA-era wheels) in the rootfs, beside
    the 2.6.0 one."""
    import glob
    import re
    from recipe.emulation import GUEST_SITE
    found = {}
    for version_py in sorted(glob.glob(os.path.join(rootfs, "opt", "*", "site-packages",
                                                    "torch", "version.py"))):
        site = os.path.dirname(os.path.dirname(version_py))[len(rootfs.rstrip("/")):]
        with open(version_py) as f:
            m = re.search(r"__version__\s*=\s*'(\d+)\.(\d+)[^']*'", f.read())
        if site != GUEST_SITE and m and (int(m.group(1)), int(m.group(2))) >= (2, 9):
            found["%s.%s" % (m.group(1), m.group(2))] = site
    return found


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
                   help="comma-separated subset of %s" % ",".join(BACKENDS))
    p.add_argument("--reps", type=int, default=REPS, help="counted calls per measurement")
    p.add_argument("--json", metavar="OUT", help="write all results as JSON")
    return p


def main(argv=None):
    if argv is not None and argv[:1] == ["--guest"]:
        guest_main(argv[1])
        return 0
    p = build_parser()
    a = p.parse_args(argv)
    backends = tuple(a.backends.split(","))
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or a.reps < 1:
        p.error("--backends: unknown %s (allowed: %s)" % (",".join(unknown), ",".join(BACKENDS))
                if unknown else "--reps must be >= 1")
    sys.path.insert(0, REPO)
    from recipe.emulation import EmulationError
    from recipe.qemu_plugins import QemuBuildError
    from recipe.crossbuild import CrossBuildError
    try:
        cases = select_cases(a.cases)
    except BenchError as e:
        p.error(str(e))
    t0 = time.time()
    try:
        rows = measure(cases, a.cpu, backends, reps=a.reps)
    except (EmulationError, QemuBuildError, CrossBuildError) as e:
        sys.stderr.write("error: the emulation harness is not available: %s\n" % e)
        return 3
    except BenchError as e:
        sys.stderr.write("error: %s\n" % e)
        return 1
    summary = summarize(rows)
    print_table(rows, a.cpu, summary)
    if not any("@" in r["backend"] for r in rows):
        print("oneDNN of a CUDA-era torch (>= 2.9) wheel: not available in the emulation "
              "rootfs (only torch 2.6.0); not counted")
    seconds = time.time() - t0
    log("done in %.0f s" % seconds)
    if a.json:
        from recipe.qemu_plugins import ensure_qemu_plugins
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
