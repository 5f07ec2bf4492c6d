"""Step 2, sources: the PyTorch tree at the pinned tag AND commit, submodules included.

Without --source: `git clone --depth 1 --branch TAG --recurse-submodules
--shallow-submodules -j N` into the work dir, then HEAD must equal the release's commit (a
moved tag or a wrong config is caught here, not by a strange build). Before cloning, a
`git ls-remote` with a short timeout tells at once when the network is not there, and the
error names --source.

With --source DIR:
  * a git checkout is verified the same way (HEAD == pinned commit, submodules checked
    out) and refused when it has local changes, unless --allow-dirty. Changes made by our
    own patch step (recorded in the work dir) do not count as dirty.
  * a plain tree (an unpacked tarball) is accepted when its version.txt names the
    release's version (`2.6.0a0` counts as 2.6.0: that is what PyTorch's own tree says).
    Its commit cannot be verified; the manifest says so.
Either way oneDNN's version is read from its CMakeLists.txt when the submodule is there.
"""
from __future__ import annotations

import os
import re

from recipe import git, patch_state, proc
from recipe.config import version_tuple
from recipe.steps import StepError

NAME = "sources"
TITLE = "PyTorch at the pinned tag + commit with submodules (shallow, parallel), or --source DIR"
DEPENDS = ()



def describe(plan):
    rel = plan.release["torch"]
    jobs = min(8, max(2, plan.host["cpus"]))
    if plan.source_given:
        cmds = ["git -C %s rev-parse HEAD   # must be %s (git checkout), or version.txt = %s (plain tree)"
                % (plan.source_dir, rel["commit"], rel["version"]),
                "git -C %s status --porcelain --untracked-files=no   # must be clean%s"
                % (plan.source_dir, " (--allow-dirty given)" if plan.options.get("allow_dirty") else "")]
    else:
        cmds = [["git", "ls-remote", "--exit-code", plan.git_url, "refs/tags/" + rel["tag"]],
                clone_command(plan.git_url, rel["tag"], plan.source_dir, jobs),
                "git -C %s rev-parse HEAD   # must be %s" % (plan.source_dir, rel["commit"])]
    inputs = {"source": plan.source_dir, "given": plan.source_given, "url": plan.git_url,
              "tag": rel["tag"], "commit": rel["commit"], "version": rel["version"],
              "onednn": plan.release["onednn"]["version"],
              "allow_dirty": bool(plan.options.get("allow_dirty"))}
    return {"skip": None, "commands": cmds, "inputs": inputs,
            "outputs": [os.path.join(plan.source_dir, "version.txt")]}


def clone_command(url, tag, dest, jobs):
    return ["git", "clone", "--depth", "1", "--branch", tag, "--recurse-submodules",
            "--shallow-submodules", "-j", str(jobs), url, dest]


# --------------------------------------------------------------------------- helpers

def base_version(text):
    """'2.6.0a0' -> '2.6.0' (PyTorch's version.txt carries a pre-release suffix)."""
    m = re.match(r"\s*(\d+\.\d+\.\d+)", text or "")
    return m.group(1) if m else None


def read_version_txt(tree):
    try:
        with open(os.path.join(tree, "version.txt"), encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def onednn_version(tree, rel_path):
    """'3.5.3' from oneDNN's CMakeLists.txt `project(oneDNN VERSION 3.5.3 ...)`, or None."""
    try:
        with open(os.path.join(tree, rel_path, "CMakeLists.txt"), encoding="utf-8") as f:
            m = re.search(r"project\(\s*\w+\s+VERSION\s+([\d.]+)", f.read())
    except OSError:
        return None
    return m.group(1) if m else None


def patched_files(work_dir):
    """Files our patch step wrote or is writing (path -> set of sha256), not 'dirty'."""
    return patch_state.recorded_contents(work_dir)


def dirty_files(tree, ours):
    from recipe.hashing import sha256_file
    res = git.run(["status", "--porcelain", "--untracked-files=no"], cwd=tree)
    dirty = []
    for line in res.stdout.splitlines():
        path = line[3:].strip()
        if " -> " in path:
            path = path.split(" -> ", 1)[1]
        full = os.path.join(tree, path)
        if path in ours and (sha256_file(full) if os.path.isfile(full) else None) in ours[path]:
            continue  # written (or removed) by our patch step
        dirty.append(line.strip())
    return dirty


def verify_git_tree(tree, commit, allow_dirty, ours):
    head = git.run(["rev-parse", "HEAD"], cwd=tree).stdout.strip()
    if head != commit:
        raise StepError(
            "%s is at commit %s, but the release pins %s.\n"
            "  The tag moved, the checkout is another version, or the release config is wrong: "
            "check out the pinned commit (git -C %s checkout %s && git submodule update --init "
            "--recursive) or fix configs/releases." % (tree, head, commit, tree, commit))
    subs = git.run(["submodule", "status", "--recursive"], cwd=tree).stdout.splitlines()
    missing = [l.split()[1] for l in subs if l.startswith("-")]
    moved = [l.split()[1] for l in subs if l.startswith("+")]
    if missing:
        raise StepError("submodules not checked out in %s: %s\n  run: git -C %s submodule update "
                        "--init --recursive" % (tree, ", ".join(missing[:8]), tree))
    problems = dirty_files(tree, ours)
    if moved and not allow_dirty:
        problems += ["submodule at another commit: %s" % m for m in moved]
    if problems and not allow_dirty:
        raise StepError("%s has local changes (refused: the wheel would not match its manifest):\n%s\n"
                        "  commit/stash them, or pass --allow-dirty to build anyway (the manifest "
                        "records the tree as dirty)" % (tree, "\n".join("    " + p for p in problems[:20])))
    return head, problems


def submodule_commits(tree):
    out = {}
    res = git.run(["submodule", "status", "--recursive"], cwd=tree, check=False)
    for line in res.stdout.splitlines():
        parts = line[1:].split()
        if len(parts) >= 2:
            out[parts[1]] = parts[0]
    return out


# --------------------------------------------------------------------------- the step

def run(ctx):
    plan = ctx.plan
    rel = plan.release["torch"]
    tree = plan.source_dir
    result = {"tree": tree}

    if plan.source_given:
        if not os.path.isdir(tree):
            raise StepError("--source %s: no such directory" % tree)
    elif not os.path.exists(tree):
        ctx.log("checking %s is reachable ..." % plan.git_url)
        git.check_reachable(plan.git_url, rel["tag"])
        jobs = min(8, max(2, plan.host["cpus"]))
        cmd = clone_command(plan.git_url, rel["tag"], tree, jobs)
        ctx.log("$ " + proc.shell_join(cmd))
        os.makedirs(os.path.dirname(tree), exist_ok=True)
        res = git.run(cmd[1:], check=False)
        if res.returncode != 0 and git.is_checkout(tree):
            # the superproject arrived but a shallow submodule fetch did not (a server that
            # refuses to serve a pinned commit by sha at depth 1): fetch submodules in full
            ctx.warn("shallow submodule clone failed; fetching submodules without --depth")
            res = git.run(["submodule", "update", "--init", "--recursive", "--jobs", str(jobs)],
                       cwd=tree, check=False)
        if res.returncode != 0:
            raise StepError("clone failed:\n%s\n  remove %s and retry, or use --source DIR"
                            % (res.stderr.strip()[-2000:], tree))

    if git.is_checkout(tree):
        head, dirty = verify_git_tree(tree, rel["commit"], plan.options.get("allow_dirty"),
                                      patched_files(plan.work_dir))
        result.update({"kind": "git", "commit": head, "commit_verified": True,
                       "dirty": dirty, "submodules": submodule_commits(tree)})
    else:
        text = read_version_txt(tree)
        if text is None:
            raise StepError("%s is neither a git checkout nor a PyTorch tree (no version.txt)" % tree)
        if base_version(text) != rel["version"]:
            raise StepError("%s/version.txt says %s; release %s needs %s" % (
                tree, text, plan.release["name"], rel["version"]))
        result.update({"kind": "plain", "version_txt": text, "commit": None, "commit_verified": False})
        ctx.log("plain tree, version.txt = %s: accepted as %s (commit cannot be verified)"
                % (text, rel["version"]))

    want = plan.release["onednn"]
    found = onednn_version(tree, want["path"])
    if found is None:
        msg = "oneDNN not found at %s/%s (a tarball without submodules?)" % (tree, want["path"])
        if plan.source_given and result["kind"] == "plain":
            ctx.warn(msg + ": fine for --only patch; a full build needs PyTorch's release tarball "
                     "(pytorch-v%s.tar.gz, which includes submodules)" % rel["version"])
        else:
            raise StepError(msg)
    elif version_tuple(found) != version_tuple(want["version"]):
        raise StepError("oneDNN in %s is %s; release %s pins %s" % (want["path"], found,
                                                                   plan.release["name"], want["version"]))
    result["onednn"] = {"version": found,
                        "commit": (result.get("submodules") or {}).get(want["path"])}
    return result
