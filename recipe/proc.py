"""Small subprocess helpers shared by the steps."""
from __future__ import annotations

import collections
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

from recipe.steps import StepError

PROGRESS_RE = re.compile(r"^\s*\[(\d+)/(\d+)\]")  # ninja's [n/N]
TAIL_LINES = 40


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
    log("$ %s   (log: %s)" % (shell_join(cmd), log_path))
    with open(log_path, "a", encoding="utf-8", errors="replace") as out:
        out.write("\n==== %s  %s\n$ (cd %s && %s)\n" % (what, time.strftime("%Y-%m-%d %H:%M:%S"),
                                                      cwd, shell_join(cmd)))
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
