"""`--wheel`: a fresh venv with the wheel installed, and verify run inside it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from recipe.verify import launch
from recipe.verify.results import Report


def run_in_venv(opts, passthrough_stdout=False):
    """Create a venv, install the wheel (deps from the configured index, the wheel's folder as
    --find-links), and run verify inside it (`python -m recipe.verify`, see launch.py).
    Returns the child's Report."""
    wheel = os.path.abspath(opts.wheel)
    if not os.path.isfile(wheel):
        raise FileNotFoundError("wheel not found: %s" % wheel)
    python = opts.python or sys.executable
    tmp = None
    venv = opts.venv
    if not venv:
        tmp = tempfile.mkdtemp(prefix="verify-venv-")
        venv = os.path.join(tmp, "venv")
    vpy = os.path.join(venv, "Scripts" if os.name == "nt" else "bin",
                       "python.exe" if os.name == "nt" else "python")
    env = dict(os.environ)
    env["PYTHONNOUSERSITE"] = "1"
    env.pop("PYTHONPATH", None)
    try:
        if not os.path.exists(vpy):
            subprocess.run([python, "-m", "venv", venv], check=True)
        pip = [vpy, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               "--find-links", os.path.dirname(wheel)]
        if opts.offline:
            pip.append("--no-index")
        r = subprocess.run(pip + [wheel], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
        if r.returncode != 0:
            raise RuntimeError("pip install %s failed:\n%s" % (wheel, r.stdout[-3000:]))
        fd, jpath = tempfile.mkstemp(suffix=".json", prefix="verify-")
        os.close(fd)
        argv = launch.command(vpy, opts.to_argv() + ["--json-file", jpath])
        if not passthrough_stdout:
            argv.append("--json")
        # PYTHONPATH: this checkout's recipe/, nothing else of this environment
        r = subprocess.run(argv, env=launch.environ(env, keep_pythonpath=False),
                           cwd=tmp or tempfile.gettempdir(),
                           stdout=None if passthrough_stdout else subprocess.DEVNULL)
        try:
            with open(jpath) as f:
                text = f.read()
        finally:
            os.unlink(jpath)
        if not text.strip():
            raise RuntimeError("verify inside the venv exited %d without a report" % r.returncode)
        report = Report.from_json(text)
        report.facts["wheel"] = wheel
        report.facts["venv"] = None if tmp else os.path.abspath(venv)
        report.child_returncode = r.returncode
        return report
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
