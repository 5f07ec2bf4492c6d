"""XNNPACK's initialization, asked on every grouped-conv routing decision: once per process,
thread-safe, and not retried after a failure.

The tree's xnnpack/Init.cpp is compiled unchanged into a small library for the official torch
2.6.0 aarch64 wheel with a counting stand-in for xnn_initialize (tests/cpp/
graft_xnnpack_init.cpp) and run under qemu: 8 threads call xnnpack::available() 200 times
each, starting together. xnn_initialize must run exactly once, whether it succeeds or fails
(2.6.0's plain bool retried a failed initialization on every call, i.e. 1600 times, and let
several threads initialize at once: shown in the slow tier).
"""
from __future__ import annotations

import os

import pytest

from recipe import REPO_ROOT

THREADS, CALLS = 8, 200


def build(aarch64_torch, tree, out_dir):
    local = os.path.join(out_dir, "local.map")
    with open(local, "w") as f:
        f.write("{ global: graft_available_calls; local: *; };\n")
    return aarch64_torch.build_graft(
        [os.path.join(REPO_ROOT, "tests", "cpp", "graft_xnnpack_init.cpp"),
         os.path.join(tree, "aten", "src", "ATen", "native", "xnnpack", "Init.cpp")],
        os.path.join(out_dir, "libgraft_xnnpack_init.so"), source_tree=tree,
        extra_flags=["-pthread", "-Wl,--version-script=" + local])


def initialize_calls(aarch64_torch, lib, fail):
    code = ("import ctypes, torch\n"
            "print('CALLS', ctypes.CDLL(%r).graft_available_calls(%d, %d, %d))\n"
            % (lib, THREADS, CALLS, fail))
    proc = aarch64_torch.python(code, binds=[os.path.dirname(lib)], timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return int([l for l in proc.stdout.splitlines() if l.startswith("CALLS ")][-1].split()[1])


@pytest.fixture(scope="module")
def patched_lib(patched_source_tree, aarch64_torch, tmp_path_factory):
    return build(aarch64_torch, patched_source_tree, str(tmp_path_factory.mktemp("xnn_init")))


@pytest.mark.parametrize("fail", [0, 1], ids=["succeeds", "fails"])
def test_xnnpack_initializes_once_from_many_threads(patched_lib, aarch64_torch, fail):
    assert initialize_calls(aarch64_torch, patched_lib, fail) == 1


@pytest.mark.slow  # the defect on the pristine tree: shows the test above can fail
def test_pristine_init_retries_a_failure_on_every_call(pytorch_source_pristine, aarch64_torch,
                                                       tmp_path):
    """The defect, so the test above can fail."""
    lib = build(aarch64_torch, pytorch_source_pristine, str(tmp_path))
    assert initialize_calls(aarch64_torch, lib, 1) == THREADS * CALLS
