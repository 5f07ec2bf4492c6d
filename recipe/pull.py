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
import html.parser
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from typing import List, Optional
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import Request, url2pathname, urlopen

from recipe import REPO_ROOT, RECIPE_VERSION, detect
from recipe.publish import (INDEX_SCHEMA, MANIFEST_SUFFIX, PublishError, manifest_fields,
                            normalize_name, parse_wheel_filename, python_from_tag,
                            validate_index)

DEFAULT_INDEX = os.path.join(REPO_ROOT, "wheels", "index.json")
DEFAULT_RELEASE = "2.6.0"
PROJECT = "torch"
USER_AGENT = "torch-arm-recipe-pull/" + RECIPE_VERSION

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


class PullError(Exception):
    """A failure with the message for the user (what failed, where, what to do)."""


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
            raise PullError(str(exc))
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


def _to_path(url):
    return url2pathname(unquote(urlsplit(url).path))


def fetch_text(url, timeout):
    """Text of a URL (http/https/file) or path; PullError names the URL on any failure."""
    if not _is_url(url):
        if os.path.isdir(url):  # a static site's folder: what a web server would serve
            url = os.path.join(url, "index.html")
        try:
            with open(url, "rb") as fh:
                return fh.read().decode("utf-8")
        except OSError as exc:
            raise PullError("cannot read the index {}: {}".format(url, exc.strerror or exc))
    if url.startswith("file:"):
        return fetch_text(_to_path(url), timeout)
    try:
        with urlopen(Request(url, headers={"User-Agent": USER_AGENT,
                                           "Accept": "application/json, text/html"}),
                     timeout=timeout) as resp:
            return resp.read().decode(resp.headers.get_content_charset() or "utf-8")
    except HTTPError as exc:
        raise PullError("the index server answered HTTP {} {} for {}: check --index".format(
            exc.code, exc.reason, url))
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PullError("cannot reach {} ({}): is the server up and the URL right? "
                        "Check the network or pass another --index".format(url, reason))


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


def _entries_from_simple(text, page_url, timeout, log):
    entries = []
    for url, sha, attrs, label in parse_simple_page(text, page_url):
        filename = unquote(url.rsplit("/", 1)[-1])
        info = parse_wheel_filename(filename)
        if not info or normalize_name(info["name"]) != PROJECT:
            continue
        entry = {"filename": filename, "url": url, "sha256": sha, "size": None,
                 "version": info["version"], "python": python_from_tag(info["py"]),
                 "python_tag": info["py"], "platform_tag": info["plat"],
                 "requires_python": attrs.get("data-requires-python"), "target": None,
                 "release": info["version"].partition("+")[0], "cuda": None,
                 "manifest": url + MANIFEST_SUFFIX, "_from_simple": True}
        entries.append(entry)
    return entries


def _fill_from_manifest(entry, timeout):
    """Simple-index entries carry no target: read it from the manifest beside the wheel
    (publish puts it there); fall back to the local version label."""
    try:
        data = json.loads(fetch_text(entry["manifest"], timeout))
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


def load_index(index, timeout=60, log=print):
    """[entry, ...] from index.json (path or URL) or a PEP 503 simple index URL."""
    if not _is_url(index) and os.path.isdir(index):
        for cand in ("index.json", os.path.join("simple", PROJECT, "index.html")):
            if os.path.exists(os.path.join(index, cand)):
                index = os.path.join(index, cand)
                break
        else:
            raise PullError("{}: no index.json or simple/{}/index.html in it".format(
                index, PROJECT))
    text = fetch_text(index, timeout)
    base = index if _is_url(index) else "file://" + os.path.abspath(index)
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
            validate_index(data, index)
        except ValueError as exc:
            raise PullError("{} is not valid JSON: {}".format(index, exc))
        except PublishError as exc:
            raise PullError(str(exc))
        entries = []
        for w in data["wheels"]:
            e = dict(w)
            e["url"] = urljoin(base, w["url"])
            if w.get("manifest"):
                e["manifest"] = urljoin(base, w["manifest"])
            entries.append(e)
        return entries
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
        page = proj[0] if proj[0].endswith("/") else proj[0] + "/"
        text = fetch_text(page, timeout)
        base = page
    return _entries_from_simple(text, base, timeout, log)


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


def select(entries, target, release, python, cuda, cuda_explicit, timeout=60,
           check_platform=False):
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
            _fill_from_manifest(e, timeout)
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

    def update(self, done, final=False):
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


def download(url, dest_dir, filename, sha256, size=None, timeout=60, progress=True):
    """Download url to dest_dir/filename, verified; returns the path. On any failure no
    file (partial or complete) is left and PullError says why."""
    os.makedirs(dest_dir, exist_ok=True)
    final = os.path.join(dest_dir, filename)
    if not sha256 or not re.match(r"^[0-9a-f]{64}$", sha256):
        raise PullError("the index gives no valid sha256 for {}: refusing an unverifiable "
                        "download".format(url))
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix="." + filename + ".", suffix=".part")
    h = hashlib.sha256()
    got = 0
    try:
        with os.fdopen(fd, "wb") as out:
            if _is_url(url) and not url.startswith("file:"):
                try:
                    resp = urlopen(Request(url, headers={"User-Agent": USER_AGENT}),
                                   timeout=timeout)
                except HTTPError as exc:
                    raise PullError("HTTP {} {} for {}: the index points at a file the server "
                                    "does not have (stale index?)".format(exc.code, exc.reason,
                                                                          url))
                except (URLError, OSError) as exc:
                    raise PullError("cannot download {} ({}): is the server up? Retry, or "
                                    "pass another --index".format(
                                        url, getattr(exc, "reason", exc)))
                length = resp.headers.get("Content-Length")
                length = int(length) if length and length.isdigit() else None
                src = resp
            else:
                path = _to_path(url) if _is_url(url) else url
                try:
                    src = open(path, "rb")
                except OSError as exc:
                    raise PullError("cannot read {}: {}".format(path, exc.strerror or exc))
                length = os.fstat(src.fileno()).st_size
            total = size or length
            bar = _Progress(filename, total) if progress else None
            try:
                with src:
                    while True:
                        try:
                            chunk = src.read(1 << 20)
                        except Exception as exc:  # IncompleteRead, reset, timeout
                            raise PullError(
                                "download of {} broke off after {:,} of {} bytes ({}): "
                                "retry; if it keeps failing the server or the network is at "
                                "fault".format(url, got, "{:,}".format(total) if total
                                               else "?", exc.__class__.__name__))
                        if not chunk:
                            break
                        out.write(chunk)
                        h.update(chunk)
                        got += len(chunk)
                        if size and got > size:
                            raise PullError("{} is larger than the {:,} bytes the index "
                                            "says: not the file the index describes".format(
                                                url, size))
                        if bar:
                            bar.update(got)
            finally:
                if bar:
                    bar.update(got, final=True)
        if (size and got != size) or (length is not None and got != length):
            raise PullError("truncated download of {}: got {:,} of {:,} bytes; retry (nothing "
                            "was installed)".format(url, got, size or length))
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
# CLI


def build_parser():
    p = argparse.ArgumentParser(
        prog="build.py pull",
        description="Download a prebuilt torch wheel from an index, verify its size and "
                    "sha256, then install it into this Python (or only download it).")
    p.add_argument("--target", default="jetson-agx",
                   help="target or alias (default: %(default)s: Orin or Xavier, detected)")
    p.add_argument("--release", default=DEFAULT_RELEASE, help="default: %(default)s")
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
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout, seconds")
    p.add_argument("--dry-run", action="store_true",
                   help="show the chosen wheel and URL; download nothing")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--addon", action="store_true",
                   help="install the add-on torch-grouped-conv for the torch installed here "
                        "(version and arch) instead of a torch wheel (recipe/addon_index.py)")
    return p


def run(args):
    if args.addon:
        from recipe.addon_index import pull_addon
        return pull_addon(args)
    target, why = resolve_target(args.target)
    facts = _target_facts(target)
    print("pull: {}".format(why))
    if args.python:
        if not re.match(r"^\d+\.\d+$", args.python):
            raise PullError("--python {!r}: give X.Y, e.g. 3.10".format(args.python))
        python = args.python
    elif args.download_only and facts.get("python") not in (None, "host"):
        python = facts["python"]
    else:
        python = "{}.{}".format(*sys.version_info[:2])
    cuda_explicit = args.cuda is not None
    if cuda_explicit:
        cuda = None if args.cuda.lower() in ("none", "cpu", "") else args.cuda
        if cuda and not re.match(r"^\d+\.\d+$", cuda):
            raise PullError("--cuda {!r}: give X.Y (e.g. 12.6) or none".format(args.cuda))
    else:
        cuda = facts.get("cuda")
    entries = load_index(args.index, timeout=args.timeout)
    entry = select(entries, target, args.release, python, cuda, cuda_explicit,
                   timeout=args.timeout, check_platform=not args.download_only)
    print("pull: {} <- {}".format(entry["filename"], entry["url"]))
    if args.dry_run:
        return 0
    if args.download_only:
        path = download(entry["url"], args.download_only, entry["filename"], entry["sha256"],
                        entry.get("size"), timeout=args.timeout, progress=not args.quiet)
        print("pull: verified sha256 {}; saved {}".format(entry["sha256"], path))
        return 0
    tmpdir = tempfile.mkdtemp(prefix="torch-pull-")
    try:
        path = download(entry["url"], tmpdir, entry["filename"], entry["sha256"],
                        entry.get("size"), timeout=args.timeout, progress=not args.quiet)
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
    try:
        return run(args)
    except PullError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing was installed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
