"""`python build.py list`: the targets, aliases and releases, and which pairs can build."""
from __future__ import annotations

import argparse
import json
import os

from recipe import REPO_ROOT
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
    return targets, releases, configs.aliases(), matrix


def main(argv=None):
    p = argparse.ArgumentParser(prog="python build.py list", description=__doc__)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--configs", metavar="DIR", default=os.path.join(REPO_ROOT, "configs"))
    args = p.parse_args(argv)
    try:
        targets, releases, aliases, matrix = collect(Configs(args.configs))
    except ConfigError as e:
        print("configuration error:\n" + "\n".join("  " + x for x in e.errors))
        return 2
    if args.json:
        strip = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}
        print(json.dumps({"targets": [strip(t) for t in targets], "releases": [strip(r) for r in releases],
                          "aliases": aliases, "compatibility": matrix}, indent=2, sort_keys=True))
        return 0
    row = "  %-22s %-8s %-28s %-10s %-7s %-14s %s"
    print("Targets:")
    print(row % ("name", "arch", "cpu", "JetPack", "python", "CUDA", "ACL arch"))
    for t in targets:
        jp = "%s/%s" % (t["jetpack"]["version"], t["jetpack"]["l4t"]) if t.get("jetpack") else "-"
        print(row % (t["name"], t["arch"], t["cpu"]["name"], jp, t["python"], _cuda(t),
                     t["cpu"]["acl_arch"] if t["acl"] else "off"))
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
