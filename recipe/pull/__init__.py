"""`python build.py pull`: fetch a prebuilt wheel, verify it, then install it.

    python build.py pull --target jetson-agx [--release 2.6.0] [--index URL|PATH]
                         [--download-only DIR] [--python X.Y] [--cuda X.Y|none]

The index is an `index.json` written by `build.py publish` (a local path or URL; default:
wheels/index.json in this repository) or a PEP 503 simple index URL (`.../simple/` or
`.../simple/torch/`). The wheel is chosen by target, release, Python and CUDA, downloaded
into a temporary file next to its destination, checked against the index's size and
sha256 and only then renamed into place and handed to pip. Any failure (no match, a bad
checksum, a truncated download, a server that is down) ends with a message naming the URL,
a non-zero exit, nothing installed and no partial file left behind.

pip installs the verified local file, so torch itself never comes from anywhere else; its
pure-Python dependencies (filelock, typing-extensions, sympy, networkx, jinja2, fsspec)
come from the index pip is configured with, like for any `pip install`. `--no-deps` skips
them (offline machines that already have them).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile

from recipe import errors
from recipe.pull.base import (DEFAULT_DEADLINE, DEFAULT_INDEX, DEFAULT_TIMEOUT, PullError,
                              RELEASES_DIR)
from recipe.pull.target import _target_facts, resolve_target
from recipe.pull.fetch import download, is_remote
from recipe.pull.index import load_index
from recipe.pull.selection import select
from recipe.pull.install import install
from recipe.pull.addon import pull_addon


def positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds above 0 (got %r)" % text)
    return value


def default_release():
    """The newest release line the recipe carries (configs/releases/X.Y.Z.yaml; no PyYAML
    needed to read a file name)."""
    names = [f[:-len(".yaml")] for f in os.listdir(RELEASES_DIR)
             if re.match(r"^\d+\.\d+\.\d+\.yaml$", f)]
    return max(names, key=lambda n: tuple(int(x) for x in n.split(".")))


def build_parser():
    p = argparse.ArgumentParser(
        prog="build.py pull",
        description="Download a prebuilt torch wheel from an index, verify its size and "
                    "sha256, then install it into this Python (or only download it).")
    p.add_argument("--target", default="jetson-agx",
                   help="target or alias (default: %(default)s: Orin or Xavier, detected)")
    p.add_argument("--release", default=default_release(), help="default: %(default)s")
    p.add_argument("--index", default=DEFAULT_INDEX,
                   help="index.json (path or URL) or a PEP 503 simple index URL "
                        "(default: wheels/index.json of this repository)")
    p.add_argument("--download-only", metavar="DIR", default=None,
                   help="only download (verified) into DIR; install nothing")
    p.add_argument("--python", default=None, metavar="X.Y",
                   help="Python of the wheel (default: this interpreter's when installing, "
                        "the target's when downloading)")
    p.add_argument("--cuda", default=None, metavar="X.Y|none",
                   help="CUDA of the wheel (default: the target's; none for CPU-only)")
    p.add_argument("--no-deps", action="store_true",
                   help="do not let pip install torch's dependencies")
    p.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for pip install (repeatable)")
    p.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT,
                   help="seconds without data after which a server counts as stalled "
                        "(default: %(default)g)")
    p.add_argument("--deadline", type=positive_seconds, default=DEFAULT_DEADLINE,
                   help="seconds one whole download (or index page) may take; a server that "
                        "trickles bytes is cut off (default: %(default)g)")
    p.add_argument("--dry-run", action="store_true",
                   help="show the chosen wheel and URL; download nothing")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--addon", action="store_true",
                   help="install the add-on torch-grouped-conv for the torch installed here "
                        "(version and arch) instead of a torch wheel (recipe/addon_index.py)")
    return p


def run(args):
    errors.check_folder_option("--download-only", args.download_only)
    if args.addon:
        return pull_addon(args)
    target, why = resolve_target(args.target)
    facts = _target_facts(target)
    print("pull: {}".format(why))
    if args.python:
        if not re.match(r"^\d+\.\d+$", args.python):
            raise errors.OptionError("--python", args.python, "not a Python version",
                                     "give X.Y, e.g. 3.10")
        python = args.python
    elif args.download_only and facts.get("python") not in (None, "host"):
        python = facts["python"]
    else:
        python = "{}.{}".format(*sys.version_info[:2])
    cuda_explicit = args.cuda is not None
    if cuda_explicit:
        cuda = None if args.cuda.lower() in ("none", "cpu", "") else args.cuda
        if cuda and not re.match(r"^\d+\.\d+$", cuda):
            raise errors.OptionError("--cuda", args.cuda, "not a CUDA version",
                                     "give X.Y (e.g. 12.6) or none")
    else:
        cuda = facts.get("cuda")
    entries = load_index(args.index, timeout=args.timeout, deadline=args.deadline)
    entry = select(entries, target, args.release, python, cuda, cuda_explicit,
                   timeout=args.timeout, check_platform=not args.download_only,
                   deadline=args.deadline)
    print("pull: {} <- {}".format(entry["filename"], entry["url"]))
    if args.dry_run:
        return 0
    fetch = dict(timeout=args.timeout, deadline=args.deadline, progress=not args.quiet,
                 allow_local=not is_remote(args.index))
    if args.download_only:
        path = download(entry["url"], args.download_only, entry["filename"], entry["sha256"],
                        entry.get("size"), **fetch)
        print("pull: verified sha256 {}; saved {}".format(entry["sha256"], path))
        return 0
    tmpdir = tempfile.mkdtemp(prefix="torch-pull-")
    try:
        path = download(entry["url"], tmpdir, entry["filename"], entry["sha256"],
                        entry.get("size"), **fetch)
        print("pull: verified sha256 {}; installing into {}".format(entry["sha256"],
                                                                    sys.prefix))
        rc = install(path, entry.get("version"), no_deps=args.no_deps,
                     pip_args=args.pip_arg)
        if rc != 0:
            raise PullError("pip install of the verified wheel failed (exit {}); see pip's "
                            "message above".format(rc))
    finally:
        for f in os.listdir(tmpdir):
            os.unlink(os.path.join(tmpdir, f))
        os.rmdir(tmpdir)
    print("pull: installed {}".format(entry["filename"]))
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    errors.raise_on_sigterm()  # SIGTERM cleans up like Ctrl-C: no file is left
    try:
        return run(args)  # PullError (1), OptionError (2): recipe/cli.py reports them
    except KeyboardInterrupt as exc:
        print("error: interrupted ({}); nothing was installed and no file is left".format(
            "SIGTERM" if isinstance(exc, errors.Terminated) else "Ctrl-C"), file=sys.stderr)
        return errors.interrupt_exit_code(exc)
