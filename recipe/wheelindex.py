"""Wheel files and the wheel index: what publish writes and pull reads (and the add-on
entries of both). PEP 427 file names, a wheel's METADATA, the manifest beside it, index.json's
schema, PEP 503 pages (rendered and parsed), atomic writes. No network, no pip.
"""
from __future__ import annotations

import html
import html.parser
import json
import os
import re
import tempfile
import zipfile
from email.parser import HeaderParser
from urllib.parse import quote, urljoin

from recipe.errors import RecipeError

INDEX_SCHEMA = "torch-arm-recipe/wheel-index"
INDEX_SCHEMA_VERSION = 2  # the newest understood; 2 = add-on entries (recipe/addon_index.py)
MANIFEST_SUFFIX = ".manifest.json"
METADATA_SUFFIX = ".metadata"


class WheelIndexError(RecipeError):
    """A wheel, manifest or index that is not what its name says (exit status 1)."""


# PEP 427: {distribution}-{version}(-{build tag})?-{python tag}-{abi tag}-{platform tag}.whl
WHEEL_RE = re.compile(
    r"^(?P<name>[^\s-]+?)-(?P<version>[^\s-]+?)(?:-(?P<build>\d[^\s-]*))?"
    r"-(?P<py>[^\s-]+?)-(?P<abi>[^\s-]+?)-(?P<plat>[^\s-]+?)\.whl$")


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
    """Raise WheelIndexError when `data` is not an index this code understands."""
    if not isinstance(data, dict) or data.get("schema") != INDEX_SCHEMA:
        raise WheelIndexError("{}: not a wheel index (expected \"schema\": \"{}\")".format(
            where, INDEX_SCHEMA))
    ver = data.get("schema_version")
    if not isinstance(ver, int) or ver > INDEX_SCHEMA_VERSION:
        raise WheelIndexError("{}: schema_version {!r} is newer than this recipe understands ({}); "
                           "update the recipe".format(where, ver, INDEX_SCHEMA_VERSION))
    if not isinstance(data.get("wheels"), list):
        raise WheelIndexError("{}: \"wheels\" must be a list".format(where))
    for i, w in enumerate(data["wheels"]):
        keys = ("filename", "url", "sha256", "torch", "arch") if isinstance(w, dict) and \
            w.get("kind") == "addon" else ("filename", "url", "sha256", "target", "release")
        missing = [k for k in keys if not isinstance(w, dict) or not w.get(k)]
        if missing:
            raise WheelIndexError("{}: wheels[{}] lacks {}".format(where, i, ", ".join(missing)))
    return data


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
        raise WheelIndexError("{}: cannot read the manifest: {}".format(path, exc))
    if not isinstance(data, dict):
        raise WheelIndexError("{}: a manifest must be a JSON object".format(path))
    return manifest_fields(data)


def wheel_metadata(path):
    """(METADATA bytes, parsed headers) from the wheel; WheelIndexError if it is not a wheel."""
    info = parse_wheel_filename(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist()
                     if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                raise WheelIndexError("{}: expected one *.dist-info/METADATA, found {}".format(
                    path, names or "none"))
            raw = zf.read(names[0])
    except zipfile.BadZipFile as exc:
        raise WheelIndexError("{}: not a wheel (zip): {}".format(path, exc))
    headers = HeaderParser().parsestr(raw.decode("utf-8", "replace"))
    if normalize_name(headers.get("Name", "")) != normalize_name(info["name"]):
        raise WheelIndexError("{}: METADATA says Name {!r}, the file name says {!r}".format(
            path, headers.get("Name"), info["name"]))
    return raw, headers


def entry_url(base_url, filename):
    """The index entry's link to a file: relative, or under base_url. Percent-encoded: a local
    version's "+" is read as a space by some static hosts."""
    name = quote(filename)
    return base_url.rstrip("/") + "/" + name if base_url else name


def is_absolute_url(url):
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
        url = e["url"] if is_absolute_url(e["url"]) else href_prefix + e["url"]
        attrs = ['href="{}#sha256={}"'.format(html.escape(url), e["sha256"])]
        if e.get("requires_python"):
            attrs.append('data-requires-python="{}"'.format(html.escape(e["requires_python"])))
        if e.get("metadata_sha256") and not is_absolute_url(e["url"]):
            # PEP 658 (+ PEP 714's new name): METADATA served at <wheel url>.metadata
            attrs.append('data-dist-info-metadata="sha256={}"'.format(e["metadata_sha256"]))
            attrs.append('data-core-metadata="sha256={}"'.format(e["metadata_sha256"]))
        lines.append("    <a {}>{}</a><br>".format(" ".join(attrs), html.escape(e["filename"])))
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines)


def write_atomic(path, data):
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


class _Anchors(html.parser.HTMLParser):
    def __init__(self):
        html.parser.HTMLParser.__init__(self)
        self.links = []  # (href, attrs dict, text)
        self._cur = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._cur = [dict(attrs), ""]

    def handle_data(self, data):
        if self._cur is not None:
            self._cur[1] += data

    def handle_endtag(self, tag):
        if tag == "a" and self._cur is not None:
            attrs, text = self._cur
            if attrs.get("href"):
                self.links.append((attrs["href"], attrs, text.strip()))
            self._cur = None


def parse_simple_page(text, page_url):
    """PEP 503 anchors -> [(absolute url without fragment, sha256 or None, attrs, text)]."""
    p = _Anchors()
    p.feed(text)
    out = []
    for href, attrs, label in p.links:
        full = urljoin(page_url, href)
        url, _, frag = full.partition("#")
        sha = None
        if frag.startswith("sha256="):
            sha = frag[len("sha256="):].lower()
        out.append((url, sha, attrs, label))
    return out
