"""Choosing the wheel: target, release, Python, CUDA and the wheel tags this pip takes."""
from __future__ import annotations

import platform
import re

from recipe.wheelindex import parse_wheel_filename
from recipe.pull.base import DEFAULT_DEADLINE, DEFAULT_TIMEOUT, PullError
from recipe.pull.index import _fill_from_manifest


def _version_key(v):
    try:
        from packaging.version import Version
    except ImportError:  # pip always vendors it
        from pip._vendor.packaging.version import Version
    try:
        return (1, Version(v or "0"))
    except Exception:
        return (0, v or "")


def supported_tags():
    try:
        from packaging.tags import sys_tags
    except ImportError:
        from pip._vendor.packaging.tags import sys_tags
    return set(str(t) for t in sys_tags())


def wheel_tags(filename):
    info = parse_wheel_filename(filename)
    if not info:
        return set()
    return set("{}-{}-{}".format(py, abi, plat) for py in info["py"].split(".")
               for abi in info["abi"].split(".") for plat in info["plat"].split("."))


def select(entries, target, release, python, cuda, cuda_explicit, timeout=DEFAULT_TIMEOUT,
           check_platform=False, deadline=DEFAULT_DEADLINE):
    """The best matching entry, or PullError listing what the index has."""

    def describe(e):
        return "{} (target {}, release {}, python {}, cuda {})".format(
            e["filename"], e.get("target") or "?", e.get("release"), e.get("python"),
            e.get("cuda") or "none")

    def target_ok(e):
        if e.get("target"):
            return e["target"] == target
        toks = e.get("_label_tokens") or []
        want = re.split(r"[._-]", target.lower())
        n = len(want)
        return any(toks[i:i + n] == want for i in range(len(toks)))

    cands = []
    for e in entries:
        if e.get("_from_simple") and e.get("target") is None and "_label_tokens" not in e:
            if e.get("release") != release or (python and e.get("python") != python):
                continue  # do not fetch manifests of wheels that cannot match anyway
            _fill_from_manifest(e, timeout, deadline)
        if not target_ok(e) or str(e.get("release")) != release:
            continue
        if python and e.get("python") and e["python"] != python:
            continue
        if cuda_explicit or cuda is not None:
            if (e.get("cuda") or None) != cuda:
                continue
        cands.append(e)
    if check_platform and cands:
        tags = supported_tags()
        ok = [e for e in cands if wheel_tags(e["filename"]) & tags]
        if not ok:
            raise PullError(
                "{} matches but is not installable here ({} {}, Python {}): it is for {}. "
                "Use --download-only DIR to fetch it for another machine".format(
                    cands[0]["filename"], platform.system(), platform.machine(),
                    platform.python_version(), cands[0].get("platform_tag")))
        cands = ok
    if not cands:
        have = "\n".join("  " + describe(e) for e in entries) or "  (the index is empty)"
        raise PullError(
            "no wheel in the index for target {}, release {}, python {}, cuda {}.\n"
            "The index has:\n{}\n"
            "Build one (`python build.py --target {}`), pick another --release/--python/--cuda, "
            "or point --index elsewhere".format(target, release, python or "any",
                                                cuda or "none", have, target))
    cands.sort(key=lambda e: (_version_key(e.get("version")),
                              _version_key(e.get("recipe_version")), e["filename"]))
    return cands[-1]
