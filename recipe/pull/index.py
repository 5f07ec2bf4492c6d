"""Reading an index: index.json (`build.py publish`) or a PEP 503 simple index, into entries."""
from __future__ import annotations

import json
import os
import re
from urllib.parse import unquote, urljoin

from recipe import errors
from recipe.wheelindex import (INDEX_SCHEMA, MANIFEST_SUFFIX, WheelIndexError, manifest_fields,
                               normalize_name, parse_simple_page, parse_wheel_filename,
                               python_from_tag, validate_index)
from recipe.pull.base import (DEFAULT_DEADLINE, DEFAULT_TIMEOUT, INDEX_TEXT_FIELDS, PROJECT,
                              PullError, WEB_SCHEMES)
from recipe.pull.fetch import _is_url, _scheme, check_link, check_wheel_filename, fetch_text

def _local_label_facts(version):
    """Target/CUDA hints from a local version label (`2.6.0+jetson.agx.orin.cu126`)."""
    local = version.partition("+")[2].lower()
    tokens = re.split(r"[._-]", local) if local else []
    cuda = None
    for t in tokens:
        m = re.match(r"^cu(\d+)(\d)$", t)
        if m:
            cuda = "{}.{}".format(m.group(1), m.group(2))
    return {"tokens": tokens, "cuda": cuda, "cpu": "cpu" in tokens}


def _entries_from_simple(text, page_url, index):
    entries = []
    for url, sha, attrs, label in parse_simple_page(text, page_url):
        filename = unquote(url.rsplit("/", 1)[-1])
        info = parse_wheel_filename(filename)
        if not info or normalize_name(info["name"]) != PROJECT:
            continue
        check_wheel_filename(filename, index)
        check_link(url, index, "the wheel " + filename)
        entry = {"filename": filename, "url": url, "sha256": sha, "size": None,
                 "version": info["version"], "python": python_from_tag(info["py"]),
                 "python_tag": info["py"], "platform_tag": info["plat"],
                 "requires_python": attrs.get("data-requires-python"), "target": None,
                 "release": info["version"].partition("+")[0], "cuda": None,
                 "manifest": url + MANIFEST_SUFFIX, "_from_simple": True}
        entries.append(entry)
    return entries


def _fill_from_manifest(entry, timeout, deadline=DEFAULT_DEADLINE):
    """Simple-index entries carry no target: read it from the manifest beside the wheel
    (publish puts it there); fall back to the local version label."""
    try:
        data = json.loads(fetch_text(entry["manifest"], timeout, deadline))
        if not isinstance(data, dict):
            raise ValueError("not a manifest")
        fields = manifest_fields(data)
        entry["target"] = fields["target"]
        entry["release"] = fields["release"] or entry["release"]
        entry["cuda"] = fields["cuda"]
        if fields["python"]:
            entry["python"] = fields["python"]
        return True
    except (PullError, ValueError):
        facts = _local_label_facts(entry["version"])
        entry["cuda"] = facts["cuda"]
        entry["_label_tokens"] = facts["tokens"]
        entry["manifest"] = None
        return False


def _index_entry(w, i, index, base):
    """One index.json entry, checked: a bare wheel file name, links the index may give, a
    whole number of bytes."""
    e = dict(w)
    check_wheel_filename(w["filename"], index)
    wrong = [k for k in INDEX_TEXT_FIELDS if w.get(k) is not None and not isinstance(w[k], str)]
    if wrong:
        raise PullError("{}: wheels[{}] ({}): {} must be text; re-publish the index (python "
                        "build.py publish)".format(index, i, w["filename"], ", ".join(wrong)))
    size = w.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise PullError("{}: wheels[{}] ({}): size {!r} is not a whole number of bytes; "
                        "re-publish the index (python build.py publish)".format(
                            index, i, w["filename"], size))
    e["url"] = check_link(urljoin(base, w["url"]), index, "the wheel " + w["filename"])
    if w.get("manifest"):
        e["manifest"] = check_link(urljoin(base, w["manifest"]), index,
                                   "the manifest of " + w["filename"])
    return e


def load_index(index, timeout=DEFAULT_TIMEOUT, log=print, deadline=DEFAULT_DEADLINE):
    """[entry, ...] from index.json (path or URL) or a PEP 503 simple index URL.

    Every entry is checked before it is returned: its file name is a bare wheel name and
    its links are ones this index may give (check_link), so download() can trust them."""
    if _scheme(index) not in WEB_SCHEMES + ("file", ""):
        raise errors.OptionError("--index", index, "not an index location",
                                 "give an http(s) URL or a local path (file or folder)")
    if not _is_url(index) and os.path.isdir(index):
        for cand in ("index.json", os.path.join("simple", PROJECT, "index.html")):
            if os.path.exists(os.path.join(index, cand)):
                index = os.path.join(index, cand)
                break
        else:
            raise PullError("{}: no index.json or simple/{}/index.html in it".format(
                index, PROJECT))
    text = fetch_text(index, timeout, deadline)
    base = index if _is_url(index) or index.startswith("file:") else \
        "file://" + os.path.abspath(index)
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
            validate_index(data, index)
        except ValueError as exc:
            raise PullError("{} is not valid JSON: {}".format(index, exc))
        except WheelIndexError as exc:
            raise PullError(str(exc))
        return [_index_entry(w, i, index, base) for i, w in enumerate(data["wheels"])]
    if "<a" not in text.lower() and "<html" not in text.lower():
        raise PullError("{} is neither an index.json (schema {}) nor a PEP 503 simple "
                        "index page".format(index, INDEX_SCHEMA))
    if not base.endswith("/") and not base.endswith(".html"):
        base += "/"
    links = parse_simple_page(text, base)
    if not any(parse_wheel_filename(unquote(u.rsplit("/", 1)[-1])) for u, _, _, _ in links):
        # the root page: follow the project link
        proj = [u for u, _, _, label in links
                if normalize_name(label.strip("/")) == PROJECT or
                normalize_name(u.rstrip("/").rsplit("/", 1)[-1]) == PROJECT]
        if not proj:
            raise PullError("the simple index {} lists no '{}' project".format(index, PROJECT))
        page = check_link(proj[0] if proj[0].endswith("/") else proj[0] + "/", index,
                          "the project page")
        text = fetch_text(page, timeout, deadline)
        base = page
    return _entries_from_simple(text, base, index)
