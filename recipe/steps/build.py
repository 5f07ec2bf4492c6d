"""Step 5, build: the wheel, with the plan's environment, a full log and a progress bar.

The command comes from the release config (`python setup.py bdist_wheel` for 2.6.0; from
2.14 on `python -m build --wheel --no-isolation`), run in the source tree with the plan's
environment on top of the caller's (LDFLAGS are appended to, not replaced). Everything the
build prints goes to <work>/logs/build.log; the console shows a progress bar driven by
ninja's `[n/N]` lines and, on failure, the last lines and the log's path. A re-run after a
failure continues incrementally: setup.py reuses the CMake/ninja build directory.

The compiler cache (ccache/sccache) is the plan's choice (recipe.compile_cache.launcher).
"""
from __future__ import annotations

import glob
import os
import time

from recipe import proc
from recipe.stamps import stable_env
from recipe.steps import StepError

NAME = "build"
TITLE = "build the wheel with the plan's environment (log file, ninja progress bar)"
DEPENDS = ("sources", "acl", "patch")



# --------------------------------------------------------------------------- compiler cache
def cache_session(plan):
    """recipe.compile_cache.CacheSession for the plan's cache (None without one)."""
    if not plan.launcher:
        return None
    from recipe import compile_cache
    return compile_cache.CacheSession(plan.launcher, plan.options.get("cache_url"))


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
        info = proc.run_logged(cmd, cwd=plan.source_dir, env=merged_env(plan.env),
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
