"""Step 5, build: the wheel, with the plan's environment, a full log and a progress bar.

The command comes from the release config (`python setup.py bdist_wheel` for 2.6.0; from
2.14 on `python -m build --wheel --no-isolation`), run in the source tree with the plan's
environment on top of the caller's (LDFLAGS are appended to, not replaced). Everything the
build prints goes to <work>/logs/build.log; the console shows a progress bar driven by
ninja's `[n/N]` lines and, on failure, the last lines and the log's path. A re-run after a
failure continues incrementally: setup.py reuses the CMake/ninja build directory.

compiler_launcher() picks ccache/sccache: it is the one function to swap for
recipe.compile_cache (issue 5) once that module exists.
"""
from __future__ import annotations

import collections
import glob
import os
import re
import subprocess
import sys
import time

from recipe import proc
from recipe.steps import StepError

NAME = "build"
TITLE = "build the wheel with the plan's environment (log file, ninja progress bar)"
DEPENDS = ("sources", "acl", "patch")

PROGRESS_RE = re.compile(r"^\s*\[(\d+)/(\d+)\]")
TAIL_LINES = 40


# --------------------------------------------------------------------------- compiler cache

def compiler_launcher(choice, url=None, cuda=False):
    """(cache kind or None, env) for --cache auto|none|ccache|sccache [--cache-url URL].

    auto: sccache for a Redis URL, else ccache, else sccache, whichever is installed.
    The environment itself comes from recipe.compile_cache (issue 5); it is pure (creates
    nothing), so the dry run can show it.
    """
    kind = choice or "none"
    if kind == "auto":
        redis = bool(url) and url.lower().startswith(("redis://", "rediss://", "unix://"))
        order = ["sccache", "ccache"] if redis else ["ccache", "sccache"]
        kind = next((k for k in order if proc.which(k)), "none")
    try:
        from recipe import compile_cache
    except ImportError:  # pragma: no cover - the module ships with the recipe
        compile_cache = None
    if compile_cache is not None:
        try:
            env = compile_cache.cache_env(kind, url)
        except compile_cache.CacheError as e:
            from recipe.plan import PlanError
            raise PlanError([str(e)], ["--cache none, or fix --cache-url"])
    elif kind == "none":
        env = {}
    else:
        env = {"CMAKE_C_COMPILER_LAUNCHER": kind, "CMAKE_CXX_COMPILER_LAUNCHER": kind,
               "CMAKE_CUDA_COMPILER_LAUNCHER": kind}
    if not cuda:
        env.pop("CMAKE_CUDA_COMPILER_LAUNCHER", None)
    return (None if kind == "none" else kind), env


def cache_session(plan):
    """recipe.compile_cache.CacheSession for the plan's cache (None without one)."""
    if not plan.launcher:
        return None
    from recipe import compile_cache
    return compile_cache.CacheSession(plan.launcher, plan.options.get("cache_url"))


# --------------------------------------------------------------------------- running with a log

class Progress(object):
    """A one-line bar on a terminal; on a pipe, a line every 5% (CI logs stay short)."""

    def __init__(self, stream=None, label="build"):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.label = label
        self.last_pct = -1
        self.updates = []

    def update(self, done, total):
        self.updates.append((done, total))
        pct = int(100 * done / total) if total else 0
        if self.tty:
            width = 30
            fill = int(width * done / total) if total else 0
            self.stream.write("\r  %s [%s%s] %d/%d %3d%%" % (self.label, "#" * fill, "." * (width - fill),
                                                            done, total, pct))
            self.stream.flush()
        elif pct // 5 != self.last_pct // 5:
            self.stream.write("  %s %d/%d (%d%%)\n" % (self.label, done, total, pct))
            self.stream.flush()
        self.last_pct = pct

    def close(self):
        if self.tty and self.updates:
            self.stream.write("\n")
            self.stream.flush()


def run_logged(cmd, cwd, env, log_path, log=print, what="build", progress=None):
    """Run `cmd`, all output to `log_path`, progress from `[n/N]`; StepError with the tail on failure."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    progress = progress or Progress(label=what)
    tail = collections.deque(maxlen=TAIL_LINES)
    start = time.time()
    log("$ %s   (log: %s)" % (proc.shell_join(cmd), log_path))
    with open(log_path, "a", encoding="utf-8", errors="replace") as out:
        out.write("\n==== %s  %s\n$ (cd %s && %s)\n" % (what, time.strftime("%Y-%m-%d %H:%M:%S"),
                                                      cwd, proc.shell_join(cmd)))
        out.flush()
        try:
            child = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, universal_newlines=True,
                                     errors="replace", bufsize=1)
        except OSError as e:
            raise StepError("%s: cannot run %s: %s" % (what, cmd[0], e), log_path)
        last = None
        for line in child.stdout:
            out.write(line)
            tail.append(line.rstrip("\n"))
            m = PROGRESS_RE.match(line)
            if m:
                last = (int(m.group(1)), int(m.group(2)))
                progress.update(*last)
        code = child.wait()
        progress.close()
        out.write("==== exit %d after %.0f s\n" % (code, time.time() - start))
    if code != 0:
        raise StepError("%s failed (exit %d) after %.0f s%s. Last lines:\n%s\nfull log: %s" % (
            what, code, time.time() - start, " at step %d/%d" % last if last else "",
            "\n".join("  | " + l for l in tail), log_path), log_path)
    return {"log": log_path, "seconds": round(time.time() - start, 1), "progress": last}


def merged_env(plan_env, base=None):
    """The caller's environment with the plan's on top; LDFLAGS/CFLAGS are appended to."""
    env = dict(os.environ if base is None else base)
    for k, v in plan_env.items():
        if k in ("LDFLAGS", "CFLAGS", "CXXFLAGS") and env.get(k):
            env[k] = env[k] + " " + v
        else:
            env[k] = v
    return env


# --------------------------------------------------------------------------- step interface

def command(plan):
    return [c.replace("{python}", plan.python_exe) for c in plan.release["build"]["command"]]


def describe(plan):
    from recipe.plan import stable_env
    cmd = command(plan)
    return {"skip": None,
            "commands": ["cd %s && %s > %s/build.log" % (plan.source_dir, proc.shell_join(cmd), plan.log_dir)],
            "inputs": {"command": plan.release["build"]["command"], "python": plan.python_version,
                       "env": stable_env(plan.env)},
            "outputs": []}


def run(ctx):
    plan = ctx.plan
    cmd = command(plan)
    dist = os.path.join(plan.source_dir, plan.release["build"]["dist_dir"])
    start = time.time()
    session = cache_session(plan)
    if session:
        session.begin()
    try:
        info = run_logged(cmd, cwd=plan.source_dir, env=merged_env(plan.env),
                          log_path=os.path.join(plan.log_dir, "build.log"), log=ctx.log, what="build")
    finally:
        stats = None
        if session:
            try:
                stats = session.end()
            except Exception as e:  # statistics are a report, never a reason to fail a build
                ctx.warn("compile cache statistics unavailable: %s" % e)
    if stats is not None:
        ctx.log(stats.summary())
        info["cache"] = stats.as_dict()
    wheels = [w for w in glob.glob(os.path.join(dist, "*.whl")) if os.path.getmtime(w) >= start - 1]
    if not wheels:
        raise StepError("the build succeeded but wrote no new wheel to %s; see %s" % (dist, info["log"]),
                        info["log"])
    wheel = max(wheels, key=os.path.getmtime)
    ctx.log("built %s" % wheel)
    info.update({"wheel": wheel, "outputs": [wheel], "command": cmd})
    return info
