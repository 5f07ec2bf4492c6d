"""Runs a plan's steps in order, skipping the ones whose stamps say they are done.

  default      every step whose stamp is missing or stale runs; the others are skipped
  --from STEP  STEP and every step after it run; earlier ones only if stale
  --only STEP  just STEP (its inputs come from the plan, results of earlier steps from
               their stamps): `--only patch --source DIR` patches a tree you already have
  --clean      forget the stamps and logs and remove the source tree's CMake build/ and
               dist/ first (the clone and the ACL cache are kept: both are verified by commit)

A step that fails loses its stamp, so the next run does it again; steps after it whose
dependencies run again are stale too (their stamps remember which run they were made from).
"""
from __future__ import annotations

import os
import shutil
import time

from recipe.plan import upstream_tokens
from recipe.stamps import Stamps
from recipe.steps import StepError, module


class Context(object):
    """What a step's run() sees: the plan, logging, and the results of earlier steps."""

    def __init__(self, plan, stamps, log):
        self.plan = plan
        self.stamps = stamps
        self._log = log
        self.results = {}
        self.warnings = []

    def log(self, message):
        self._log(message)

    def warn(self, message):
        self.warnings.append(message)
        self._log("warning: " + message)

    def result(self, step):
        if step in self.results:
            return self.results[step]
        stamp = self.stamps.read(step)
        return (stamp or {}).get("results") or {}


def clean(plan, log=print):
    for d in (os.path.join(plan.work_dir, "stamps"), plan.log_dir,
              os.path.join(plan.source_dir, "build"),
              os.path.join(plan.source_dir, plan.release["build"]["dist_dir"])):
        if os.path.isdir(d):
            log("clean: removing %s" % d)
            shutil.rmtree(d)


def run_plan(plan, from_step=None, only=None, do_clean=False, log=None):
    """Run the plan; return (ok, events) with events = [(step, status, detail)]."""
    log = log or (lambda m: print(m, flush=True))
    if do_clean:
        clean(plan, log)
    stamps = Stamps(plan.work_dir)
    ctx = Context(plan, stamps, log)
    names = [s["name"] for s in plan.steps]
    first_forced = names.index(from_step) if from_step else None
    events = []
    total = len(names)
    for i, s in enumerate(plan.steps):
        name = s["name"]
        if only and name != only:
            continue
        head = "==> [%d/%d] %s" % (i + 1, total, name)
        if s["skip"]:
            log("%s: skipped (%s)" % (head, s["skip"]))
            events.append((name, "skip", s["skip"]))
            continue
        mod = module(name)
        upstream = upstream_tokens(plan.steps, mod, stamps)
        forced = bool(only) or (first_forced is not None and i >= first_forced)
        always = getattr(mod, "ALWAYS_RUN", False)
        if not forced and not always:
            why = stamps.why_stale(name, s["key"], s["inputs"], upstream)
            if why is None:
                log("%s: done (stamp matches), skipping" % head)
                events.append((name, "done", ""))
                ctx.results[name] = ctx.result(name)
                continue
        else:
            why = "--only" if only else ("--from %s" % from_step if forced else "runs every time")
        log("%s: %s  [%s]" % (head, s["title"], why))
        start = time.time()
        try:
            if only:
                for first in getattr(mod, "run_first_with_only", lambda plan: ())(plan):
                    ctx.results[first] = module(first).run(ctx) or {}
            results = mod.run(ctx) or {}
        except StepError as e:
            stamps.remove(name)
            log("\nFAILED: %s\n%s" % (name, e))
            log("\nAfter fixing it, run the same command again: finished steps are skipped "
                "(or --from %s to redo from here)." % name)
            events.append((name, "failed", str(e)))
            return False, events
        except KeyboardInterrupt:
            stamps.remove(name)
            log("\ninterrupted in %s; run again to continue" % name)
            events.append((name, "failed", "interrupted"))
            return False, events
        ctx.results[name] = results
        if not always:
            outputs = list(s["outputs"]) + list(results.get("outputs") or [])
            stamps.write(name, s["key"], s["inputs"], results, outputs, upstream)
        log("%s: ok (%.0f s)" % (head, time.time() - start))
        events.append((name, "ran", ""))
    if ctx.warnings:
        log("\nwarnings:\n" + "\n".join("  - " + w for w in ctx.warnings))
    return True, events
