"""Helpers for the recipe-core tests: real git repos, real patches, fake hosts, config sets."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import yaml

from recipe import REPO_ROOT

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
    # tests clone local repos with submodules: allow the file transport for those clones only
    "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "protocol.file.allow", "GIT_CONFIG_VALUE_0": "always",
}


def git(cwd, *args):
    env = dict(os.environ)
    env.update(GIT_ENV)
    res = subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always"]
                         + list(args), cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True)
    assert res.returncode == 0, "git %s: %s" % (" ".join(args), res.stdout)
    return res.stdout.strip()


def use_git_env(monkeypatch):
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)


def write(path, text, mode=None):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "w") as f:
        f.write(text)
    if mode:
        os.chmod(str(path), mode)


def read(path):
    with open(str(path)) as f:
        return f.read()


def tree_hashes(root):
    """{relative path: sha256} of every file under root (excluding .git)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for fn in filenames:
            full = os.path.join(dirpath, fn)
            rel = os.path.relpath(full, str(root))
            if os.path.islink(full):
                out[rel] = "link:" + os.readlink(full)
                continue
            with open(full, "rb") as f:
                out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def files_hashes(root, rels):
    """{rel: sha256 or None (absent)} for chosen files."""
    out = {}
    for rel in rels:
        full = os.path.join(str(root), rel)
        if os.path.isfile(full):
            with open(full, "rb") as f:
                out[rel] = hashlib.sha256(f.read()).hexdigest()
        else:
            out[rel] = None
    return out


def format_patches(base_files, edits, out_dir, names):
    """Real `git format-patch` files: commit base_files, then each edit dict as one commit.

    edits: list of {path: new content or None (delete)}; names: file names for the patches.
    """
    work = os.path.join(str(out_dir), "_patchrepo")
    os.makedirs(work)
    git(work, "init", "-q")
    for rel, text in base_files.items():
        write(os.path.join(work, rel), text)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "base")
    paths = []
    for edit, name in zip(edits, names):
        for rel, text in edit.items():
            if text is None:
                os.remove(os.path.join(work, rel))
            else:
                write(os.path.join(work, rel), text)
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", name.split(".")[0])
        produced = git(work, "format-patch", "-1", "-o", str(out_dir), "HEAD").splitlines()[-1]
        dest = os.path.join(str(out_dir), name)
        os.rename(produced, dest)
        paths.append(dest)
    shutil.rmtree(work)
    return paths


def make_git_repo(path, files, tag=None, submodule=None):
    """A real repository with files (and optionally a submodule repo path at 'third_party/sub')."""
    os.makedirs(str(path))
    git(path, "init", "-q")
    for rel, text in files.items():
        write(os.path.join(str(path), rel), text)
    git(path, "add", "-A")
    if submodule:
        git(path, "submodule", "add", "-q", "file://%s" % submodule[1], submodule[0])
    git(path, "commit", "-q", "-m", "release")
    if tag:
        git(path, "tag", tag)
    return git(path, "rev-parse", "HEAD")


def host(arch="x86_64", l4t=None, model=None, mem_gb=24, swap_gb=0, cpus=2):
    return {"arch": arch, "os": "ubuntu", "os_version": "22.04", "os_name": "Ubuntu 22.04",
            "l4t": l4t, "device_model": model, "cpus": cpus,
            "mem_bytes": mem_gb * 1024 ** 3, "swap_bytes": swap_gb * 1024 ** 3}


def config_dir(tmp, release_overrides=None, target_overrides=None, release_name="9.9.9"):
    """A copy of configs/ plus a test release `9.9.9` (based on 2.6.0 with overrides)."""
    dest = os.path.join(str(tmp), "configs")
    if os.path.exists(dest):
        shutil.rmtree(dest)
    shutil.copytree(os.path.join(REPO_ROOT, "configs"), dest)
    with open(os.path.join(dest, "releases", "2.6.0.yaml")) as f:
        rel = yaml.safe_load(f)
    rel["name"] = release_name
    rel["python"]["min"] = "3.8"  # the machinery tests run under whatever Python runs pytest
    _deep_update(rel, release_overrides or {})
    with open(os.path.join(dest, "releases", release_name + ".yaml"), "w") as f:
        yaml.safe_dump(rel, f)
    for name, over in (target_overrides or {}).items():
        p = os.path.join(dest, "targets", name + ".yaml")
        with open(p) as f:
            t = yaml.safe_load(f)
        _deep_update(t, over)
        with open(p, "w") as f:
            yaml.safe_dump(t, f)
    return dest


def _deep_update(d, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            _deep_update(d[k], v)
        else:
            d[k] = v


def require_tools(*names):
    """Skip (printing why) when a build tool is missing; under CI that is a failure instead."""
    from tests.conftest import unavailable
    missing = [n for n in names if not shutil.which(n)]
    if missing:
        unavailable("build tools", "%s not installed (tools/test.sh installs them)" % ", ".join(missing))
