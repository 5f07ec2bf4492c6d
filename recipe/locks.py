"""The two kinds of lock, both flock(2) (the kernel drops them when the holder dies, even by
SIGKILL, so a killed run never leaves a stale lock):

* `hold(work_dir)`: one run at a time per work dir. Takes WORK/.lock without waiting; when
  another process has it, Busy says "another run holds it (pid N)". Re-entrant within a
  process (build.py holds it for the whole build; the patch step takes it again when called
  on its own).
* `waiting(path)`: a shared cache (downloads, builds, root filesystems) filled by whoever
  comes first; the others wait, then find it filled.
"""
from __future__ import annotations

import contextlib
import fcntl
import os

from recipe.errors import Busy, RecipeError

LOCK_NAME = ".lock"

_held = {}  # realpath of the lock file -> [fd, depth]


def _holder(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError:
        return None
    return text if text.isdigit() else None


@contextlib.contextmanager
def hold(work_dir):
    try:
        os.makedirs(work_dir, exist_ok=True)
    except OSError as e:
        raise RecipeError("cannot create the work dir %s: %s" % (work_dir, e.strerror or e))
    path = os.path.realpath(os.path.join(work_dir, LOCK_NAME))
    if path in _held:
        _held[path][1] += 1
        try:
            yield
        finally:
            _held[path][1] -= 1
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RecipeError("cannot create the lock %s: %s" % (path, e.strerror or e))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = _holder(path)
            raise Busy("another run holds the work dir %s (pid %s): wait for it to finish or "
                       "stop it, or pass another --work-dir" % (work_dir, pid or "unknown"))
        os.ftruncate(fd, 0)
        os.write(fd, ("%d\n" % os.getpid()).encode())
        _held[path] = [fd, 1]
        try:
            yield
        finally:
            del _held[path]
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def waiting(path):
    """Exclusive lock on `path`, waiting for the holder (concurrent fills of one cache)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
