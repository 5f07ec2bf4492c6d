"""Step 8, manifest: `<wheel>.manifest.json` beside the wheel says exactly how it was made.

Recipe version, target and release (the resolved configs), every pinned and verified
commit (torch, its submodules incl. oneDNN, ACL), the patch series with the sha256 of each
file, the build environment, compiler and tool versions, the repair report and the wheel's
sha256 -- enough to rebuild it, or to tell two wheels apart.
"""
from __future__ import annotations

import json
import os
import platform
import time

from recipe import RECIPE_VERSION, proc
from recipe.hashing import sha256_file
from recipe.steps import StepError

NAME = "manifest"
TITLE = "write <wheel>.manifest.json: versions, commits, checksums, patches, env, compilers"
DEPENDS = ("sources", "acl", "patch", "build", "repair", "verify")


def tool_versions(plan):
    tools = {"gcc": ["gcc", "--version"], "g++": ["g++", "--version"], "cmake": ["cmake", "--version"],
             "ninja": ["ninja", "--version"], "git": ["git", "--version"], "patchelf": ["patchelf", "--version"],
             "python": [plan.python_exe, "--version"]}
    if plan.acl_enabled:
        tools["scons"] = ["scons", "--version"]
    if plan.cuda:
        tools["nvcc"] = [os.path.join(plan.cuda.get("home") or "/usr/local/cuda", "bin", "nvcc"), "--version"]
    out = {}
    for name, cmd in sorted(tools.items()):
        text = proc.output(cmd)
        lines = [l for l in (text or "").splitlines() if l.strip()]
        if name == "nvcc":
            lines = [l for l in lines if "release" in l] or lines
        elif name == "scons":
            lines = [l for l in lines if "SCons" in l or "engine" in l] or lines
        out[name] = lines[0].strip() if lines else None
    return out


def manifest_path(wheel):
    return wheel + ".manifest.json"


def build_manifest(ctx):
    plan = ctx.plan
    repair = ctx.result("repair")
    wheel = repair.get("wheel")
    if not wheel or not os.path.exists(wheel):
        raise StepError("no repaired wheel to describe (run the repair step first)")
    src = ctx.result("sources")
    acl = ctx.result("acl")
    patch = ctx.result("patch")
    build = ctx.result("build")
    rel = plan.release
    public = lambda cfg: {k: v for k, v in cfg.items() if not k.startswith("_")}
    return {
        "manifest_version": 1,
        "recipe_version": RECIPE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wheel": {"file": os.path.basename(wheel), "sha256": sha256_file(wheel),
                  "size": os.path.getsize(wheel), "version": plan.build_version,
                  "platform": repair.get("platform"), "platform_reason": repair.get("platform_reason")},
        "target": {"requested": plan.requested_target, "name": plan.target["name"],
                   "reason": plan.target_reason, "config": public(plan.target)},
        "release": {"name": rel["name"], "config": public(rel)},
        "sources": {
            "torch": {"tag": rel["torch"]["tag"], "pinned_commit": rel["torch"]["commit"],
                      "commit": src.get("commit"), "verified": src.get("commit_verified", False),
                      "tree": src.get("tree"), "kind": src.get("kind"),
                      "version_txt": src.get("version_txt"), "dirty": src.get("dirty") or []},
            "submodules": src.get("submodules") or {},
            "onednn": src.get("onednn"),
            "acl": acl or None,
        },
        "patches": {"series": rel["patches"]["series"],
                    "sha256": (patch.get("series") or {}).get("series"),
                    "files": (patch.get("series") or {}).get("files"),
                    "entries": patch.get("entries")},
        "build": {"command": build.get("command"), "env": plan.env, "seconds": build.get("seconds"),
                  "python": plan.python_version, "cuda": plan.cuda, "launcher": plan.launcher},
        "repair": {k: repair.get(k) for k in ("bundled", "external", "runpaths", "auditwheel")},
        "verify": ctx.result("verify").get("report"),
        "host": {"machine": platform.machine(), "os": plan.host.get("os_name"), "l4t": plan.host.get("l4t"),
                 "device": plan.host.get("device_model")},
        "tools": tool_versions(plan),
    }


def describe(plan):
    return {"skip": None, "commands": ["# write %s/<wheel>.manifest.json" % plan.wheels_dir],
            "inputs": {"recipe": RECIPE_VERSION}, "outputs": []}


def run(ctx):
    data = build_manifest(ctx)
    path = manifest_path(ctx.result("repair")["wheel"])
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    ctx.log("manifest: %s" % path)
    return {"manifest": path, "outputs": [path]}
