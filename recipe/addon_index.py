"""Add-on wheels in the index: `publish` entries and `pull --addon`.

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

pull --addon: the add-on for the torch this interpreter imports (same release line X.Y, same
architecture and C++ ABI; the exact release X.Y.Z preferred), downloaded with pull's own
verified download (size and sha256 checked before pip sees the file) and installed with
``pip install --no-deps``. No match: what the index has, and the `build.py addon` command.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from urllib.parse import unquote

from recipe.hashing import sha256_file
from recipe import addon_headers

PROJECT = "torch-grouped-conv"
LINES_DIR = "addon"


def _pub():
    from recipe import publish  # late: publish imports this module
    return publish


def is_addon_wheel(filename):
    info = _pub().parse_wheel_filename(filename)
    return bool(info) and _pub().normalize_name(info["name"]) == PROJECT


def _minor(version):
    m = re.match(r"^(\d+)\.(\d+)", version or "")
    return "%s.%s" % m.groups() if m else None


# --------------------------------------------------------------------------- publish

def describe_addon_wheel(path, base_url=None):
    """(index.json entry, METADATA bytes) for an add-on wheel with its manifest beside it."""
    pub = _pub()
    filename = os.path.basename(path)
    info = pub.parse_wheel_filename(filename)
    raw_meta, headers = pub._wheel_metadata(path)
    manifest_path = path + pub.MANIFEST_SUFFIX
    if not os.path.exists(manifest_path):
        raise pub.PublishError("{}: no manifest {} beside it (`python build.py addon` writes "
                               "it); publish refuses wheels it cannot describe".format(
                                   path, os.path.basename(manifest_path)))
    try:
        with open(manifest_path, encoding="utf-8") as fh:
            man = json.load(fh)
        built = man["addon"]["torch"]
        recorded = man["wheel"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise pub.PublishError("{}: not an add-on manifest ({})".format(manifest_path, exc))
    digest = sha256_file(path)
    if recorded != digest:
        raise pub.PublishError("{}: the manifest records wheel sha256 {} but the wheel is {}: "
                               "rebuild it with `python build.py addon`".format(
                                   manifest_path, recorded, digest))

    entry = {
        "kind": "addon",
        "filename": filename,
        "name": headers.get("Name"),
        "version": headers.get("Version"),
        "url": _pub().entry_url(base_url, filename),
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
        "manifest": _pub().entry_url(base_url, os.path.basename(manifest_path)),
        "manifest_sha256": sha256_file(manifest_path),
        "metadata_sha256": hashlib.sha256(raw_meta).hexdigest(),
    }
    return entry, raw_meta


def write_line_indexes(out_dir, entries):
    """addon/torch-X.Y/simple/{index.html, torch-grouped-conv/index.html} per release line
    (regenerated wholesale: lines without add-ons disappear)."""
    pub = _pub()
    root = os.path.join(out_dir, LINES_DIR)
    if os.path.isdir(root):
        shutil.rmtree(root)
    lines = {}
    for e in entries:
        if e.get("kind") == "addon":
            lines.setdefault(_minor(e["torch"]), []).append(e)
    for minor, ents in sorted(lines.items()):
        simple = os.path.join(root, "torch-" + minor, "simple")
        # pages live 4 levels below out_dir: addon/torch-X.Y/simple/torch-grouped-conv/
        pub._write_atomic(os.path.join(simple, PROJECT, "index.html"),
                          pub.render_project(PROJECT, ents, "../../../../"))
        pub._write_atomic(os.path.join(simple, "index.html"), pub.render_root([PROJECT]))
    return sorted(lines)


# --------------------------------------------------------------------------- pull --addon

def _entries_from_simple(index, timeout):
    """Add-on entries of a PEP 503 index (root or project page): facts from file names."""
    from recipe.pull import fetch_text, parse_simple_page
    pub = _pub()
    base = index if index.endswith("/") or index.endswith(".html") else index + "/"
    links = parse_simple_page(fetch_text(base, timeout), base)
    if not any(is_addon_wheel(unquote(u.rsplit("/", 1)[-1])) for u, _, _, _ in links):
        proj = [u for u, _, _, text in links if pub.normalize_name(text) == PROJECT]
        if not proj:
            return []
        page = proj[0] if proj[0].endswith("/") else proj[0] + "/"
        links = parse_simple_page(fetch_text(page, timeout), page)
    out = []
    for url, sha, attrs, label in links:
        filename = unquote(url.rsplit("/", 1)[-1])
        info = pub.parse_wheel_filename(filename)
        if not is_addon_wheel(filename):
            continue
        m = re.search(r"\+torch(\d+\.\d+\.\d+)$", info["version"])
        arch = next((a for a in addon_headers.ARCHES if info["plat"].endswith(a)), None)
        out.append({"kind": "addon", "filename": filename, "url": url, "sha256": sha,
                    "size": None, "version": info["version"], "torch": m.group(1) if m else None,
                    "arch": arch, "cxx11_abi": None, "platform_tag": info["plat"]})
    return out


def addon_entries(index, timeout=60):
    from recipe import pull
    is_json = index.endswith(".json") or (os.path.isdir(index) and os.path.exists(
        os.path.join(index, "index.json")))
    if not is_json and not (pull._is_url(index) or os.path.isdir(index)):
        is_json = True  # a local file: load_index says what is wrong with it
    if is_json:
        return [e for e in pull.load_index(index, timeout=timeout) if e.get("kind") == "addon"]
    return _entries_from_simple(index, timeout)


def select_addon(entries, torch_version, arch, cxx11_abi):
    """The best add-on entry for this torch, or PullError listing what the index has."""
    from recipe.pull import PullError, _version_key
    release = addon_headers.release_of(torch_version)
    cands = [e for e in entries if e.get("arch") == arch and _minor(e.get("torch")) ==
             _minor(release) and e.get("cxx11_abi") in (None, cxx11_abi)]
    if not cands:
        have = "\n".join("  {} (torch {}, {}, C++ ABI {})".format(
            e["filename"], e.get("torch"), e.get("arch"),
            "?" if e.get("cxx11_abi") is None else e["cxx11_abi"]) for e in entries) \
            or "  (no add-on in this index)"
        raise PullError(
            "no torch-grouped-conv add-on in the index for torch {} ({}, C++ ABI {}).\n"
            "The index has:\n{}\n"
            "Build it on this machine instead (minutes): python build.py addon --install"
            .format(torch_version, arch, cxx11_abi, have))
    cands.sort(key=lambda e: (e.get("torch") == release, _version_key(e.get("recipe_version")),
                              _version_key(e.get("version")), e["filename"]))
    return cands[-1]


def pull_addon(args):
    """`build.py pull --addon`: args from pull.build_parser(). Raises PullError."""
    from recipe.pull import PullError, download
    try:
        facts = addon_headers.installed_facts(sys.executable)
    except addon_headers.HeadersError as exc:
        raise PullError(str(exc))
    print("pull --addon: this torch is {} ({}, C++ ABI {}, {})".format(
        facts["version"], facts["arch"], facts["cxx11_abi"], facts["root"]))
    entry = select_addon(addon_entries(args.index, args.timeout), facts["version"],
                         facts["arch"], facts["cxx11_abi"])
    print("pull --addon: {} <- {}".format(entry["filename"], entry["url"]))
    if args.dry_run:
        return 0
    if args.download_only:
        path = download(entry["url"], args.download_only, entry["filename"], entry["sha256"],
                        entry.get("size"), timeout=args.timeout, progress=not args.quiet)
        print("pull --addon: verified sha256 {}; saved {}".format(entry["sha256"], path))
        return 0
    tmpdir = tempfile.mkdtemp(prefix="addon-pull-")
    try:
        path = download(entry["url"], tmpdir, entry["filename"], entry["sha256"],
                        entry.get("size"), timeout=args.timeout, progress=not args.quiet)
        print("pull --addon: verified sha256 {}; installing into {}".format(
            entry["sha256"], sys.prefix))
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--force-reinstall"] \
            + list(args.pip_arg) + [path]
        print("+ " + " ".join(cmd), flush=True)
        rc = subprocess.call(cmd)
        if rc != 0:
            raise PullError("pip install of the verified add-on failed (exit {}); see pip's "
                            "message above".format(rc))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    print("pull --addon: installed {}; `python -m torch_grouped_conv` shows its status"
          .format(entry["filename"]))
    return 0
