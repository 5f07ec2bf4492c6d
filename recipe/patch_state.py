"""What the patch step has written into a source tree: its state file (the files it wrote,
with their sha256) and a pending journal (a change being written, completed by the next run).

Shared by the patch step (which writes them) and the sources step (for which the files the
patch step wrote are ours, not local changes of the user's).
"""
from __future__ import annotations

import json
import os

STATE_FILE = "patch-state.json"
JOURNAL_DIR = "patch-journal"     # a change being written: the next run completes it


def recorded_contents(work_dir):
    """{rel: set of sha256 (None = absent)} of what the patch step wrote or is writing (a
    pending journal's before and after too): such files are ours, not local changes."""
    out = {}
    try:
        with open(os.path.join(work_dir, STATE_FILE), encoding="utf-8") as f:
            for rel, rec in (json.load(f).get("files") or {}).items():
                out.setdefault(rel, set()).add(rec.get("written"))
    except (OSError, ValueError, AttributeError):
        pass
    try:
        with open(os.path.join(work_dir, JOURNAL_DIR, "journal.json"), encoding="utf-8") as f:
            for rec in json.load(f)["writes"]:
                out.setdefault(rec["path"], set()).update((rec["before"], rec["after"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return out
