"""A CUDA-era aarch64 torch: PyPI's torch 2.14.1+cu130 (what JetPack 7 / AGX Thor users get
from `pip install torch`), with its CUDA 13 runtime wheels (3.1 GB, pinned), in a venv of the
arm64 root filesystem under qemu (tests/harness/emulation_cuda.py; no GPU: torch.cuda is simply not
available). The add-on cross-built against that wheel's headers (`build.py addon --torch
2.14.1 --arch aarch64`) is pip-installed by the rootfs's own pip beside it; fresh
interpreters that do only `import torch` then run the seed case as ONE kernel, oneDNN off
and on, where the stock wheel loops with oneDNN off (every dtype).

Slow tier: the first run downloads 3.1 GB and unpacks 5.1 GB (~4 min), each guest
`import torch` of this wheel takes ~30 s under qemu."""
from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import addon_helpers as ah  # noqa: E402
from conftest import unavailable  # noqa: E402

from recipe import addon  # noqa: E402

from tests.harness import emulation_cuda  # noqa: E402
from recipe.addon_headers import HeadersError  # noqa: E402
from tests.harness.emulation import EmulationError  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cuda_torch():
    try:
        return emulation_cuda.ensure_cuda_torch()
    except EmulationError as e:
        unavailable("torch 2.14.1+cu130 aarch64 and its CUDA runtime wheels under qemu", e)


@pytest.fixture(scope="module")
def site(cuda_torch, tmp_path_factory):
    try:
        wheel = addon.build_addon("2.14.1", "aarch64", out_dir=str(
            tmp_path_factory.mktemp("addon-2141")), quiet=True)
    except HeadersError as e:
        unavailable("the official torch 2.14.1 aarch64 wheel / cross compiler", e)
    return ah.guest_install(cuda_torch.emu, wheel, str(tmp_path_factory.mktemp("site-2141")))


def probe(cuda_torch, site, env=None):
    full = {"PYTHONPATH": site}
    full.update(env or {})
    r = cuda_torch.python_code(ah.probe_code(), binds=[site], env=full)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    return ah.parse_result(r.stdout), r.stderr


def test_the_pinned_wheels_are_the_whole_requires_dist_closure():
    wheels = emulation_cuda.ensure_wheels()
    assert emulation_cuda.requirement_gaps(wheels) == []
    # the check can fail: without cuBLAS, cuda-toolkit[cublas] is not satisfied
    gaps = emulation_cuda.requirement_gaps(
        [w for w in wheels if not os.path.basename(w).startswith("nvidia_cublas-")])
    assert any(g.startswith("nvidia-cublas") for g in gaps), gaps


def test_stock_cuda_wheel_imports_and_still_loops(cuda_torch, site):
    """The wheel alone (add-on switched off): CUDA build, no GPU, and the seed case loops
    with oneDNN off (every dtype, what a Jetson wheel does). With oneDNN on, 2.14.1 runs the
    fp16 seed case as one oneDNN call on this CPU (qemu's Neoverse-N1 model has FP16)."""
    res, _ = probe(cuda_torch, site, env={"TORCH_GROUPED_CONV": "0"})
    assert not res["loaded"]
    r = cuda_torch.python_code("import torch, json; print(json.dumps([torch.__version__, "
                               "torch.version.cuda, torch.cuda.is_available()]))")
    assert json.loads(r.stdout.strip().splitlines()[-1]) == ["2.14.1+cu130", "13.0", False]
    cases = res["cases"]
    for dtype in ("float32", "float16", "bfloat16"):
        assert cases["no_onednn-%s-nchw" % dtype]["ops"].get("aten::thnn_conv2d") == 384
    assert cases["onednn-float16-nchw"]["ops"] == {"aten::mkldnn_convolution": 1}


def test_import_torch_runs_every_seed_case_as_one_kernel(cuda_torch, site):
    res, stderr = probe(cuda_torch, site)
    assert res["loaded"], res["reason"]
    assert res["warnings"] == [] and ah.count_warnings(stderr) == 0
    assert res["capability"] == "FP16"
    ah.assert_every_case_one_kernel(res)
