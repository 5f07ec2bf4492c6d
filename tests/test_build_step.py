"""The build step's machinery, for real, on a tiny CMake + ninja project made by the test:
environment, compiler launcher (ccache), linker flags, log file, progress, failure tail."""
import io
import json
import os
import re
import subprocess

import pytest

from recipe.config import Configs
from recipe.plan import make_plan
from recipe.runner import run_plan
from recipe.steps import StepError
from recipe.proc import Progress, run_logged
from recipe.steps.build import merged_env
from tests.recipe_helpers import require_tools, config_dir, host, write

@pytest.fixture(autouse=True)
def _tools():
    require_tools("cmake", "ninja")

SETUP_PY = r'''
import json, os, subprocess, sys, zipfile
assert sys.argv[1:] == ["bdist_wheel"], sys.argv
keys = ["USE_MKLDNN", "USE_CUDA", "USE_XNNPACK", "BUILD_TEST", "MAX_JOBS", "LDFLAGS", "PYTORCH_BUILD_VERSION",
        "PYTORCH_BUILD_NUMBER", "CMAKE_C_COMPILER_LAUNCHER", "USE_NATIVE_ARCH", "EXTRA_FROM_CALLER"]
with open("env-seen.json", "w") as f:
    json.dump({k: os.environ.get(k) for k in keys}, f)
subprocess.check_call(["cmake", "-G", "Ninja", "-S", ".", "-B", "build", "-DCMAKE_BUILD_TYPE=Release"])
sys.stdout.flush()
subprocess.check_call(["cmake", "--build", "build", "-j", os.environ["MAX_JOBS"]])
os.makedirs("dist", exist_ok=True)
with zipfile.ZipFile("dist/tiny-0.1-py3-none-any.whl", "w") as z:
    z.writestr("tiny/__init__.py", "")
print("wheel written")
'''

CMAKE = """cmake_minimum_required(VERSION 3.13)
project(tiny C)
add_library(tiny SHARED a.c b.c c.c d.c e.c)
"""


def make_project(root, broken=False):
    write(root / "CMakeLists.txt", CMAKE)
    write(root / "setup.py", SETUP_PY)
    write(root / "version.txt", "2.6.0a0\n")
    for i, name in enumerate("abcde"):
        body = "int f_%s(int x) { return x + %d; }\n" % (name, i)
        if broken and name == "d":
            body = "int f_d(int x) { return x + ; }  /* deliberate syntax error */\n"
        write(root / (name + ".c"), body)


def plan_for(tmp_path, src, **opts):
    cfg = config_dir(tmp_path, target_overrides={"x86_64": {"max_page_size": "0x10000"}})
    o = {"target": "x86_64", "release": "9.9.9", "source": str(src), "work_dir": str(tmp_path / "work"),
         "wheels_dir": str(tmp_path / "wheels"), "cache": "none", "jobs": 2}
    o.update(opts)
    return make_plan(o, configs=Configs(cfg), host=host())


def test_build_runs_with_the_plan_environment_and_logs_everything(tmp_path, monkeypatch):
    src = tmp_path / "src"
    make_project(src)
    monkeypatch.setenv("EXTRA_FROM_CALLER", "kept")
    monkeypatch.setenv("LDFLAGS", "-Wl,-O1")
    plan = plan_for(tmp_path, src)
    lines = []
    ok, events = run_plan(plan, only="build", log=lines.append)
    assert ok, "\n".join(lines)
    seen = json.load(open(str(src / "env-seen.json")))
    assert seen["USE_MKLDNN"] == "1" and seen["USE_CUDA"] == "0" and seen["USE_XNNPACK"] == "1"
    assert seen["BUILD_TEST"] == "0" and seen["MAX_JOBS"] == "2" and seen["USE_NATIVE_ARCH"] == "0"
    assert seen["PYTORCH_BUILD_VERSION"] == plan.build_version and seen["PYTORCH_BUILD_NUMBER"] == "1"
    assert seen["LDFLAGS"] == "-Wl,-O1 -Wl,-z,max-page-size=0x10000"  # appended to the caller's
    assert seen["EXTRA_FROM_CALLER"] == "kept"
    # the linker flag reached the link: LOAD segments aligned to 64 KiB
    lib = src / "build" / "libtiny.so"
    segs = subprocess.run(["readelf", "-lW", str(lib)], stdout=subprocess.PIPE, universal_newlines=True).stdout
    aligns = re.findall(r"^\s+LOAD\s.*\s(0x[0-9a-f]+)$", segs, re.M)
    assert aligns and all(int(a, 16) == 0x10000 for a in aligns), segs
    log = open(os.path.join(plan.log_dir, "build.log")).read()
    assert "Building C object" in log and "wheel written" in log and "==== exit 0" in log
    import recipe.stamps as st
    stamp = st.Stamps(plan.work_dir).read("build")
    assert stamp["results"]["wheel"].endswith("dist/tiny-0.1-py3-none-any.whl")
    assert stamp["results"]["progress"][0] == stamp["results"]["progress"][1] >= 5


def test_progress_is_driven_by_ninja_lines(tmp_path):
    src = tmp_path / "src"
    make_project(src)
    stream = io.StringIO()
    prog = Progress(stream=stream, label="tiny")
    env = merged_env({"MAX_JOBS": "1"})
    subprocess.check_call(["cmake", "-G", "Ninja", "-S", str(src), "-B", str(src / "build")],
                          stdout=subprocess.DEVNULL)
    info = run_logged(["ninja", "-C", str(src / "build")], cwd=str(src), env=env,
                      log_path=str(tmp_path / "logs" / "x.log"), log=lambda m: None, what="tiny", progress=prog)
    done = [u for u in prog.updates]
    assert done[0][0] == 1 and done[-1][0] == done[-1][1] and len(done) == done[-1][1]
    assert "tiny %d/%d (100%%)" % (done[-1][1], done[-1][1]) in stream.getvalue()
    assert info["progress"] == done[-1]


def test_failure_shows_the_last_lines_and_the_log_path(tmp_path):
    src = tmp_path / "src"
    make_project(src, broken=True)
    plan = plan_for(tmp_path, src)
    lines = []
    ok, events = run_plan(plan, only="build", log=lines.append)
    assert not ok
    name, status, msg = events[-1]
    assert (name, status) == ("build", "failed")
    assert "build failed (exit 1)" in msg
    assert "d.c" in msg and "error" in msg                 # the compiler's complaint is in the tail
    log_path = os.path.join(plan.log_dir, "build.log")
    assert "full log: %s" % log_path in msg
    assert "deliberate syntax error" in open(log_path).read() or "d.c" in open(log_path).read()
    assert not os.path.exists(os.path.join(plan.work_dir, "stamps", "build.json"))
    with pytest.raises(StepError):
        run_logged(["sh", "-c", "echo one; echo two; exit 3"], cwd=str(tmp_path), env=merged_env({}),
                   log_path=str(tmp_path / "l.log"), log=lambda m: None, what="sh",
                   progress=Progress(stream=io.StringIO()))


def test_compiler_launcher_is_used(tmp_path):
    require_tools("ccache")
    src = tmp_path / "src"
    make_project(src)
    plan = plan_for(tmp_path, src, cache="ccache", cache_url=str(tmp_path / "ccache"))
    assert plan.launcher == "ccache" and plan.env["CMAKE_C_COMPILER_LAUNCHER"].endswith("ccache")
    lines = []
    ok, _ = run_plan(plan, only="build", log=lines.append)
    assert ok, "\n".join(lines)
    seen = json.load(open(str(src / "env-seen.json")))
    assert seen["CMAKE_C_COMPILER_LAUNCHER"].endswith("ccache")
    import recipe.stamps as st
    cache = st.Stamps(plan.work_dir).read("build")["results"]["cache"]
    assert cache["tool"] == "ccache" and cache["misses"] + cache["hits"] >= 5, cache
    assert os.listdir(str(tmp_path / "ccache"))  # objects went into our cache directory
