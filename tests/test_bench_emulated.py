"""`build.py bench --emulated aarch64`: instructions and modelled cache misses per conv.

Real components only: qemu-aarch64 7.2 built here from Debian's source with its own insn
and cache plugins (tests/harness/qemu_plugins.py), the official torch 2.6.0 aarch64 wheel in the
emulation root filesystem, and the add-on's library cross-compiled against it (the same
build as tests/test_addon_aarch64.py: cached once for both).

Default tier: one tiny case, every backend, counted once (three guest processes in
parallel), and the native process counted a second time in a fresh run (same numbers:
determinism). Slow tier: the default subset of the shape suite through the command line,
and the targets of issue 14 on it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import unavailable
from recipe import REPO_ROOT
from recipe.bench_emulated import BACKENDS, DEFAULT_CASES, MEASUREMENTS

# what a run with the default --backends counts
DEFAULT_MEASUREMENTS = [m for m in MEASUREMENTS if m[0] in BACKENDS]

TINY = ("tiny-48x12-k3", 48, 12, 3, 1, 1)
CPU = "neoverse-n1"


def _build_py(*args, timeout=60):
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "build.py")] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--emulated", "x86_64"], "argument --emulated: invalid choice: 'x86_64'"),
    (["--emulated", "aarch64", "--cpu", "carmel"], "argument --cpu: invalid choice: 'carmel'"),
    (["--emulated", "aarch64", "--cases", "resnet"], "--cases resnet matches no case"),
    (["--emulated", "aarch64", "--backends", "xnnpack"], "--backends: unknown xnnpack"),
    (["--emulated", "aarch64", "--jobs", "0"], "--jobs 0: must be >= 1"),
    (["--emulated", "aarch64", "--json", "/nonexistent/x.json"],
     "--json /nonexistent/x.json: its folder does not exist"),
])
def test_bad_options_are_one_line_errors(args, message):
    r = _build_py("bench", *args)
    assert r.returncode == 2
    assert message in r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def counting_qemu():
    from tests.harness.qemu_plugins import QemuBuildError, ensure_qemu_plugins
    try:
        return ensure_qemu_plugins()
    except QemuBuildError as e:
        unavailable("qemu-aarch64 with TCG plugins", e)


@pytest.fixture(scope="module")
def tiny(aarch64_torch, counting_qemu, tmp_path_factory):
    """Every backend on TINY, and the native process counted again in a fresh process."""
    from recipe import bench_emulated as be
    rows = be.measure([TINY], CPU, workdir=str(tmp_path_factory.mktemp("run")))
    again = be.measure([TINY], CPU, backends=("native", "native-fp16"),  # the same process
                       workdir=str(tmp_path_factory.mktemp("run")))
    return {(r["backend"], r["layout"]): r for r in rows}, again


@pytest.mark.slow  # the qemu build with plugins costs ~15 min cold (CI cannot keep it)
def test_every_backend_is_counted_and_runs_what_it_claims(tiny):
    rows, _ = tiny
    assert sorted(rows) == sorted((b, l) for b, _, _, l in DEFAULT_MEASUREMENTS)
    C = TINY[1]
    for (backend, layout), r in rows.items():
        assert r["out_elems"] == C * 12 * 12
        # what was counted computes the conv (vs a float64 sum of shifted inputs)
        assert r["max_rel_err"] < (1e-2 if r["dtype"] == "float16" else 1e-5), r
        pc = r["per_call"]
        assert pc["insns"] > 1000 and pc["l1d_accesses"] > 0 and pc["l1d_misses"] >= 0, r
        if backend.startswith("native"):
            assert r["capability"] == "FP16", r   # neoverse-n1 has HWCAP asimdhp
            assert r["ops"].get("aten::_conv_depthwise2d") == 1, r["ops"]
            assert "aten::mkldnn_convolution" not in r["ops"]
        elif backend == "onednn":
            assert r["ops"].get("aten::mkldnn_convolution") == 1, r["ops"]
            assert len(r["onednn_impl"]) == 1, r["onednn_impl"]
        else:
            assert r["ops"].get("aten::thnn_conv2d") == C, r["ops"]
            assert "aten::mkldnn_convolution" not in r["ops"]


@pytest.mark.slow  # the qemu build with plugins costs ~15 min cold (CI cannot keep it)
def test_both_plugins_count_the_same_instructions(tiny):
    """insn plugin (inline counter, whole process) vs the cache model's instruction fetches
    (from the marker syscall on): independent counters, the same per-call difference."""
    rows, _ = tiny
    for r in rows.values():
        assert r["per_call"]["insns"] == r["per_call"]["insn_accesses"], r


@pytest.mark.slow  # the qemu build with plugins costs ~15 min cold (CI cannot keep it)
def test_counts_repeat_across_runs(tiny):
    """The same guest process in a fresh run: the same counts within 2% (measured: 1% on this
    ~250k-instruction call in a run of a different backend set; the heap's history moves some
    allocator work), far below the gaps the table is about."""
    rows, again = tiny
    assert len(again) == 4
    for r in again:
        first = rows[(r["backend"], r["layout"])]["per_call"]
        for key in ("insns", "l1d_accesses"):
            assert abs(r["per_call"][key] - first[key]) <= 0.02 * first[key], (key, r, first)


@pytest.mark.slow  # the qemu build with plugins costs ~15 min cold (CI cannot keep it)
def test_native_executes_less_than_onednn_and_far_less_than_the_group_loop(tiny):
    """On 48 x 12 x 12 the per-call overhead weighs: the issue's 20x is for real shapes (slow
    tier); here the loop must still execute 5x more, oneDNN+ACL more in both layouts."""
    rows, _ = tiny
    insns = {key: r["per_call"]["insns"] for key, r in rows.items()}
    assert insns[("loop", "nchw")] >= 5 * insns[("native", "nchw")], insns
    for layout in ("nchw", "channels_last"):
        assert insns[("native", layout)] < insns[("onednn", layout)], insns
        assert insns[("native-fp16", layout)] < insns[("native", layout)], insns


@pytest.mark.slow  # the qemu build with plugins costs ~15 min cold (CI cannot keep it)
def test_the_oneDNN_that_runs_follows_the_cpu_model(tiny):
    """neoverse-n1 has no SVE: oneDNN must not pick its SVE JIT kernels there."""
    rows, _ = tiny
    for layout in ("nchw", "channels_last"):
        impl = rows[("onednn", layout)]["onednn_impl"][0]
        assert "sve" not in impl, impl


@pytest.fixture(scope="module")
def tiny_cuda_era(aarch64_torch, counting_qemu, tmp_path_factory):
    """TINY under the CUDA-era wheel (torch 2.14.1+cu130, its oneDNN) and the native kernel."""
    from recipe import bench_emulated as be
    from tests.harness.emulation import EmulationError
    try:
        rows = be.measure([TINY], CPU, backends=("native", "native-fp16", "onednn-2.14",
                                                 "onednn-2.14-fp16"),
                          workdir=str(tmp_path_factory.mktemp("run-cu130")))
    except EmulationError as e:
        unavailable("torch 2.14.1+cu130 aarch64 and its CUDA runtime wheels under qemu", e)
    return {(r["backend"], r["layout"]): r for r in rows}


@pytest.mark.slow  # 3.1 GB of CUDA 13 wheels (cached), each guest `import torch` ~1 min
def test_the_cuda_era_wheels_onednn_is_counted_as_one_call_of_its_own(tiny_cuda_era):
    rows = tiny_cuda_era
    for dtype_backend, tolerance in (("onednn-2.14", 1e-5), ("onednn-2.14-fp16", 1e-2)):
        for layout in ("nchw", "channels_last"):
            r = rows[(dtype_backend, layout)]
            assert r["torch"] == "2.14.1+cu130", r
            assert r["ops"].get("aten::mkldnn_convolution") == 1, r["ops"]
            assert "aten::thnn_conv2d" not in r["ops"], r["ops"]
            assert len(r["onednn_impl"]) == 1 and "sve" not in r["onednn_impl"][0], r
            assert r["max_rel_err"] < tolerance, r
            assert r["per_call"]["insns"] > 1000, r
    # the native rows of the same run come from the rootfs's 2.6.0, as in a plain run
    assert rows[("native", "nchw")]["torch"].startswith("2.6.0"), rows[("native", "nchw")]


# The targets, on the default subset's geomean AND on the 384x56x56 case. Two are
# not met (measured, README "Performance on aarch64 without a board"): strict xfails, so that
# a kernel that starts meeting them turns this red until the README and these marks change.
TARGETS = [
    pytest.param("native/onednn insns NCHW", id="native-below-onednn-nchw"),
    pytest.param("native/onednn insns NHWC", id="native-0.7x-onednn-nhwc", marks=pytest.mark.xfail(
        strict=True, reason="geomean 0.76x with the column sweeps: 0.83x on 384x56x56 (fp32, "
                            "4 lanes: 9 FMAs + bias + store + loads per output vector against "
                            "ACL's 4.78 per output), 1.05x on 5x5 (the K x K sweep's edge steps)")),
    pytest.param("loop/native insns NCHW", id="loop-20x-native", marks=pytest.mark.xfail(
        strict=True, reason="in instructions the group loop's per-group im2col + GEMM costs only "
                            "4-10x; its loss is memory traffic and per-group overhead")),
    pytest.param("fp16/fp32 native insns NCHW", id="fp16-0.6x-fp32-nchw"),
    pytest.param("fp16/fp32 native insns NHWC", id="fp16-0.6x-fp32-nhwc"),
]


@pytest.fixture(scope="module")
def suite_subset(aarch64_torch, counting_qemu, tmp_path_factory):
    """The default subset through the command line (~25 min on 2 cores)."""
    out = tmp_path_factory.mktemp("suite") / "emulated.json"
    r = _build_py("bench", "--emulated", "aarch64", "--cpu", CPU, "--json", str(out),
                  timeout=4 * 3600)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    assert len(data["results"]) == len(DEFAULT_CASES) * len(DEFAULT_MEASUREMENTS)
    return data


@pytest.mark.slow
@pytest.mark.parametrize("key", TARGETS)
def test_suite_subset_target(suite_subset, key):
    s = suite_subset["summary"][key]
    assert s["geomean_meets_goal"], (key, s)
    assert "seed-384x56-k3" not in s["failing_cases"], (key, s)
