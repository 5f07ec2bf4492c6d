"""Stamps and resume, with the real steps end to end on a tiny "PyTorch" made by the test:
clone (with a submodule) -> patch -> CMake/ninja build -> repair -> manifest. A failure in the
middle, then re-runs and --from: what is done is skipped, what changed is redone."""
import json
import os

import pytest

from recipe.config import Configs
from recipe.plan import format_plan, make_plan
from recipe.runner import run_plan
from recipe.stamps import Stamps, diff_inputs, fingerprint, key_of
from tests.recipe_helpers import require_tools, config_dir, format_patches, host, make_git_repo, use_git_env, write

@pytest.fixture(autouse=True)
def _tools():
    require_tools("cmake", "ninja", "gcc", "patchelf")

SETUP_PY = r'''
import hashlib, base64, os, subprocess, sys, zipfile
assert sys.argv[1:] == ["bdist_wheel"]
subprocess.check_call(["cmake", "-G", "Ninja", "-S", ".", "-B", "build"])
subprocess.check_call(["cmake", "--build", "build", "-j", os.environ["MAX_JOBS"]])
ver = os.environ["PYTORCH_BUILD_VERSION"]
os.makedirs("dist", exist_ok=True)
files = {"tiny/__init__.py": b"", "tiny/lib/libtiny.so": open("build/libtiny.so", "rb").read(),
         "tiny-%s.dist-info/METADATA" % ver: ("Metadata-Version: 2.1\nName: tiny\nVersion: %s\n" % ver).encode(),
         "tiny-%s.dist-info/WHEEL" % ver: b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-linux_x86_64\n"}
with zipfile.ZipFile("dist/tiny-%s-py3-none-linux_x86_64.whl" % ver, "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
    z.writestr("tiny-%s.dist-info/RECORD" % ver, "")
'''
CMAKE = "cmake_minimum_required(VERSION 3.13)\nproject(tiny C)\nadd_library(tiny SHARED a.c b.c c.c d.c)\n"
FILES = {"CMakeLists.txt": CMAKE, "setup.py": SETUP_PY, "version.txt": "2.6.0a0\n",
         "a.c": "int fa(void) { return 1; }\n", "b.c": "int fb(void) { return 2; }\n",
         "c.c": "int fc(void) { return 3; }\n", "d.c": "int fd(void) { return 4 + ; }\n"}  # d.c is broken


@pytest.fixture
def project(tmp_path, monkeypatch):
    use_git_env(monkeypatch)
    sub = tmp_path / "onednn.git"
    make_git_repo(sub, {"CMakeLists.txt": "project(oneDNN VERSION 3.5.3 LANGUAGES C CXX)\n"})
    repo = tmp_path / "pytorch.git"
    commit = make_git_repo(repo, FILES, tag="v2.6.0", submodule=("third_party/onednn", str(sub)))
    pdir = tmp_path / "patches"
    os.makedirs(str(pdir))
    format_patches(FILES, [{"a.c": "/* patched */\nint fa(void) { return 1; }\n"},
                           {"d.c": "int fd(void) { return 4; }\n"}],
                   str(pdir), ["0001-comment.patch", "0002-fix-d.patch"])
    write(pdir / "series", "0001-comment.patch\n")
    cfg = config_dir(tmp_path, {"torch": {"commit": commit, "git_url": "file://%s" % repo},
                                "onednn": {"path": "third_party/onednn"},
                                "patches": {"series": str(pdir / "series")},
                                "build": {"disk_gb": 1}})
    return {"cfg": cfg, "series": str(pdir / "series"), "tmp": tmp_path}


def run(project, **opts):
    o = {"target": "x86_64", "release": "9.9.9", "work_dir": str(project["tmp"] / "work"),
         "wheels_dir": str(project["tmp"] / "wheels"), "cache": "none", "verify": False, "jobs": 2}
    o.update({k: v for k, v in opts.items() if k not in ("from_step", "only", "clean")})
    plan = make_plan(o, configs=Configs(project["cfg"]), host=host())
    lines = []
    ok, events = run_plan(plan, from_step=opts.get("from_step"), only=opts.get("only"),
                          do_clean=opts.get("clean", False), log=lines.append)
    return ok, {name: status for name, status, _ in events}, plan, "\n".join(lines)


def test_failure_then_resume_skips_done_and_redoes_changed(project):
    # 1. the build fails in the middle: sources and patch are stamped, build is not
    ok, ev, plan, out = run(project)
    assert not ok, out
    assert ev == {"doctor": "ran", "sources": "ran", "acl": "skip", "patch": "ran", "build": "failed"}, out
    assert "d.c" in out and "full log:" in out
    stamps = Stamps(plan.work_dir)
    assert stamps.read("sources") and stamps.read("patch") and not stamps.read("build")

    # 2. the same command again: done steps are skipped, the failed one runs again
    ok, ev, plan, out = run(project)
    assert not ok
    assert ev == {"doctor": "ran", "sources": "done", "acl": "skip", "patch": "done", "build": "failed"}, out

    # the dry run says the same without running anything
    text = format_plan(make_plan({"target": "x86_64", "release": "9.9.9", "work_dir": plan.work_dir,
                                  "wheels_dir": plan.wheels_dir, "cache": "none", "verify": False},
                                 configs=Configs(project["cfg"]), host=host()))
    assert "2. sources   " in text and "[done (stamp matches)]" in text and "[to do: not done yet]" in text

    # 3. the fix arrives as a new patch: patch is redone (its inputs changed), then the rest runs
    with open(project["series"], "a") as f:
        f.write("0002-fix-d.patch\n")
    ok, ev, plan, out = run(project)
    assert ok, out
    assert ev == {"doctor": "ran", "sources": "done", "acl": "skip", "patch": "ran", "build": "ran",
                  "repair": "ran", "verify": "skip", "manifest": "ran"}, out
    wheel = stamps.read("repair")["results"]["wheel"]
    assert os.path.dirname(wheel) == plan.wheels_dir and "+x86.64.recipe" in wheel
    manifest = json.load(open(wheel + ".manifest.json"))
    assert manifest["sources"]["torch"]["commit"] == plan.release["torch"]["commit"]
    assert manifest["sources"]["torch"]["verified"] is True
    assert manifest["sources"]["onednn"]["version"] == "3.5.3"
    assert [e[0] for e in manifest["patches"]["entries"]] == ["0001-comment.patch", "0002-fix-d.patch"]
    assert set(manifest["patches"]["files"]) == {"0001-comment.patch", "0002-fix-d.patch"}
    assert manifest["wheel"]["sha256"] == fingerprint(wheel).split("=", 1)[1]
    assert manifest["build"]["env"]["PYTORCH_BUILD_VERSION"] == plan.build_version
    assert manifest["tools"]["gcc"] and manifest["tools"]["cmake"]
    assert manifest["recipe_version"] and manifest["target"]["name"] == "x86_64"

    # 4. nothing changed: everything is skipped
    ok, ev, _, out = run(project)
    assert ok and set(ev.values()) <= {"ran", "done", "skip"}
    assert [n for n, s in ev.items() if s == "ran"] == ["doctor"], out

    # 5. --from repair redoes repair and what depends on it, nothing before
    ok, ev, _, out = run(project, from_step="repair")
    assert ok
    assert ev["build"] == "done" and ev["patch"] == "done" and ev["repair"] == "ran" and ev["manifest"] == "ran"

    # 6. an output removed behind our back makes its step (and the ones after) stale
    os.remove(wheel)
    ok, ev, _, out = run(project)
    assert ok and ev["build"] == "done" and ev["repair"] == "ran" and ev["manifest"] == "ran", out
    assert os.path.exists(wheel)

    # 7. a rebuild (--from build) makes repair and manifest stale through their upstream record
    ok, ev, _, out = run(project, from_step="build")
    assert ok and ev["build"] == "ran" and ev["repair"] == "ran" and ev["manifest"] == "ran"

    # 8. --only patch touches nothing else; --clean starts over (but keeps the clone)
    ok, ev, _, _ = run(project, only="patch")
    assert ok and ev == {"patch": "ran"}
    ok, ev, plan, out = run(project, clean=True)
    assert ok, out
    assert ev["sources"] == "ran" and ev["build"] == "ran" and ev["manifest"] == "ran"
    assert "clean: removing" in out and os.path.isdir(os.path.join(plan.source_dir, ".git"))


def test_stamp_keys_and_diffs(tmp_path):
    a = {"env": {"USE_X": "1"}, "tag": "v1"}
    b = {"env": {"USE_X": "0"}, "tag": "v1"}
    assert key_of(a) == key_of(dict(reversed(list(a.items()))))
    assert key_of(a) != key_of(b)
    assert diff_inputs(a, b) == ["env.USE_X"]
    st = Stamps(str(tmp_path))
    out = tmp_path / "out.txt"
    write(out, "x")
    st.write("s", key_of(a), a, {}, [str(out)])
    assert st.why_stale("s", key_of(a), a) is None
    assert st.why_stale("s", key_of(b), b) == "inputs changed: env.USE_X"
    write(out, "y")
    assert st.why_stale("s", key_of(a), a).startswith("output changed or missing")
    assert st.why_stale("t", key_of(a)) == "not done yet"
    write(out, "x")
    assert st.why_stale("s", key_of(a), a, upstream={"sources": "other-run"}) == "sources ran again since"
