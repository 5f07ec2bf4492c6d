"""The path that needs no from-source build: the add-on on the torch a board runs.

A target's `addon` config says which torch people run on that board and where it comes from
(NVIDIA's JetPack 5 wheels on Xavier, PyPI's +cu130 wheel on Thor, ...). The add-on works on
the part of that range it is built for (ADDON_TORCH). The plan prints this path beside the
from-source build, or instead of it when the carried release cannot be built for the target;
`build.py list` shows it per target.
"""
from __future__ import annotations

# The torch minor versions `build.py addon` builds the add-on for: 2.5-2.14, and 2.0 / 2.1
# (JetPack 5's NVIDIA wheels; kernels/compat/torch_compat.h, tests/test_addon_jp5.py).
ADDON_TORCH = ["2.0", "2.1"] + ["2.%d" % minor for minor in range(5, 15)]

PULL_ADDON = "python3 build.py pull --addon"
BUILD_ADDON = "python3 build.py addon --install"


def _minor(version):
    return tuple(int(x) for x in version.split(".")[:2])


def addon_versions(target):
    """The add-on's torch versions within the range this target's board runs ([] = none)."""
    addon = target.get("addon")
    if not addon:
        return []
    low, high = _minor(addon["torch"]["min"]), _minor(addon["torch"]["max"])
    return [v for v in ADDON_TORCH if low <= _minor(v) <= high]


def _span(versions):
    """'2.9-2.14' for consecutive minors, '2.1, 2.5-2.14' across a gap."""
    runs = []
    for v in versions:
        if runs and _minor(v) == (_minor(runs[-1][-1])[0], _minor(runs[-1][-1])[1] + 1):
            runs[-1].append(v)
        else:
            runs.append([v])
    return ", ".join(r[0] if len(r) == 1 else "%s-%s" % (r[0], r[-1]) for r in runs)


def addon_path(target):
    """One line: the add-on path for this target, with its commands, or why there is none."""
    addon = target.get("addon")
    if not addon:
        return None
    board = "%s-%s" % (addon["torch"]["min"], addon["torch"]["max"])
    versions = addon_versions(target)
    if not versions:
        return "the add-on is not built for torch %s (%s) yet; it covers torch %s" % (
            board, addon["from"], _span(ADDON_TORCH))
    first = ("install that torch: %s, then " % addon["install"]) if addon.get("install") else ""
    return ("the add-on on torch %s (%s): %s%s (prebuilt, from an index made by publish) or %s "
            "(built here against the installed torch)" % (
                _span(versions), addon["from"], first, PULL_ADDON, BUILD_ADDON))


def addon_summary(target):
    """'yes: torch 2.9-2.14' / 'no: ...' for `build.py list`."""
    if not target.get("addon"):
        return "no"
    versions = addon_versions(target)
    if versions:
        return "yes: torch %s" % _span(versions)
    return "no: torch %s-%s not built yet" % (target["addon"]["torch"]["min"], target["addon"]["torch"]["max"])
