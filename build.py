#!/usr/bin/env python3
"""Entry point: `python build.py --target jetson-agx` (see README.md; exit statuses: recipe/errors.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recipe import errors  # noqa: E402  (standard library only)


def run(argv):
    errors.raise_on_sigterm()
    try:
        from recipe.cli import main
        return main(argv)  # prints a RecipeError's message and returns its exit status
    except KeyboardInterrupt as e:
        print("\ninterrupted (%s); nothing more was done: run the same command again to go on"
              % ("SIGTERM" if isinstance(e, errors.Terminated) else "Ctrl-C"), file=sys.stderr)
        return errors.interrupt_exit_code(e)
    except ModuleNotFoundError as e:  # only the commands that read configs need PyYAML
        if e.name != "yaml":
            raise
        print("error: build.py needs PyYAML for this command: python3 -m pip install -r %s "
              "(or: sudo apt-get install python3-yaml)"
              % os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements.txt"),
              file=sys.stderr)
        return errors.EXIT_MISSING
    except BrokenPipeError:  # `build.py list | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return errors.EXIT_FAILED


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
