"""`python build.py verify` against the real torch installed here (no mocks).

On the stock x86 wheel: with oneDNN off the group loop is detected (384 x aten::thnn_conv2d for
the 384x56x56 depthwise case) and the exit code is non-zero; with oneDNN on, the cases oneDNN
serves pass. The wrong-result path is exercised by a deliberately wrong `aten::convolution` CPU
kernel registered from THIS test file (in a subprocess) the same way an out-of-tree library
hooks in: the production code has no test hook.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import unavailable  # noqa: E402

from recipe import verify  # noqa: E402
from recipe.verify import measure, reference  # noqa: E402

try:
    import torch
except ImportError as exc:  # tools/test.sh installs the host's torch
    unavailable("torch on the host", exc, module=True)

SEED = "2d-dw-c384-56x56-k3s1p1-fp32-nchw-inf"
SEED_TRAIN = "2d-dw-c384-56x56-k3s1p1-fp32-nchw-train"
G16 = "2d-g16-c64-28x28-k3s1p1-fp32-nchw-inf"
DW1D = "1d-dw-c128-512-k3s1p1-fp32-nchw-inf"
DW3D = "3d-dw-c32-8x16x16-k3s1p1-fp32-nchw-inf"


def run_cli(args, env=None, timeout=300):
    """`python build.py verify ARGS` in a subprocess; returns (rc, stdout, stderr)."""
    e = dict(os.environ)
    e.pop("PYTORCH_GROUPED_CONV_BACKEND", None)
    if env:
        e.update(env)
    r = subprocess.run([sys.executable, os.path.join(REPO, "build.py"), "verify"] + list(args),
                       cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def by_name(data):
    return {c["name"]: c for c in data["cases"]}


# ----------------------------------------------------------------------------- pure Python

VERIFY_DIR = os.path.join(REPO, "recipe", "verify")
STDLIB = getattr(sys, "stdlib_module_names", None)


def _module_level_imports(tree):
    """Top-level names imported outside functions (a module's `if` blocks count)."""
    found, todo = set(), list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        todo.extend(ast.iter_child_nodes(node))
    return found


def test_the_package_is_python38_and_needs_only_the_standard_library():
    """recipe/__init__.py and every module of recipe/verify/ parse as Python 3.8 and import, at
    module level, only the standard library and recipe.verify itself: verify runs in a bare
    venv with a wheel, on a Jetson, under qemu (torch is imported on first use)."""
    files = [os.path.join(REPO, "recipe", "__init__.py")] + sorted(
        os.path.join(VERIFY_DIR, f) for f in os.listdir(VERIFY_DIR) if f.endswith(".py"))
    assert len(files) >= 10, files
    for path in files:
        src = open(path).read()
        ast.parse(src, feature_version=(3, 8))
        for name in _module_level_imports(ast.parse(src)):
            top = name.split(".")[0]
            if top == "recipe":
                assert name in ("recipe", "recipe.verify") or name.startswith("recipe.verify."), \
                    (path, name)
            elif top != "__future__":
                assert top not in ("torch", "numpy", "yaml"), (path, name)
                assert STDLIB is None or top in STDLIB, (path, name)


def _bare(argv, cwd, env=None):
    """`python -S ARGV`: no site-packages at all, so an import beyond the standard library
    fails; torch is not reachable either (only `--cases list` / `--help` can run)."""
    e = dict(os.environ)
    e.pop("PYTHONPATH", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-S"] + argv, cwd=str(cwd), env=e,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)


def test_it_runs_with_the_standard_library_alone_as_a_module_and_as_a_script(tmp_path):
    names = [c.name for c in verify.default_matrix()]
    for argv, env in ((["-m", "recipe.verify", "--cases", "list"], {"PYTHONPATH": REPO}),
                      ([VERIFY_DIR, "--cases", "list"], None),
                      ([os.path.join(VERIFY_DIR, "__main__.py"), "--cases", "list"], None)):
        r = _bare(argv, tmp_path, env)
        assert r.returncode == 0, (argv, r.stderr)
        assert r.stdout.split() == names, argv
    r = _bare([VERIFY_DIR, "--threads", "1", "--cases", SEED], tmp_path)
    assert r.returncode == verify.EXIT_SETUP and "cannot import torch" in r.stderr, r.stderr


SYS_PATH_AT_IMPORT_TORCH = textwrap.dedent('''
    # Records sys.path when torch is imported, then runs verify the way ARGV[1] says.
    import json, os, runpy, sys
    mode, target, out = sys.argv[1:4]
    seen = []

    def hook(event, args):
        if event == "import" and args[0] == "torch" and not seen:
            seen.append([os.path.abspath(p or os.curdir) for p in sys.path])

    sys.addaudithook(hook)
    sys.argv = ["verify"] + sys.argv[4:]
    try:
        if mode == "script":
            runpy.run_path(target, run_name="__main__")
        else:
            sys.path.insert(0, target)
            runpy.run_module("recipe.verify", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code
    with open(out, "w") as f:
        json.dump({"code": code, "sys_path": seen[0] if seen else None}, f)
''')


def test_nothing_of_the_checkout_is_on_sys_path_when_torch_is_imported(tmp_path):
    """The script-mode guard: `python recipe/verify` starts with recipe/verify/ as sys.path[0]
    (its modules cases, events, run, ... would shadow anything of that name torch imports) and
    `python -m recipe.verify` with the checkout on it (build.py, tests/): neither is there when
    torch is imported."""
    driver = tmp_path / "driver.py"
    driver.write_text(SYS_PATH_AT_IMPORT_TORCH)
    for mode, target in (("script", VERIFY_DIR), ("module", REPO)):
        out = tmp_path / ("%s.json" % mode)
        r = subprocess.run([sys.executable, str(driver), mode, target, str(out), "--no-timing",
                            "--threads", "1", "--json", "--cases", DW3D],
                           cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=300)
        data = json.loads(out.read_text())
        assert data["code"] == verify.EXIT_OK, (mode, r.stderr[-2000:])
        assert data["sys_path"], mode
        assert not {VERIFY_DIR, REPO, os.path.join(REPO, "recipe")} & set(data["sys_path"]), \
            (mode, data["sys_path"])


def test_default_matrix_covers_the_issue():
    cases = verify.default_matrix()
    names = [c.name for c in cases]
    assert len(names) == len(set(names))
    assert SEED in names and SEED_TRAIN in names
    seed = [c for c in cases if c.name == SEED][0]
    assert (seed.in_channels, seed.out_channels, seed.groups, seed.kernel, seed.size) == \
        (384, 384, 384, 3, (56, 56))
    assert {c.dim for c in cases} == {1, 2, 3}
    assert {c.kernel for c in cases} >= {3, 5, 7}
    assert {c.stride for c in cases} == {1, 2}
    assert {c.dtype for c in cases} == {"float32", "bfloat16", "float16"}
    assert {c.memory_format for c in cases} == {"nchw", "cl"}
    assert {c.mode for c in cases} == {"inference", "training"}
    kinds = {c.kind for c in cases}
    assert {"dw", "dw2", "g2"} <= kinds
    assert any(c.groups == c.in_channels // 4 for c in cases)   # groups = C/4
    full = verify.full_matrix()
    assert len(full) > 3 * len(cases)
    assert len({c.name for c in full}) == len(full)


def test_case_filter():
    cases = verify.default_matrix()
    assert [c.name for c in verify.filter_cases(cases, SEED)] == [SEED]
    seed = verify.filter_cases(cases, "seed")
    assert len(seed) >= 4 and all("c384" in c.name for c in seed)
    both = verify.filter_cases(cases, "c384+fp32+inf")
    assert {c.name for c in both} == {SEED, "2d-dw-c384-56x56-k3s1p1-fp32-cl-inf"}
    glob = verify.filter_cases(cases, "1d-*-train,3d-*")
    assert glob and all(c.name.startswith(("1d-", "3d-")) for c in glob)
    assert verify.filter_cases(cases, "nothing-matches") == []


def test_cli_lists_cases_without_torch_work():
    rc, out, _ = run_cli(["--cases", "list"])
    assert rc == 0
    assert SEED in out.split()


# ----------------------------------------------------------------------------- real torch

def test_no_mkldnn_detects_the_loop_with_counts():
    """Stock torch, oneDNN off (what a Jetson wheel does): depthwise/grouped convs loop."""
    rc, out, err = run_cli(["--no-mkldnn", "--no-timing", "--threads", "1", "--json",
                            "--cases", ",".join([SEED, SEED_TRAIN, G16, DW1D, DW3D])])
    assert rc == verify.EXIT_FAILED, err
    data = json.loads(out)
    assert data["ok"] is False
    cases = by_name(data)
    seed = cases[SEED]
    assert seed["status"] == "LOOP"
    assert seed["calls"]["forward"] == 384
    assert seed["backend_ops"]["forward"] == {"aten::thnn_conv2d": 384}
    assert seed["errors"]["output"] < 1e-4          # the loop is slow, not wrong
    if hasattr(torch._C, "_select_conv_backend"):
        assert seed["selected_backend"] == "Slow2d"
    train = cases[SEED_TRAIN]
    assert train["calls"] == {"forward": 384, "backward": 384}
    assert train["backend_ops"]["backward"] == {"aten::_slow_conv2d_backward": 384}
    assert set(train["errors"]) == {"output", "grad_input", "grad_weight", "grad_bias"}
    assert cases[G16]["calls"]["forward"] == 16
    assert cases[DW1D]["calls"]["forward"] == 128     # Conv1d is viewed as 2d, then loops
    # grouped Conv3d: slow_conv3d handles groups in one call: no loop
    assert cases[DW3D]["status"] == "PASS" and cases[DW3D]["calls"]["forward"] == 1
    failures = {f["name"]: f for f in data["failures"]}
    assert set(failures) == {SEED, SEED_TRAIN, G16, DW1D}
    assert "384 backend calls" in failures[SEED]["reason"]
    assert "384 x aten::thnn_conv2d" in failures[SEED]["reason"]
    assert failures[SEED]["calls"]["forward"] == 384


def test_no_mkldnn_table_names_failing_cases():
    rc, out, err = run_cli(["--no-mkldnn", "--no-timing", "--threads", "1", "--cases", SEED])
    assert rc == verify.EXIT_FAILED, err
    assert "thnn_conv2d x384" in out
    tail = out[out.index("FAILED"):]
    assert SEED in tail and "384 backend calls per conv (384 x aten::thnn_conv2d)" in tail


def _need_onednn():
    if not torch.backends.mkldnn.is_available():
        unavailable("oneDNN in the host's torch", "this torch was built without it")


def test_onednn_serves_grouped_convs_as_one_call():
    _need_onednn()
    report = verify.run_verify(verify.VerifyOptions(cases="fp32", timing=False, threads=1))
    served = [c for c in report.cases if c["selected_backend"] == "Mkldnn"]
    assert len(served) >= 20
    for c in served:
        assert c["status"] == "PASS", (c["name"], c["reason"])
        assert c["backend_ops"]["forward"] == {"aten::mkldnn_convolution": 1}
        if c["case"]["mode"] == "training":
            # oneDNN backward is a DispatchStub: no op event, attributed via the selection
            assert c["calls"]["backward"] == 1 and c["backend_ops"]["backward"] == {}
            assert "attributed via _select_conv_backend" in c["attribution"]["backward"]
    # Only cases oneDNN does not serve may fail (grouped Conv3d runs as one slow_conv3d call).
    assert all(f["name"] not in {c["name"] for c in served} for f in report.failures)


def test_timing_speedup_over_forced_loop_and_allow_loop():
    _need_onednn()
    report = verify.run_verify(verify.VerifyOptions(
        cases="2d-dw-c64-28x28-k3s1p1-fp32-nchw-inf,2d-dw-c64-28x28-k3s1p1-fp16-nchw-inf,"
              "3d-dw-c32-8x16x16-k3s1p1-fp32-nchw-inf",
        threads=1, allow_loop="*fp16*"))
    cases = by_name(report.to_dict())
    fp32 = cases["2d-dw-c64-28x28-k3s1p1-fp32-nchw-inf"]
    assert fp32["status"] == "PASS" and fp32["time_ms"] > 0
    assert fp32["loop_forced"] is True and fp32["loop_calls"] == 64
    assert fp32["loop_selected_backend"] in ("Slow2d", None)
    assert fp32["speedup"] == pytest.approx(fp32["loop_time_ms"] / fp32["time_ms"])
    fp16 = cases["2d-dw-c64-28x28-k3s1p1-fp16-nchw-inf"]
    if fp16["loops"]:     # fp16 conv is served by oneDNN only with AVX512-FP16/AMX-FP16
        assert fp16["status"] == "LOOP-ALLOWED"
        assert fp16["loop_note"] == "this case runs the group loop itself"
    # grouped conv3d without oneDNN is still one slow_conv3d call: no loop to compare with
    c3 = cases["3d-dw-c32-8x16x16-k3s1p1-fp32-nchw-inf"]
    assert c3["loop_forced"] is False and c3["speedup"] is None
    assert "cannot be forced" in c3["loop_note"]
    assert report.ok, report.failures
    table = report.format_table()
    assert "x" in table and "n/a*" in table and "could not be forced" in table


def test_json_output_carries_the_facts(tmp_path):
    jf = tmp_path / "r.json"
    rc, out, err = run_cli(["--json", "--json-file", str(jf), "--no-timing", "--threads", "1",
                            "--cases", "2d-g2-c64-28x28-k3s2p1-fp32-nchw-inf"])
    data = json.loads(out)
    assert json.loads(jf.read_text()) == data
    assert data["schema"] == verify.SCHEMA
    f = data["facts"]
    assert f["torch_version"] == torch.__version__
    assert f["git_version"] == torch.version.git_version
    assert f["machine"] == __import__("platform").machine()
    assert f["mkldnn_available"] == torch.backends.mkldnn.is_available()
    assert f["threads"] == 1
    assert f["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "acl" in f and "xnnpack_compiled" in f and "nnpack_available" in f
    if hasattr(torch._C, "_is_xnnpack_enabled"):
        assert f["xnnpack_compiled"] == torch._C._is_xnnpack_enabled()
    assert f["select_conv_backend"] == hasattr(torch._C, "_select_conv_backend")
    assert "Slow2d" in f["conv_backends"]
    assert "USE_MKLDNN" in f["config"]["build_settings"]
    assert rc == (0 if data["ok"] else 1)
    assert data["summary"]["cases"] == 1


def test_profile_writes_chrome_traces(tmp_path):
    rc, out, err = run_cli(["--profile", str(tmp_path), "--threads", "1", "--json",
                            "--cases", "2d-g16-c64-28x28-k3s1p1-fp32-nchw-train"])
    data = json.loads(out)
    case = data["cases"][0]
    traces = case["traces"]
    assert traces and all(os.path.isfile(t) for t in traces)
    names = set()
    for t in traces:
        with open(t) as fh:
            trace = json.load(fh)
        assert isinstance(trace["traceEvents"], list) and trace["traceEvents"]
        names.update(ev.get("name") for ev in trace["traceEvents"])
    assert "aten::convolution_backward" in names
    if case["loop_forced"]:
        # the forced loop's trace shows the per-group kernels
        assert any(t.endswith(".loop.json") for t in traces)
        assert "aten::thnn_conv2d" in names and "aten::cat" in names


WRONG_CONV_HOOK = textwrap.dedent('''
    # Test-only: a deliberately wrong CPU kernel for aten::convolution, registered the way an
    # out-of-tree library would hook in. Wrong only for depthwise convs with kernel 5.
    import sys
    import torch
    sys.path.insert(0, sys.argv[1])
    from recipe import verify

    lib = torch.library.Library("aten", "IMPL")

    def wrong_convolution(input, weight, bias, stride, padding, dilation, transposed,
                          output_padding, groups):
        out = torch.ops.aten._convolution(input, weight, bias, stride, padding, dilation,
                                          transposed, output_padding, groups, False, False,
                                          True, True)
        if groups == input.shape[1] and weight.shape[-1] == 5:
            out = out + 1e-3 * out.abs().max()
        return out

    lib.impl("convolution", wrong_convolution, "CPU")
    sys.exit(verify.main(sys.argv[2:]))
''')


def test_wrong_result_is_detected(tmp_path):
    hook = tmp_path / "wrong_conv_hook.py"
    hook.write_text(WRONG_CONV_HOOK)
    wrong = "2d-dw-c64-28x28-k5s1p2-fp32-nchw-inf"
    right = "2d-dw-c64-28x28-k3s1p1-fp32-nchw-inf"
    r = subprocess.run([sys.executable, str(hook), REPO, "--json", "--no-timing", "--threads",
                        "1", "--cases", "%s,%s" % (wrong, right)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=300)
    assert r.returncode == verify.EXIT_FAILED, r.stderr
    data = json.loads(r.stdout)
    cases = by_name(data)
    assert cases[wrong]["status"] == "WRONG"
    assert cases[wrong]["errors"]["output"] > 5e-4
    assert cases[right]["status"] == "PASS"
    assert [f["name"] for f in data["failures"]] == [wrong]
    assert "WRONG" in data["failures"][0]["reason"]


def test_reference_is_independent_and_exact():
    """The float64 reference (einsum, no conv op) agrees with torch's float64 conv."""
    g = torch.Generator().manual_seed(0)
    for dim, (c, o, groups, k, s, p, size) in [
            (1, (8, 16, 8, 4, 1, 3, (17,))), (2, (8, 8, 2, 5, 2, 2, (9, 11))),
            (3, (6, 12, 3, 3, 2, 1, (5, 6, 7)))]:
        x = torch.randn([2, c] + list(size), generator=g, dtype=torch.float64)
        w = torch.randn([o, c // groups] + [k] * dim, generator=g, dtype=torch.float64)
        b = torch.randn([o], generator=g, dtype=torch.float64)
        conv = getattr(torch.nn.functional, "conv%dd" % dim)
        ref = reference.reference_conv(x, w, b, s, p, groups)
        assert torch.allclose(ref, conv(x, w, b, s, p, 1, groups), rtol=1e-10, atol=1e-10)


def test_count_backend_calls_on_real_profiles():
    x = torch.randn(1, 8, 10, 10)
    w = torch.randn(8, 1, 3, 3)
    with measure.mkldnn_enabled(False), torch.no_grad():
        _, events = measure.profiled(lambda: torch.nn.functional.conv2d(x, w, None, 1, 1, 1, 8))
    calls, ops, how, evidence = verify.count_backend_calls(events, "forward", "Slow2d", 8)
    assert calls == 8 and ops == {"aten::thnn_conv2d": 8}
    assert evidence == {"aten::narrow": 16, "aten::cat": 1}
    assert "group loop" in how


def test_python_api_report_roundtrip():
    report = verify.run_verify(cases="2d-g2-c64-28x28-k3s2p1-fp32-nchw-inf", timing=False,
                               threads=1, no_mkldnn=True)
    assert report.ok is False and len(report.failures) == 1
    f = report.failures[0]
    assert f["calls"]["forward"] == 2 and f["status"] == "LOOP"
    again = verify.Report.from_json(report.to_json())
    assert again.ok is False and again.failures == json.loads(report.to_json())["failures"]
    assert again.format_table() == report.format_table()


def test_loop_baseline_in_a_subprocess():
    """`--loop-baseline subprocess`: the loop is forced in a fresh interpreter started with
    PYTORCH_GROUPED_CONV_BACKEND=loop (for builds that read it once)."""
    report = verify.run_verify(cases="2d-g2-c64-28x28-k3s2p1-fp32-nchw-inf", threads=1,
                               loop_baseline="subprocess")
    c = report.cases[0]
    if c["loops"]:
        unavailable("a torch that runs grouped convs in one call", "this install loops already: "
                    "nothing to compare the forced loop with")
    assert c["loop_forced"] is True and c["loop_calls"] == 2
    assert "in a subprocess" in c["loop_note"] and c["speedup"] > 0
