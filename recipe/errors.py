"""One error model for the command line: a RecipeError carries its exit status.

Raise a RecipeError (or a subclass) with a message that names the file, line or option and
says what to do; the command's main() prints it as one `error: ...` line and exits with
`exit_code`. Exit statuses (README, "Exit statuses"):

  0    done
  1    failed: a step, a download, a check (fix what the message says, run again)
  2    bad input: an option, a config, the plan or the patch series (nothing was run)
  3    a prerequisite is missing on this machine (PyYAML; torch for `kernel`/`bench`)
  4    busy: another run holds the work dir
  130  interrupted (Ctrl-C); 143 for SIGTERM

Pure standard library: build.py imports it before anything that may be missing.
"""
from __future__ import annotations

import os
import signal

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_MISSING = 3
EXIT_BUSY = 4


class RecipeError(Exception):
    """A failure with the message for the user; `exit_code` is what the command exits with."""

    exit_code = EXIT_FAILED

    def __init__(self, message, exit_code=None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadInput(RecipeError):
    """An option, a config or the plan is wrong; nothing was run."""

    exit_code = EXIT_BAD_INPUT


class OptionError(BadInput):
    """One command-line option is wrong: `--opt VALUE: what is wrong; what to pass instead`."""

    def __init__(self, option, value, problem, fix):
        shown = "" if value is None else " %s" % (value if isinstance(value, str) and value
                                                   and " " not in value else repr(value))
        super().__init__("%s%s: %s; %s" % (option, shown, problem, fix))
        self.option = option


class MissingPrerequisite(RecipeError):
    """Something this command needs is not installed here (the message says how to get it)."""

    exit_code = EXIT_MISSING


class Busy(RecipeError):
    """Another run holds the resource (the message names its pid)."""

    exit_code = EXIT_BUSY


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that cleanup code runs."""

    exit_code = 128 + signal.SIGTERM


_terminated = []  # SIGTERMs received (a caller that caught the exception still exits 143)


def interrupt_exit_code(exc=None):
    """130 for Ctrl-C, 143 for SIGTERM (given the exception, or after one was raised)."""
    if isinstance(exc, Terminated) or (exc is None and _terminated):
        return Terminated.exit_code
    return 128 + signal.SIGINT


def _raise_terminated(signum, frame):
    _terminated.append(signum)
    raise Terminated()


def raise_on_sigterm():
    """Make SIGTERM raise Terminated in the main thread (finally blocks and handlers run)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def check_folder_option(option, path, must_exist=False):
    """OptionError unless `path` is (or can become) a folder: neither it nor a parent is a file."""
    if path is None:
        return
    full = os.path.abspath(path)
    if os.path.isdir(full):
        return
    if os.path.exists(full):
        raise OptionError(option, path, "is a file, not a folder", "name a folder (it is created "
                          "when missing)" if not must_exist else "name an existing folder")
    if must_exist:
        raise OptionError(option, path, "no such folder", "name an existing folder")
    parent = os.path.dirname(full)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise OptionError(option, path, "%s is a file, so this folder cannot be made" % parent,
                          "name a folder outside it")
