"""The network side of pull: which links an index may send us to, fetching a page, and the
verified download (a temporary file beside its destination, size and sha256 checked before it
is renamed into place; a deadline for the whole; nothing left behind on any failure)."""
from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import tempfile
import time
from urllib import request as urlrequest
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import Request, url2pathname

from recipe.wheelindex import parse_wheel_filename
from recipe.pull.base import (DEFAULT_DEADLINE, DEFAULT_TIMEOUT, MAX_INDEX_BYTES, PullError,
                              USER_AGENT, WEB_SCHEMES)

# ---------------------------------------------------------------------------------------
# links and pages


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
