"""`python build.py pull`: fetch a prebuilt wheel, verify it, then install it.

    python build.py pull --target jetson-agx [--release 2.6.0] [--index URL|PATH]
                         [--download-only DIR] [--python X.Y] [--cuda X.Y|none]

The index is an `index.json` written by `build.py publish` (a local path or URL; default:
wheels/index.json in this repository) or a PEP 503 simple index URL (`.../simple/` or
`.../simple/torch/`). The wheel is chosen by target, release, Python and CUDA, downloaded
into a temporary file next to its destination, checked against the index's size and
sha256 and only then renamed into place and handed to pip. Any failure (no match, a bad
checksum, a truncated download, a server that is down) ends with a message naming the URL,
a non-zero exit, nothing installed and no partial file left behind.

pip installs the verified local file, so torch itself never comes from anywhere else; its
pure-Python dependencies (filelock, typing-extensions, sympy, networkx, jinja2, fsspec)
come from the index pip is configured with, like for any `pip install`. `--no-deps` skips
them (offline machines that already have them).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from urllib.error import HTTPError, URLError
from urllib import request as urlrequest
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import Request, url2pathname

from recipe import REPO_ROOT, RECIPE_VERSION, addon_headers, addon_index, detect, errors
from recipe.wheelindex import (INDEX_SCHEMA, MANIFEST_SUFFIX, WheelIndexError, manifest_fields,
                               normalize_name, parse_simple_page, parse_wheel_filename,
                               python_from_tag, validate_index)

DEFAULT_INDEX = os.path.join(REPO_ROOT, "wheels", "index.json")
RELEASES_DIR = os.path.join(REPO_ROOT, "configs", "releases")
PROJECT = "torch"
USER_AGENT = "torch-arm-recipe-pull/" + RECIPE_VERSION
DEFAULT_TIMEOUT = 60.0    # seconds without a byte: the server stalls
DEFAULT_DEADLINE = 3600.0  # seconds for one whole download: a server that trickles is cut off
MAX_INDEX_BYTES = 64 << 20
INDEX_TEXT_FIELDS = ("url", "sha256", "target", "release", "python", "python_tag", "abi_tag",
                     "platform_tag", "cuda", "version", "recipe_version", "manifest")
WEB_SCHEMES = ("http", "https")

# Used only while the recipe's configs/targets are not available (see _target_facts).
FALLBACK_TARGETS = {
    "jetson-agx-orin": {"cuda": "12.6", "python": "3.10", "arch": "aarch64"},
    "jetson-agx-orin-jp7.2": {"cuda": "13.2", "python": "3.12", "arch": "aarch64"},
    "jetson-agx-orin-jp5": {"cuda": "11.4", "python": "3.8", "arch": "aarch64"},
    "jetson-agx-thor": {"cuda": "13.0", "python": "3.12", "arch": "aarch64"},
    "jetson-agx-thor-jp7.2": {"cuda": "13.2", "python": "3.12", "arch": "aarch64"},
    "jetson-agx-xavier": {"cuda": "11.4", "python": "3.8", "arch": "aarch64"},
    "jetson-agx-xavier-cpu": {"cuda": None, "python": "3.9", "arch": "aarch64"},
    "generic-aarch64": {"cuda": None, "python": "host", "arch": "aarch64"},
    "x86_64": {"cuda": None, "python": "host", "arch": "x86_64"},
}


class PullError(errors.RecipeError):
    """A failure with the message for the user (what failed, where, what to do); exit 1."""


# ---------------------------------------------------------------------------------------
# target


def _configs():
    """The recipe's validated configs, or None while there are none (early development)."""
    try:
        from recipe.config import Configs
        cfg = Configs()
        if not cfg.target_names():
            return None
        return cfg
    except (ImportError, OSError):
        return None


def resolve_target(name, root="/"):
    """(concrete target name, reason) for a target or an alias such as jetson-agx.

    recipe.detect decides, so `pull` and the build always agree: on the recipe's configs
    (recipe.plan.resolve_target on doctor.probe_host()) when they load, on detect's built-in
    copy of the targets' detection facts otherwise (an environment without PyYAML)."""
    cfg = _configs()
    if cfg is not None:
        from recipe.plan import resolve_target as plan_resolve
        from recipe.steps.doctor import probe_host
        try:
            chosen, reason = plan_resolve(name, cfg, probe_host(root))
        except Exception as exc:  # ConfigError: unknown target, with the known ones
            raise errors.BadInput("--target: %s" % "; ".join(getattr(exc, "errors", None) or [str(exc)]))
    else:
        chosen, reason = detect.resolve(name, detect.BUILTIN_ALIASES, detect.BUILTIN_FACTS,
                                        detect.read_board(root))
    if chosen == name:
        return name, "target {}".format(name)
    return chosen, "target {} -> {}: {}".format(name, chosen, " ".join(reason.split()))


def _target_facts(name):
    """{'cuda': '12.6'|None, 'python': '3.10'|'host', 'arch': ...} for a concrete target."""
    cfg = _configs()
    if cfg is not None:
        try:
            t = cfg.target(name)
        except Exception as exc:
            raise PullError(str(exc))
        cuda = (t.get("cuda") or {}).get("version") if t.get("cuda") else None
        return {"cuda": cuda, "python": t.get("python"), "arch": t.get("arch")}
    if name in FALLBACK_TARGETS:
        return dict(FALLBACK_TARGETS[name])
    return {"cuda": None, "python": "host", "arch": None}


# ---------------------------------------------------------------------------------------
# index reading


def _is_url(s):
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", s or ""))


def _scheme(url):
    """'http', 'https', 'file', 'ftp', ... for a URL; '' for a local path."""
    return urlsplit(url).scheme.lower() if _is_url(url) or url.startswith("file:") else ""


def is_remote(index):
    return _scheme(index) in WEB_SCHEMES


def _to_path(url):
    return url2pathname(unquote(urlsplit(url).path))


def check_link(url, index, what):
    """PullError unless `url` is a place an index like `index` may send us: a remote index
    only to http(s) URLs, a local one to http(s) or local files. Nothing is opened first, so
    the message says nothing about the local files there are."""
    scheme = _scheme(url)
    if scheme in WEB_SCHEMES or (scheme in ("", "file") and not is_remote(index)):
        return url
    raise PullError("refused: the index {} points {} at {}: {} index may only point at {}".format(
        index, what, url.split("?")[0][:200], "a remote" if is_remote(index) else "a local",
        "http(s) URLs" if is_remote(index) else "http(s) URLs or local files"))


def check_wheel_filename(name, index):
    """PullError unless `name` is a bare wheel file name (no folders, no '..', parses as a
    wheel): it becomes a path in the download folder."""
    bad = (not isinstance(name, str) or not name or name != os.path.basename(name) or
           "\\" in name or "\0" in name or name.startswith(".") or
           parse_wheel_filename(name) is None)
    if bad:
        raise PullError("refused: the index {} lists the file name {!r}: a wheel's file name "
                        "must be a bare NAME-VERSION-PY-ABI-PLATFORM.whl (no folders, no '..')"
                        .format(index, name if isinstance(name, str) else name))
    return name


class _OnlyWebRedirects(urlrequest.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib would follow one to ftp:)."""

    def http_error_302(self, req, fp, code, msg, headers):
        location = headers.get("location") or headers.get("uri")
        target = urljoin(req.full_url, location or "")
        if location and _scheme(target) not in WEB_SCHEMES:
            raise PullError("refused: {} redirects to {}: only redirects to http(s) URLs are "
                            "followed".format(req.full_url, target.split("?")[0][:200]))
        return urlrequest.HTTPRedirectHandler.http_error_302(self, req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _web_opener():
    """An opener for http(s) only: no file:, ftp: or data: handlers at all."""
    opener = urlrequest.OpenerDirector()
    for handler in (urlrequest.ProxyHandler(), urlrequest.HTTPHandler(), urlrequest.HTTPSHandler(),
                    urlrequest.HTTPDefaultErrorHandler(), _OnlyWebRedirects(),
                    urlrequest.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def _open_web(url, timeout, accept=None):
    headers = {"User-Agent": USER_AGENT}
    if accept:
        headers["Accept"] = accept
    return _web_opener().open(Request(url, headers=headers), timeout=timeout)


def _amount(got, total):
    return "{:,} of {} bytes".format(got, "{:,}".format(total) if total is not None else "?")


def copy_body(src, sink, url, total, timeout, deadline, started=None, progress=None, limit=None):
    """Read `src` to its end into sink(chunk); return the number of bytes. Each read returns
    what has arrived (read1), so the count is exact whenever it stops: no data for `timeout`
    s is a stall, more than `deadline` s since `started` (time.monotonic(); default: now) is
    cut off (checked after each read, so at most `timeout` s late), more than `limit` bytes
    is refused."""
    started = time.monotonic() if started is None else started
    read = getattr(src, "read1", src.read)
    got = 0
    while True:
        if time.monotonic() - started > deadline:
            raise PullError("download of {} did not finish within --deadline {:g} s: {} arrived "
                            "({:.0f} bytes/s); the server is too slow or trickles: retry later, "
                            "or raise --deadline".format(url, deadline, _amount(got, total),
                                                         got / max(time.monotonic() - started, 1e-6)))
        try:
            chunk = read(1 << 20)
        except socket.timeout:
            raise PullError("download of {} stalled: no data for {:g} s (--timeout) after {}; "
                            "retry; if it keeps failing the server or the network is at fault"
                            .format(url, timeout, _amount(got, total)))
        except (OSError, ValueError) as exc:  # a reset, IncompleteRead, a chunked-encoding error
            raise PullError("download of {} broke off after {} ({}): retry; if it keeps failing "
                            "the server or the network is at fault".format(
                                url, _amount(got, total), exc.__class__.__name__))
        except Exception as exc:  # http.client.HTTPException: not an OSError
            raise PullError("download of {} broke off after {} ({}): retry".format(
                url, _amount(got, total), exc.__class__.__name__))
        if not chunk:
            return got
        got += len(chunk)
        if limit is not None and got > limit:
            raise PullError("{} is larger than {:,} bytes: {}".format(
                url, limit, "not the file the index describes" if total is not None
                else "not an index"))
        sink(chunk)
        if progress:
            progress.update(got)


def fetch_text(url, timeout, deadline=DEFAULT_DEADLINE):
    """Text of a URL (http/https/file) or path; PullError names the URL on any failure."""
    if not _is_url(url) and not url.startswith("file:"):
        if os.path.isdir(url):  # a static site's folder: what a web server would serve
            url = os.path.join(url, "index.html")
        try:
            with open(url, "rb") as fh:
                return fh.read(MAX_INDEX_BYTES + 1)[:MAX_INDEX_BYTES].decode("utf-8")
        except OSError as exc:
            raise PullError("cannot read the index {}: {}".format(url, exc.strerror or exc))
        except UnicodeDecodeError:
            raise PullError("{} is not UTF-8 text: not an index".format(url))
    if _scheme(url) == "file":
        return fetch_text(_to_path(url), timeout, deadline)
    if _scheme(url) not in WEB_SCHEMES:
        raise PullError("cannot read {}: an index is an http(s) URL or a local path".format(url))
    parts = []
    try:
        with _open_web(url, timeout, "application/json, text/html") as resp:
            copy_body(resp, parts.append, url, None, timeout, deadline, limit=MAX_INDEX_BYTES)
            charset = resp.headers.get_content_charset() or "utf-8"
    except HTTPError as exc:
        raise PullError("the index server answered HTTP {} {} for {}: check --index".format(
            exc.code, exc.reason, url))
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PullError("cannot reach {} ({}): is the server up and the URL right? "
                        "Check the network or pass another --index".format(url, reason))
    try:
        return b"".join(parts).decode(charset)
    except (UnicodeDecodeError, LookupError):
        raise PullError("{} is not {} text: not an index".format(url, charset))


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


# ---------------------------------------------------------------------------------------
# selection


def _version_key(v):
    try:
        from packaging.version import Version
    except ImportError:  # pip always vendors it
        from pip._vendor.packaging.version import Version
    try:
        return (1, Version(v or "0"))
    except Exception:
        return (0, v or "")


def supported_tags():
    try:
        from packaging.tags import sys_tags
    except ImportError:
        from pip._vendor.packaging.tags import sys_tags
    return set(str(t) for t in sys_tags())


def wheel_tags(filename):
    info = parse_wheel_filename(filename)
    if not info:
        return set()
    return set("{}-{}-{}".format(py, abi, plat) for py in info["py"].split(".")
               for abi in info["abi"].split(".") for plat in info["plat"].split("."))


def select(entries, target, release, python, cuda, cuda_explicit, timeout=DEFAULT_TIMEOUT,
           check_platform=False, deadline=DEFAULT_DEADLINE):
    """The best matching entry, or PullError listing what the index has."""

    def describe(e):
        return "{} (target {}, release {}, python {}, cuda {})".format(
            e["filename"], e.get("target") or "?", e.get("release"), e.get("python"),
            e.get("cuda") or "none")

    def target_ok(e):
        if e.get("target"):
            return e["target"] == target
        toks = e.get("_label_tokens") or []
        want = re.split(r"[._-]", target.lower())
        n = len(want)
        return any(toks[i:i + n] == want for i in range(len(toks)))

    cands = []
    for e in entries:
        if e.get("_from_simple") and e.get("target") is None and "_label_tokens" not in e:
            if e.get("release") != release or (python and e.get("python") != python):
                continue  # do not fetch manifests of wheels that cannot match anyway
            _fill_from_manifest(e, timeout, deadline)
        if not target_ok(e) or str(e.get("release")) != release:
            continue
        if python and e.get("python") and e["python"] != python:
            continue
        if cuda_explicit or cuda is not None:
            if (e.get("cuda") or None) != cuda:
                continue
        cands.append(e)
    if check_platform and cands:
        tags = supported_tags()
        ok = [e for e in cands if wheel_tags(e["filename"]) & tags]
        if not ok:
            raise PullError(
                "{} matches but is not installable here ({} {}, Python {}): it is for {}. "
                "Use --download-only DIR to fetch it for another machine".format(
                    cands[0]["filename"], platform.system(), platform.machine(),
                    platform.python_version(), cands[0].get("platform_tag")))
        cands = ok
    if not cands:
        have = "\n".join("  " + describe(e) for e in entries) or "  (the index is empty)"
        raise PullError(
            "no wheel in the index for target {}, release {}, python {}, cuda {}.\n"
            "The index has:\n{}\n"
            "Build one (`python build.py --target {}`), pick another --release/--python/--cuda, "
            "or point --index elsewhere".format(target, release, python or "any",
                                                cuda or "none", have, target))
    cands.sort(key=lambda e: (_version_key(e.get("version")),
                              _version_key(e.get("recipe_version")), e["filename"]))
    return cands[-1]


# ---------------------------------------------------------------------------------------
# download


class _Progress(object):
    def __init__(self, name, total, stream=sys.stderr):
        self.name, self.total, self.stream = name, total, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.start = self.last = time.time()
        self.last_pct = -10
        self.done = 0

    def update(self, done, final=False):
        self.done = done
        now = time.time()
        pct = int(100 * done / self.total) if self.total else None
        if not final:
            if self.tty and now - self.last < 0.2:
                return
            if not self.tty and (pct is None or pct < self.last_pct + 10) and \
                    now - self.last < 10:
                return
        self.last = now
        if pct is not None:
            self.last_pct = pct
        rate = done / max(now - self.start, 1e-6) / 1e6
        size = "{:.1f}/{:.1f} MB ({}%)".format(done / 1e6, self.total / 1e6, pct) \
            if self.total else "{:.1f} MB".format(done / 1e6)
        line = "  {}: {} {:.1f} MB/s".format(self.name, size, rate)
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


PART_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.part$")


def _part_file(dest_dir, filename):
    """(fd, path) of the hidden file a download is written to, named after this process
    (`.NAME.PID.XXXX.part`). Any exception removes it (SIGTERM raises one, see
    recipe.errors); what a SIGKILLed pull left is removed by the next one (its pid is gone)."""
    for name in os.listdir(dest_dir):
        m = PART_RE.match(name)
        if m and not _alive(int(m.group("pid"))):
            try:
                os.unlink(os.path.join(dest_dir, name))
            except OSError:
                pass
    return tempfile.mkstemp(dir=dest_dir, prefix=".%s.%d." % (filename, os.getpid()),
                            suffix=".part")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process
        return True
    return True


def download(url, dest_dir, filename, sha256, size=None, timeout=DEFAULT_TIMEOUT, progress=True,
             deadline=DEFAULT_DEADLINE, allow_local=False):
    """Download url to dest_dir/filename, verified against sha256 (and size when known);
    returns the path. On any failure, Ctrl-C or SIGTERM no file (partial or complete) is
    left and PullError says why, with the bytes that arrived.

    filename must be a bare wheel name; url an http(s) URL, or with allow_local (an index on
    this machine) a local path or file: URL. `timeout`: seconds without data; `deadline`:
    seconds for the whole download."""
    check_wheel_filename(filename, url)
    if not isinstance(sha256, str) or not re.match(r"^[0-9a-fA-F]{64}$", sha256):
        raise PullError("the index gives no valid sha256 for {}: refusing an unverifiable "
                        "download".format(url))
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise PullError("the index gives the size of {} as {!r}, not a whole number of bytes"
                        .format(url, size))
    scheme = _scheme(url)
    if scheme not in WEB_SCHEMES and not (allow_local and scheme in ("", "file")):
        raise PullError("refused: {} is not an http(s) URL{}".format(
            url.split("?")[0][:200], " or a local file" if allow_local else ""))
    try:
        os.makedirs(dest_dir, exist_ok=True)
    except OSError as exc:
        raise PullError("cannot make the download folder {}: {}".format(dest_dir, exc.strerror or exc))
    final = os.path.join(dest_dir, filename)
    started = time.monotonic()
    fd, tmp = _part_file(dest_dir, filename)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb", closefd=False) as out:
            if scheme in WEB_SCHEMES:
                try:
                    src = _open_web(url, min(timeout, deadline))
                except HTTPError as exc:
                    raise PullError("HTTP {} {} for {}: the index points at a file the server "
                                    "does not have (stale index?)".format(exc.code, exc.reason,
                                                                          url))
                except (URLError, OSError) as exc:
                    raise PullError("cannot download {} ({}): is the server up? Retry, or "
                                    "pass another --index".format(
                                        url, getattr(exc, "reason", exc)))
                length = src.headers.get("Content-Length")
                length = int(length) if length and length.isdigit() else None
            else:
                path = _to_path(url) if scheme == "file" else url
                try:
                    src = open(path, "rb")
                except OSError as exc:
                    raise PullError("cannot read {}: {}".format(path, exc.strerror or exc))
                length = os.fstat(src.fileno()).st_size
            if size is not None and length is not None and length != size:
                src.close()
                raise PullError("{} is {:,} bytes, the index says {:,}: not the file the index "
                                "describes (a stale index?); nothing was downloaded".format(
                                    url, length, size))
            total = size if size is not None else length
            bar = _Progress(filename, total) if progress else None

            def sink(chunk):
                out.write(chunk)
                h.update(chunk)

            got = 0
            try:
                with src:
                    got = copy_body(src, sink, url, total, timeout, deadline, started, bar,
                                    limit=total)
            finally:
                if bar:
                    bar.update(bar.done, final=True)
            out.flush()
        if total is not None and got != total:
            raise PullError("truncated download of {}: got {}; retry (nothing was installed)"
                            .format(url, _amount(got, total)))
        digest = h.hexdigest()
        if digest != sha256.lower():
            raise PullError("sha256 mismatch for {}:\n  expected {} (from the index)\n  got      "
                            "{}\nThe file is not the one the index describes (corrupted, "
                            "replaced, or a stale index). Nothing was installed; re-publish "
                            "the index or report it to whoever hosts it".format(
                                url, sha256.lower(), digest))
        os.replace(tmp, final)
        return final
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------
# install


def installed_version(python, dist=PROJECT):
    code = ("import sys\ntry:\n from importlib.metadata import version\n"
            " print(version(sys.argv[1]))\nexcept Exception:\n print('')\n")
    res = subprocess.run([python, "-c", code, dist], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, universal_newlines=True)
    return res.stdout.strip() or None


def install(wheel_path, version, no_deps=False, pip_args=(), python=None):
    python = python or sys.executable
    cmd = [python, "-m", "pip", "install"]
    if installed_version(python) == version:
        # same version already there (maybe another build of it): replace torch only,
        # its dependencies were installed with it
        cmd += ["--force-reinstall", "--no-deps"]
    elif no_deps:
        cmd.append("--no-deps")
    cmd += list(pip_args) + [wheel_path]
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)


# ---------------------------------------------------------------------------------------
# pull --addon: the add-on for the torch this interpreter imports (recipe/addon_index.py)

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


# ---------------------------------------------------------------------------------------
# CLI


def positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds above 0 (got %r)" % text)
    return value


def default_release():
    """The newest release line the recipe carries (configs/releases/X.Y.Z.yaml; no PyYAML
    needed to read a file name)."""
    names = [f[:-len(".yaml")] for f in os.listdir(RELEASES_DIR)
             if re.match(r"^\d+\.\d+\.\d+\.yaml$", f)]
    return max(names, key=lambda n: tuple(int(x) for x in n.split(".")))


def build_parser():
    p = argparse.ArgumentParser(
        prog="build.py pull",
        description="Download a prebuilt torch wheel from an index, verify its size and "
                    "sha256, then install it into this Python (or only download it).")
    p.add_argument("--target", default="jetson-agx",
                   help="target or alias (default: %(default)s: Orin or Xavier, detected)")
    p.add_argument("--release", default=default_release(), help="default: %(default)s")
    p.add_argument("--index", default=DEFAULT_INDEX,
                   help="index.json (path or URL) or a PEP 503 simple index URL "
                        "(default: wheels/index.json of this repository)")
    p.add_argument("--download-only", metavar="DIR", default=None,
                   help="only download (verified) into DIR; install nothing")
    p.add_argument("--python", default=None, metavar="X.Y",
                   help="Python of the wheel (default: this interpreter's when installing, "
                        "the target's when downloading)")
    p.add_argument("--cuda", default=None, metavar="X.Y|none",
                   help="CUDA of the wheel (default: the target's; none for CPU-only)")
    p.add_argument("--no-deps", action="store_true",
                   help="do not let pip install torch's dependencies")
    p.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for pip install (repeatable)")
    p.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT,
                   help="seconds without data after which a server counts as stalled "
                        "(default: %(default)g)")
    p.add_argument("--deadline", type=positive_seconds, default=DEFAULT_DEADLINE,
                   help="seconds one whole download (or index page) may take; a server that "
                        "trickles bytes is cut off (default: %(default)g)")
    p.add_argument("--dry-run", action="store_true",
                   help="show the chosen wheel and URL; download nothing")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--addon", action="store_true",
                   help="install the add-on torch-grouped-conv for the torch installed here "
                        "(version and arch) instead of a torch wheel (recipe/addon_index.py)")
    return p


def run(args):
    errors.check_folder_option("--download-only", args.download_only)
    if args.addon:
        return pull_addon(args)
    target, why = resolve_target(args.target)
    facts = _target_facts(target)
    print("pull: {}".format(why))
    if args.python:
        if not re.match(r"^\d+\.\d+$", args.python):
            raise errors.OptionError("--python", args.python, "not a Python version",
                                     "give X.Y, e.g. 3.10")
        python = args.python
    elif args.download_only and facts.get("python") not in (None, "host"):
        python = facts["python"]
    else:
        python = "{}.{}".format(*sys.version_info[:2])
    cuda_explicit = args.cuda is not None
    if cuda_explicit:
        cuda = None if args.cuda.lower() in ("none", "cpu", "") else args.cuda
        if cuda and not re.match(r"^\d+\.\d+$", cuda):
            raise errors.OptionError("--cuda", args.cuda, "not a CUDA version",
                                     "give X.Y (e.g. 12.6) or none")
    else:
        cuda = facts.get("cuda")
    entries = load_index(args.index, timeout=args.timeout, deadline=args.deadline)
    entry = select(entries, target, args.release, python, cuda, cuda_explicit,
                   timeout=args.timeout, check_platform=not args.download_only,
                   deadline=args.deadline)
    print("pull: {} <- {}".format(entry["filename"], entry["url"]))
    if args.dry_run:
        return 0
    fetch = dict(timeout=args.timeout, deadline=args.deadline, progress=not args.quiet,
                 allow_local=not is_remote(args.index))
    if args.download_only:
        path = download(entry["url"], args.download_only, entry["filename"], entry["sha256"],
                        entry.get("size"), **fetch)
        print("pull: verified sha256 {}; saved {}".format(entry["sha256"], path))
        return 0
    tmpdir = tempfile.mkdtemp(prefix="torch-pull-")
    try:
        path = download(entry["url"], tmpdir, entry["filename"], entry["sha256"],
                        entry.get("size"), **fetch)
        print("pull: verified sha256 {}; installing into {}".format(entry["sha256"],
                                                                    sys.prefix))
        rc = install(path, entry.get("version"), no_deps=args.no_deps,
                     pip_args=args.pip_arg)
        if rc != 0:
            raise PullError("pip install of the verified wheel failed (exit {}); see pip's "
                            "message above".format(rc))
    finally:
        for f in os.listdir(tmpdir):
            os.unlink(os.path.join(tmpdir, f))
        os.rmdir(tmpdir)
    print("pull: installed {}".format(entry["filename"]))
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    errors.raise_on_sigterm()  # SIGTERM cleans up like Ctrl-C: no file is left
    try:
        return run(args)  # PullError (1), OptionError (2): recipe/cli.py reports them
    except KeyboardInterrupt as exc:
        print("error: interrupted ({}); nothing was installed and no file is left".format(
            "SIGTERM" if isinstance(exc, errors.Terminated) else "Ctrl-C"), file=sys.stderr)
        return errors.interrupt_exit_code(exc)

