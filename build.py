#!/usr/bin/env python3
"""Entry point: `python build.py --target jetson-agx` (see README.md)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recipe.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
