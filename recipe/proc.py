"""Small subprocess helpers shared by the steps."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess


def shell_join(cmd):
    return " ".join(shlex.quote(str(c)) for c in cmd)


def which(name, env=None):
    path = (env or os.environ).get("PATH")
    return shutil.which(name, path=path)


def output(cmd, cwd=None, env=None, timeout=60):
    """stdout of a command (stripped), or None when it cannot run or fails."""
    try:
        res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, timeout=timeout,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def run(cmd, cwd=None, env=None, timeout=None, check=True):
    """Run a command capturing stdout+stderr; return CompletedProcess (text)."""
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, timeout=timeout,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    if check and res.returncode != 0:
        raise subprocess.CalledProcessError(res.returncode, cmd, res.stdout)
    return res


def first_line(text):
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""
