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
import html
import json
import os
import re
import shutil
import tempfile
import zipfile
from email.parser import HeaderParser
from typing import Dict, List, Optional
from urllib.parse import quote

from recipe.hashing import sha256_file
from recipe import REPO_ROOT
from recipe.errors import RecipeError

INDEX_SCHEMA = "torch-arm-recipe/wheel-index"
INDEX_SCHEMA_VERSION = 2  # the newest understood; 2 = add-on entries (recipe/addon_index.py)
MANIFEST_SUFFIX = ".manifest.json"
METADATA_SUFFIX = ".metadata"
DEFAULT_WHEELS = os.path.join(REPO_ROOT, "wheels")

# PEP 427: {distribution}-{version}(-{build tag})?-{python tag}-{abi tag}-{platform tag}.whl
WHEEL_RE = re.compile(
    r"^(?P<name>[^\s-]+?)-(?P<version>[^\s-]+?)(?:-(?P<build>\d[^\s-]*))?"
    r"-(?P<py>[^\s-]+?)-(?P<abi>[^\s-]+?)-(?P<plat>[^\s-]+?)\.whl$")


class PublishError(RecipeError):
    pass


def normalize_name(name):
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_wheel_filename(filename):
    m = WHEEL_RE.match(os.path.basename(filename))
    if not m:
        return None
    return m.groupdict()


def python_from_tag(tag):
    """'cp310' -> '3.10'; 'cp38.cp39' -> None (ambiguous); 'py3' -> None."""
    m = re.match(r"^(?:cp|py)(\d)(\d+)$", tag or "")
    return "{}.{}".format(m.group(1), m.group(2)) if m else None



def empty_index():
    return {"schema": INDEX_SCHEMA, "schema_version": 1, "wheels": []}


def validate_index(data, where="index.json"):
    """Raise PublishError when `data` is not an index this code understands."""
    if not isinstance(data, dict) or data.get("schema") != INDEX_SCHEMA:
        raise PublishError("{}: not a wheel index (expected \"schema\": \"{}\")".format(
            where, INDEX_SCHEMA))
    ver = data.get("schema_version")
    if not isinstance(ver, int) or ver > INDEX_SCHEMA_VERSION:
        raise PublishError("{}: schema_version {!r} is newer than this recipe understands ({}); "
                           "update the recipe".format(where, ver, INDEX_SCHEMA_VERSION))
    if not isinstance(data.get("wheels"), list):
        raise PublishError("{}: \"wheels\" must be a list".format(where))
    for i, w in enumerate(data["wheels"]):
        keys = ("filename", "url", "sha256", "torch", "arch") if isinstance(w, dict) and \
            w.get("kind") == "addon" else ("filename", "url", "sha256", "target", "release")
        missing = [k for k in keys if not isinstance(w, dict) or not w.get(k)]
        if missing:
            raise PublishError("{}: wheels[{}] lacks {}".format(where, i, ", ".join(missing)))
    return data


# ---------------------------------------------------------------------------------------
# manifests (written by the recipe's manifest step beside the wheel)


def _pick(d, *paths):
    for path in paths:
        cur = d
        for key in path.split("."):
            if isinstance(cur, dict) and key in cur:
                cur = cur[key]
            else:
                cur = None
                break
        if cur is not None:
            return cur
    return None


def _xy(version):
    m = re.match(r"^(\d+)\.(\d+)", str(version or ""))
    return "{}.{}".format(m.group(1), m.group(2)) if m else None


def manifest_fields(data):
    """The fields publish and pull need from a manifest (recipe/steps/manifest.py writes
    target.name, release.name, build.python, build.cuda.version (null = CPU), wheel.sha256);
    flat keys (target, release, python, cuda, wheel_sha256) are read too."""
    target = _pick(data, "target.name", "target")
    release = _pick(data, "release.name", "release.version", "release")
    python = _pick(data, "build.python", "python.version", "python")
    cuda = _pick(data, "build.cuda.version", "cuda.version", "build.cuda", "cuda")
    return {
        "target": target if isinstance(target, str) else None,
        "release": str(release) if isinstance(release, (str, int, float)) else None,
        "python": _xy(python) if isinstance(python, (str, int, float)) else None,
        "cuda": _xy(cuda) if isinstance(cuda, (str, float)) else None,
        "recipe_version": _pick(data, "recipe_version", "recipe.version"),
        "wheel_sha256": _pick(data, "wheel.sha256", "wheel_sha256"),
    }


def read_manifest(path):
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise PublishError("{}: cannot read the manifest: {}".format(path, exc))
    if not isinstance(data, dict):
        raise PublishError("{}: a manifest must be a JSON object".format(path))
    return manifest_fields(data)


def _wheel_metadata(path):
    """(METADATA bytes, parsed headers) from the wheel; PublishError if it is not a wheel."""
    info = parse_wheel_filename(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist()
                     if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                raise PublishError("{}: expected one *.dist-info/METADATA, found {}".format(
                    path, names or "none"))
            raw = zf.read(names[0])
    except zipfile.BadZipFile as exc:
        raise PublishError("{}: not a wheel (zip): {}".format(path, exc))
    headers = HeaderParser().parsestr(raw.decode("utf-8", "replace"))
    if normalize_name(headers.get("Name", "")) != normalize_name(info["name"]):
        raise PublishError("{}: METADATA says Name {!r}, the file name says {!r}".format(
            path, headers.get("Name"), info["name"]))
    return raw, headers


def entry_url(base_url, filename):
    """The index entry's link to a file: relative, or under base_url. Percent-encoded: a local
    version's "+" is read as a space by some static hosts."""
    name = quote(filename)
    return base_url.rstrip("/") + "/" + name if base_url else name


def describe_wheel(path, base_url=None, require_manifest=True):
    """One index.json entry for the wheel at path (its manifest beside it)."""
    filename = os.path.basename(path)
    info = parse_wheel_filename(filename)
    if not info:
        raise PublishError("{}: not a wheel file name (PEP 427)".format(path))
    raw_meta, headers = _wheel_metadata(path)
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


def _write_atomic(path, data):
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data if isinstance(data, bytes) else data.encode("utf-8"))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def _is_absolute_url(url):
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url or ""))


def render_root(projects):
    lines = ["<!DOCTYPE html>", "<html>", "  <head>",
             '    <meta name="pypi:repository-version" content="1.0">',
             "    <title>Simple index</title>", "  </head>", "  <body>"]
    for p in sorted(projects):
        lines.append('    <a href="{0}/">{0}</a><br>'.format(html.escape(p)))
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines)


def render_project(project, entries, href_prefix):
    lines = ["<!DOCTYPE html>", "<html>", "  <head>",
             '    <meta name="pypi:repository-version" content="1.0">',
             "    <title>Links for {}</title>".format(html.escape(project)), "  </head>",
             "  <body>", "    <h1>Links for {}</h1>".format(html.escape(project))]
    for e in sorted(entries, key=lambda e: e["filename"]):
        url = e["url"] if _is_absolute_url(e["url"]) else href_prefix + e["url"]
        attrs = ['href="{}#sha256={}"'.format(html.escape(url), e["sha256"])]
        if e.get("requires_python"):
            attrs.append('data-requires-python="{}"'.format(html.escape(e["requires_python"])))
        if e.get("metadata_sha256") and not _is_absolute_url(e["url"]):
            # PEP 658 (+ PEP 714's new name): METADATA served at <wheel url>.metadata
            attrs.append('data-dist-info-metadata="sha256={}"'.format(e["metadata_sha256"]))
            attrs.append('data-core-metadata="sha256={}"'.format(e["metadata_sha256"]))
        lines.append("    <a {}>{}</a><br>".format(" ".join(attrs), html.escape(e["filename"])))
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines)


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
        except PublishError as exc:
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
                if _is_absolute_url(w.get("url")) and w["filename"] not in local]
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
            _write_atomic(os.path.join(out_dir, e["filename"] + METADATA_SUFFIX),
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
        _write_atomic(os.path.join(simple, project, "index.html"),
                      render_project(project, ents, "../../"))
    _write_atomic(os.path.join(simple, "index.html"), render_root(by_project))
    addon_lines = addon_index.write_line_indexes(out_dir, all_entries)
    _write_atomic(index_path, json.dumps(index, indent=2, sort_keys=True) + "\n")
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
    if args.base_url and not _is_absolute_url(args.base_url):
        raise OptionError("--base-url", args.base_url, "not an absolute URL",
                          "give one like https://host/path")
    check_folder_option("--wheels", args.wheels)
    check_folder_option("--out", args.out)
    publish(args.wheels, args.out, args.base_url, keep_remote=args.keep_remote)  # PublishError: 1
    return 0

