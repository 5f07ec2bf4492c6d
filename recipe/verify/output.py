"""The report as a table (what `build.py verify` prints without --json)."""
from __future__ import annotations

from recipe.verify.base import GROUPED_CONV_ENV


def fmt_err(v):
    if v is None:
        return "-"
    if v != v or v == float("inf"):
        return "inf"
    return "%.1e" % v


def _fmt_ms(v):
    if v is None:
        return "-"
    return "%.3f" % v if v < 1 else ("%.2f" % v if v < 100 else "%.0f" % v)


def _short_ops(ops, calls, attribution):
    if ops:
        return " + ".join(("%s x%s" % (k.split("::")[-1], v)) if v != 1 else k.split("::")[-1]
                          for k, v in sorted(ops.items(), key=lambda kv: -kv[1]))
    if calls is None:
        return "-"
    a = attribution or ""
    if a.startswith("group loop inferred"):
        return "loop x%s (inferred)" % calls
    return "(no op event)"


def format_report(data):
    facts = data.get("facts", {})
    lines = []
    cfg = facts.get("config") or {}
    bs = cfg.get("build_settings", {}) if isinstance(cfg, dict) else {}
    lines.append("torch %s (git %s) | python %s | %s | %s threads | CPU capability %s" % (
        facts.get("torch_version"), str(facts.get("git_version"))[:12], facts.get("python"),
        facts.get("machine"), facts.get("threads"), facts.get("cpu_capability")))
    lines.append("oneDNN (USE_MKLDNN) %s%s | ACL %s | XNNPACK compiled %s (flag only) | NNPACK %s"
                 % (facts.get("mkldnn_available"),
                    " [disabled for this run: --no-mkldnn]" if facts.get("mkldnn_disabled_for_run")
                    else "" if facts.get("mkldnn_enabled") in (True, None) else " [disabled]",
                    facts.get("acl"), facts.get("xnnpack_compiled"), facts.get("nnpack_available")))
    extra = []
    if bs.get("BLAS_INFO"):
        extra.append("BLAS %s" % bs["BLAS_INFO"])
    for l in (cfg.get("lines") or []) if isinstance(cfg, dict) else []:
        if "DNN" in l or "Compute Library" in l:
            extra.append(l)
    extra.append("_select_conv_backend %s" % ("yes" if facts.get("select_conv_backend") else "no"))
    extra.append("patched routing (CpuDepthwise2d) %s" % ("yes" if facts.get("patched_routing")
                                                          else "no"))
    if facts.get("patched_grouped_kernel"):
        extra.append("native grouped kernel (CpuGrouped2d) yes")
    if facts.get(GROUPED_CONV_ENV):
        extra.append("%s=%s" % (GROUPED_CONV_ENV, facts.get(GROUPED_CONV_ENV)))
    if facts.get("kernel_lib"):
        extra.append("kernel lib %s" % facts["kernel_lib"])
    if facts.get("addon"):
        extra.append("add-on torch-grouped-conv %s: %s" % (facts["addon"].get("version"),
                                                           facts["addon"].get("reason")))
    lines.append(" | ".join(extra))
    lines.append("")
    rows = [("case", "selected", "backend ops fwd / bwd", "calls", "max err (tol)", "ms",
             "loop ms", "speed-up", "status")]
    for c in data.get("cases", []):
        bo = c.get("backend_ops", {})
        calls = c.get("calls", {})
        att = c.get("attribution", {})
        ops = _short_ops(bo.get("forward"), calls.get("forward"), att.get("forward"))
        if calls.get("backward") is not None:
            ops += " / " + _short_ops(bo.get("backward"), calls.get("backward"),
                                      att.get("backward"))
        ncalls = "-" if calls.get("forward") is None else str(calls.get("forward"))
        if calls.get("backward") is not None:
            ncalls += "/%s" % calls.get("backward")
        errs = c.get("errors") or {}
        tol = c.get("tolerance")
        err = "-"
        if errs:
            worst = max(errs.values(), key=lambda v: float("inf") if v is None else v)
            err = "%s (%s)" % (fmt_err(worst), fmt_err(tol[0] if tol else None))
        sp = c.get("speedup")
        if sp is not None:
            sp_s = "%.1fx" % sp
        elif c.get("loop_forced") is False:
            sp_s = "n/a*"
        elif c.get("loops"):
            sp_s = "(loop)"
        else:
            sp_s = "-"
        status = c.get("status")
        sel = (c.get("selected_backend") or "?") + ("*" if c.get("rerouted") else "")
        rows.append((c["name"], sel, ops, ncalls, err,
                     _fmt_ms(c.get("time_ms")), _fmt_ms(c.get("loop_time_ms")), sp_s, status))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    widths[2] = min(widths[2], 56)
    for j, r in enumerate(rows):
        cells = []
        for i, v in enumerate(r):
            v = str(v)
            if i == 2 and len(v) > widths[2]:
                v = v[:widths[2] - 1] + "~"
            cells.append(v.rjust(widths[i]) if i in (3, 5, 6, 7) else v.ljust(widths[i]))
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("calls = backend kernel calls per conv (forward/backward); more than 1 is the "
                 "group loop. err = max|y - ref| / max|ref| vs float64 (worst of output and "
                 "grads). ms = median after warm-up (inference: one call; train: forward + "
                 "backward); loop ms = the same with the group loop forced.")
    cases = data.get("cases", [])
    if any(c.get("rerouted") for c in cases):
        lines.append("selected* = _select_conv_backend's answer, but other ops served the conv "
                     "(an out-of-tree routing shim): the profile is what counts.")
    unforced = [c for c in cases if c.get("loop_forced") is False]
    if unforced:
        lines.append("")
        lines.append("* no speed-up: the group loop could not be forced for %d case(s), e.g. %s: %s"
                     % (len(unforced), unforced[0]["name"], unforced[0].get("loop_note")))
    notes = {}
    for c in cases:
        for n in c.get("notes") or []:
            notes.setdefault(n, []).append(c["name"])
    skipped = [c for c in cases if c.get("status") == "SKIP"]
    for c in skipped:
        lines.append("SKIP %s: %s" % (c["name"], c.get("message")))
    allowed = [c for c in cases if c.get("status") == "LOOP-ALLOWED"]
    if allowed:
        lines.append("")
        lines.append("Loops allowed by --allow-loop (%d):" % len(allowed))
        for c in allowed:
            lines.append("  %s: %s" % (c["name"], c.get("reason")))
    lines.append("")
    summary = data.get("summary", {}).get("by_status", {})
    lines.append("%d case(s): %s; %.1f s" % (
        len(cases), ", ".join("%d %s" % (v, k) for k, v in sorted(summary.items())),
        facts.get("elapsed_s") or 0.0))
    fails = data.get("failures", [])
    if fails:
        lines.append("FAILED: %d case(s) loop, are wrong, or errored:" % len(fails))
        for f in fails:
            lines.append("  %s  %s" % (f["name"], f["reason"]))
        if notes:
            lines.append("Why (this install):")
            for n, names in notes.items():
                lines.append("  - %s (%d case(s))" % (n, len(names)))
    else:
        lines.append("OK: every grouped conv ran as ONE backend call and matched float64.")
    return "\n".join(lines)
