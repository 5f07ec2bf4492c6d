"""Step 7, verify: the fresh wheel, installed in a clean venv, must pass the dispatch check.

`python build.py verify --wheel W --json-file F` (the package recipe/verify/) creates a new
virtual environment, installs only the repaired wheel (and its declared dependencies) and
runs the check there: grouped/depthwise convolutions must run as ONE kernel with correct
numerics. A wheel that still loops over groups is a failed build, even though it compiled.

Skipped when the host cannot run the wheel (another architecture) or with --no-verify.
"""
from __future__ import annotations

import json
import os
import subprocess

from recipe import REPO_ROOT
from recipe.steps import StepError

NAME = "verify"
TITLE = "install the wheel in a clean venv and run `build.py verify` (one kernel per grouped conv)"
DEPENDS = ("repair",)


def command(plan, wheel, report_path):
    return [plan.python_exe, os.path.join(REPO_ROOT, "build.py"), "verify", "--wheel", wheel,
            "--python", plan.python_exe, "--json-file", report_path]


def describe(plan):
    if not plan.options.get("verify", True):
        return {"skip": "--no-verify", "commands": [], "inputs": {}, "outputs": []}
    if plan.host["arch"] != plan.target["arch"]:
        return {"skip": "this host (%s) cannot run %s wheels" % (plan.host["arch"], plan.target["arch"]),
                "commands": [], "inputs": {}, "outputs": []}
    report = os.path.join(plan.work_dir, "verify-report.json")
    cmd = command(plan, "<repaired wheel>", report)
    return {"skip": None, "commands": [cmd], "inputs": {"command": cmd[2:4]}, "outputs": []}


def judge(returncode, report):
    """(ok, message) from the verify command's exit code and its JSON report (dict or None)."""
    if report is None:
        return False, "verify wrote no report (exit %d)" % returncode
    failures = report.get("failures") or []
    if report.get("ok") and returncode == 0:
        return True, "verify: ok"
    return False, "verify FAILED (exit %d):\n%s" % (returncode, "\n".join(
        "  - %s" % (f if isinstance(f, str) else json.dumps(f, sort_keys=True)) for f in failures)
        or "  (no failures listed)")


def run(ctx):
    plan = ctx.plan
    wheel = ctx.result("repair").get("wheel")
    if not wheel or not os.path.exists(wheel):
        raise StepError("no repaired wheel to verify (run the repair step first)")
    report_path = os.path.join(plan.work_dir, "verify-report.json")
    if os.path.exists(report_path):
        os.remove(report_path)
    log_path = os.path.join(plan.log_dir, "verify.log")
    cmd = command(plan, wheel, report_path)
    ctx.log("$ %s   (log: %s)" % (" ".join(cmd), log_path))
    with open(log_path, "w", encoding="utf-8") as log:
        res = subprocess.run(cmd, cwd=plan.work_dir, stdout=log, stderr=subprocess.STDOUT)
    report = None
    if os.path.exists(report_path):
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
    ok, msg = judge(res.returncode, report)
    ctx.log(msg)
    if not ok:
        raise StepError(msg + "\n  a wheel that still loops over groups is a failed build; details: %s"
                        % log_path, log_path)
    return {"ok": True, "report": report, "outputs": [report_path]}
