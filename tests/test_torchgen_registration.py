"""PyTorch's own code generator (torchgen, inside the 2.6.0 tree) on the patched tree.

native_functions.yaml is only proven by the generator that reads it: on the patched tree
torchgen must succeed and register the native CPU kernels of aten::_conv_depthwise2d(.out)
in RegisterCPU.cpp (on the pristine tree it does not: the test can fail). The generated
native declarations must also be the very functions our header declares: a TU includes
both and takes each function's address, which does not compile if the signatures differ
(two declarations would form an overload set).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run_torchgen(tree, out_dir):
    # cwd=tree puts the tree's own torchgen first on sys.path (not an installed torch's).
    proc = subprocess.run(
        [sys.executable, "-m", "torchgen.gen", "-s", "aten/src/ATen", "-d", str(out_dir),
         "--per-operator-headers", "--generate", "sources", "headers"],
        cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode == 0, "torchgen failed:\n" + proc.stdout[-4000:]
    with open(os.path.join(str(out_dir), "RegisterCPU.cpp")) as f:
        return f.read()


@pytest.fixture(scope="module")
def generated(patched_source_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("torchgen_patched")
    return out, run_torchgen(patched_source_tree, out)


def test_torchgen_registers_the_native_cpu_kernels(generated):
    _, register_cpu = generated
    assert "at::native::conv_depthwise2d_cpu(" in register_cpu
    assert "at::native::conv_depthwise2d_cpu_out(" in register_cpu
    assert 'm.impl("_conv_depthwise2d",' in register_cpu
    assert 'm.impl("_conv_depthwise2d.out",' in register_cpu


def test_pristine_tree_has_no_cpu_kernel(pytorch_source_pristine, tmp_path):
    register_cpu = run_torchgen(pytorch_source_pristine, tmp_path / "out")
    assert "conv_depthwise2d_cpu" not in register_cpu


def test_generated_declarations_match_our_header(generated, patched_source_tree, cross_toolchain, tmp_path):
    out, _ = generated
    probe = tmp_path / "signature_probe.cpp"
    probe.write_text(
        "#include <ATen/ops/_conv_depthwise2d_native.h>\n"
        "#include <ATen/native/DepthwiseConv2dNative.h>\n"
        "// Ill-formed if the two headers declare different signatures (an overload set).\n"
        "auto forward = &at::native::conv_depthwise2d_cpu;\n"
        "auto forward_out = &at::native::conv_depthwise2d_cpu_out;\n")
    for arch in ("aarch64", "x86_64"):
        # the generated ops/ headers come first, so they replace the wheel's (CUDA-only) ones
        result = cross_toolchain.compile_check(
            str(probe), arch=arch, include_dirs=[str(out_include(out))],
            source_tree=patched_source_tree, mode="syntax")
        assert result.ok, result.output[-4000:]


def out_include(out):
    """torchgen writes ops/*.h into <out>/ops; they are included as <ATen/ops/...>."""
    root = out.parent / (out.name + "_include")
    aten = root / "ATen"
    if not aten.exists():
        aten.mkdir(parents=True)
        os.symlink(str(out / "ops"), str(aten / "ops"))
    return root
