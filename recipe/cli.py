"""Command line: the build (default) and the sub-commands.

`python build.py [build options]` runs or plans the build; `python build.py COMMAND ...`
runs a sub-command. Each sub-command lives in its own module with `main(argv) -> int`
and is imported only when used, so a missing optional dependency of one command
never breaks another.
"""
from __future__ import annotations

import importlib
import sys

from recipe.errors import MissingPrerequisite, RecipeError

# command name -> (module, one-line help)
COMMANDS = {
    "list": ("recipe.listing", "list targets and releases"),
    "verify": ("recipe.verify", "check that grouped convs run as ONE kernel, correctly, and how fast"),
    "addon": ("recipe.addon", "build the add-on wheel torch-grouped-conv (autoloaded at import torch)"),
    "kernel": ("recipe.kernel", "compile the add-on's kernel library against the installed torch"),
    "bench": ("recipe.bench", "benchmark depthwise convs: native kernel vs group loop vs oneDNN"),
    "pull": ("recipe.pull", "download (sha256-verified) and install a prebuilt wheel"),
    "publish": ("recipe.publish", "turn wheels/ into a PEP 503 index + index.json"),
    "cache": ("recipe.compile_cache", "the build's compiler cache: env, check (doctor), stats"),
}


def commands_help():
    lines = ["sub-commands (python build.py COMMAND --help for each):"]
    for name, (_, text) in COMMANDS.items():
        lines.append("  %-9s %s" % (name, text))
    lines += ["",
              "examples:",
              "  python build.py --target jetson-agx --dry-run      # the plan, nothing changed",
              "  python build.py --target jetson-agx                # build -> wheels/*.whl + manifest",
              "  python build.py --target jetson-agx --from build   # redo from the build step",
              "  python build.py --target x86_64 --only patch --source ~/src/pytorch-v2.6.0",
              "  python build.py list"]
    return "\n".join(lines)


def main(argv=None):
    """The one place a RecipeError becomes its message and exit status (recipe/errors.py)."""
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except RecipeError as e:
        print("error: %s" % e, file=sys.stderr)
        return e.exit_code


def _dispatch(argv):
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]][0])
        try:
            return module.main(argv[1:])
        except ModuleNotFoundError as e:  # kernel, bench: they run on the installed torch
            if e.name != "torch":
                raise
            raise MissingPrerequisite(
                "python build.py %s needs PyTorch in this Python (%s), and it has none: "
                "python3 -m pip install torch, or run build.py with the Python that has it"
                % (argv[0], sys.executable))
    from recipe import buildcmd
    return buildcmd.main(argv, epilog=commands_help())
