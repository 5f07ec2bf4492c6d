"""`run_verify`: the whole matrix in this interpreter (or, with a wheel, in a fresh venv), and
the forced-loop baseline in a fresh interpreter for builds that read the routing override once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from recipe.verify import launch
from recipe.verify.base import GROUPED_CONV_ENV, import_torch
from recipe.verify.cases import default_matrix, filter_cases, full_matrix
from recipe.verify.facts import install_facts, load_kernel_lib
from recipe.verify.measure import apply_loop, dtype_supported, run_case
from recipe.verify.results import CaseResult, Report, VerifyOptions
from recipe.verify.wheel_venv import run_in_venv


def _baseline_subprocess(results, opts):
    """Force the loop in a fresh interpreter with the env var set before torch is imported
    (for builds that read PYTORCH_GROUPED_CONV_BACKEND once)."""
    todo = [r for r in results
            if r.time_ms and not r.loops and not r.failed and r.loop_forced is not True]
    if not todo:
        return
    names = ",".join(r.name for r in todo)
    fd, jpath = tempfile.mkstemp(suffix=".json", prefix="verify-loop-")
    os.close(fd)
    argv = launch.command(sys.executable, [
        "--cases", names, "--no-mkldnn", "--loop-baseline", "off", "--json-file", jpath, "--json",
        "--seed", str(opts.seed)])
    if opts.kernel_lib:
        argv += ["--kernel-lib", os.path.abspath(opts.kernel_lib)]
    if opts.threads:
        argv += ["--threads", str(opts.threads)]
    if opts.full:
        argv.append("--full")
    env = launch.environ()
    env[GROUPED_CONV_ENV] = "loop"
    try:
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       check=False, timeout=3600)
        with open(jpath) as f:
            data = json.load(f)
    except Exception as e:  # noqa: BLE001
        for r in todo:
            r.loop_note = "%s; subprocess baseline failed: %s" % (r.loop_note or "", e)
        return
    finally:
        if os.path.exists(jpath):
            os.unlink(jpath)
    by_name = {c["name"]: c for c in data.get("cases", [])}
    for r in todo:
        c = by_name.get(r.name)
        if not c:
            continue
        calls = max(v or 0 for v in c["calls"].values())
        apply_loop(r, calls, c["time_ms"] if calls > 1 else None, c["selected_backend"],
                    "in a subprocess" if r.loop_forced is None else
                    "inline, nor in a subprocess")


def run_verify(options=None, **kwargs):
    """Run the matrix; returns a Report. `options`: VerifyOptions, a dict, or None (+kwargs).

    With `wheel=PATH` the run happens in a fresh venv (see `--wheel`) and the Report is loaded
    from its JSON.
    """
    if options is None:
        options = VerifyOptions(**kwargs)
    elif isinstance(options, dict):
        options = VerifyOptions(**dict(options, **kwargs))
    if options.wheel:
        return run_in_venv(options)
    torch = import_torch()
    if options.threads:
        torch.set_num_threads(int(options.threads))
    if options.kernel_lib:
        load_kernel_lib(os.path.abspath(options.kernel_lib))
    facts = install_facts(options.kernel_lib, options.no_mkldnn)
    cases = full_matrix() if options.full else default_matrix()
    cases = filter_cases(cases, options.cases)
    if not cases:
        raise ValueError("--cases %r selects no case" % options.cases)
    supported = {}
    results = []
    t_start = time.time()
    for i, case in enumerate(cases):
        if case.dtype not in supported:
            supported[case.dtype] = dtype_supported(case.dtype)
        ok, why = supported[case.dtype]
        if not ok:
            r = CaseResult(case)
            r.status = "SKIP"
            r.message = why
            results.append(r)
            continue
        if options.progress:
            sys.stderr.write("[%d/%d] %s\n" % (i + 1, len(cases), case.name))
            sys.stderr.flush()
        results.append(run_case(case, options, facts))
    if options.timing and options.loop_baseline in ("auto", "subprocess"):
        if options.loop_baseline == "subprocess" or facts["patched_routing"] or options.kernel_lib:
            _baseline_subprocess(results, options)
    facts["elapsed_s"] = round(time.time() - t_start, 2)
    return Report(facts, results, options)
