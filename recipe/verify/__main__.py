"""`python -m recipe.verify ARGS` (what `--wheel` and the forced-loop baseline run, with the
folder that holds recipe/ on PYTHONPATH) and `python recipe/verify ARGS` (a checkout copied to a
Jetson, a rootfs under qemu): the same as `python build.py verify ARGS`. Standard library +
torch only, Python 3.8+."""
import os
import sys

if __name__ == "__main__":
    if not __package__:
        # Run as a script: sys.path[0] is this folder, whose modules (cases, events, run, ...)
        # must not shadow anything; import the package from the folder that holds recipe/.
        _here = os.path.dirname(os.path.abspath(__file__))
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
        sys.path.insert(0, os.path.dirname(os.path.dirname(_here)))
    from recipe.verify import cli, launch
    launch.forget_checkout()
    sys.exit(cli.main())
