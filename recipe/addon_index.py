"""Add-on wheels in the index: what `publish` writes for them (`pull --addon` reads it:
recipe/pull/addon.py).

publish (recipe/publish.py calls `describe_addon_wheel` for every torch_grouped_conv wheel and
`write_line_indexes` after the simple index): an index.json entry of kind "addon" per wheel::

    {"kind": "addon", "filename", "name", "version", "url", "sha256", "size",
     "torch" ("2.6.0": the release it was built for), "torch_version" ("2.6.0+cpu"),
     "torch_git", "cxx11_abi", "arch", "platform_tag", "python_tag" ("py3"), "abi_tag",
     "recipe_version", "requires_python", "manifest", "manifest_sha256", "metadata_sha256"}

(an index with add-on entries has schema_version 2; one without stays at 1, so older pulls
still read it), the PEP 503 page ``simple/torch-grouped-conv/`` (every add-on), and one small
index per torch release line, ``addon/torch-X.Y/simple/``, that lists only the add-ons for
torch X.Y: ``pip install --extra-index-url <site>/addon/torch-2.6/simple torch-grouped-conv``
then picks the one for your torch. (On the full page pip would pick the newest add-on, for the
newest torch, since the add-on declares no dependency on torch: pin its version there,
``torch-grouped-conv==0.1.0+torch2.6.0``.)

pull --addon (recipe/pull/addon.py) picks the add-on for the torch its interpreter imports (same
release line X.Y, same architecture and C++ ABI; the exact release X.Y.Z preferred), downloads
it with pull's own verified download (size and sha256 checked before pip sees the file) and
installs it with ``pip install --no-deps``. No match: what the index has, and the
`build.py addon` command.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil

from recipe import wheelindex
from recipe.hashing import sha256_file

PROJECT = "torch-grouped-conv"
LINES_DIR = "addon"


def is_addon_wheel(filename):
    info = wheelindex.parse_wheel_filename(filename)
    return bool(info) and wheelindex.normalize_name(info["name"]) == PROJECT


def release_line(version):
    """'2.6' of '2.6.0' (an add-on serves one torch release line)."""
    m = re.match(r"^(\d+)\.(\d+)", version or "")
    return "%s.%s" % m.groups() if m else None


# --------------------------------------------------------------------------- publish

def describe_addon_wheel(path, base_url=None):
    """(index.json entry, METADATA bytes) for an add-on wheel with its manifest beside it."""
    filename = os.path.basename(path)
    info = wheelindex.parse_wheel_filename(filename)
    raw_meta, headers = wheelindex.wheel_metadata(path)
    manifest_path = path + wheelindex.MANIFEST_SUFFIX
    if not os.path.exists(manifest_path):
        raise wheelindex.WheelIndexError("{}: no manifest {} beside it (`python build.py addon` writes "
                               "it); publish refuses wheels it cannot describe".format(
                                   path, os.path.basename(manifest_path)))
    try:
        with open(manifest_path, encoding="utf-8") as fh:
            man = json.load(fh)
        built = man["addon"]["torch"]
        recorded = man["wheel"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise wheelindex.WheelIndexError("{}: not an add-on manifest ({})".format(manifest_path, exc))
    digest = sha256_file(path)
    if recorded != digest:
        raise wheelindex.WheelIndexError("{}: the manifest records wheel sha256 {} but the wheel is {}: "
                               "rebuild it with `python build.py addon`".format(
                                   manifest_path, recorded, digest))

    entry = {
        "kind": "addon",
        "filename": filename,
        "name": headers.get("Name"),
        "version": headers.get("Version"),
        "url": wheelindex.entry_url(base_url, filename),
        "sha256": digest,
        "size": os.path.getsize(path),
        "torch": built["release"],
        "torch_version": built["version"],
        "torch_git": built.get("git_version"),
        "cxx11_abi": built["cxx11_abi"],
        "arch": built["arch"],
        "target": None,
        "release": None,
        "python": None,
        "python_tag": info["py"],
        "abi_tag": info["abi"],
        "platform_tag": info["plat"],
        "cuda": None,
        "recipe_version": man.get("recipe_version"),
        "requires_python": headers.get("Requires-Python"),
        "manifest": wheelindex.entry_url(base_url, os.path.basename(manifest_path)),
        "manifest_sha256": sha256_file(manifest_path),
        "metadata_sha256": hashlib.sha256(raw_meta).hexdigest(),
    }
    return entry, raw_meta


def write_line_indexes(out_dir, entries):
    """addon/torch-X.Y/simple/{index.html, torch-grouped-conv/index.html} per release line
    (regenerated wholesale: lines without add-ons disappear)."""
    root = os.path.join(out_dir, LINES_DIR)
    if os.path.isdir(root):
        shutil.rmtree(root)
    lines = {}
    for e in entries:
        if e.get("kind") == "addon":
            lines.setdefault(release_line(e["torch"]), []).append(e)
    for minor, ents in sorted(lines.items()):
        simple = os.path.join(root, "torch-" + minor, "simple")
        # pages live 4 levels below out_dir: addon/torch-X.Y/simple/torch-grouped-conv/
        wheelindex.write_atomic(os.path.join(simple, PROJECT, "index.html"),
                          wheelindex.render_project(PROJECT, ents, "../../../../"))
        wheelindex.write_atomic(os.path.join(simple, "index.html"), wheelindex.render_root([PROJECT]))
    return sorted(lines)
