"""The build's steps, in order. Each is one module with the same small interface:

    NAME, TITLE          the step's name (for --from/--only) and a one-line summary
    DEPENDS              steps whose results/keys it uses (their keys are part of its inputs)
    ALWAYS_RUN           (optional) True for steps that are never stamped (doctor)
    describe(plan)       -> {"skip": reason or None, "commands": [...], "inputs": {...},
                             "outputs": [paths], "warnings": [...], "errors": [...]}: what
                         the plan shows and what the stamp hashes; "errors" (what would make
                         the step fail) make the plan fail at once
    run(ctx)             -> results (a JSON-able dict kept in the stamp); raises StepError
    run_first_with_only(plan)
                         (optional) steps whose run() the runner calls first under --only
                         (patch: the sources checks of a --source tree)

A step imports neither the plan nor another step; shared helpers live in recipe/ (proc,
git, patch_state, stamps, ...).

`describe` never touches the disk beyond reading; `run` does the work.
"""
from __future__ import annotations

import importlib
from typing import Protocol

from recipe.errors import RecipeError

ORDER = ("doctor", "sources", "acl", "patch", "build", "repair", "verify", "manifest")


class StepError(RecipeError):
    """A step failed; the message says what happened and what to do (exit status 1)."""

    def __init__(self, message, log_path=None):
        super().__init__(message)
        self.log_path = log_path


class Step(Protocol):
    """What a step module provides (the module itself is the object; see the top of this file)."""

    NAME: str
    TITLE: str
    DEPENDS: tuple

    def describe(self, plan) -> dict: ...

    def run(self, ctx) -> dict: ...


def module(name) -> Step:
    return importlib.import_module("recipe.steps." + name)


def modules():
    return [module(n) for n in ORDER]
