"""git, as the steps run it: never prompting, errors as StepError (sources, acl)."""
from __future__ import annotations

import os
import subprocess

from recipe.steps import StepError

LS_REMOTE_TIMEOUT = 20  # seconds: long enough for a slow link, short enough to fail "at once"
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0"}


def run(args, cwd=None, timeout=None, check=True):
    env = dict(os.environ)
    env.update(GIT_ENV)
    res = subprocess.run(["git"] + list(args), cwd=cwd, env=env, timeout=timeout,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if check and res.returncode != 0:
        raise StepError("git %s failed (%d):\n%s" % (" ".join(args), res.returncode,
                                                      (res.stderr or res.stdout).strip()))
    return res


def is_checkout(path):
    return os.path.exists(os.path.join(path, ".git"))


def check_reachable(url, tag, timeout=LS_REMOTE_TIMEOUT):
    """Fail fast (and name --source) when the repository cannot be reached."""
    advice = ("no network? Use an existing tree: python build.py --target ... --source DIR "
              "(a git checkout of %s, or an unpacked source tarball)" % tag)
    try:
        res = run(["ls-remote", "--exit-code", url, "refs/tags/" + tag], timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise StepError("cannot reach %s within %d s.\n%s" % (url, timeout, advice))
    if res.returncode == 2:
        raise StepError("%s has no tag %s" % (url, tag))
    if res.returncode != 0:
        last = ((res.stderr or "").strip().splitlines() or ["git ls-remote failed"])[-1]
        raise StepError("cannot reach %s: %s\n%s" % (url, last, advice))
    return res.stdout.split()[0] if res.stdout.strip() else None
