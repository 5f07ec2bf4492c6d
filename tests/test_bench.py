"""`python build.py bench` itself: one real (small) run of the timing benchmark, and the FMA-peak
probe it measures the machine with (recipe/bench_fma_peak.cpp). No timing is asserted: what is
checked are the run's structure, its arithmetic, and bounds that physics sets (no kernel runs
faster than the FMA peak the probe measures)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest
import torch

from conftest import unavailable
from recipe import REPO_ROOT, bench


def test_a_small_grouped_run_reports_gflops_and_the_fma_peak_bound(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "build.py"), "bench", "--quick",
                        "--suites", "grouped", "--cases", "shufflenet-240to60", "--batch", "1",
                        "--dtypes", "float32", "--layouts", "nchw,channels_last",
                        "--threads", "2", "--json", str(out)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "fp32 FMA peak:" in r.stdout and "peak/loop" in r.stdout, r.stdout[-3000:]
    assert "; steal " in r.stdout, r.stdout[-3000:]
    run = json.loads(out.read_text())
    peak = run["fma_peak_gflops"]
    rows = run["results"]
    checks = [run["machine"]["fma_peak_start"], run["machine"]["fma_peak_end"]] + [
        x["fma_peak_before"] for x in rows]
    assert all(v > 0 for v in checks) and peak == max(checks)
    assert run["summary"]["rows_measured_slow"] == sum(
        x["fma_peak_before"] < bench.SLOW_MACHINE * peak for x in rows)
    assert [(x["layout"], x["dtype"]) for x in rows] == [("nchw", "float32"),
                                                          ("channels_last", "float32")]
    for x in rows:
        # 2 * N * Cout * (Cin/G) * k * k * OH * OW = 2 * 60 * 80 * 28 * 28
        assert x["gflop"] == pytest.approx(2 * 60 * 80 * 28 * 28 / 1e9)
        assert x["native_gflops"] == pytest.approx(x["gflop"] / (x["native_ms"] * 1e-3))
        # physics, not timing: a 1x1 conv cannot beat FMAs on registers (10% for clock drift)
        assert 0 < x["native_gflops"] < 1.1 * peak, (x, peak)
        assert x["gflop_inbound"] == x["gflop"]  # 1x1, no padding: every tap is in bounds
        ceiling = bench.peak_vs_loop(x, peak)
        assert ceiling == pytest.approx(x["loop_ms"] * peak / (x["gflop"] * 1e3))
        assert ceiling > 0.9 * x["loop_ms"] / x["native_ms"]  # the native kernel is below it
    summary = run["summary"]
    assert summary["grouped peak_vs_loop/nchw/float32"] == pytest.approx(
        bench.peak_vs_loop(rows[0], peak))
    assert summary["grouped native_pct_peak/channels_last/float32"] == pytest.approx(
        100 * rows[1]["native_gflops"] / peak)


def test_a_row_measured_below_90_percent_of_the_peak_is_marked(capsys):
    row = {"case": "c", "batch": 1, "dtype": "float32", "layout": "nchw", "native_ms": 1.0,
           "loop_ms": 2.0, "onednn_ms": None, "native_gbps": 1.0, "native_gflops": 3.0,
           "gflop": 0.003, "gflop_inbound": 0.003, "fma_peak_before": 50.0}
    info = {"threads": 2, "fma_peak_start": 80.0, "fma_peak_end": 70.0}
    assert bench.measured_slow(row, 80.0) and not bench.measured_slow(row, 55.0)
    bench.print_table([row], 10.0, bench.summarize([row], 10.0, 80.0), info, 80.0)
    out = capsys.readouterr().out
    assert " 62! " in out.splitlines()[2] + " ", out  # 50 / 80 of the peak, marked
    assert "rows_measured_slow" in out


@pytest.mark.parametrize("size, k, stride, pad, dilation, expected", [
    (7, 3, 1, 1, 1, 7 * 3 - 2),      # the first and the last output lose one tap each
    (56, 3, 2, 1, 1, 28 * 3 - 1),    # stride 2: only output 0 reads the left padding
    (27, 5, 1, 2, 1, 27 * 5 - 6),    # 2 + 1 taps lost at each border
    (28, 1, 1, 0, 1, 28),            # 1x1
    (5, 3, 1, 2, 2, 11),             # dilation 2, padding 2: outputs 0..4 keep 2, 2, 3, 2, 2
])
def test_inbound_taps_skip_the_padding(size, k, stride, pad, dilation, expected):
    assert bench.inbound_taps(size, k, stride, pad, dilation) == expected


def test_steal_is_the_share_of_all_jiffies():
    assert bench.steal_pct((10, 1000), (30, 1400)) == pytest.approx(5.0)
    assert bench.steal_pct(None, (30, 1400)) is None
    now = bench.cpu_jiffies()
    if os.path.exists("/proc/stat"):
        assert now and 0 <= now[0] <= now[1]


def test_the_probe_is_cached_and_checks_its_arguments():
    capability = torch.backends.cpu.get_cpu_capability()
    probe = bench.peak_probe(capability)
    assert bench.peak_probe(capability) == probe  # the cached build
    assert bench.fma_peak(probe, 1, seconds=0.2) > 0
    for args in (["0", "1"], ["1", "0"], ["1"]):
        r = subprocess.run([probe] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True)
        assert r.returncode == 2 and r.stderr.strip(), (args, r.stderr)


def test_without_a_compiler_the_probe_says_why():
    with pytest.raises(bench.PeakUnavailable, match="no-such-compiler.*not found"):
        bench.peak_probe("AVX2", cxx="no-such-compiler")


def test_without_a_peak_the_table_says_why(capsys):
    row = {"case": "c", "batch": 1, "dtype": "float32", "layout": "nchw", "native_ms": 1.0,
           "loop_ms": 2.0, "onednn_ms": None, "native_gbps": 1.0, "native_gflops": 3.0,
           "gflop": 0.003, "gflop_inbound": 0.003}
    info = {"threads": 2, "fma_peak_start": None, "fma_peak_note": "g++ not found"}
    bench.print_table([row], 10.0, bench.summarize([row], 10.0), info)
    out = capsys.readouterr().out
    assert "no FMA peak (g++ not found)" in out
    assert bench.peak_vs_loop(row, None) is None


@pytest.mark.parametrize("capability, vector_register, first_op", [
    ("AVX2", "%ymm", "vfmadd"), ("AVX512", "%zmm", "vfmadd"), ("DEFAULT", "%xmm", "mulps")])
def test_the_probe_keeps_12_fma_chains_in_vector_registers_x86(tmp_path, capability,
                                                                vector_register, first_op):
    if platform.machine() != "x86_64":
        unavailable("an x86_64 host (x86 code generation is checked with its own g++)",
                    platform.machine())
    exe = tmp_path / "probe"
    cmd = bench.peak_command("g++", "x86_64", capability)
    subprocess.run(cmd + [bench.PEAK_SOURCE, "-o", str(exe)], check=True)
    loop = _hot_loop(subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(exe)],
                                    stdout=subprocess.PIPE, universal_newlines=True,
                                    check=True).stdout, first_op)
    if capability == "DEFAULT":  # SSE2 has no FMA: 12 multiplies + 12 adds on xmm registers
        assert sum("mulps" in i for i in loop) == 12 and sum("addps" in i for i in loop) == 12
        assert all(vector_register in i for i in loop if "ps" in i.split()[0]), loop
    else:
        fma = [i for i in loop if "vfmadd" in i]
        assert len(fma) == 12 and all(vector_register in i for i in fma), loop
    assert not any("(%rsp)" in i for i in loop), loop  # registers only: no spill in the loop


def test_the_probe_compiles_for_aarch64_with_neon_fmas(cross_toolchain, tmp_path):
    exe = tmp_path / "probe"
    cmd = bench.peak_command(cross_toolchain.compiler("aarch64"), "aarch64", "DEFAULT")
    subprocess.run(cmd + [bench.PEAK_SOURCE, "-o", str(exe)], check=True)
    dump = subprocess.run(["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", str(exe)],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    loop = _hot_loop(dump, "fmla")
    fma = [i for i in loop if "fmla" in i]
    assert len(fma) == 12 and all(".4s" in i for i in fma), loop
    assert not any("[sp" in i for i in loop), loop


def _hot_loop(dump, marker):
    """The instructions of the basic block holding the first `marker` instruction, up to its
    backward branch (the FMA loop)."""
    lines = [l.split("\t", 1)[-1].strip() for l in dump.splitlines() if "\t" in l]
    first = next(n for n, l in enumerate(lines) if marker in l)
    end = next(n for n in range(first, len(lines)) if lines[n].split()[0].startswith(("j", "b.")))
    return lines[first:end + 1]
