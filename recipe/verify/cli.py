"""`build.py verify` / `python -m recipe.verify`: the options, and `main(argv)` (which keeps
verify's own exit statuses: 0 all cases one kernel and correct, 1 a case failed, 2 it could not
run)."""
from __future__ import annotations

import argparse
import subprocess
import sys

from recipe.verify.base import EXIT_FAILED, EXIT_OK, EXIT_SETUP
from recipe.verify.cases import default_matrix, full_matrix
from recipe.verify.results import VerifyOptions
from recipe.verify.run import run_verify
from recipe.verify.wheel_venv import run_in_venv


def build_parser():
    p = argparse.ArgumentParser(
        prog="build.py verify",
        description="Check that grouped/depthwise convolutions run as ONE backend kernel, "
                    "correctly (vs float64), and how fast (vs the forced group loop).")
    p.add_argument("--wheel", metavar="PATH",
                   help="test this wheel in a fresh venv instead of the current torch")
    p.add_argument("--venv", metavar="DIR",
                   help="with --wheel: create/reuse the venv here (default: a temporary one)")
    p.add_argument("--python", metavar="EXE", help="with --wheel: interpreter for the venv")
    p.add_argument("--offline", action="store_true",
                   help="with --wheel: pip --no-index (deps must be in the wheel's folder)")
    p.add_argument("--json", action="store_true", help="print the report as JSON only")
    p.add_argument("--json-file", metavar="PATH", help="also write the JSON report here")
    p.add_argument("--profile", metavar="DIR", dest="profile_dir",
                   help="write a Chrome trace per case (and per forced loop) into DIR")
    p.add_argument("--full", action="store_true", help="the large matrix (minutes)")
    p.add_argument("--no-mkldnn", action="store_true",
                   help="run with oneDNN disabled (what a wheel without oneDNN does)")
    p.add_argument("--kernel-lib", metavar="PATH",
                   help="torch.ops.load_library(PATH) first (the out-of-tree native kernel)")
    p.add_argument("--cases", metavar="FILTER",
                   help="comma-separated alternatives; '+' = AND; globs or substrings of case "
                        "names (e.g. 'c384', '2d-dw+inf', '*fp16*'); 'list' lists the cases")
    p.add_argument("--allow-loop", metavar="FILTER",
                   help="cases (same syntax) whose loop is expected in this install: reported "
                        "as LOOP-ALLOWED, not a failure")
    p.add_argument("--no-timing", dest="timing", action="store_false",
                   help="counts and numerics only (no timings, no forced-loop baseline)")
    p.add_argument("--loop-baseline", choices=("auto", "inline", "subprocess", "off"),
                   default="auto",
                   help="how to force the group loop for the speed-up (default: inline; then a "
                        "subprocess with the env set at start for patched builds)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads(N)")
    p.add_argument("--seed", type=int, default=0, help="random seed for the data")
    p.add_argument("--progress", action="store_true", help="print each case as it starts")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.cases == "list":
        for c in (full_matrix() if args.full else default_matrix()):
            print(c.name)
        return EXIT_OK
    opts = VerifyOptions(wheel=args.wheel, full=args.full, no_mkldnn=args.no_mkldnn,
                         kernel_lib=args.kernel_lib, cases=args.cases,
                         profile_dir=args.profile_dir, timing=args.timing,
                         loop_baseline=args.loop_baseline, threads=args.threads,
                         allow_loop=args.allow_loop, venv=args.venv, python=args.python,
                         offline=args.offline, seed=args.seed,
                         progress=args.progress or (not args.json and sys.stderr.isatty()))
    try:
        if opts.wheel:
            report = run_in_venv(opts, passthrough_stdout=not args.json)
            if args.json:
                sys.stdout.write(report.to_json() + "\n")
            if args.json_file:
                with open(args.json_file, "w") as f:
                    f.write(report.to_json() + "\n")
            rc = getattr(report, "child_returncode", None)
            return rc if rc is not None else (EXIT_OK if report.ok else EXIT_FAILED)
        report = run_verify(opts)
    except ImportError as e:
        sys.stderr.write("verify: cannot import torch: %s\n" % e)
        return EXIT_SETUP
    except (ValueError, FileNotFoundError, RuntimeError, OSError,
            subprocess.CalledProcessError) as e:
        sys.stderr.write("verify: %s\n" % e)
        return EXIT_SETUP
    text = report.to_json()
    if args.json_file:
        with open(args.json_file, "w") as f:
            f.write(text + "\n")
    if args.json:
        sys.stdout.write(text + "\n")
    else:
        sys.stdout.write(report.format_table() + "\n")
    sys.stdout.flush()
    return EXIT_OK if report.ok else EXIT_FAILED

