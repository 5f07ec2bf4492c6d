"""The guest side of `build.py bench --emulated aarch64` (recipe/bench_emulated.py).

Runs INSIDE the aarch64 root filesystem (its python 3.11 + the official torch wheel) under the
counting qemu, so it imports nothing of the repo: ``python3 -S emulated_guest.py CONFIG``.
For each measurement of CONFIG it builds the inputs as recipe/bench.py does (batch 1), runs
the call once under the profiler and oneDNN's verbose mode (what ran), warms up, then fork()s
three children that run the call 0, 0 and `reps` times and exit: the plugins report cumulative
counts at every process exit, and the host takes the differences. Before the first
measurement it makes the marker syscall that starts the cache model (tests/harness/qemu_plugins.py).
"""
import json
import os
import sys


def make_inputs(torch, case, dtype, layout):
    """(x, w, b, x4, w4, conv args, output elements, tensor bytes) as recipe/bench.py makes them."""
    name, C, S, k, s, p = case
    g = torch.Generator().manual_seed(0)
    if "conv1d" in name:
        if layout == "channels_last":   # (N, L, C) activations seen as (N, C, L)
            x = torch.randn(1, S, C, generator=g).to(dtype).transpose(1, 2)
        else:
            x = torch.randn(1, C, S, generator=g).to(dtype)
        w = torch.randn(C, 1, k, generator=g).to(dtype)
        x4, w4 = x.unsqueeze(2), w.unsqueeze(2)
        args4 = ([1, k], [1, s], [0, p], [1, 1])
        out_elems = C * ((S + 2 * p - k) // s + 1)
    else:
        x = torch.randn(1, C, S, S, generator=g).to(dtype)
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        w = torch.randn(C, 1, k, k, generator=g).to(dtype)
        x4, w4 = x, w
        args4 = ([k, k], [s, s], [p, p], [1, 1])
        out_elems = C * ((S + 2 * p - k) // s + 1) ** 2
    b = torch.randn(C, generator=g).to(dtype)
    nbytes = (x.numel() + out_elems + w.numel() + C) * x.element_size()
    return x, w, b, x4, w4, args4, out_elems, nbytes


def reference(torch, x4, w4, b, args4):
    """The depthwise conv in float64 as a sum of shifted inputs (no conv kernel involved)."""
    (kh, kw), (sh, sw), (ph, pw), _ = args4
    xp = torch.nn.functional.pad(x4.double(), (pw, pw, ph, ph))
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = b.double().view(1, -1, 1, 1).repeat(xp.shape[0], 1, oh, ow)
    for i in range(kh):
        for j in range(kw):
            tap = xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            out += tap * w4[:, 0, i, j].double().view(1, -1, 1, 1)
    return out


def make_call(torch, F, backend, case, x, w, b, x4, w4, args4):
    name, C, S, k, s, p = case
    if backend.startswith("native"):
        ks, st, pd, dl = args4
        return lambda: torch.ops.aten._conv_depthwise2d(x4, w4, ks, b, st, pd, dl)
    conv = F.conv1d if "conv1d" in name else F.conv2d
    return lambda: conv(x, w, b, s, p, 1, C)


def main(config_path):
    import ctypes
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile
    with open(config_path) as f:
        cfg = json.load(f)
    torch.set_num_threads(1)
    capability = None
    if cfg["library"]:
        # the add-on's own loader (by path: the package would autoload a wheel's library)
        import importlib.util
        spec = importlib.util.spec_from_file_location("torch_grouped_conv_loader", cfg["loader"])
        loader = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loader)
        loader.load_library(cfg["library"])
        capability = torch.ops.torch_grouped_conv.cpu_capability()
    libc = ctypes.CDLL(None)
    results = []
    for i, m in enumerate(cfg["measurements"]):
        case = tuple(m["case"])
        x, w, b, x4, w4, args4, out_elems, nbytes = make_inputs(
            torch, case, getattr(torch, m["dtype"]), m["layout"])
        call = make_call(torch, F, m["backend"], case, x, w, b, x4, w4, args4)
        torch.backends.mkldnn.enabled = m["backend"] != "loop"
        call()
        # What runs: aten ops (profiler) and, for oneDNN, its verbose lines on stdout.
        print("@@check %d" % i)
        sys.stdout.flush()
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                y = call()
        sys.stdout.flush()
        print("@@end %d" % i)
        ops = {e.key: e.count for e in prof.key_averages()}
        ref = reference(torch, x4, w4, b, args4)
        err = ((y.double().reshape(ref.shape) - ref).abs().max() / ref.abs().max()).item()
        if i == 0:
            libc.syscall(cfg["marker_syscall"])   # the cache model starts here
        for _ in range(cfg["warmup"]):
            call()
        for reps in (0, 0, cfg["reps"]):
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                for _ in range(reps):
                    call()
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            if status != 0:
                raise SystemExit("measurement child exited with status %d" % status)
        results.append({"ops": ops, "out_elems": out_elems, "bytes": nbytes,
                        "out_shape": list(y.shape), "torch": torch.__version__, "max_rel_err": err,
                        "capability": capability if m["backend"].startswith("native") else None})
    torch.backends.mkldnn.enabled = True
    with open(cfg["result"], "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1])
