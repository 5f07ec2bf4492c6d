"""What every part of verify shares: the report schema, the exit statuses, the tolerances,
and torch, imported on first use (`--help`, `--cases list` and `--wheel` never need it)."""
from __future__ import annotations

SCHEMA = "torch-arm-recipe/verify/1"
GROUPED_CONV_ENV = "PYTORCH_GROUPED_CONV_BACKEND"

# Exit codes.
EXIT_OK = 0
EXIT_FAILED = 1      # a case loops, is wrong, or errored
EXIT_SETUP = 2       # could not run at all (no torch, venv/pip failure, bad arguments)

# Relative error tolerances (max |y - ref| / max |ref|), forward and backward.
TOLERANCES = {
    "float32": (1e-4, 1e-4),
    "bfloat16": (2e-2, 4e-2),
    "float16": (4e-3, 1e-2),
}
DTYPE_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}

_torch = None


def import_torch():
    global _torch
    if _torch is None:
        import torch  # noqa: F401  (imported lazily: `--help` and `--wheel` do not need it)
        _torch = torch
    return _torch
