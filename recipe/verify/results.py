"""Options of a run (`VerifyOptions`), the result of one case (`CaseResult`) and of a run
(`Report`, also loaded back from the JSON a run in another interpreter wrote)."""
from __future__ import annotations

import json
import os

from recipe.verify.base import SCHEMA
from recipe.verify.output import fmt_err, format_report


class VerifyOptions(object):
    """Options of `run_verify`; the same names as the CLI flags."""

    def __init__(self, wheel=None, full=False, no_mkldnn=False, kernel_lib=None, cases=None,
                 profile_dir=None, timing=True, loop_baseline="auto", threads=None,
                 allow_loop=None, venv=None, python=None, offline=False, quiet=True,
                 progress=False, seed=0):
        self.wheel = wheel
        self.full = full
        self.no_mkldnn = no_mkldnn
        self.kernel_lib = kernel_lib
        self.cases = cases
        self.profile_dir = profile_dir
        self.timing = timing
        self.loop_baseline = loop_baseline
        self.threads = threads
        self.allow_loop = allow_loop
        self.venv = venv
        self.python = python
        self.offline = offline
        self.quiet = quiet
        self.progress = progress
        self.seed = seed

    def to_dict(self):
        return dict(self.__dict__)

    def to_argv(self):
        """The CLI flags that reproduce these options (without --wheel/--venv/--python)."""
        argv = []
        if self.full:
            argv.append("--full")
        if self.no_mkldnn:
            argv.append("--no-mkldnn")
        if self.kernel_lib:
            argv += ["--kernel-lib", os.path.abspath(self.kernel_lib)]
        if self.cases:
            argv += ["--cases", self.cases]
        if self.profile_dir:
            argv += ["--profile", os.path.abspath(self.profile_dir)]
        if not self.timing:
            argv.append("--no-timing")
        if self.loop_baseline != "auto":
            argv += ["--loop-baseline", self.loop_baseline]
        if self.threads:
            argv += ["--threads", str(self.threads)]
        if self.allow_loop:
            argv += ["--allow-loop", self.allow_loop]
        if self.seed:
            argv += ["--seed", str(self.seed)]
        return argv


class CaseResult(object):
    def __init__(self, case):
        self.case = case
        self.status = "ERROR"          # PASS, LOOP, WRONG, ERROR, SKIP, LOOP-ALLOWED
        self.selected = None           # torch._C._ConvBackend name, or None
        self.rerouted = False          # the profile shows another backend than selected
        self.forward_ops = {}          # backend op -> count, per conv
        self.backward_ops = {}
        self.calls_forward = None
        self.calls_backward = None
        self.attribution = {}          # phase -> how the count was established
        self.loop_evidence = {}        # phase -> {"aten::cat": n, "aten::narrow": m}
        self.errors = {}               # output/grad_input/... -> relative error
        self.tolerance = None          # (forward, backward)
        self.time_ms = None            # median after warm-up
        self.time_min_ms = None
        self.loop_time_ms = None
        self.loop_calls = None
        self.loop_selected = None
        self.loop_forced = None        # True / False / None (not attempted)
        self.loop_note = None
        self.speedup = None
        self.notes = []
        self.message = None
        self.traces = []

    @property
    def name(self):
        return self.case.name

    @property
    def loops(self):
        return any(c is not None and c > 1 for c in (self.calls_forward, self.calls_backward))

    @property
    def wrong(self):
        if self.tolerance is None:
            return False
        for key, err in self.errors.items():
            tol = self.tolerance[0] if key == "output" else self.tolerance[1]
            if err is None or not (err <= tol):
                return True
        return False

    @property
    def failed(self):
        return self.status in ("LOOP", "WRONG", "ERROR")

    def reason(self):
        """One line: why this case failed (with call counts)."""
        bits = []
        if self.status == "ERROR":
            bits.append("ERROR: %s" % (self.message or "unknown"))
        if self.loops:
            for phase, calls, ops in (("forward", self.calls_forward, self.forward_ops),
                                      ("backward", self.calls_backward, self.backward_ops)):
                if calls is not None and calls > 1:
                    opdesc = " + ".join("%d x %s" % (n, op) for op, n in sorted(ops.items())) \
                        or self.attribution.get(phase, "")
                    bits.append("%s: %d backend calls per conv (%s)" % (phase, calls, opdesc))
        if self.wrong:
            worst = ", ".join("%s err %s" % (k, fmt_err(v)) for k, v in self.errors.items())
            bits.append("WRONG: %s > tol %s" % (worst, "/".join(fmt_err(t) for t in self.tolerance)))
        if self.selected:
            bits.append("[selected %s]" % self.selected)
        return "; ".join(bits)

    def to_dict(self):
        return {
            "name": self.name,
            "case": self.case.to_dict(),
            "status": self.status,
            "failed": self.failed,
            "loops": self.loops,
            "wrong": self.wrong,
            "selected_backend": self.selected,
            "rerouted": self.rerouted,
            "calls": {"forward": self.calls_forward, "backward": self.calls_backward},
            "backend_ops": {"forward": self.forward_ops, "backward": self.backward_ops},
            "attribution": self.attribution,
            "loop_evidence": self.loop_evidence,
            "errors": self.errors,
            "tolerance": list(self.tolerance) if self.tolerance else None,
            "time_ms": self.time_ms,
            "time_min_ms": self.time_min_ms,
            "loop_time_ms": self.loop_time_ms,
            "loop_calls": self.loop_calls,
            "loop_selected_backend": self.loop_selected,
            "loop_forced": self.loop_forced,
            "loop_note": self.loop_note,
            "speedup": self.speedup,
            "notes": self.notes,
            "message": self.message,
            "reason": self.reason() if self.failed or self.status == "LOOP-ALLOWED" else None,
            "traces": self.traces,
        }


class Report(object):
    """What `run_verify` returns: `ok`, `failures`, `to_json()`, `format_table()`."""

    def __init__(self, facts, results, options=None, data=None):
        self.facts = facts
        self.results = results
        self.options = options
        self._data = data       # set when loaded from JSON (a run in another interpreter)

    @property
    def cases(self):
        if self._data is not None:
            return self._data["cases"]
        return [r.to_dict() for r in self.results]

    @property
    def ok(self):
        if self._data is not None:
            return bool(self._data["ok"])
        return bool(self.results) and not any(r.failed for r in self.results)

    @property
    def failures(self):
        """[{name, status, calls, reason}] for every failed case."""
        if self._data is not None:
            return self._data["failures"]
        return [{"name": r.name, "status": r.status,
                 "calls": {"forward": r.calls_forward, "backward": r.calls_backward},
                 "reason": r.reason()} for r in self.results if r.failed]

    def to_dict(self):
        if self._data is not None:
            return self._data
        counts = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return {
            "schema": SCHEMA,
            "ok": self.ok,
            "facts": self.facts,
            "options": self.options.to_dict() if self.options is not None else None,
            "summary": {"cases": len(self.results), "by_status": counts},
            "failures": self.failures,
            "cases": self.cases,
        }

    def to_json(self, indent=2):
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False, default=str)

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        return cls(data.get("facts", {}), [], None, data=data)

    def format_table(self):
        return format_report(self.to_dict())
