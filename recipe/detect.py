"""Which Jetson is this? ONE answer for the build's plan and for `pull`.

`read_board(root)` reads what identifies a Jetson: the device-tree model and SoC
(`/proc/device-tree/model`, `/proc/device-tree/compatible`) and the L4T release
(`/etc/nv_tegra_release`; where that file is absent, e.g. in a container, the version of
the `nvidia-l4t-core` package in dpkg's status file). `resolve(name, aliases, facts, board)`
turns a target or an alias such as `jetson-agx` into one target and says why.

The board names the module (Xavier, Orin, Thor); the L4T major names its JetPack (r35 = 5,
r36 = 6, r38 = 7.0/7.1, r39 = 7.2). One board has one target per JetPack line (Orin: JetPack
5, 6 and 7.2), so both are needed.

No PyYAML here: `pull` uses this module on machines where the configs cannot be loaded, with
the built-in copy of the targets' detection facts below (tests hold it equal to configs/).
"""
from __future__ import annotations

import os
import re

# `# R36 (release), REVISION: 4.3, GCID: ..., BOARD: generic, EABI: aarch64, DATE: ...`. JetPack 7
# (r38/r39) keeps this first line (tests/fixtures/boards/README.md says where that was read);
# the '#' and the spacing are optional here because copies of the file without them circulate.
_RELEASE_LINE = re.compile(r"^\s*#?\s*R(\d+)\s*\(release\)\s*,\s*REVISION:\s*(\d+(?:\.\d+)*)",
                           re.IGNORECASE | re.MULTILINE)
# dpkg's status file: the stanza of nvidia-l4t-core, `Version: 36.4.3-20250107174145`.
_L4T_CORE = re.compile(r"^Package:\s*nvidia-l4t-core\s*$.*?^Version:\s*(\d+)\.(\d+(?:\.\d+)*)",
                       re.MULTILINE | re.DOTALL)


def parse_l4t(text):
    """'# R36 (release), REVISION: 4.0, GCID: ...' -> 'r36.4.0'; None when there is none."""
    m = _RELEASE_LINE.search(text or "")
    return "r%s.%s" % (m.group(1), m.group(2)) if m else None


def l4t_major(l4t):
    """'r36.4.0' or 'r36.4' or 'R36' -> 36; None for None."""
    m = re.match(r"^[rR]?(\d+)", l4t or "")
    return int(m.group(1)) if m else None


def _read(root, rel):
    try:
        with open(os.path.join(root, rel), "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def read_board(root="/"):
    """{device_model, device_compatible [..], l4t 'r36.4.0' | None, l4t_source} under `root`."""
    model = None
    for rel in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        text = _read(root, rel)
        if text is not None:
            model = text.replace("\x00", "").strip() or None
            break
    compatible = [c.strip() for c in (_read(root, "proc/device-tree/compatible") or "").split("\x00")
                  if c.strip()]
    l4t, source = parse_l4t(_read(root, "etc/nv_tegra_release")), "/etc/nv_tegra_release"
    if l4t is None:
        m = _L4T_CORE.search(_read(root, "var/lib/dpkg/status") or "")
        l4t, source = ("r%s.%s" % m.groups(), "the nvidia-l4t-core package") if m else (None, None)
    return {"device_model": model, "device_compatible": compatible, "l4t": l4t, "l4t_source": source}


def target_facts(target):
    """What detection needs of one target config (a dict as in configs/targets/*.yaml)."""
    device, jp = target.get("device") or {}, target.get("jetpack") or {}
    return {"detect": list(device.get("detect") or []), "soc": device.get("soc"),
            "l4t": jp.get("l4t"), "jetpack": jp.get("version")}


# Built-in copy of the detection facts, for `pull` where configs/ cannot be loaded (no PyYAML).
BUILTIN_ALIASES = {
    "jetson-agx": {
        "candidates": ["jetson-agx-orin", "jetson-agx-orin-jp7.2", "jetson-agx-thor",
                       "jetson-agx-thor-jp7.2", "jetson-agx-xavier", "jetson-agx-orin-jp5"],
        "default": "jetson-agx-orin",
        "default_reason": "not running on a Jetson (no /etc/nv_tegra_release, no Jetson in "
                          "/proc/device-tree/model), so the current AGX, Orin on JetPack 6, was "
                          "chosen; pass --target for another board (python build.py list)",
    },
}
_ORIN = ["AGX Orin", "Jetson AGX Orin", "p3701", "p3737"]
_THOR = ["AGX Thor", "Jetson AGX Thor"]
_XAVIER = ["AGX Xavier", "Jetson-AGX", "p2888", "p2822"]
BUILTIN_FACTS = {
    "jetson-agx-orin": {"detect": _ORIN, "soc": "tegra234", "l4t": "r36.4", "jetpack": "6.2"},
    "jetson-agx-orin-jp7.2": {"detect": _ORIN, "soc": "tegra234", "l4t": "r39.2", "jetpack": "7.2"},
    "jetson-agx-orin-jp5": {"detect": _ORIN, "soc": "tegra234", "l4t": "r35", "jetpack": "5.1"},
    "jetson-agx-thor": {"detect": _THOR, "soc": "tegra264", "l4t": "r38", "jetpack": "7.0/7.1"},
    "jetson-agx-thor-jp7.2": {"detect": _THOR, "soc": "tegra264", "l4t": "r39.2", "jetpack": "7.2"},
    "jetson-agx-xavier": {"detect": _XAVIER, "soc": "tegra194", "l4t": "r35", "jetpack": "5.1"},
}


def _is_this_board(facts, board):
    model = (board.get("device_model") or "").lower()
    if model and any(needle.lower() in model for needle in facts["detect"]):
        return True
    soc = facts.get("soc")
    return bool(soc) and ("nvidia," + soc) in (board.get("device_compatible") or [])


def _seen(board):
    """How the board was identified, for the reason."""
    parts = []
    if board.get("device_model"):
        parts.append("device-tree model %r" % board["device_model"])
    socs = [c for c in board.get("device_compatible") or [] if c.startswith("nvidia,tegra")]
    if socs:
        parts.append("SoC %s" % socs[0].split(",", 1)[1])
    return " and ".join(parts) or "no device-tree model"


def resolve(name, aliases, facts, board):
    """(target name, reason) for a target or an alias, on the board `read_board()` describes.

    `aliases`: {alias: {candidates, default, default_reason}}; `facts`: {target: target_facts()}.
    A name that is not an alias is returned as is (the caller checks that the target exists).
    """
    if name not in aliases:
        return name, "as requested"
    alias = aliases[name]
    cands = [c for c in alias["candidates"] if c in facts]
    l4t = board.get("l4t")
    major = l4t_major(l4t)
    where = "L4T %s (%s)" % (l4t, board.get("l4t_source") or "/etc/nv_tegra_release") if l4t else None

    def jp_of(c):
        return "JetPack %s" % facts[c]["jetpack"] if facts[c].get("jetpack") else "its JetPack"

    same_board = [c for c in cands if _is_this_board(facts[c], board)]
    if same_board:
        seen = _seen(board)
        if major is None:
            return same_board[0], ("%s; no L4T release found (no /etc/nv_tegra_release, e.g. in a "
                                   "container), so %s was assumed; pass --target %s to choose"
                                   % (seen, jp_of(same_board[0]), " or --target ".join(same_board)))
        line = [c for c in same_board if l4t_major(facts[c]["l4t"]) == major]
        if line:
            return line[0], "%s, %s = %s" % (seen, where, jp_of(line[0]))
        newest = max(same_board, key=lambda c: l4t_major(facts[c]["l4t"]) or 0)
        return newest, ("%s, but %s is a JetPack no target of this board describes (%s); the "
                        "nearest, %s, was chosen and the doctor will say what differs"
                        % (seen, where, ", ".join("%s = %s" % (c, facts[c]["l4t"]) for c in same_board),
                           newest))
    if major is not None:
        line = [c for c in cands if l4t_major(facts[c]["l4t"]) == major]
        if len(line) == 1:
            return line[0], "%s is the JetPack of %s; the device model was not recognised (%r)" % (
                where, line[0], board.get("device_model"))
        if line:
            return line[0], ("%s is the JetPack of %s; the device model (%r) did not say which, so "
                             "the first was chosen: pass --target to choose"
                             % (where, " and ".join(line), board.get("device_model")))
        return alias["default"], ("a Jetson this recipe has no target for (%s, %s), so the default "
                                  "was chosen; python build.py list shows the targets"
                                  % (_seen(board), where))
    return alias["default"], " ".join(alias["default_reason"].split())
