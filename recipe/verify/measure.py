"""Running one case: its tensors, the backend torch selects, one profiled step (backend calls
per conv), the timing, the comparison with the float64 reference, and the same conv with the
group loop forced (for the speed-up)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import statistics
import sys
import tempfile
import time
import warnings

from recipe.verify.base import GROUPED_CONV_ENV, TOLERANCES, import_torch
from recipe.verify.cases import filter_cases
from recipe.verify.events import EXPECTED_OPS, LOOP_BACKENDS, count_backend_calls
from recipe.verify.reference import reference_conv, rel_err
from recipe.verify.results import CaseResult


@contextlib.contextmanager
def mkldnn_enabled(enabled):
    """enabled=None: leave as is; otherwise torch.backends.mkldnn.flags(enabled=...)."""
    torch = import_torch()
    if enabled is None:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx = torch.backends.mkldnn.flags(enabled=enabled)
        ctx.__enter__()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctx.__exit__(None, None, None)


@contextlib.contextmanager
def _env(name, value):
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


_NOISE = re.compile(r"^(USDT|STAGE|WARNING|INFO):\S+ \S+ \d+:\d+ \S+\.cpp:\d+\]|"
                    r"failed to parse the list of (possible|present) processors")


@contextlib.contextmanager
def _quiet_profiler_stderr():
    """Kineto prints `USDT:... profiler_start` lines on fd 2 at every profile; drop those lines
    and pass everything else through."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    tmp = tempfile.TemporaryFile(mode="w+b")
    os.dup2(tmp.fileno(), 2)
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        os.dup2(saved, 2)
        os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode("utf-8", "replace")
        tmp.close()
        keep = [l for l in text.splitlines() if l.strip() and not _NOISE.search(l)]
        if keep:
            sys.stderr.write("\n".join(keep) + "\n")


def profiled(fn, trace_path=None):
    """Run fn once under the CPU profiler; return (its result, the list of FunctionEvents)."""
    torch = import_torch()
    from torch.profiler import ProfilerActivity, profile
    with _quiet_profiler_stderr():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = fn()
    events = list(prof.events())
    if trace_path:
        d = os.path.dirname(trace_path)
        if d and not os.path.isdir(d):
            os.makedirs(d)
        prof.export_chrome_trace(trace_path)
    del torch
    return out, events


def _selected_backend(x, w, b, stride, padding, groups, dim):
    torch = import_torch()
    sel = getattr(torch._C, "_select_conv_backend", None)
    if sel is None:
        return None
    try:
        r = sel(x, w, b, [stride] * dim, [padding] * dim, [1] * dim, False, [0] * dim, groups)
    except Exception as e:  # noqa: BLE001
        return "error: %s" % str(e).splitlines()[0]
    name = getattr(r, "name", None) or str(r).split(".")[-1]
    return name.rstrip(",")


def _time(fn, budget_s=0.3, min_reps=3, max_reps=20, warmup=1):
    """(median, min) in ms of fn() after `warmup` calls (the caller has already run it twice:
    a warm-up and the profiled call). At least `min_reps`, then until `budget_s` is used."""
    for _ in range(warmup):
        fn()
    times = []
    end = time.perf_counter() + budget_s
    while len(times) < min_reps or (len(times) < max_reps and time.perf_counter() < end):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, min(times) * 1e3


class _Prepared(object):
    """Tensors and step functions for one case (kept between the run and the forced loop)."""

    def __init__(self, case, seed):
        torch = import_torch()
        self.case = case
        dtype = getattr(torch, case.dtype)
        gen = torch.Generator().manual_seed(
            int(hashlib.sha256(("%d:%s" % (seed, case.name)).encode()).hexdigest()[:8], 16))
        shape_x = [case.batch, case.in_channels] + list(case.size)
        shape_w = [case.out_channels, case.in_channels // case.groups] + [case.kernel] * case.dim
        fan_in = (case.in_channels // case.groups) * case.kernel ** case.dim
        x = torch.randn(shape_x, generator=gen).to(dtype)
        w = (torch.randn(shape_w, generator=gen) / fan_in ** 0.5).to(dtype)
        b = (torch.randn([case.out_channels], generator=gen) * 0.1).to(dtype)
        if case.memory_format == "cl":
            fmt = torch.channels_last if case.dim == 2 else torch.channels_last_3d
            x = x.contiguous(memory_format=fmt)
            w = w.contiguous(memory_format=fmt)
        self.training = case.mode == "training"
        self.x, self.w, self.b = x, w, b
        if self.training:
            for t in (x, w, b):
                t.requires_grad_(True)
        self.conv = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d,
                     3: torch.nn.functional.conv3d}[case.dim]
        self.g = None
        if self.training:
            out_sz = [(s + 2 * case.padding - case.kernel) // case.stride + 1 for s in case.size]
            self.g = torch.randn([case.batch, case.out_channels] + out_sz, generator=gen).to(dtype)

    def forward(self):
        c = self.case
        return self.conv(self.x, self.w, self.b, c.stride, c.padding, 1, c.groups)

    def step(self):
        """One inference call, or one forward+backward. Returns the tensors to check."""
        torch = import_torch()
        if not self.training:
            with torch.inference_mode():
                return {"output": self.forward()}
        for t in (self.x, self.w, self.b):
            t.grad = None
        y = self.forward()
        y.backward(self.g)
        return {"output": y.detach(), "grad_input": self.x.grad, "grad_weight": self.w.grad,
                "grad_bias": self.b.grad}

    def select(self):
        torch = import_torch()
        c = self.case
        if self.training:
            return _selected_backend(self.x, self.w, self.b, c.stride, c.padding, c.groups, c.dim)
        with torch.inference_mode():
            return _selected_backend(self.x, self.w, self.b, c.stride, c.padding, c.groups, c.dim)

    def reference(self):
        torch = import_torch()
        c = self.case
        x = self.x.detach().to(torch.float64)
        w = self.w.detach().to(torch.float64)
        b = self.b.detach().to(torch.float64)
        if not self.training:
            with torch.no_grad():
                return {"output": reference_conv(x, w, b, c.stride, c.padding, c.groups)}
        x.requires_grad_(True)
        w.requires_grad_(True)
        b.requires_grad_(True)
        with torch.enable_grad():
            y = reference_conv(x, w, b, c.stride, c.padding, c.groups)
            gx, gw, gb = torch.autograd.grad(y, (x, w, b), self.g.to(torch.float64))
        return {"output": y.detach(), "grad_input": gx, "grad_weight": gw, "grad_bias": gb}


def _trace_path(profile_dir, name, suffix=""):
    if not profile_dir:
        return None
    return os.path.join(profile_dir, "%s%s.json" % (name, suffix))


def dtype_supported(dtype_name):
    torch = import_torch()
    dtype = getattr(torch, dtype_name, None)
    if dtype is None:
        return False, "torch has no %s" % dtype_name
    try:
        x = torch.randn(1, 4, 5, 5).to(dtype)
        w = torch.randn(4, 1, 3, 3).to(dtype)
        torch.nn.functional.conv2d(x, w, None, 1, 1, 1, 4)
        x1 = torch.randn(1, 4, 9).to(dtype)
        torch.nn.functional.conv1d(x1, torch.randn(4, 1, 3).to(dtype), None, 1, 1, 1, 4)
    except Exception as e:  # noqa: BLE001
        return False, "%s conv unsupported here: %s" % (dtype_name, str(e).splitlines()[0])
    return True, ""


def _measure(prep, profile_dir, name, suffix, timing, groups):
    """Profile one step (counts), then time. Returns dict."""
    out = {}
    out["selected"] = prep.select()
    prep.step()  # warm-up (primitive creation, allocator)
    tensors, events = profiled(prep.step, _trace_path(profile_dir, name, suffix))
    out["tensors"] = tensors
    out["trace"] = _trace_path(profile_dir, name, suffix)
    sel = out["selected"]
    calls, ops, how, ev = count_backend_calls(events, "forward", sel, groups)
    out["forward"] = (calls, ops, how, ev)
    if prep.training:
        calls_b, ops_b, how_b, ev_b = count_backend_calls(events, "backward", sel, groups, 3)
        out["backward"] = (calls_b, ops_b, how_b, ev_b)
    out["time_ms"], out["time_min_ms"] = _time(prep.step) if timing else (None, None)
    return out


def _explain(case, selected, facts):
    """Why a case is expected to loop / not to be served, in this install (for the notes)."""
    notes = []
    if selected in LOOP_BACKENDS and case.groups > 1:
        notes.append("%s has no group support: _convolution runs it once per group, then "
                     "aten::cat" % selected)
        if facts.get("mkldnn_disabled_for_run"):
            notes.append("oneDNN disabled for this run (--no-mkldnn)")
        elif not facts.get("mkldnn_available"):
            notes.append("this torch has no oneDNN (USE_MKLDNN=0)")
        elif case.dtype == "float16":
            notes.append("oneDNN takes fp16 conv only where mkldnn_fp16_device_check() holds "
                         "(x86: AVX512-FP16/AMX-FP16; never on ARM)")
        elif case.dtype == "bfloat16":
            notes.append("oneDNN takes bf16 conv only where mkldnn_bf16_device_check() holds "
                         "(x86: AVX512-BF16 or AVX512BW/VL/DQ; ARM: bf16 hardware, not on "
                         "Xavier/Orin)")
    return notes


def run_case(case, opts, facts):
    torch = import_torch()
    res = CaseResult(case)
    res.tolerance = TOLERANCES.get(case.dtype)
    try:
        prep = _Prepared(case, opts.seed)
        mk = False if opts.no_mkldnn else None
        with mkldnn_enabled(mk):
            m = _measure(prep, opts.profile_dir, case.name, "", opts.timing, case.groups)
        res.selected = m["selected"]
        res.calls_forward, res.forward_ops, res.attribution["forward"], \
            res.loop_evidence["forward"] = m["forward"]
        if "backward" in m:
            res.calls_backward, res.backward_ops, res.attribution["backward"], \
                res.loop_evidence["backward"] = m["backward"]
        if m["trace"]:
            res.traces.append(m["trace"])
        res.time_ms, res.time_min_ms = m["time_ms"], m["time_min_ms"]
        ref = prep.reference()
        for key, val in ref.items():
            got = m["tensors"].get(key)
            res.errors[key] = rel_err(got, val) if got is not None else float("inf")
        expected = EXPECTED_OPS.get(res.selected or "")
        for ops in (res.forward_ops, res.backward_ops):
            if expected and ops and not set(ops) & set(expected):
                res.rerouted = True
        if res.rerouted:
            res.notes.append("served by other ops than _select_conv_backend names (a routing "
                             "shim, e.g. --kernel-lib)")
        else:
            res.notes += _explain(case, res.selected, facts)
        # The forced group loop, for the speed-up.
        if opts.timing and opts.loop_baseline != "off":
            if res.loops:
                res.loop_forced, res.loop_time_ms, res.loop_calls = True, res.time_ms, \
                    max(c or 0 for c in (res.calls_forward, res.calls_backward))
                res.loop_note = "this case runs the group loop itself"
            elif opts.loop_baseline in ("auto", "inline"):
                _forced_loop_inline(prep, res, opts)
        del prep
    except Exception as e:  # noqa: BLE001
        res.status = "ERROR"
        res.message = "%s: %s" % (type(e).__name__, (str(e).splitlines() or [""])[0][:300])
        return res
    _set_status(res, opts)
    del torch
    return res


def _forced_loop_inline(prep, res, opts):
    case = prep.case
    with _env(GROUPED_CONV_ENV, "loop"), mkldnn_enabled(False):
        m = _measure(prep, opts.profile_dir, case.name, ".loop", True, case.groups)
    calls = [m["forward"][0]] + ([m["backward"][0]] if "backward" in m else [])
    res.loop_selected = m["selected"]
    res.loop_calls = max(c or 0 for c in calls)
    if m["trace"]:
        res.traces.append(m["trace"])
    apply_loop(res, res.loop_calls, m["time_ms"], m["selected"], "inline")


def apply_loop(res, calls, t_ms, selected, how):
    res.loop_calls = calls
    res.loop_selected = selected
    if calls and calls > 1:
        res.loop_forced = True
        res.loop_time_ms = t_ms
        res.loop_note = ("forced %s: oneDNN off + %s=loop -> %s backend calls (%s)"
                         % (how, GROUPED_CONV_ENV, calls, selected))
        if res.time_ms:
            res.speedup = t_ms / res.time_ms
    else:
        res.loop_forced = False
        res.loop_time_ms = None
        res.speedup = None
        res.loop_note = ("group loop cannot be forced here (%s): oneDNN off + %s=loop still ran "
                         "%s backend call(s) via %s" % (how, GROUPED_CONV_ENV, calls, selected))


def _set_status(res, opts):
    if res.wrong:
        res.status = "WRONG"
    elif res.loops:
        res.status = "LOOP"
        if opts.allow_loop and filter_cases([res.case], opts.allow_loop):
            res.status = "LOOP-ALLOWED"
    else:
        res.status = "PASS"
