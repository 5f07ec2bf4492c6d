"""The sources step against real git repositories (with a real submodule) made by the tests."""
import os
import time

import pytest

from recipe.config import Configs
from recipe.plan import make_plan
from recipe.runner import run_plan
from tests.recipe_helpers import config_dir, git, host, make_git_repo, use_git_env, write

ONEDNN_CMAKE = "cmake_minimum_required(VERSION 3.13)\nproject(oneDNN VERSION 3.5.3 LANGUAGES C CXX)\n"


@pytest.fixture
def upstream(tmp_path, monkeypatch):
    """A fake pytorch repository: an older commit, the tagged release commit, a oneDNN submodule."""
    use_git_env(monkeypatch)
    sub = tmp_path / "onednn.git"
    make_git_repo(sub, {"CMakeLists.txt": ONEDNN_CMAKE})
    repo = tmp_path / "pytorch.git"
    os.makedirs(str(repo))
    git(repo, "init", "-q")
    write(repo / "version.txt", "2.5.9a0\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "older")
    old = git(repo, "rev-parse", "HEAD")
    write(repo / "version.txt", "2.6.0a0\n")
    write(repo / "setup.py", "print('not used here')\n")
    git(repo, "submodule", "add", "-q", "file://%s" % sub, "third_party/onednn")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "release")
    git(repo, "tag", "v2.6.0")
    head = git(repo, "rev-parse", "HEAD")
    return {"url": "file://%s" % repo, "path": str(repo), "commit": head, "old": old}


def make(tmp_path, url, commit, **opts):
    cfg = config_dir(tmp_path, {"torch": {"commit": commit, "git_url": url},
                                "onednn": {"path": "third_party/onednn"}})
    o = {"target": "x86_64", "release": "9.9.9", "work_dir": str(tmp_path / "work"),
         "wheels_dir": str(tmp_path / "wheels"), "cache": "none"}
    o.update(opts)
    return make_plan(o, configs=Configs(cfg), host=host())


def run_sources(plan):
    lines = []
    ok, events = run_plan(plan, only="sources", log=lines.append)
    return ok, events[-1][2], "\n".join(lines)


def test_shallow_clone_with_submodules_and_verified_commit(tmp_path, upstream):
    plan = make(tmp_path, upstream["url"], upstream["commit"])
    ok, err, out = run_sources(plan)
    assert ok, out
    tree = plan.source_dir
    assert git(tree, "rev-parse", "HEAD") == upstream["commit"]
    assert git(tree, "rev-parse", "--is-shallow-repository") == "true"
    assert os.path.exists(os.path.join(tree, "third_party/onednn/CMakeLists.txt"))
    stamp = plan_stamp(plan)
    res = stamp["results"]
    assert res["kind"] == "git" and res["commit_verified"] and res["onednn"]["version"] == "3.5.3"
    assert res["onednn"]["commit"] == git(os.path.join(tree, "third_party/onednn"), "rev-parse", "HEAD")
    assert "git clone --depth 1 --branch v2.6.0 --recurse-submodules --shallow-submodules -j 2" in out


def plan_stamp(plan):
    import json
    with open(os.path.join(plan.work_dir, "stamps", "sources.json")) as f:
        return json.load(f)


def test_pinned_commit_mismatch_is_detected(tmp_path, upstream):
    plan = make(tmp_path, upstream["url"], upstream["old"])  # the tag points elsewhere
    ok, err, _ = run_sources(plan)
    assert not ok
    assert "is at commit %s, but the release pins %s" % (upstream["commit"], upstream["old"]) in err
    assert not os.path.exists(os.path.join(plan.work_dir, "stamps", "sources.json"))


def test_source_checkout_dirty_is_refused_unless_allowed(tmp_path, upstream):
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", "--recurse-submodules", upstream["url"], str(checkout))
    write(checkout / "setup.py", "print('locally edited')\n")
    plan = make(tmp_path, upstream["url"], upstream["commit"], source=str(checkout))
    ok, err, _ = run_sources(plan)
    assert not ok and "has local changes" in err and "setup.py" in err and "--allow-dirty" in err
    plan = make(tmp_path, upstream["url"], upstream["commit"], source=str(checkout), allow_dirty=True)
    ok, err, out = run_sources(plan)
    assert ok, out
    assert any("setup.py" in d for d in plan_stamp(plan)["results"]["dirty"])


def test_files_written_by_our_patch_step_are_not_dirty(tmp_path, upstream):
    import hashlib
    import json
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", "--recurse-submodules", upstream["url"], str(checkout))
    write(checkout / "setup.py", "print('patched')\n")
    plan = make(tmp_path, upstream["url"], upstream["commit"], source=str(checkout))
    os.makedirs(plan.work_dir)
    digest = hashlib.sha256(b"print('patched')\n").hexdigest()
    with open(os.path.join(plan.work_dir, "patch-state.json"), "w") as f:
        json.dump({"tree": str(checkout), "files": {"setup.py": {"existed": True, "written": digest}}}, f)
    ok, err, out = run_sources(plan)
    assert ok, err


def test_source_checkout_without_submodules_is_refused(tmp_path, upstream):
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", upstream["url"], str(checkout))  # no --recurse-submodules
    ok, err, _ = run_sources(make(tmp_path, upstream["url"], upstream["commit"], source=str(checkout)))
    assert not ok and "submodules not checked out" in err and "submodule update --init --recursive" in err


def test_plain_tree_accepted_by_version_txt(tmp_path, upstream):
    tree = tmp_path / "pytorch-v2.6.0"
    write(tree / "version.txt", "2.6.0a0\n")
    write(tree / "third_party" / "onednn" / "CMakeLists.txt", ONEDNN_CMAKE)
    plan = make(tmp_path, upstream["url"], upstream["commit"], source=str(tree))
    ok, err, out = run_sources(plan)
    assert ok, err
    res = plan_stamp(plan)["results"]
    assert res["kind"] == "plain" and res["version_txt"] == "2.6.0a0" and not res["commit_verified"]
    write(tree / "version.txt", "2.5.1\n")
    ok, err, _ = run_sources(make(tmp_path, upstream["url"], upstream["commit"], source=str(tree)))
    assert not ok and "version.txt says 2.5.1" in err


def test_wrong_onednn_version_is_refused(tmp_path, upstream):
    tree = tmp_path / "t"
    write(tree / "version.txt", "2.6.0\n")
    write(tree / "third_party" / "onednn" / "CMakeLists.txt", ONEDNN_CMAKE.replace("3.5.3", "3.7.1"))
    ok, err, _ = run_sources(make(tmp_path, upstream["url"], upstream["commit"], source=str(tree)))
    assert not ok and "is 3.7.1" in err and "pins 3.5.3" in err


def test_offline_fails_at_once_and_names_source(tmp_path, upstream):
    plan = make(tmp_path, "http://127.0.0.1:9/pytorch.git", upstream["commit"])
    start = time.time()
    ok, err, _ = run_sources(plan)
    assert not ok
    assert time.time() - start < 25
    assert "cannot reach http://127.0.0.1:9/pytorch.git" in err and "--source DIR" in err
    assert not os.path.exists(plan.source_dir)
