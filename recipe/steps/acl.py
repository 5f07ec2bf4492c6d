"""Step 3, acl: Arm Compute Library at its pinned tag/commit, built with scons.

Flags are the official aarch64 wheels' (release config `acl.scons_flags`) plus `arch=` from
the target (`cpu.acl_arch`). The result lives in the shared cache, keyed by version + flags
(+ commit), so every work dir and every rebuild reuses it: cache_dir("acl", KEY) holds
ComputeLibrary/ (sources and build/), and ACL_ROOT_DIR points there, which is the layout
oneDNN's FindACL expects (include dirs at the root, libraries in build/).

When the release does not pin the commit yet (acl.commit: null), the step records the
commit it checked out and warns, so the manifest still says exactly what was built.
Skipped for targets without ACL (x86_64).
"""
from __future__ import annotations

import json
import os
import shutil

from recipe import git, proc
from recipe.steps import StepError

NAME = "acl"
TITLE = "Arm Compute Library at its pinned tag/commit, scons with the official wheels' flags (cached)"
DEPENDS = ()


def scons_command(plan):
    jobs = plan.env.get("MAX_JOBS", "1")
    return (["scons", "-j%s" % jobs] + list(plan.release["acl"]["scons_flags"])
            + ["arch=%s" % plan.target["cpu"]["acl_arch"]])


def describe(plan):
    if not plan.acl_enabled:
        return {"skip": "target %s builds without ACL" % plan.target["name"], "commands": [],
                "inputs": {}, "outputs": []}
    acl = plan.release["acl"]
    src = plan.acl_root
    notes = []
    warnings = []
    if not acl.get("commit"):
        warnings.append("release %s pins ACL %s by tag only (acl.commit is null): the acl step "
                        "records the commit it builds" % (plan.release["name"], acl["tag"]))
    cmds = ["# cached in %s (shared by every build with the same version + flags)" % plan.acl_dir,
            ["git", "clone", "--depth", "1", "--branch", acl["tag"], acl["git_url"], src],
            "git -C %s rev-parse HEAD   # must be %s" % (src, acl.get("commit") or "(recorded: not pinned yet)"),
            "cd %s && %s" % (src, proc.shell_join(scons_command(plan)))]
    return {"skip": None, "commands": cmds, "notes": notes, "warnings": warnings,
            "inputs": {"tag": acl["tag"], "commit": acl.get("commit"), "flags": scons_command(plan)[2:],
                       "dir": plan.acl_dir},
            "outputs": [os.path.join(src, "build", "libarm_compute.so")]}


def run(ctx):
    plan = ctx.plan
    acl = plan.release["acl"]
    src = plan.acl_root
    done_file = os.path.join(plan.acl_dir, "done.json")
    lib = os.path.join(src, "build", "libarm_compute.so")
    if os.path.exists(done_file) and os.path.exists(lib):
        with open(done_file, encoding="utf-8") as f:
            info = json.load(f)
        ctx.log("ACL %s already built in the cache: %s" % (info.get("commit"), src))
        return info

    if not os.path.isdir(os.path.join(src, ".git")):
        if os.path.exists(src):
            shutil.rmtree(src)
        git.check_reachable(acl["git_url"], acl["tag"])
        os.makedirs(plan.acl_dir, exist_ok=True)
        git.run(["clone", "--depth", "1", "--branch", acl["tag"], acl["git_url"], src])
    head = git.run(["rev-parse", "HEAD"], cwd=src).stdout.strip()
    if acl.get("commit") and head != acl["commit"]:
        raise StepError("ACL %s checked out at %s, but the release pins %s: the tag moved or the "
                        "config is wrong (remove %s to re-clone)" % (acl["tag"], head, acl["commit"], src))
    if not acl.get("commit"):
        ctx.warn("ACL %s is not pinned by commit in the release config; built commit %s "
                 "(recorded in the manifest; pin it in configs/releases/%s.yaml)"
                 % (acl["tag"], head, plan.release["name"]))

    cmd = scons_command(plan)
    log_path = os.path.join(plan.log_dir, "acl.log")
    proc.run_logged(cmd, cwd=src, env=dict(os.environ), log_path=log_path, log=ctx.log, what="ACL build")
    if not os.path.exists(lib):
        raise StepError("scons finished but %s is missing; see %s" % (lib, log_path), log_path)
    info = {"tag": acl["tag"], "commit": head, "pinned": bool(acl.get("commit")),
            "flags": cmd[2:], "root": src}
    with open(done_file, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    return info
