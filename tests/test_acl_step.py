"""The acl step with a real git repository and a stand-in scons: pinned commit checked, the
official flags + the target's arch passed, the result cached by version + flags."""
import os
import shutil

import pytest

from recipe.config import Configs
from recipe.plan import make_plan
from recipe.runner import run_plan
from tests.recipe_helpers import config_dir, git, host, make_git_repo, read, use_git_env, write

FAKE_SCONS = """#!/bin/sh
# stands in for scons: records its arguments, "builds" the library
if [ "$1" = "--version" ]; then echo "SCons by Steven Knight et al.: SCons: v4.4.0"; exit 0; fi
echo "$@" > scons-args.txt
mkdir -p build && echo lib > build/libarm_compute.so && echo "[1/1] done"
"""


@pytest.fixture
def acl_repo(tmp_path, monkeypatch):
    use_git_env(monkeypatch)
    monkeypatch.setenv("RECIPE_CACHE", str(tmp_path / "cache"))
    bindir = tmp_path / "bin"
    write(bindir / "scons", FAKE_SCONS, mode=0o755)
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    repo = tmp_path / "acl.git"
    commit = make_git_repo(repo, {"SConstruct": "# ACL\n"}, tag="v24.09")
    return {"url": "file://%s" % repo, "commit": commit, "tmp": tmp_path}


def plan_for(acl_repo, commit, target="jetson-agx-xavier-cpu"):
    cfg = config_dir(acl_repo["tmp"], {"acl": {"git_url": acl_repo["url"], "commit": commit}})
    return make_plan({"target": target, "release": "9.9.9", "work_dir": str(acl_repo["tmp"] / "work"),
                      "wheels_dir": str(acl_repo["tmp"] / "wheels"), "cache": "none", "jobs": 3,
                      "python_version": "3.9"},
                     configs=Configs(cfg), host=host(arch="aarch64"))


def test_acl_is_cloned_at_its_commit_built_with_target_arch_and_cached(acl_repo):
    plan = plan_for(acl_repo, acl_repo["commit"])
    assert plan.acl_dir.startswith(str(acl_repo["tmp"] / "cache" / "acl" / "24.09-armv8.2-a-"))
    lines = []
    ok, events = run_plan(plan, only="acl", log=lines.append)
    assert ok, "\n".join(lines)
    args = read(os.path.join(plan.acl_root, "scons-args.txt")).split()
    assert args[0] == "-j3" and args[-1] == "arch=armv8.2-a"
    for flag in ("Werror=0", "debug=0", "neon=1", "opencl=0", "embed_kernels=0", "os=linux", "build=native",
                 "multi_isa=1", "fixed_format_kernels=1", "openmp=1", "cppthreads=0"):
        assert flag in args
    assert git(plan.acl_root, "rev-parse", "HEAD") == acl_repo["commit"]
    assert plan.env["ACL_ROOT_DIR"] == plan.acl_root
    # another work dir (or --clean) reuses the cached build: scons does not run again
    os.remove(os.path.join(plan.acl_root, "scons-args.txt"))
    shutil.rmtree(os.path.join(plan.work_dir, "stamps"))
    lines = []
    ok, _ = run_plan(plan, only="acl", log=lines.append)
    assert ok and any("already built in the cache" in l for l in lines)
    assert not os.path.exists(os.path.join(plan.acl_root, "scons-args.txt"))


def test_acl_commit_mismatch_and_unpinned_tag(acl_repo):
    plan = plan_for(acl_repo, "0" * 40)
    ok, events = run_plan(plan, only="acl", log=lambda m: None)
    assert not ok and "the release pins %s" % ("0" * 40) in events[-1][2]
    plan = plan_for(acl_repo, None)
    assert any("pins ACL v24.09 by tag only" in w for w in plan.warnings)
    lines = []
    ok, _ = run_plan(plan, only="acl", log=lines.append)
    assert ok
    from recipe.stamps import Stamps
    res = Stamps(plan.work_dir).read("acl")["results"]
    assert res["commit"] == acl_repo["commit"] and res["pinned"] is False
    assert any("not pinned by commit" in l for l in lines)


def test_acl_is_skipped_without_acl(acl_repo):
    plan = plan_for(acl_repo, acl_repo["commit"], target="x86_64")
    ok, events = run_plan(plan, only="acl", log=lambda m: None)
    assert ok and events == [("acl", "skip", "target x86_64 builds without ACL")]
