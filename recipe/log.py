"""The one progress logger: `log = logger("addon")` writes "[addon] message" to stderr.

The tag marks the recipe's own lines apart from the output of the tools it runs.
"""
from __future__ import annotations

import sys


def logger(tag):
    def log(msg, quiet=False):
        if not quiet:
            sys.stderr.write("[%s] %s\n" % (tag, msg))
            sys.stderr.flush()
    return log
