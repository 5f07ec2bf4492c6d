"""`python build.py verify`: does every grouped convolution run as ONE kernel, correctly, and how fast?

Runs a matrix of grouped / depthwise convolutions against the torch in the current
environment (or, with ``--wheel``, in a fresh venv with that wheel installed) and, per case:

* asks PyTorch which backend it selects (``torch._C._select_conv_backend`` where present,
  with exactly the arguments and grad mode of the real call) and records the profiler's
  events under the conv (forward) and under its autograd node (backward);
* counts the backend kernel calls issued for ONE convolution. More than one (e.g.
  ``aten::thnn_conv2d`` x groups + ``aten::cat``: the group loop inside ``_convolution``) is a
  LOOP, a failure. Backends that issue no op event of their own (oneDNN's backward, the 3x3
  winograd depthwise and XNNPACK paths: plain C++ calls / DispatchStubs inside
  ``aten::_convolution`` / ``aten::convolution_backward``) are attributed through the backend
  selection and counted as one call unless the profile shows the group loop's
  ``aten::narrow`` + ``aten::cat`` pattern;
* compares the output (and, in training, the gradients) with an independent float64 reference
  (shift-and-add einsum, no convolution op involved), relative to the reference's scale, with
  per-dtype tolerances;
* times the median of several runs after warm-up, and the same conv with the group loop forced
  (oneDNN disabled and ``PYTORCH_GROUPED_CONV_BACKEND=loop``, which the patched builds read at
  every call); if the forced run does not loop, no speed-up is claimed and the reason is given.

One module per part: ``base`` (schema, exit statuses, tolerances, torch on first use),
``events`` (which profiler events are backend kernel calls), ``cases`` (the matrices,
``--cases``), ``results`` (options, one case's result, the report), ``facts`` (the install),
``reference`` (float64), ``measure`` (running one case), ``run`` (``run_verify``: the matrix),
``wheel_venv`` (``--wheel``), ``launch`` (verify in another interpreter), ``output`` (the
table), ``cli`` (options, ``main``).

The package needs only the standard library and torch (Python 3.8+; torch 2.6 ... 2.13), so it
runs inside a venv, on a Jetson or under qemu: ``python -m recipe.verify [options]`` (with the
folder that holds ``recipe/`` on PYTHONPATH) and ``python recipe/verify [options]`` work as well
as ``python build.py verify``.

Python API for the recipe's build step::

    from recipe.verify import run_verify, VerifyOptions
    report = run_verify(VerifyOptions(wheel="dist/torch-2.6.0-...whl", no_mkldnn=True))
    report.ok, report.failures, report.to_json()
"""
from __future__ import annotations

from recipe.verify.base import (EXIT_FAILED, EXIT_OK, EXIT_SETUP, GROUPED_CONV_ENV, SCHEMA,
                                TOLERANCES)
from recipe.verify.cases import Case, default_matrix, filter_cases, full_matrix
from recipe.verify.cli import build_parser, main
from recipe.verify.events import count_backend_calls, is_backend_op
from recipe.verify.facts import install_facts
from recipe.verify.measure import run_case
from recipe.verify.output import format_report
from recipe.verify.results import CaseResult, Report, VerifyOptions
from recipe.verify.run import run_verify

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_SETUP", "GROUPED_CONV_ENV", "SCHEMA", "TOLERANCES",
           "Case", "default_matrix", "filter_cases", "full_matrix", "build_parser", "main",
           "count_backend_calls", "is_backend_op", "install_facts", "run_case", "format_report",
           "CaseResult", "Report", "VerifyOptions", "run_verify"]
