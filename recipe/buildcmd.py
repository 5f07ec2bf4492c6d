"""`python build.py --target NAME [options]`: plan the build, show it, or run it.

Exit codes (recipe/errors.py): 0 done (or plan shown), 1 a step failed, 2 an option, the
configs or the plan are wrong (nothing was run), 4 another run holds the work dir,
130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys

from recipe import RECIPE_VERSION, errors, locks
from recipe.steps import ORDER


def positive_int(text):
    """argparse type of --jobs: 1, 2, ... (MAX_JOBS=0 or -1 would reach the build)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("must be a whole number of jobs, 1 or more (got %r); "
                                         "leave it out to let doctor choose" % text)
    return value


def build_parser(epilog=None):
    p = argparse.ArgumentParser(
        prog="python build.py",
        usage="python build.py --target NAME [options]\n       python build.py COMMAND [args]   (list, verify, ...)",
        description="Build PyTorch for ARM64 (Jetson AGX first) with oneDNN + Arm Compute Library and the "
                    "single-kernel grouped/depthwise convolution patches. Steps: %s." % ", ".join(ORDER),
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    g = p.add_argument_group("what to build")
    g.add_argument("--target", "-t", help="target or alias (jetson-agx, jetson-agx-orin, jetson-agx-xavier, "
                                          "jetson-agx-xavier-cpu, generic-aarch64, x86_64; see `list`)")
    g.add_argument("--release", "-r", help="release config (default: the newest, e.g. 2.6.0)")
    g.add_argument("--cuda", choices=["auto", "on", "off"], default="auto",
                   help="auto = as the target says; off = CPU-only wheel")
    g.add_argument("--cuda-version", help="override the target's CUDA version (e.g. 12.2 on JetPack 6.0)")
    g.add_argument("--python", help="interpreter to build with (default: the one running build.py)")
    g.add_argument("--python-version", help="build for this Python X.Y instead of the target's")
    g = p.add_argument_group("sources")
    g.add_argument("--source", metavar="DIR", help="use an existing PyTorch tree (git checkout or unpacked "
                                                   "tarball) instead of cloning")
    g.add_argument("--allow-dirty", action="store_true", help="accept a --source git checkout with local changes")
    g.add_argument("--git-url", help="clone from this URL instead of the release's (a mirror)")
    g = p.add_argument_group("running")
    g.add_argument("--dry-run", "-n", action="store_true", help="print the resolved plan; change nothing")
    g.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON")
    g.add_argument("--from", dest="from_step", choices=ORDER, metavar="STEP",
                   help="redo STEP and everything after it (earlier steps only if stale)")
    g.add_argument("--only", choices=ORDER, metavar="STEP", help="run only STEP (e.g. --only patch --source DIR)")
    g.add_argument("--clean", action="store_true",
                   help="forget stamps and logs, remove the tree's build/ and dist/ (keeps clone and ACL cache)")
    g.add_argument("--jobs", "-j", type=positive_int, help="MAX_JOBS (default: from RAM + swap, see doctor)")
    g.add_argument("--cache", choices=["auto", "none", "ccache", "sccache"], default="auto",
                   help="compiler launcher (auto: sccache or ccache when installed)")
    g.add_argument("--cache-url", help="remote compiler cache (sccache/ccache remote storage URL)")
    g.add_argument("--no-verify", dest="verify", action="store_false", help="skip the verify step")
    g = p.add_argument_group("paths")
    g.add_argument("--work-dir", help="where the clone, stamps and logs go (default: work/<target>-<release>)")
    g.add_argument("--wheels-dir", help="where the wheel + manifest go (default: wheels/)")
    g.add_argument("--configs", metavar="DIR", help="config directory (default: configs/)")
    a("--version", action="version", version="torch-arm-recipe %s" % RECIPE_VERSION)
    return p


def main(argv=None, epilog=None):
    args = build_parser(epilog).parse_args(argv)
    from recipe.plan import format_plan, make_plan
    if not args.target:
        raise errors.BadInput("--target is required (python build.py list shows the targets; "
                              "python build.py --help the options)")
    plan = make_plan({k: v for k, v in vars(args).items()})  # ConfigError, PlanError: exit 2
    if args.dry_run:
        if args.json:
            json.dump(plan.to_dict(), sys.stdout, indent=2, sort_keys=True, default=str)
            print()
        else:
            print(format_plan(plan))
        return 0
    from recipe.runner import run_plan
    print("Building torch %s for %s (%s)" % (plan.release["torch"]["version"], plan.target["name"],
                                             plan.target_reason), flush=True)
    with locks.hold(plan.work_dir):  # Busy (exit 4) when another run has it
        ok, events = run_plan(plan, from_step=args.from_step, only=args.only,
                              do_clean=args.clean)
    if not ok and events and events[-1][2] == "interrupted":
        return errors.interrupt_exit_code()
    return 0 if ok else 1
