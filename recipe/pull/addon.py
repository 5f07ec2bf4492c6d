"""`build.py pull --addon`: the add-on for the torch this interpreter imports (recipe/addon_index.py
says what publish writes for add-ons)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from urllib.parse import unquote

from recipe import addon_headers, addon_index
from recipe.wheelindex import normalize_name, parse_simple_page, parse_wheel_filename
from recipe.pull.base import PullError
from recipe.pull.fetch import _is_url, download, fetch_text
from recipe.pull.index import load_index
from recipe.pull.selection import _version_key


def _addon_entries_from_simple(index, timeout):
    """Add-on entries of a PEP 503 index (root or project page): facts from file names."""
    base = index if index.endswith("/") or index.endswith(".html") else index + "/"
    links = parse_simple_page(fetch_text(base, timeout), base)
    if not any(addon_index.is_addon_wheel(unquote(u.rsplit("/", 1)[-1])) for u, _, _, _ in links):
        proj = [u for u, _, _, text in links if normalize_name(text) == addon_index.PROJECT]
        if not proj:
            return []
        page = proj[0] if proj[0].endswith("/") else proj[0] + "/"
        links = parse_simple_page(fetch_text(page, timeout), page)
    out = []
    for url, sha, attrs, label in links:
        filename = unquote(url.rsplit("/", 1)[-1])
        info = parse_wheel_filename(filename)
        if not addon_index.is_addon_wheel(filename):
            continue
        m = re.search(r"\+torch(\d+\.\d+\.\d+)$", info["version"])
        arch = next((a for a in addon_headers.ARCHES if info["plat"].endswith(a)), None)
        out.append({"kind": "addon", "filename": filename, "url": url, "sha256": sha,
                    "size": None, "version": info["version"], "torch": m.group(1) if m else None,
                    "arch": arch, "cxx11_abi": None, "platform_tag": info["plat"]})
    return out


def addon_entries(index, timeout=60):
    is_json = index.endswith(".json") or (os.path.isdir(index) and os.path.exists(
        os.path.join(index, "index.json")))
    if not is_json and not (_is_url(index) or os.path.isdir(index)):
        is_json = True  # a local file: load_index says what is wrong with it
    if is_json:
        return [e for e in load_index(index, timeout=timeout) if e.get("kind") == "addon"]
    return _addon_entries_from_simple(index, timeout)


def select_addon(entries, torch_version, arch, cxx11_abi):
    """The best add-on entry for this torch, or PullError listing what the index has."""
    release = addon_headers.release_of(torch_version)
    cands = [e for e in entries if e.get("arch") == arch and addon_index.release_line(e.get("torch")) ==
             addon_index.release_line(release) and e.get("cxx11_abi") in (None, cxx11_abi)]
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
