"""The fp16 path of the native depthwise kernel is really compiled into an in-tree build.

An aarch64 torch compiles aten/src/ATen/native/cpu/*.cpp for its DEFAULT capability as plain
ARMv8-A (no -march: the wheel must run on every 64-bit ARM CPU, and the recipe's build does
not pass the target's -march to torch). The kernel TU therefore carries an fp16-arithmetic
copy of its engines under a target pragma and picks it at run time from the CPU's hwcaps.

This compiles the patched tree's TU exactly as test_patched_tus.py compiles every other one
(aarch64, DEFAULT, the real build's defines; that test leaves this case to this one) into an
object and reads its disassembly: fp16 vector arithmetic
(fmla/fadd/fmul on .8h / .4h lanes) must be there, only in the fp16_arith copy (so nothing an
ARMv8.0 CPU runs outside it uses FEAT_FP16), next to the getauxval() call that selects it.
That the selection works on CPUs with and without fp16 is run under qemu in
test_native_depthwise_aarch64.py (cortex-a57 vs cortex-a76 CPU models).
"""
from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess

KERNEL_TU = os.path.join("aten", "src", "ATen", "native", "cpu", "DepthwiseConv2dNativeKernel.cpp")
FP16_ARITH = re.compile(r"\t(fmla|fmls|fadd|fsub|fmul)\s+v\d+\.(8h|4h)")
FUNCTION = re.compile(r"^[0-9a-f]+ <(.*)>:$")


def disassembly(obj, objdump):
    """(every function of the object, {function: fp16 arithmetic instructions in it})."""
    listing = subprocess.run([objdump, "-d", "-C", obj], stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout
    functions, counts = [], collections.Counter()
    for line in listing.splitlines():
        m = FUNCTION.match(line)
        if m:
            functions.append(m.group(1))
        elif functions and FP16_ARITH.search(line):
            counts[functions[-1]] += 1
    return functions, counts


def test_in_tree_kernel_object_has_fp16_arithmetic_only_in_its_runtime_variant(
        patched_source_tree, cross_toolchain, tmp_path):
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    assert objdump, "aarch64-linux-gnu-objdump not found: apt-get install binutils-aarch64-linux-gnu"
    tu = os.path.join(patched_source_tree, KERNEL_TU)
    obj = str(tmp_path / "DepthwiseConv2dNativeKernel.DEFAULT.o")
    flags = cross_toolchain.compile_flags("aarch64", source_tree=patched_source_tree,
                                          cpu_capability="DEFAULT", tu_path=tu)
    assert not any(f.startswith("-march") for f in flags), "the DEFAULT capability is ARMv8-A"
    # as compile_check does, but keeping the object
    proc = subprocess.run([cross_toolchain.compiler("aarch64")] + flags + ["-O2", "-c", "-o", obj, tu],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode == 0, proc.stdout[-6000:]

    functions, counts = disassembly(obj, objdump)
    assert sum(counts.values()) > 100, "no fp16 vector arithmetic in the in-tree object"
    outside = [f for f in counts if "fp16_arith::" not in f]
    assert not outside, "fp16 arithmetic outside the runtime-selected variant: %s" % outside[:5]
    # Every fp16 engine the forward / grad_input dispatch can reach has its fp16 copy.
    for engine in ("forward_planar", "forward_tiles", "forward_cl_direct", "grad_input_planar",
                   "grad_input_nhwc"):
        assert any("fp16_arith::" in f and engine in f for f in functions), engine
    symbols = subprocess.run([objdump, "-t", obj], stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout
    assert re.search(r"\*UND\*\s+0+ getauxval$", symbols, re.M), "no run-time hwcap check"

