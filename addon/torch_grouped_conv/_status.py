"""`python -m torch_grouped_conv`: what this add-on was built for, and what it does here."""
import os
import platform
import sys

SAMPLE = "Conv2d(384, 384, 3, groups=384, padding=1) on [1, 384, 56, 56]"


def _in_tree_kernel():
    """Does the running torch have its own CPU kernel of aten::_conv_depthwise2d (a torch
    built by torch-arm-recipe), i.e. did the add-on leave it alone?"""
    import torch
    try:
        return not bool(torch.ops.native_dwconv.registered_aten_kernels())
    except Exception:  # noqa: BLE001 - not loaded
        return None


def _sample_case():
    """The policy's pick for the sample case and what one call really runs (profiler)."""
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile
    x = torch.randn(1, 384, 56, 56)
    w = torch.randn(384, 1, 3, 3)
    out = {}
    previous = torch.backends.mkldnn.enabled
    try:
        for onednn in (True, False):
            torch.backends.mkldnn.enabled = onednn
            key = "oneDNN %s" % ("on" if onednn else "off")
            try:
                choice = torch.ops.native_dwconv.routing_choice(x, w, 384, False)
            except Exception:  # noqa: BLE001 - the add-on is not loaded
                choice = None
            with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
                F.conv2d(x, w, padding=1, groups=384)
            counts = {e.key: e.count for e in prof.key_averages()}
            ran = {k: v for k, v in counts.items()
                   if k in ("aten::_conv_depthwise2d", "aten::thnn_conv2d",
                            "aten::mkldnn_convolution", "aten::_nnpack_spatial_convolution",
                            "aten::_slow_conv2d_forward")}
            out[key] = {"policy": choice, "ran": ran}
    finally:
        torch.backends.mkldnn.enabled = previous
    return out


def collect(state, info, library):
    import torch
    facts = {
        "add-on": "torch-grouped-conv %s" % info.get("version"),
        "built for": info.get("torch"),
        "kernel families": info.get("families"),
        "compiled capabilities": info.get("capabilities"),
        "compiler": (info.get("build") or {}).get("compiler_version"),
        "platform tag": info.get("platform_tag"),
        "library": library,
        "torch here": {"version": torch.__version__, "git_version": torch.version.git_version,
                       "cxx11_abi": int(bool(torch._C._GLIBCXX_USE_CXX11_ABI)),
                       "arch": platform.machine(), "path": os.path.dirname(torch.__file__)},
        "loaded": state["loaded"],
        "reason": state["reason"],
    }
    if state["loaded"]:
        facts["cpu capability in use"] = "%s (%s)" % (
            torch.ops.torch_grouped_conv.cpu_capability(),
            torch.ops.torch_grouped_conv.cpu_capability_note())
        in_tree = _in_tree_kernel()
        facts["aten::_conv_depthwise2d CPU kernel"] = (
            "torch's own (built by torch-arm-recipe): the add-on added only what was missing"
            if in_tree else "the add-on's")
        facts["routing shim"] = ("on" if torch.ops.native_dwconv.shim_enabled() else "off")
        built = info.get("torch") or {}
        if torch.version.git_version != built.get("git_version"):
            facts["note"] = ("this torch is another build (git %s) of the version the add-on "
                             "was built for (git %s): `python build.py verify` tells whether "
                             "every case runs as one kernel here"
                             % ((torch.version.git_version or "?")[:10],
                                (built.get("git_version") or "?")[:10]))
    facts["sample case: " + SAMPLE] = _sample_case()
    return facts


def _fmt(value, indent="  "):
    if isinstance(value, dict):
        return "\n" + "\n".join("%s%s: %s" % (indent, k, _fmt(v, indent + "  "))
                                for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def main():
    import torch_grouped_conv as addon
    facts = addon.status()
    for key, value in facts.items():
        print("%s: %s" % (key, _fmt(value)))
    return 0 if facts["loaded"] else 1


if __name__ == "__main__":
    sys.exit(main())
