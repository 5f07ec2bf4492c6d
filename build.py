#!/usr/bin/env python3
"""Entry point: `python build.py --target jetson-agx` (see README.md)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recipe.cli import main  # noqa: E402

if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except ModuleNotFoundError as e:  # only the commands that read configs need PyYAML
        if e.name != "yaml":
            raise
        sys.exit("build.py needs PyYAML for this command: python3 -m pip install -r %s "
                 "(or: sudo apt-get install python3-yaml)"
                 % os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements.txt"))
    except BrokenPipeError:  # `build.py list | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
