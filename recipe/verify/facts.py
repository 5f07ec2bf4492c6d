"""Facts about the torch under test (version, build settings, backends it has, the add-on,
a loaded kernel library): the head of every report."""
from __future__ import annotations

import os
import platform
import re
import sys

from recipe import REPO_ROOT
from recipe.verify.base import GROUPED_CONV_ENV, import_torch


def _config_highlights(config_text):
    out = {}
    for line in config_text.splitlines():
        s = line.strip().lstrip("- ").strip()
        if re.search(r"MKL-DNN|oneDNN|Compute Library|\bACL\b|OpenMP|NNPACK|XNNPACK|"
                     r"CPU capability|LAPACK|Math Kernel|OpenBLAS", s) and "Build settings" not in s:
            out.setdefault("lines", []).append(s)
        if s.startswith("Build settings:"):
            settings = {}
            for m in re.finditer(r"([A-Z][A-Z0-9_]+)=([^,]*)", s):
                settings[m.group(1)] = m.group(2).strip()
            keep = ("TORCH_VERSION", "COMMIT_SHA", "BUILD_TYPE", "BLAS_INFO", "LAPACK_INFO",
                    "USE_MKLDNN", "USE_MKLDNN_ACL", "USE_XNNPACK", "USE_NNPACK", "USE_OPENMP",
                    "USE_MKL", "USE_CUDA", "CXX_COMPILER")
            out["build_settings"] = {k: settings[k] for k in keep if k in settings}
            flags = settings.get("CXX_FLAGS", "")
            out["cxx_defines"] = sorted(set(re.findall(r"-D(USE_[A-Z0-9_]+|ONEDNN_[A-Z0-9_]+|"
                                                       r"AT_[A-Z0-9_]+)", flags)))
    return out


def _safe(fn, default=None):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001  (facts are best effort; report what failed)
        return default if default is not None else "unavailable: %s" % (str(e).splitlines() or [""])[0]


def load_kernel_lib(path):
    """The add-on's library links no torch library and registers its operators only when
    its loader asks: load it with addon/torch_grouped_conv/_loader.py of this checkout (makes
    the running torch's libraries global, loads, registers)."""
    loader = os.path.join(REPO_ROOT, "addon", "torch_grouped_conv", "_loader.py")
    import importlib.util
    spec = importlib.util.spec_from_file_location("torch_grouped_conv_loader", loader)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.load_library(path)


def _addon_fact():
    """The autoloaded add-on torch-grouped-conv: None when not installed."""
    addon = sys.modules.get("torch_grouped_conv")
    if addon is None:
        return None
    state = getattr(addon, "_state", {})
    return {"version": addon.build_info().get("version"), "loaded": state.get("loaded"),
            "reason": state.get("reason")}


def install_facts(kernel_lib=None, no_mkldnn=False):
    torch = import_torch()
    facts = {
        "torch_version": torch.__version__,
        "git_version": _safe(lambda: torch.version.git_version),
        "torch_file": os.path.dirname(torch.__file__),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "interop_threads": _safe(torch.get_num_interop_threads),
        "cpu_capability": _safe(lambda: torch.backends.cpu.get_cpu_capability()),
        "mkldnn_available": _safe(lambda: bool(torch.backends.mkldnn.is_available())),
        "mkldnn_enabled": _safe(lambda: bool(torch._C._get_mkldnn_enabled())),
        "mkldnn_disabled_for_run": bool(no_mkldnn),
        "acl": None,
        "xnnpack_compiled": None,
        "nnpack_available": _safe(lambda: bool(torch._nnpack_available())),
        "select_conv_backend": hasattr(torch._C, "_select_conv_backend"),
        "conv_backends": sorted(_conv_backend_names()),
        "patched_routing": "CpuDepthwise2d" in _conv_backend_names(),
        "patched_grouped_kernel": "CpuGrouped2d" in _conv_backend_names(),
        GROUPED_CONV_ENV: os.environ.get(GROUPED_CONV_ENV),
        "kernel_lib": os.path.abspath(kernel_lib) if kernel_lib else None,
        "addon": _safe(_addon_fact, default={}) or None,
    }
    if hasattr(torch.ops, "mkldnn"):
        facts["acl"] = _safe(lambda: bool(torch.ops.mkldnn._is_mkldnn_acl_supported()),
                             default="not exposed")
    if hasattr(torch._C, "_is_xnnpack_enabled"):
        facts["xnnpack_compiled"] = _safe(lambda: bool(torch._C._is_xnnpack_enabled()))
        facts["xnnpack_note"] = "compile flag only; says nothing about conv routing"
    facts["config"] = _safe(lambda: _config_highlights(torch.__config__.show()), default={})
    facts["parallel"] = _safe(lambda: [l.strip() for l in torch.__config__.parallel_info().splitlines()
                                       if "threads" in l or "backend" in l], default=[])
    return facts


def _conv_backend_names():
    torch = import_torch()
    enum = getattr(torch._C, "_ConvBackend", None)
    if enum is None:
        return []
    return [n.rstrip(",") for n in getattr(enum, "__members__", {})]
