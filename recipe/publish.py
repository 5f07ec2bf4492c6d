"""`python build.py publish`: turn wheels/ into a static wheel index any web server can host.

Output (default: in place, in the wheels directory)::

    OUT/index.json                       machine-readable index (schema below), read by `pull`
    OUT/simple/index.html                PEP 503 root: one link per project
    OUT/simple/torch/index.html          PEP 503 project page: <a href="../../W.whl#sha256=...">
    OUT/W.whl, OUT/W.whl.manifest.json   the wheel and the recipe's manifest beside it
    OUT/W.whl.metadata                   the wheel's METADATA (PEP 658), so pip can resolve
                                         without downloading hundreds of MB

`pip install --index-url https://HOST/PATH/simple torch==2.6.0` and
`python build.py pull --index https://HOST/PATH/index.json` (or .../simple/) both work
on the uploaded folder. Add-on wheels (torch_grouped_conv-*.whl from `build.py addon`) get
entries of kind "addon", ``simple/torch-grouped-conv/`` and one index per torch release line,
``addon/torch-X.Y/simple/`` (recipe/addon_index.py). With --base-url the links are absolute (wheels hosted elsewhere,
e.g. release assets) and only the index files need to be served.

index.json schema (version 1; version 2 adds add-on entries, recipe/addon_index.py, and is
written only when the index has some)::

    {"schema": "torch-arm-recipe/wheel-index", "schema_version": 1,
     "wheels": [{"filename", "name", "version", "url" (relative to index.json, or absolute),
                 "sha256", "size", "target", "release", "python" ("3.10"),
                 "python_tag" ("cp310"), "abi_tag", "platform_tag", "cuda" ("12.6" | null),
                 "recipe_version", "requires_python", "manifest" (url, same rules),
                 "manifest_sha256"}, ...]}
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from typing import Dict, List, Optional

from recipe import REPO_ROOT
from recipe.hashing import sha256_file
from recipe.wheelindex import (MANIFEST_SUFFIX, METADATA_SUFFIX, WheelIndexError, empty_index,
                               entry_url, is_absolute_url, normalize_name, parse_wheel_filename,
                               python_from_tag, read_manifest, render_project, render_root,
                               validate_index, wheel_metadata, write_atomic)

DEFAULT_WHEELS = os.path.join(REPO_ROOT, "wheels")

class PublishError(WheelIndexError):
    pass


# ---------------------------------------------------------------------------------------
# manifests (written by the recipe's manifest step beside the wheel)


def describe_wheel(path, base_url=None, require_manifest=True):
    """One index.json entry for the wheel at path (its manifest beside it)."""
    filename = os.path.basename(path)
    info = parse_wheel_filename(filename)
    if not info:
        raise PublishError("{}: not a wheel file name (PEP 427)".format(path))
    raw_meta, headers = wheel_metadata(path)
    digest = sha256_file(path)
    manifest_path = path + MANIFEST_SUFFIX
    man = None
    if os.path.exists(manifest_path):
        man = read_manifest(manifest_path)
    elif require_manifest:
        raise PublishError(
            "{}: no manifest {} beside it. Wheels from `python build.py --target T` get one from "
            "the manifest step (`python build.py --target T --only manifest` writes it); "
            "publish refuses wheels it cannot describe".format(path, os.path.basename(
                manifest_path)))
    missing = [k for k in ("target", "release") if not (man or {}).get(k)]
    if man is not None and missing:
        raise PublishError("{}: the manifest lacks {}".format(manifest_path, ", ".join(missing)))
    if man is not None and man.get("wheel_sha256") and man["wheel_sha256"] != digest:
        raise PublishError(
            "{}: the manifest records wheel sha256 {} but the wheel is {}: the wheel was "
            "rebuilt or replaced after its manifest was written; re-run the manifest step".format(
                manifest_path, man["wheel_sha256"], digest))
    python = (man or {}).get("python") or python_from_tag(info["py"])
    tag_python = python_from_tag(info["py"])
    if tag_python and python and tag_python != python:
        raise PublishError("{}: the manifest says Python {} but the wheel is tagged {}".format(
            manifest_path, python, info["py"]))

    entry = {
        "filename": filename,
        "name": headers.get("Name"),
        "version": headers.get("Version"),
        "url": entry_url(base_url, filename),
        "sha256": digest,
        "size": os.path.getsize(path),
        "target": (man or {}).get("target"),
        "release": (man or {}).get("release"),
        "python": python,
        "python_tag": info["py"],
        "abi_tag": info["abi"],
        "platform_tag": info["plat"],
        "cuda": (man or {}).get("cuda"),
        "recipe_version": (man or {}).get("recipe_version"),
        "requires_python": headers.get("Requires-Python"),
        "manifest": entry_url(base_url, os.path.basename(manifest_path)) if man is not None else None,
        "manifest_sha256": sha256_file(manifest_path) if man is not None else None,
        "metadata_sha256": hashlib.sha256(raw_meta).hexdigest(),
    }
    return entry, raw_meta


# ---------------------------------------------------------------------------------------
# output


def _copy_if_needed(src, dst):
    if os.path.abspath(src) == os.path.abspath(dst):
        return
    if os.path.exists(dst) and os.path.getsize(dst) == os.path.getsize(src) and \
            sha256_file(dst) == sha256_file(src):
        return
    tmp = dst + ".tmp-publish"
    try:
        try:
            if os.path.exists(tmp):
                os.unlink(tmp)
            os.link(src, tmp)  # same filesystem: no copy of a 300 MB wheel
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def publish(wheels_dir, out_dir=None, base_url=None, keep_remote=True, log=print):
    """Build the index; returns the index dict. Raises PublishError."""
    wheels_dir = os.path.abspath(wheels_dir)
    out_dir = os.path.abspath(out_dir or wheels_dir)
    if not os.path.isdir(wheels_dir):
        raise PublishError("{}: no such directory (build a wheel first: `python build.py "
                           "--target jetson-agx`)".format(wheels_dir))
    files = sorted(f for f in os.listdir(wheels_dir) if f.endswith(".whl"))
    entries = []
    metas = {}
    errors = []
    from recipe import addon_index
    for f in files:
        try:
            if addon_index.is_addon_wheel(f):
                entry, raw_meta = addon_index.describe_addon_wheel(os.path.join(wheels_dir, f),
                                                                   base_url)
            else:
                entry, raw_meta = describe_wheel(os.path.join(wheels_dir, f), base_url)
        except WheelIndexError as exc:  # PublishError too
            errors.append(str(exc))
            continue
        entries.append(entry)
        metas[f] = raw_meta
    if errors:
        raise PublishError("\n".join(errors))

    index_path = os.path.join(out_dir, "index.json")
    kept = []
    if keep_remote and os.path.exists(index_path):
        try:
            with open(index_path, encoding="utf-8") as fh:
                old = validate_index(json.load(fh), index_path)
        except (ValueError, OSError, PublishError) as exc:
            raise PublishError("{}: existing index is unreadable ({}); move it away or pass "
                               "--no-keep-remote".format(index_path, exc))
        local = set(e["filename"] for e in entries)
        kept = [w for w in old["wheels"]
                if is_absolute_url(w.get("url")) and w["filename"] not in local]
    if not entries and not kept:
        log("publish: no wheels in {}; writing an empty index".format(wheels_dir))

    os.makedirs(out_dir, exist_ok=True)
    if not base_url:
        for e in entries:
            _copy_if_needed(os.path.join(wheels_dir, e["filename"]),
                            os.path.join(out_dir, e["filename"]))
            _copy_if_needed(os.path.join(wheels_dir, e["filename"] + MANIFEST_SUFFIX),
                            os.path.join(out_dir, e["filename"] + MANIFEST_SUFFIX))
    else:
        # only the index files go to OUT; the wheels are served from base_url
        pass
    for e in entries:
        if not base_url:
            write_atomic(os.path.join(out_dir, e["filename"] + METADATA_SUFFIX),
                          metas[e["filename"]])

    all_entries = sorted(entries + kept, key=lambda e: (e["filename"], e["url"]))
    index = empty_index()
    index["wheels"] = all_entries
    if any(e.get("kind") == "addon" for e in all_entries):
        index["schema_version"] = 2  # older pulls refuse it with "update the recipe"

    # simple/: regenerate wholesale so removed wheels disappear
    simple = os.path.join(out_dir, "simple")
    by_project = {}  # type: Dict[str, List[dict]]
    for e in all_entries:
        by_project.setdefault(normalize_name(e.get("name") or
                                             parse_wheel_filename(e["filename"])["name"]),
                              []).append(e)
    if os.path.isdir(simple):
        for name in os.listdir(simple):
            p = os.path.join(simple, name)
            if os.path.isdir(p) and name not in by_project and \
                    os.path.exists(os.path.join(p, "index.html")):
                shutil.rmtree(p)
    for project, ents in by_project.items():
        write_atomic(os.path.join(simple, project, "index.html"),
                      render_project(project, ents, "../../"))
    write_atomic(os.path.join(simple, "index.html"), render_root(by_project))
    addon_lines = addon_index.write_line_indexes(out_dir, all_entries)
    write_atomic(index_path, json.dumps(index, indent=2, sort_keys=True) + "\n")
    for e in entries:
        if e.get("kind") == "addon":
            log("published add-on {} ({:,} bytes, sha256 {}, torch {}, {})".format(
                e["filename"], e["size"], e["sha256"][:16] + "...", e["torch"], e["arch"]))
            continue
        log("published {} ({:,} bytes, sha256 {}, target {}, release {}, python {}, cuda {})"
            .format(e["filename"], e["size"], e["sha256"][:16] + "...", e["target"],
                    e["release"], e["python"], e["cuda"] or "none"))
    for minor in addon_lines:
        log("add-ons for torch {0}: pip install --extra-index-url <site>/{1}/torch-{0}/simple "
            "torch-grouped-conv".format(minor, addon_index.LINES_DIR))
    if kept:
        log("kept {} remote entr{} from the existing index.json".format(
            len(kept), "y" if len(kept) == 1 else "ies"))
    log("index: {}\nsimple index: {}/".format(index_path, simple))
    return index


def build_parser():
    p = argparse.ArgumentParser(
        prog="build.py publish",
        description="Turn a folder of wheels (and their manifests) into a static PEP 503 "
                    "simple index plus index.json, for any static web host. "
                    "pip: --index-url <host>/simple ; pull: --index <host>/index.json")
    p.add_argument("--wheels", default=DEFAULT_WHEELS,
                   help="folder with *.whl and *.whl.manifest.json (default: %(default)s)")
    p.add_argument("--out", default=None,
                   help="output folder (default: the --wheels folder itself)")
    p.add_argument("--base-url", default=None,
                   help="absolute URL where the wheels are hosted; links become absolute and "
                        "the wheels are not copied into --out")
    p.add_argument("--no-keep-remote", dest="keep_remote", action="store_false",
                   help="drop entries with absolute URLs found in an existing index.json "
                        "(kept by default: wheels hosted elsewhere stay listed)")
    return p


def main(argv=None):
    from recipe.errors import OptionError, check_folder_option
    args = build_parser().parse_args(argv)
    if args.base_url and not is_absolute_url(args.base_url):
        raise OptionError("--base-url", args.base_url, "not an absolute URL",
                          "give one like https://host/path")
    check_folder_option("--wheels", args.wheels)
    check_folder_option("--out", args.out)
    publish(args.wheels, args.out, args.base_url, keep_remote=args.keep_remote)  # PublishError: 1
    return 0

