"""The add-on wheel torch-grouped-conv on x86_64 with the host's torch 2.13 CPU: built by
`recipe.addon` (the real compile, cached), installed with real pip into a --target folder, and
used by fresh interpreters that only `import torch` (torch's entry-point autoload). Also: an
add-on built for ANOTHER torch (2.6.0 headers) and a broken library, installed beside 2.13:
`import torch` works, exactly one warning, convolutions run stock."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import addon_helpers as ah  # noqa: E402
from conftest import unavailable  # noqa: E402

from recipe import RECIPE_VERSION, addon, addon_headers  # noqa: E402

try:
    import torch
except ImportError as exc:  # tools/test.sh installs the host's torch
    unavailable("torch on the host", exc, module=True)


@pytest.fixture(scope="module")
def host_wheel(tmp_path_factory):
    return ah.build_host_wheel(tmp_path_factory.mktemp("addon-host"))


@pytest.fixture(scope="module")
def host_site(host_wheel, tmp_path_factory):
    return ah.pip_install_target(host_wheel, tmp_path_factory.mktemp("site-host"))


@pytest.fixture(scope="module")
def other_torch_wheel(tmp_path_factory):
    return ah.build_other_torch_wheel(tmp_path_factory.mktemp("addon-260"))


def readelf(*args):
    return subprocess.run(["readelf", "-W"] + list(args), stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout


# ----------------------------------------------------------------------------- the wheel

def test_wheel_records_what_it_was_built_from_and_links_no_torch_library(host_wheel, tmp_path):
    files = ah.wheel_contents(host_wheel)
    version = "%s+torch%s" % (RECIPE_VERSION, torch.__version__.split("+")[0])
    distinfo = "torch_grouped_conv-%s.dist-info" % version
    assert os.path.basename(host_wheel).startswith("torch_grouped_conv-%s-py3-none-" % version)
    assert files[distinfo + "/entry_points.txt"].decode().split() == [
        "[torch.backends]", "torch_grouped_conv", "=", "torch_grouped_conv:_autoload"]
    meta = files[distinfo + "/METADATA"].decode()
    assert "Name: torch-grouped-conv" in meta and "Version: %s" % version in meta
    assert "Requires-Dist" not in meta          # never a pin that rejects a vendor torch
    info = ah.build_info(host_wheel)
    assert info["torch"]["version"] == torch.__version__
    assert info["torch"]["git_version"] == torch.version.git_version
    assert info["torch"]["cxx11_abi"] == int(torch._C._GLIBCXX_USE_CXX11_ABI)
    assert info["capabilities"] == ["DEFAULT", "AVX2", "AVX512"]
    assert info["build"]["compiler_version"] and "-fopenmp" in info["build"]["common_flags"]
    for rel, sha in info["sources"].items():
        assert sha == addon._sha256(os.path.join(ah.REPO, rel)), rel
    assert "kernels/depthwise/DepthwiseConv2dNativeKernel.cpp" in info["sources"]
    manifest = json.load(open(host_wheel + ".manifest.json"))
    assert manifest["kind"] == "addon" and manifest["wheel"]["sha256"] == addon._sha256(host_wheel)
    # the manifest (what publish reads) records the same: torch version + commit, C++ ABI,
    # compiler and flags, the kernel sources' hashes
    for key in ("torch", "sources", "build", "capabilities", "platform_tag"):
        assert manifest["addon"][key] == info[key], key
    assert manifest["wheel"]["version"] == version
    assert manifest["wheel"]["platform"] == info["platform_tag"]

    lib = tmp_path / addon.LIB_NAME
    lib.write_bytes(files["torch_grouped_conv/lib/" + addon.LIB_NAME])
    needed = re.findall(r"Shared library: \[([^\]]+)\]", readelf("-d", str(lib)))
    assert not [n for n in needed if "torch" in n or "c10" in n or "gomp" in n], needed
    dyn = readelf("--dyn-syms", str(lib))
    assert "DispatchStub" not in dyn
    defined = [l.split()[-1] for l in dyn.splitlines()
               if re.search(r"\b(FUNC|OBJECT)\s+GLOBAL", l) and " UND " not in l]
    assert defined == [addon.REGISTER_SYMBOL], defined[:5]  # nothing can interpose on torch
    # the platform tag is the lowest manylinux level covering its glibc/libstdc++ needs
    tag = info["platform_tag"]
    assert os.path.basename(host_wheel).endswith("-%s.whl" % tag)
    glibc = max((tuple(int(x) for x in v.split(".")) for v in
                 re.findall(r"@GLIBC_([\d.]+)", dyn)), default=(2, 17))
    m = re.match(r"^manylinux_2_(\d+)_x86_64$", tag)
    assert m and (2, int(m.group(1))) >= glibc, (tag, glibc)


def test_the_build_is_cached_and_the_wheel_reproducible(host_wheel, tmp_path):
    again = addon.build_addon(out_dir=str(tmp_path), quiet=True)
    assert addon._sha256(again) == addon._sha256(host_wheel)


# ----------------------------------------------------------------------------- import torch

@pytest.fixture(scope="module")
def autoloaded(host_site):
    r = ah.run_python(ah.probe_code(), site=host_site)
    assert r.returncode == 0, r.stderr[-3000:]
    return ah.parse_result(r.stdout), r.stderr


def test_import_torch_alone_loads_the_addon(autoloaded):
    res, stderr = autoloaded
    assert res["addon_imported"] and res["loaded"], res["reason"]
    assert res["warnings"] == [] and ah.count_warnings(stderr) == 0
    assert res["capability"] == torch.backends.cpu.get_cpu_capability()


@pytest.mark.parametrize("key", ah.PROBE_CASES)
def test_every_case_runs_one_kernel_and_matches_float64(autoloaded, key):
    # inference with oneDNN on, fp32 channels_last: the policy's pick is oneDNN
    ah.assert_case_one_kernel(key, autoloaded[0]["cases"][key])


def test_a_grouped_non_depthwise_conv_runs_one_kernel(host_site):
    """ResNeXt's Conv2d(128, 128, 3, groups=32): with oneDNN off (a Jetson wheel) ONE native
    grouped call instead of 32 thnn_conv2d + cat, every dtype and layout, and one call each
    way in training; with oneDNN on, fp32 stays with oneDNN's x86 JIT and fp16/bf16 go native
    (the add-on's shim counts only fp32 as oneDNN's: which reduced-precision convs oneDNN
    takes depends on CPU checks inside libtorch that an add-on cannot call)."""
    r = ah.run_python(ah.grouped_probe_code(), site=host_site)
    assert r.returncode == 0, r.stderr[-3000:]
    res = ah.parse_result(r.stdout)
    assert len(res["cases"]) == 14, sorted(res["cases"])
    ah.assert_grouped_cases_one_kernel(res, onednn_runs_fp32=torch.backends.mkldnn.is_available())

COMPILE = r'''
import sys, torch, torch.nn as nn
from torch.profiler import ProfilerActivity, profile
import torch_grouped_conv
assert torch_grouped_conv.load()
torch.backends.mkldnn.enabled = sys.argv[1] == "onednn"
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU(),
                      nn.Conv2d(32, 64, 1), nn.Conv2d(64, 64, 5, padding=2, groups=64)).eval()
x = torch.randn(2, 32, 20, 20)
compiled = torch.compile(model)
with torch.no_grad():
    eager = model(x)
    y = compiled(x)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        y2 = compiled(x)
counts = {e.key: e.count for e in prof.key_averages()}
print("RESULT " + json.dumps({"diff": max((y - eager).abs().max().item(),
                                          (y2 - eager).abs().max().item()),
                              "ops": {k: v for k, v in counts.items() if k in BACKEND}}))
'''.replace("import sys,", "import json, sys,").replace("BACKEND", repr(
    ["aten::_conv_depthwise2d", "aten::mkldnn_convolution", "aten::thnn_conv2d", "aten::cat",
     "aten::_slow_conv2d_forward"]))


@pytest.mark.parametrize("onednn", ["onednn", "no_onednn"])
def test_torch_compile_same_result_one_kernel_per_conv(host_site, onednn):
    """Inductor calls aten::convolution for each conv (in channels_last, its CPU layout
    choice); the shim then runs each as one call: with oneDNN on the policy picks oneDNN for
    fp32 channels_last, with oneDNN off the native kernel for the two depthwise convs (the
    1x1 conv is not grouped: one thnn_conv2d)."""
    r = ah.run_python(COMPILE, site=host_site, args=[onednn])
    assert r.returncode == 0, r.stderr[-4000:]
    res = ah.parse_result(r.stdout)
    assert res["diff"] <= 1e-5
    if onednn == "onednn":
        assert res["ops"] == {"aten::mkldnn_convolution": 3}, res["ops"]
    else:
        assert res["ops"] == {"aten::_conv_depthwise2d": 2, "aten::thnn_conv2d": 1,
                              "aten::_slow_conv2d_forward": 1}, res["ops"]  # thnn's callee


def test_status_command(host_site):
    r = ah.run_python("import runpy; runpy.run_module('torch_grouped_conv', run_name='__main__')",
                      site=host_site)
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = r.stdout
    assert "loaded: True" in out and "built for:" in out and torch.version.git_version in out
    assert "cpu capability in use: %s" % torch.backends.cpu.get_cpu_capability() in out
    assert "policy: native" in out and "aten::_conv_depthwise2d: 1" in out


def test_the_cpu_capability_can_be_capped(host_site):
    code = ("import torch; print(torch.ops.torch_grouped_conv.cpu_capability(), '|', "
            "torch.ops.torch_grouped_conv.cpu_capability_note())")
    r = ah.run_python(code, site=host_site, env={"TORCH_GROUPED_CONV_CPU_CAPABILITY": "default"})
    assert r.stdout.split("|")[0].strip() == "DEFAULT", (r.stdout, r.stderr[-2000:])
    assert "capped by TORCH_GROUPED_CONV_CPU_CAPABILITY=default" in r.stdout
    r = ah.run_python(code, site=host_site, env={"TORCH_GROUPED_CONV_CPU_CAPABILITY": "sse9"})
    assert "TORCH_GROUPED_CONV_CPU_CAPABILITY='sse9' ignored" in r.stdout, r.stdout


def test_environment_switch_turns_it_off(host_site):
    r = ah.run_python(ah.probe_code(dtypes=("float32",), full=False), site=host_site,
                      env={"TORCH_GROUPED_CONV": "0"})
    res = ah.parse_result(r.stdout)
    assert not res["loaded"] and res["reason"] == "disabled by TORCH_GROUPED_CONV=0"
    assert res["warnings"] == [] and ah.count_warnings(r.stderr) == 0
    assert res["cases"]["no_onednn-float32-nchw"]["ops"]["aten::thnn_conv2d"] == 384


def test_verify_passes_every_case_with_the_addon(host_site):
    """oneDNN on and off (a Jetson wheel): every case of the matrix passes, the grouped
    NON-depthwise ones too (the native grouped kernel where oneDNN does not run them)."""
    for flags in ([], ["--no-mkldnn"]):
        r = ah.run_python("import sys, runpy; sys.argv = ['build.py', 'verify', '--json', "
                          "'--no-timing', '--threads', '1'] + sys.argv[1:]; "
                          "runpy.run_path('build.py', run_name='__main__')",
                          site=host_site, args=flags)
        data = json.loads(r.stdout)
        ah.assert_verify_passed_every_case(data)
        assert r.returncode == 0, (flags, r.stderr[-2000:])


# ----------------------------------------------------------------------------- never breaks

def _stock_import(site):
    r = ah.run_python(ah.probe_code(dtypes=("float32",), full=False), site=site)
    assert r.returncode == 0, r.stderr[-3000:]          # import torch succeeded
    return ah.parse_result(r.stdout), r.stderr


def test_an_addon_for_another_torch_warns_once_and_changes_nothing(other_torch_wheel, tmp_path):
    info = ah.build_info(other_torch_wheel)
    assert info["torch"]["version"].startswith("2.6.0")
    site = ah.pip_install_target(other_torch_wheel, tmp_path / "site")
    res, stderr = _stock_import(site)
    assert not res["loaded"]
    assert len(res["warnings"]) == 1, res["warnings"]
    warning = res["warnings"][0]
    assert warning.startswith("TorchGroupedConvWarning")
    for text in ("2.6.0", torch.__version__, "build.py addon"):
        assert text in warning, (text, warning)
    assert res["cases"]["no_onednn-float32-nchw"]["ops"]["aten::thnn_conv2d"] == 384
    assert res["cases"]["no_onednn-float32-nchw"]["err"] <= 1e-5
    # the plain stderr of `python -c "import torch"` shows it exactly once too
    r = ah.run_python("import torch; import torch_grouped_conv; torch_grouped_conv.load()",
                      site=site)
    assert r.returncode == 0 and ah.count_warnings(r.stderr) == 1, r.stderr
    r = ah.run_python("import runpy; runpy.run_module('torch_grouped_conv', "
                      "run_name='__main__')", site=site)
    assert r.returncode == 1 and "loaded: False" in r.stdout and "built for torch 2.6.0" in r.stdout


def test_a_library_that_fails_to_load_warns_once_and_changes_nothing(host_site, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(host_site, str(site))
    lib = site / "torch_grouped_conv" / "lib" / addon.LIB_NAME
    lib.write_bytes(lib.read_bytes()[:4096])   # truncated: dlopen of it would kill the process
    res, stderr = _stock_import(str(site))
    assert not res["loaded"] and "reinstall the wheel" in res["reason"], res["reason"]
    assert len(res["warnings"]) == 1 and "reinstall the wheel" in res["warnings"][0]
    assert res["cases"]["no_onednn-float32-nchw"]["ops"]["aten::thnn_conv2d"] == 384


def test_missing_symbols_warn_once_and_change_nothing(other_torch_wheel, tmp_path):
    """The 2.6.0 add-on forced into torch 2.13 (TORCH_GROUPED_CONV_IGNORE_VERSION=1): dlopen
    fails on symbols 2.13 does not export; one warning, stock convolutions."""
    site = ah.pip_install_target(other_torch_wheel, tmp_path / "site")
    r = ah.run_python(ah.probe_code(dtypes=("float32",), full=False), site=site,
                      env={"TORCH_GROUPED_CONV_IGNORE_VERSION": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    res = ah.parse_result(r.stdout)
    assert not res["loaded"] and res["reason"].startswith("load error: OSError"), res["reason"]
    assert "undefined symbol" in res["reason"]
    assert len(res["warnings"]) == 1
    assert res["cases"]["no_onednn-float32-nchw"]["ops"]["aten::thnn_conv2d"] == 384


REFUSED = r"""
import json, shutil, sys, warnings
caught = []
warnings.showwarning = lambda m, c, *a, **k: caught.append(str(m))
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
# Another library already owns the namespace the add-on registers LAST (its registrations
# before it, native_dwconv and the aten kernels, must be undone).
taken = torch.library.Library("torch_grouped_conv", "DEF")
import torch_grouped_conv
out = {"loaded": torch_grouped_conv.load(), "reason": torch_grouped_conv._state["reason"],
       "warnings": caught}
out["aten_cpu_kernel"] = torch._C._dispatch_has_kernel_for_dispatch_key(
    "aten::_conv_depthwise2d", "CPU")
out["native_dwconv_ops"] = [n for n in ("shim_enabled", "routing_choice")
                            if hasattr(torch.ops.native_dwconv, n)]
x, w = torch.randn(1, 384, 56, 56), torch.randn(384, 1, 3, 3)
torch.backends.mkldnn.enabled = False
with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
    y = F.conv2d(x, w, padding=1, groups=384)
out["ops"] = {e.key: e.count for e in prof.key_averages()
              if e.key in ("aten::_conv_depthwise2d", "aten::thnn_conv2d")}
out["err"] = ((y.double() - F.conv2d(x.double(), w.double(), padding=1, groups=384)).abs().max()
              / y.abs().max()).item()
# A second copy of the active library (the kernel a developer loads beside the installed
# add-on): its registrations are refused too, as an exception, and the first copy stays.
del taken
torch_grouped_conv._state["attempted"] = False
assert torch_grouped_conv.load(), torch_grouped_conv._state["reason"]
copy = sys.argv[1]
shutil.copy(torch_grouped_conv.LIBRARY, copy)
try:
    torch_grouped_conv._loader.load_library(copy)
    out["second_copy"] = "registered"
except torch_grouped_conv._loader.RegistrationError as e:
    out["second_copy"] = str(e)
with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
    F.conv2d(x, w, padding=1, groups=384)
out["ops_after_copy"] = {e.key: e.count for e in prof.key_averages()
                         if e.key in ("aten::_conv_depthwise2d", "aten::thnn_conv2d")}
print("RESULT " + json.dumps(out))
"""


def test_a_registration_torch_refuses_warns_once_and_leaves_torch_stock(host_site, tmp_path):
    """The dispatcher refuses a registration by throwing c10::Error (a schema that differs
    in the running torch, a namespace already defined); from a static initialiser that was
    std::terminate inside `import torch` (exit 134). The library now registers through the
    loader's explicit call: one warning, everything it registered undone, stock convs."""
    r = ah.run_python(REFUSED, site=host_site, args=[tmp_path / "copy.so"],
                      env={"TORCH_DEVICE_BACKEND_AUTOLOAD": "0"})
    assert r.returncode == 0, r.stderr[-3000:]
    res = ah.parse_result(r.stdout)
    assert not res["loaded"] and "Only a single TORCH_LIBRARY" in res["reason"], res["reason"]
    assert len(res["warnings"]) == 1, res["warnings"]
    for text in ("installed torch %s" % torch.__version__, "built for torch %s" % torch.__version__,
                 "build.py addon", "none is in effect"):
        assert text in res["warnings"][0], (text, res["warnings"][0])
    assert res["aten_cpu_kernel"] is False and res["native_dwconv_ops"] == [], res
    assert res["ops"] == {"aten::thnn_conv2d": 384} and res["err"] <= 1e-5, res
    assert "refused" in res["second_copy"] and "native_dwconv" in res["second_copy"], res
    assert res["ops_after_copy"] == {"aten::_conv_depthwise2d": 1}, res


def test_import_torch_grouped_conv_first_also_loads_it(host_site):
    r = ah.run_python("import torch_grouped_conv, torch; print(torch_grouped_conv.load())",
                      site=host_site)
    assert r.returncode == 0 and r.stdout.split()[-1] == "True", r.stderr[-2000:]


def test_unpinned_official_version_is_refused_with_the_way_out():
    with pytest.raises(addon_headers.HeadersError) as e:
        addon.build_addon("2.4.1", "aarch64", out_dir="/nonexistent")
    assert "--allow-unpinned" in str(e.value) and "2.6.0/aarch64" in str(e.value)
    r = subprocess.run([sys.executable, os.path.join(ah.REPO, "build.py"), "addon", "--torch",
                        "2.7", "--arch", "aarch64"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 2 and "give a release X.Y.Z" in r.stderr and "Traceback" not in r.stderr


IN_TREE = r'''
import torch, torch.nn.functional as F
calls = []
def in_tree_kernel(x, w, k, b, s, p, d):  # stands for the kernel a recipe-built torch has
    calls.append(1)
    return F.conv2d(x, w, b, s, p, d, groups=x.shape[1])
lib = torch.library.Library("aten", "IMPL")
lib.impl("_conv_depthwise2d", in_tree_kernel, "CPU")
import torch_grouped_conv
assert torch_grouped_conv.load()
x, w = torch.randn(1, 8, 6, 6), torch.randn(8, 1, 3, 3)
torch.ops.aten._conv_depthwise2d(x, w, [3, 3], None, [1, 1], [1, 1], [1, 1])
print("RESULT", torch.ops.native_dwconv.registered_aten_kernels(), len(calls))
'''


def test_a_torch_with_the_kernel_in_tree_gets_nothing_of_aten(host_site):
    """A torch whose aten::_conv_depthwise2d already has a CPU kernel (as one built by this
    recipe): the add-on registers nothing of aten (no kernel, no routing shim)."""
    r = ah.run_python(IN_TREE, site=host_site, env={"TORCH_DEVICE_BACKEND_AUTOLOAD": "0"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[-2:] == ["False", "1"], r.stdout


def test_build_py_addon_install_into_a_venv(tmp_path):
    """`build.py addon --install --python VENV`: builds against that interpreter's torch (here
    the host's, through --system-site-packages; the compile is cached) and pip-installs it."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(tmp_path / "v")],
                   check=True, timeout=300)
    python = str(tmp_path / "v" / "bin" / "python")
    r = subprocess.run([sys.executable, os.path.join(ah.REPO, "build.py"), "addon", "--install",
                        "--python", python, "--out", str(tmp_path / "out")], env=ah.clean_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=3600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    assert r.stdout.strip().splitlines()[-1].endswith(".whl") and "loaded: True" in r.stdout
    r = ah.run_python("import sys, torch; print(sys.modules['torch_grouped_conv']._state)",
                      python=python)
    assert "'loaded': True" in r.stdout, r.stderr[-2000:]
