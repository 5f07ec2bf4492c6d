"""`python build.py bench`: grouped convs, native kernels vs group loop vs oneDNN, in ONE run.

For every layer of the shape suites -- depthwise (FACTS §5: MobileNetV2/V3, EfficientNet-B0,
ConvNeXt-T, the 384x56x56 case, a Mamba-like causal conv1d) and grouped (ResNeXt-50 32x4d,
RegNetY-800MF, ShuffleNet v1 grouped 1x1, AlexNet groups=2) -- batch 1 and 8, fp32 and fp16,
NCHW and channels_last, it times

* native  -- ``aten::_conv_depthwise2d`` / ``native_gconv::grouped_conv2d`` from the
  out-of-tree build (`python build.py kernel`; loaded here), i.e. the kernel itself, one call;
* loop    -- ``F.conv2d``/``F.conv1d`` with oneDNN disabled
  (``torch.backends.mkldnn.flags(enabled=False)``) and the native routing shim off:
  stock PyTorch's per-group loop (``groups`` x ``thnn_conv2d`` + ``cat``). Slow, so
  time-boxed (fewer repetitions);
* oneDNN  -- ``torch.mkldnn_convolution`` (one call), where this CPU/dtype has it;

medians after warm-up, plus the bandwidth the native kernel achieves (input + output +
weight bytes / time) against a copy bandwidth measured in the same run (``Tensor.copy_``
of a buffer larger than the last-level cache, read + write bytes / time), and the GFLOP/s
it achieves against the machine's fp32 FMA peak measured in the same run
(``recipe/bench_fma_peak.cpp``, compiled here with the flags of torch's CPU capability: FMA
chains on registers only, the rate no convolution can exceed), at the start, at the end and
briefly before each layer's rows: rows measured while the machine was slower than usual
(a VM's neighbours, a board's thermal limit) are marked. For grouped fp32 rows the peak also
bounds what any kernel could reach against the group loop (``peak/loop``: loop time / the
time the layer's in-bounds FLOPs, taps on zero padding skipped, take at the peak).

Timings use the heap for large blocks (glibc ``mmap_threshold``/``trim_threshold``
tunables, set by re-executing the interpreter): otherwise every multi-MB output is a
fresh mmap and page faults dominate small kernels, for every backend alike (what a
caching allocator avoids). ``--no-malloc-tuning`` turns this off.

Prints a table and a summary (geomeans vs oneDNN per layout, fp16 vs fp32), writes JSON
(``--json``) and, when matplotlib is installed, a PNG (``--plot``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

from recipe import cache_dir, proc
from recipe.bench_shapes import GROUPED_SUITE, SEED, SUITE, SUITES
from recipe.log import logger

MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=4294967295"
REEXEC_FLAG = "RECIPE_BENCH_REEXEC"



def _is_1d(name):
    return "conv1d" in name


log = logger("bench")


def _maybe_reexec(args):
    if args.no_malloc_tuning or os.environ.get(REEXEC_FLAG) or not sys.platform.startswith("linux"):
        return
    env = dict(os.environ)
    env["GLIBC_TUNABLES"] = (env["GLIBC_TUNABLES"] + ":" if env.get("GLIBC_TUNABLES") else "") \
        + MALLOC_TUNABLES
    env[REEXEC_FLAG] = "1"
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def _time(fn, warmup, reps, budget_s):
    """Median wall time (s) of fn() after warm-up; at most `reps` runs or `budget_s`."""
    for _ in range(warmup):
        fn()
    times = []
    t_start = time.perf_counter()
    while len(times) < reps:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - t_start > budget_s and len(times) >= 1:
            break
    return statistics.median(times), len(times)


def copy_bandwidth(torch, nbytes=256 << 20, reps=10):
    """GB/s of Tensor.copy_ (read + write bytes) on a buffer larger than the LLC."""
    n = nbytes // 4
    src = torch.ones(n)
    dst = torch.empty(n)
    dst.copy_(src)
    best = []
    for _ in range(reps):
        t0 = time.perf_counter()
        dst.copy_(src)
        best.append(time.perf_counter() - t0)
    return 2 * nbytes / statistics.median(best) / 1e9


PEAK_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_fma_peak.cpp")
# The kernels' vector width per torch CPU capability; NEON, SSE and anything else: 16 bytes.
PEAK_VECTOR_BYTES = {"AVX512": 64, "AVX2": 32}


class PeakUnavailable(Exception):
    """The FMA-peak probe could not be built or run here (the benchmark goes on without it)."""


def peak_command(cxx, arch, capability):
    """The compile command (less source and output) of the probe for torch's `capability` on
    `arch`: the add-on's flags for that capability, the kernels' vector width."""
    from recipe import addon
    flags = list(addon.ARCH_FLAGS.get(arch, ()))
    flags += list(dict(addon.CAPABILITIES.get(arch, ())).get(capability, ()))
    return [cxx, "-O2", "-std=c++14", "-ffp-contract=fast", "-pthread",
            "-DVECTOR_BYTES=%d" % PEAK_VECTOR_BYTES.get(capability, 16)] + flags


def peak_probe(capability, cxx=None):
    """The FMA-peak probe compiled for `capability` (cached by source, compiler and flags)."""
    from recipe import addon
    arch = platform.machine()
    try:
        exe = addon.compiler_for(arch, cxx)
    except addon.HeadersError as e:  # no compiler here
        raise PeakUnavailable(str(e).splitlines()[0])
    cmd = peak_command(exe, arch, capability)
    with open(PEAK_SOURCE, "rb") as f:
        source = f.read()
    key = hashlib.sha256(source + repr((cmd, addon.compiler_version(exe))).encode()).hexdigest()
    path = cache_dir("bench", "fma-peak-%s" % key[:16])
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="fma-peak-", dir=os.path.dirname(path))
    try:
        try:
            r = proc.run(cmd + [PEAK_SOURCE, "-o", os.path.join(tmp, "probe")], timeout=300,
                         check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PeakUnavailable("%s: %s" % (cmd[0], e))
        if r.returncode != 0:
            raise PeakUnavailable("%s %s failed: %s" % (cmd[0], PEAK_SOURCE,
                                                        proc.first_line(r.stdout)))
        os.replace(os.path.join(tmp, "probe"), path)  # whole or not at all
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def fma_peak(probe, threads, seconds=1.5):
    """GFLOP/s of fp32 FMAs on registers with `threads` threads (the probe's best round)."""
    try:
        r = subprocess.run([probe, str(threads), str(seconds)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True,
                           timeout=60 + 10 * seconds)
        value = float(r.stdout.strip())
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        raise PeakUnavailable("%s: %s" % (probe, e))
    if r.returncode != 0 or not value > 0:
        raise PeakUnavailable("%s exited %d: %s" % (probe, r.returncode, r.stderr.strip()))
    return value


PEAK_CHECK_SECONDS = 0.3
SLOW_MACHINE = 0.9  # rows measured while the FMA rate was below 90% of the run's peak


def _peak_or_none(probe, threads, seconds):
    try:
        return fma_peak(probe, threads, seconds) if probe else None
    except PeakUnavailable:
        return None


def measured_slow(r, peak_gflops):
    """Whether the FMA check just before this row found the machine below SLOW_MACHINE of
    the run's peak (its times are then not the machine's)."""
    before = r.get("fma_peak_before")
    return bool(before and peak_gflops and before < SLOW_MACHINE * peak_gflops)


def inbound_taps(size, k, stride, pad, dilation=1):
    """Taps that land inside the input, summed over the outputs of one spatial dimension:
    the others read zero padding, which a kernel may skip (oneDNN's JIT does)."""
    out = (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    return sum(1 for o in range(out) for t in range(k)
               if 0 <= o * stride - pad + t * dilation < size)


def peak_vs_loop(r, peak_gflops):
    """Loop time / the time the layer's in-bounds FLOPs (the least any kernel must do: taps on
    zero padding skipped) take at the FMA peak: the most any kernel could be faster than the
    group loop on this machine (None without a loop time or a peak)."""
    if not r.get("loop_ms") or not peak_gflops or not r.get("gflop_inbound"):
        return None
    return r["loop_ms"] / (r["gflop_inbound"] / peak_gflops * 1e3)


def cpu_jiffies():
    """(steal, total) jiffies of all CPUs so far (/proc/stat), or None: steal is the time a
    VM's vCPUs were runnable but the host ran something else."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice: inside user/nice]
    return (fields[7], sum(fields[:8])) if len(fields) >= 8 else None


def steal_pct(start, end):
    if not start or not end or end[1] <= start[1]:
        return None
    return 100.0 * (end[0] - start[0]) / (end[1] - start[1])


def machine_info(torch):
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") or line.startswith("Model"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu": cpu, "machine": platform.machine(), "nproc": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "loadavg_start": load, "python": platform.python_version()}


def run_case(torch, F, name, C, S, k, s, p, N, dtype, layout, args):
    one_d = _is_1d(name)
    g = torch.Generator().manual_seed(0)
    if one_d:
        x = torch.randn(N, C, S, generator=g).to(dtype)
        if layout == "channels_last":  # (N, L, C) activations seen as (N, C, L): Mamba's layout
            x = torch.randn(N, S, C, generator=g).to(dtype).transpose(1, 2)
        w = torch.randn(C, 1, k, generator=g).to(dtype)
        x4, w4 = x.unsqueeze(2), w.unsqueeze(2)
        ks, st, pd, dl = [1, k], [1, s], [0, p], [1, 1]
        out_sp = (S + 2 * p - k) // s + 1
        out_elems = N * C * out_sp
    else:
        x = torch.randn(N, C, S, S, generator=g).to(dtype)
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        w = torch.randn(C, 1, k, k, generator=g).to(dtype)
        x4, w4 = x, w
        ks, st, pd, dl = [k, k], [s, s], [p, p], [1, 1]
        out_sp = (S + 2 * p - k) // s + 1
        out_elems = N * C * out_sp * out_sp
    b = torch.randn(C, generator=g).to(dtype)
    esz = x.element_size()
    nbytes = (x.numel() + out_elems + w.numel() + C) * esz
    res = {"case": name, "C": C, "size": S, "k": k, "stride": s, "pad": p, "batch": N,
           "dtype": str(dtype).replace("torch.", ""), "layout": layout, "bytes": nbytes,
           "gflop": 2.0 * out_elems * k * (1 if one_d else k) / 1e9}

    def native():
        return torch.ops.aten._conv_depthwise2d(x4, w4, ks, b, st, pd, dl)

    t, n = _time(native, args.warmup, args.reps, args.budget)
    res["native_ms"], res["native_reps"] = t * 1e3, n

    # oneDNN, one call
    def onednn():
        if one_d:
            return torch.mkldnn_convolution(x, w, b, [p], [s], [1], C)
        return torch.mkldnn_convolution(x, w, b, pd, st, dl, C)
    try:
        onednn()
        t, n = _time(onednn, args.warmup, args.reps, args.budget)
        res["onednn_ms"], res["onednn_reps"] = t * 1e3, n
    except RuntimeError as e:
        res["onednn_ms"], res["onednn_note"] = None, str(e).splitlines()[0][:120]

    # stock group loop (oneDNN off, routing shim off)
    if not args.no_loop and not (args.quick and N > 1):
        def loop():
            if one_d:
                return F.conv1d(x, w, b, s, p, 1, C)
            return F.conv2d(x, w, b, s, p, 1, C)
        res["loop_ms"], res["loop_reps"] = _time_stock_loop(torch, loop, args)
    else:
        res["loop_ms"] = None
    res["native_gbps"] = nbytes / (res["native_ms"] * 1e-3) / 1e9
    res["native_gflops"] = res["gflop"] / (res["native_ms"] * 1e-3)
    return res


def run_grouped_case(torch, F, name, Cin, Cout, G, S, k, s, p, N, dtype, layout, args):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, Cin, S, S, generator=g).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(Cout, Cin // G, k, k, generator=g).to(dtype)
    b = torch.randn(Cout, generator=g).to(dtype)
    out_sp = (S + 2 * p - k) // s + 1
    nbytes = (x.numel() + N * Cout * out_sp * out_sp + w.numel() + Cout) * x.element_size()
    res = {"suite": "grouped", "case": name, "C": Cin, "C_out": Cout, "groups": G, "size": S,
           "k": k, "stride": s, "pad": p, "batch": N, "dtype": str(dtype).replace("torch.", ""),
           "layout": layout, "bytes": nbytes,
           "gflop": 2.0 * N * Cout * (Cin // G) * k * k * out_sp * out_sp / 1e9,
           "gflop_inbound": 2.0 * N * Cout * (Cin // G) * inbound_taps(S, k, s, p) ** 2 / 1e9}
    st, pd, dl = [s, s], [p, p], [1, 1]

    def native():
        return torch.ops.native_gconv.grouped_conv2d(x, w, b, st, pd, dl, G)

    t, n = _time(native, args.warmup, args.reps, args.budget)
    res["native_ms"], res["native_reps"] = t * 1e3, n
    try:
        torch.mkldnn_convolution(x, w, b, pd, st, dl, G)
        t, n = _time(lambda: torch.mkldnn_convolution(x, w, b, pd, st, dl, G), args.warmup,
                     args.reps, args.budget)
        res["onednn_ms"], res["onednn_reps"] = t * 1e3, n
    except RuntimeError as e:
        res["onednn_ms"], res["onednn_note"] = None, str(e).splitlines()[0][:120]
    if not args.no_loop and not (args.quick and N > 1):
        res["loop_ms"], res["loop_reps"] = _time_stock_loop(
            torch, lambda: F.conv2d(x, w, b, s, p, 1, G), args)
    else:
        res["loop_ms"] = None
    res["native_gbps"] = nbytes / (res["native_ms"] * 1e-3) / 1e9
    res["native_gflops"] = res["gflop"] / (res["native_ms"] * 1e-3)
    return res


def _time_stock_loop(torch, conv, args):
    """Stock PyTorch's per-group loop: oneDNN off, the native routing shim off."""
    ops = torch.ops.native_dwconv
    prev = ops.set_shim_enabled(False)
    # (not torch.backends.mkldnn.flags(): it warns about TF32 on every entry in 2.13)
    prev_mkldnn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        t, n = _time(conv, 1, args.loop_reps, args.loop_budget)
        return t * 1e3, n
    finally:
        torch.backends.mkldnn.enabled = prev_mkldnn
        ops.set_shim_enabled(prev)


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def summarize(results, copy_gbps, peak_gflops=None):
    out = {}
    for suite in SUITES:
        prefix = "" if suite == "depthwise" else suite + " "
        for layout in ("nchw", "channels_last"):
            for dtype in ("float32", "float16"):
                rs = [r for r in results if r["layout"] == layout and r["dtype"] == dtype
                      and r.get("suite", "depthwise") == suite]
                out["%svs_onednn/%s/%s" % (prefix, layout, dtype)] = geomean(
                    [r["onednn_ms"] / r["native_ms"] for r in rs if r.get("onednn_ms")])
                out["%svs_loop/%s/%s" % (prefix, layout, dtype)] = geomean(
                    [r["loop_ms"] / r["native_ms"] for r in rs if r.get("loop_ms")])
                if suite == "grouped" and dtype == "float32" and peak_gflops:
                    out["%speak_vs_loop/%s/%s" % (prefix, layout, dtype)] = geomean(
                        [peak_vs_loop(r, peak_gflops) for r in rs])
                    out["%snative_pct_peak/%s/%s" % (prefix, layout, dtype)] = geomean(
                        [100.0 * r["native_gflops"] / peak_gflops for r in rs])
    if peak_gflops:
        out["rows_measured_slow"] = sum(measured_slow(r, peak_gflops) for r in results)
    fp = {}
    for r in results:
        if r.get("suite", "depthwise") != "depthwise":
            continue
        fp.setdefault((r["case"], r["batch"], r["layout"]), {})[r["dtype"]] = r["native_ms"]
    ratios = [v["float32"] / v["float16"] for v in fp.values() if "float32" in v and "float16" in v]
    out["fp16_speedup_over_fp32"] = geomean(ratios)
    seed = [r for r in results if r["case"] == SEED and r["batch"] == 1 and r["dtype"] == "float32"]
    for r in seed:
        out["seed_pct_copy_bw/%s" % r["layout"]] = 100.0 * r["native_gbps"] / copy_gbps
    return out


def fmt_ms(v):
    return "   n/a  " if v is None else ("%8.3f" % v if v < 100 else "%8.1f" % v)


def print_table(results, copy_gbps, summary, info, peak_gflops=None):
    hdr = ("%-28s %2s %-7s %-6s %8s %8s %8s %7s %5s %6s %5s %8s %7s %9s %5s"
           % ("case", "N", "dtype", "layout", "native", "loop", "oneDNN", "GB/s", "%copy",
              "GF/s", "%peak", "vs loop", "vs 1DNN", "peak/loop", "fma%"))
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        vl = r["loop_ms"] / r["native_ms"] if r.get("loop_ms") else None
        vo = r["onednn_ms"] / r["native_ms"] if r.get("onednn_ms") else None
        pk = 100.0 * r["native_gflops"] / peak_gflops if peak_gflops else None
        ceiling = peak_vs_loop(r, peak_gflops) if r["dtype"] == "float32" else None
        before = r.get("fma_peak_before")
        state = "" if not (before and peak_gflops) else "%.0f%s" % (
            100.0 * before / peak_gflops, "!" if measured_slow(r, peak_gflops) else "")
        print("%-28s %2d %-7s %-6s %s %s %s %7.1f %5.0f %6.1f %5s %8s %7s %9s %5s" % (
            r["case"], r["batch"], r["dtype"], "NCHW" if r["layout"] == "nchw" else "CL",
            fmt_ms(r["native_ms"]), fmt_ms(r.get("loop_ms")), fmt_ms(r.get("onednn_ms")),
            r["native_gbps"], 100.0 * r["native_gbps"] / copy_gbps, r["native_gflops"],
            "" if pk is None else "%.0f" % pk, "" if vl is None else "%.1fx" % vl,
            "" if vo is None else "%.2fx" % vo, "" if ceiling is None else "%.1fx" % ceiling,
            state))
    print()
    print("times: median ms per call; GB/s: (input + output + weight bytes) / native time;")
    print("%%copy: of the copy bandwidth measured in this run (%.1f GB/s, %d-thread Tensor.copy_ "
          "of 256 MiB)" % (copy_gbps, info["threads"]))
    if peak_gflops:
        print("GF/s: the layer's FLOPs / native time; %peak: of the fp32 FMA peak measured "
              "in this run")
        print("(%.1f GFLOP/s, %d threads: the best of start %s, end %s and the checks before "
              "each layer);" % (peak_gflops, info["threads"],
                               _fmt_gflops(info["fma_peak_start"]),
                               _fmt_gflops(info.get("fma_peak_end"))))
        print("peak/loop (fp32): loop time / the layer's in-bounds FLOPs (no taps on padding) "
              "at that peak, the most any kernel could beat the group loop by;")
        print("fma%%: the FMA rate measured just before the layer's rows, of that peak (!: "
              "below %d%%: the machine was slower then, rerun those rows)" % (100 * SLOW_MACHINE))
    else:
        print("%%peak, peak/loop: no FMA peak (%s)" % info.get("fma_peak_note"))
    for key in sorted(summary):
        v = summary[key]
        if v is not None:
            print("%-40s %.2f" % (key, v))


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("--plot needs matplotlib (pip install matplotlib); no PNG written")
        return False
    rows = [r for r in results if r.get("onednn_ms") or r.get("loop_ms")]
    labels = ["%s N%d %s %s" % (r["case"], r["batch"], r["dtype"][-2:],
                                "NCHW" if r["layout"] == "nchw" else "CL") for r in rows]
    fig, ax = plt.subplots(figsize=(10, max(4, 0.22 * len(rows))))
    y = list(range(len(rows)))
    ax.barh([v - 0.2 for v in y], [r["onednn_ms"] / r["native_ms"] if r.get("onednn_ms") else 0
                                   for r in rows], height=0.4, label="native speedup vs oneDNN")
    ax.barh([v + 0.2 for v in y], [min(50, r["loop_ms"] / r["native_ms"]) if r.get("loop_ms") else 0
                                   for r in rows], height=0.4, label="vs group loop (capped 50x)")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=6)
    ax.set_xscale("log")
    ax.legend(fontsize=7)
    ax.set_title("native depthwise kernel: speedup (higher is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def build_parser():
    p = argparse.ArgumentParser(prog="python build.py bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="batch 1 only for the group loop, fewer repetitions (~1 minute)")
    p.add_argument("--json", metavar="OUT", help="write all results as JSON")
    p.add_argument("--plot", metavar="PNG", help="write a PNG chart (needs matplotlib)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N)")
    p.add_argument("--cases", default=None, help="comma-separated substrings of case names")
    p.add_argument("--suites", default=",".join(SUITES),
                   help="comma-separated shape suites: depthwise, grouped (default: both)")
    p.add_argument("--batch", default="1,8")
    p.add_argument("--dtypes", default="float32,float16")
    p.add_argument("--layouts", default="nchw,channels_last")
    p.add_argument("--no-loop", action="store_true", help="skip the (slow) group loop")
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="do not re-exec with glibc malloc tunables (see module doc)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--budget", type=float, default=0.4, help="seconds per native/oneDNN timing")
    p.add_argument("--loop-reps", type=int, default=5)
    p.add_argument("--loop-budget", type=float, default=1.0, help="seconds per group-loop timing")
    p.add_argument("--emulated", choices=("aarch64",),
                   help="count executed instructions and modelled cache misses under qemu "
                        "instead of timing (recipe/bench_emulated.py; --cpu, --cases, --json)")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--emulated" or a.startswith("--emulated=") for a in argv):
        from recipe.bench_emulated import main as emulated_main
        return emulated_main(argv)
    args = build_parser().parse_args(argv)
    suites = args.suites.split(",")
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        sys.stderr.write("error: --suites %s: unknown suite; use %s\n" % (
            ",".join(unknown), ", ".join(SUITES)))
        return 2
    if args.quick:
        args.reps, args.budget, args.loop_reps, args.loop_budget = 20, 0.15, 2, 0.3
    _maybe_reexec(args)
    import torch
    import torch.nn.functional as F
    from recipe.kernel import load_kernel
    path = load_kernel(quiet=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info(torch)
    info["kernel_library"] = path
    info["malloc_tuning"] = bool(os.environ.get(REEXEC_FLAG))
    log("%s, %d threads, torch %s (%s); native kernel %s" % (
        info["cpu"], info["threads"], info["torch"], info["cpu_capability"], path))
    jiffies_start = cpu_jiffies()
    copy_gbps = copy_bandwidth(torch)
    log("copy bandwidth: %.1f GB/s" % copy_gbps)
    try:
        probe = peak_probe(info["cpu_capability"])
        info["fma_peak_start"] = fma_peak(probe, info["threads"])
        log("fp32 FMA peak: %.1f GFLOP/s (%s)" % (info["fma_peak_start"], info["cpu_capability"]))
    except PeakUnavailable as e:
        probe, info["fma_peak_start"], info["fma_peak_note"] = None, None, str(e)
        log("fp32 FMA peak: not measured (%s); no %%peak column" % e)
    # warm-up of the thread pool and allocator
    wx = torch.randn(8, 64, 56, 56)
    ww = torch.randn(64, 1, 3, 3)
    for _ in range(10):
        torch.ops.aten._conv_depthwise2d(wx, ww, [3, 3], None, [1, 1], [1, 1], [1, 1])
        torch.mkldnn_convolution(wx, ww, None, [1, 1], [1, 1], [1, 1], 64)
    picked = lambda name: not args.cases or any(s in name for s in args.cases.split(","))
    layers = []  # (name, runner, shape arguments)
    if "depthwise" in suites:
        layers += [(c[0], run_case, c[1:]) for c in SUITE if picked(c[0])]
    if "grouped" in suites:
        layers += [(c[0], run_grouped_case, c[1:]) for c in GROUPED_SUITE if picked(c[0])]
    batches = [int(b) for b in args.batch.split(",")]
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    layouts = args.layouts.split(",")
    results = []
    t0 = time.time()
    for (name, runner, shape) in layers:
        for N in batches:
            # the machine's state right before these rows: a VM's neighbours or a board's
            # thermal limit can take speed away mid-run, and the rows then say so
            before = _peak_or_none(probe, info["threads"], PEAK_CHECK_SECONDS)
            for dt in dtypes:
                for lay in layouts:
                    r = runner(torch, F, name, *shape, N, dt, lay, args)
                    r["fma_peak_before"] = before
                    results.append(r)
                    log("%-28s N=%d %-7s %-13s native %s ms  loop %s  oneDNN %s" % (
                        name, N, r["dtype"], lay, fmt_ms(r["native_ms"]).strip(),
                        fmt_ms(r.get("loop_ms")).strip(), fmt_ms(r.get("onednn_ms")).strip()))
    try:
        info["loadavg_end"] = os.getloadavg()
    except OSError:
        pass
    info["seconds"] = time.time() - t0
    if probe:  # again at the end: a VM's clock can move during a long run; the higher bounds
        try:
            info["fma_peak_end"] = fma_peak(probe, info["threads"])
        except PeakUnavailable as e:
            info["fma_peak_end"], info["fma_peak_note"] = None, str(e)
    info["steal_pct"] = steal_pct(jiffies_start, cpu_jiffies())
    peak_gflops = max([v for v in [info["fma_peak_start"], info.get("fma_peak_end")] +
                       [r.get("fma_peak_before") for r in results] if v] or [None])
    summary = summarize(results, copy_gbps, peak_gflops)
    print_table(results, copy_gbps, summary, info, peak_gflops)
    print("machine: %s, %s cores, %d threads, torch %s (%s); load average start %s end %s; "
          "steal %s" % (
              info["cpu"], info["nproc"], info["threads"], info["torch"], info["cpu_capability"],
              _fmt_load(info.get("loadavg_start")), _fmt_load(info.get("loadavg_end")),
              "n/a" if info["steal_pct"] is None else "%.1f%%" % info["steal_pct"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "copy_gbps": copy_gbps, "fma_peak_gflops": peak_gflops,
                       "summary": summary, "results": results}, f, indent=1)
        log("wrote %s" % args.json)
    if args.plot:
        if plot(results, args.plot):
            log("wrote %s" % args.plot)
    return 0


def _fmt_gflops(v):
    return "n/a" if not v else "%.1f" % v


def _fmt_load(v):
    return "n/a" if not v else "%.2f/%.2f/%.2f" % tuple(v)


if __name__ == "__main__":
    sys.exit(main())
