"""`python build.py list`: the targets, aliases and releases, which pairs can build, and per
target which path works: from source (a carried release) and/or the add-on."""
from __future__ import annotations

import argparse
import json
import os

from recipe import REPO_ROOT, working_path
from recipe.config import ConfigError, Configs


def _cuda(t):
    return "%s (sm %s)" % (t["cuda"]["version"], t["cuda"]["arch_list"]) if t.get("cuda") else "-"


def collect(configs):
    from recipe.plan import compatibility
    targets = [configs.target(n) for n in configs.target_names()]
    releases = [configs.release(n) for n in configs.release_names()]
    matrix = {}
    for t in targets:
        for r in releases:
            py = t["python"] if t["python"] != "host" else None
            reasons = compatibility(t, r, t.get("cuda"), py)
            matrix["%s/%s" % (t["name"], r["name"])] = reasons
    paths = {t["name"]: {"from_source": from_source(t, releases, configs, compatibility),
                         "addon": working_path.addon_summary(t)} for t in targets}
    return targets, releases, configs.aliases(), matrix, paths


def from_source(t, releases, configs, compatibility):
    """'yes (2.6.0, CUDA)' / 'CPU-only (2.6.0, --cuda off)' / 'no' for one target."""
    py = t["python"] if t["python"] != "host" else None
    full = [r["name"] for r in releases if not compatibility(t, r, t.get("cuda"), py)]
    if full:
        return "yes (%s%s)" % (", ".join(full), ", CUDA" if t.get("cuda") else "")
    if not t.get("cuda"):
        return "no"
    cpu = [r["name"] for r in releases if not compatibility(t, r, None, py)]
    if cpu:
        return "CPU-only (%s, --cuda off)" % ", ".join(cpu)
    newer_python = [r for r in releases if not compatibility(t, r, None, r["python"]["min"])]
    if not newer_python:
        return "no"
    variants = [n for n in configs.target_names() if n.startswith(t["name"] + "-")
                and not configs.target(n).get("cuda")]
    r = newer_python[-1]
    how = ("--target %s" % variants[0]) if variants else "--cuda off --python-version %s" % r["python"]["min"]
    return "CPU-only (%s: %s)" % (r["name"], how)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python build.py list", description=__doc__)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--configs", metavar="DIR", default=os.path.join(REPO_ROOT, "configs"))
    args = p.parse_args(argv)
    try:
        targets, releases, aliases, matrix, paths = collect(Configs(args.configs))
    except ConfigError as e:
        print("configuration error:\n" + "\n".join("  " + x for x in e.errors))
        return 2
    if args.json:
        strip = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}
        print(json.dumps({"targets": [strip(t) for t in targets], "releases": [strip(r) for r in releases],
                          "aliases": aliases, "compatibility": matrix,
                          "paths": paths}, indent=2, sort_keys=True))
        return 0
    row = "  %-22s %-8s %-44s %-14s %-7s %-14s %s"
    print("Targets:")
    print(row % ("name", "arch", "cpu", "JetPack", "python", "CUDA", "ACL arch"))
    for t in targets:
        jp = "%s (%s)" % (t["jetpack"]["version"], t["jetpack"]["l4t"]) if t.get("jetpack") else "-"
        print(row % (t["name"], t["arch"], t["cpu"]["name"], jp, t["python"], _cuda(t),
                     t["cpu"]["acl_arch"] if t["acl"] else "off"))
    print("\nWhich path (from source: a carried release; add-on: on the torch the board runs):")
    prow = "  %-22s %-50s %s"
    print(prow % ("target", "from source", "add-on"))
    for t in targets:
        print(prow % (t["name"], paths[t["name"]]["from_source"], paths[t["name"]]["addon"]))
    print("\nAliases:")
    for name, a in sorted(aliases.items()):
        print("  %-22s -> %s (detected on the device; default %s)" % (name, " | ".join(a["candidates"]),
                                                                      a["default"]))
    print("\nReleases:")
    for r in releases:
        print("  %-8s torch %s @ %s, oneDNN %s, ACL %s (>= %s), Python %s-%s, CUDA %s-%s, patches %s" % (
            r["name"], r["torch"]["tag"], r["torch"]["commit"][:12], r["onednn"]["version"], r["acl"]["tag"],
            r["acl"]["min_version"], r["python"]["min"], r["python"]["max"], r["cuda"]["min"], r["cuda"]["max"],
            r["patches"]["series"]))
    print("\nCan build (target/release):")
    for pair, reasons in sorted(matrix.items()):
        if not reasons:
            print("  %-30s yes" % pair)
        else:
            print("  %-30s NO: %s" % (pair, "; ".join(r.split(". Why:")[0] for r in reasons)))
    return 0
