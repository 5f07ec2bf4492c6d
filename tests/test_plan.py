"""Plans for every target (environment and steps), alias resolution, refused pairs, dry run."""
import json
import os
import subprocess
import sys

import pytest

from recipe import REPO_ROOT, RECIPE_VERSION
from recipe.config import Configs
from recipe.plan import PlanError, format_plan, local_label, make_plan, resolve_target
from recipe.steps import ORDER
from recipe.steps import doctor
from tests.recipe_helpers import host, write

CONFIGS = Configs()


def plan_for(tmp_path, target, h=None, **opts):
    o = {"target": target, "work_dir": str(tmp_path / "work"), "wheels_dir": str(tmp_path / "wheels"),
         "cache": "none"}
    o.update(opts)
    return make_plan(o, configs=CONFIGS, host=h or host(arch="aarch64", mem_gb=64, swap_gb=0, cpus=12))


def steps(plan):
    return {s["name"]: s for s in plan.steps}


def test_orin_plan_environment_and_steps(tmp_path):
    p = plan_for(tmp_path, "jetson-agx-orin", python_version="3.10")
    env = p.env
    assert env["USE_CUDA"] == "1" and env["TORCH_CUDA_ARCH_LIST"] == "8.7"
    assert env["USE_MKLDNN"] == "1" and env["USE_MKLDNN_ACL"] == "1"
    assert env["ACL_ROOT_DIR"].endswith("ComputeLibrary") and "acl" in env["ACL_ROOT_DIR"]
    assert env["USE_XNNPACK"] == "1" and env["BUILD_TEST"] == "0"
    assert env["BUILD_IGNORE_SVE_UNAVAILABLE"] == "1" and env["USE_NATIVE_ARCH"] == "0"
    assert env["USE_FBGEMM"] == "0" and env["BLAS"] == "OpenBLAS"
    assert env["LDFLAGS"] == "-Wl,-z,max-page-size=0x10000"
    assert env["MAX_JOBS"] == "12"  # 64 GB / 3 GB per CUDA job = 21, capped by 12 cores
    assert env["PYTORCH_BUILD_VERSION"] == "2.6.0+jetson.agx.orin.recipe%s" % RECIPE_VERSION
    assert env["PYTORCH_BUILD_NUMBER"] == "1"
    assert [s["name"] for s in p.steps] == list(ORDER)
    st = steps(p)
    assert st["doctor"]["state"] == "always"
    assert not any(s["skip"] for n, s in st.items() if n != "verify")
    assert any("git clone --depth 1 --branch v2.6.0 --recurse-submodules --shallow-submodules" in c
               for c in st["sources"]["commands"])
    assert any("arch=armv8.2-a" in c and "multi_isa=1" in c and "openmp=1" in c for c in st["acl"]["commands"])
    assert any("setup.py bdist_wheel" in c for c in st["build"]["commands"])
    assert st["build"]["inputs"]["env"]["USE_MKLDNN_ACL"] == "1"
    assert "MAX_JOBS" not in st["build"]["inputs"]["env"]  # speed settings do not change the wheel
    assert p.expected_wheel == "torch-2.6.0+jetson.agx.orin.recipe%s-cp310-cp310-linux_aarch64.whl" % RECIPE_VERSION


def test_xavier_cpu_plan(tmp_path):
    p = plan_for(tmp_path, "jetson-agx-xavier-cpu", h=host(arch="aarch64", mem_gb=32, swap_gb=8, cpus=8),
                 python_version="3.9")
    assert p.cuda is None and p.env["USE_CUDA"] == "0" and "TORCH_CUDA_ARCH_LIST" not in p.env
    assert p.env["USE_MKLDNN_ACL"] == "1" and "armv8.2-a" in p.env["ACL_ROOT_DIR"]
    assert p.env["MAX_JOBS"] == "8"
    assert "manylinux_2_*_aarch64" in p.expected_wheel


def test_generic_aarch64_plan_uses_official_acl_arch(tmp_path):
    p = plan_for(tmp_path, "generic-aarch64", python_version="3.12")
    assert p.env["USE_CUDA"] == "0" and p.env["USE_MKLDNN_ACL"] == "1"
    assert any("arch=armv8a" in c for c in steps(p)["acl"]["commands"])
    assert p.python_version == "3.12" and "cp312-cp312-manylinux_2_*_aarch64" in p.expected_wheel
    if sys.version_info[:2] >= (3, 9):  # python: host = the interpreter running build.py
        assert plan_for(tmp_path, "generic-aarch64").python_version == "%d.%d" % sys.version_info[:2]


def test_x86_plan_has_no_acl_and_no_arm_flags(tmp_path):
    p = plan_for(tmp_path, "x86_64", h=host(), python_version="3.10")
    st = steps(p)
    assert st["acl"]["skip"] and "without ACL" in st["acl"]["skip"]
    assert "USE_MKLDNN_ACL" not in p.env and "ACL_ROOT_DIR" not in p.env and "BLAS" not in p.env
    assert "LDFLAGS" not in p.env and p.env["USE_MKLDNN"] == "1" and p.env["USE_CUDA"] == "0"
    assert not st["verify"]["skip"]


def test_alias_on_a_non_jetson_picks_orin_and_says_why(tmp_path):
    p = plan_for(tmp_path, "jetson-agx", h=host(), python_version="3.10")
    assert p.target["name"] == "jetson-agx-orin"
    assert "not running on a Jetson" in p.target_reason and "JetPack 6" in p.target_reason
    text = format_plan(p)
    assert "jetson-agx -> jetson-agx-orin" in text
    st = steps(p)
    assert st["verify"]["skip"] and "cannot run aarch64 wheels" in st["verify"]["skip"]
    arch = [f for f in p.doctor if f["check"] == "host arch"][0]
    assert arch["status"] == "fail" and "run it on the" in arch["fix"]


def test_alias_detects_xavier_from_the_device_tree_and_refuses_cuda_build(tmp_path):
    h = host(arch="aarch64", l4t="r35.4.1", model="Jetson-AGX")
    name, why = resolve_target("jetson-agx", CONFIGS, h)
    assert name == "jetson-agx-xavier" and "device-tree" in why
    with pytest.raises(PlanError) as e:
        plan_for(tmp_path, "jetson-agx", h=h)
    msg = str(e.value)
    assert "Python 3.9-3.13" in msg and "3.8" in msg
    assert "CUDA 11.8-12.6" in msg and "CUDA 11.4" in msg and "143624" in msg
    assert "--target jetson-agx-xavier-cpu" in msg and "--cuda off" in msg
    assert not (tmp_path / "work").exists()


def test_alias_uses_l4t_when_the_model_is_unknown():
    name, why = resolve_target("jetson-agx", CONFIGS, host(arch="aarch64", l4t="r36.4.0", model="Custom carrier"))
    assert name == "jetson-agx-orin" and "r36.4.0" in why
    name, _ = resolve_target("jetson-agx", CONFIGS, host(arch="aarch64", model="NVIDIA Jetson AGX Orin Developer Kit"))
    assert name == "jetson-agx-orin"


def test_impossible_pairs_are_refused_at_plan_time(tmp_path):
    with pytest.raises(PlanError) as e:
        plan_for(tmp_path, "jetson-agx-orin", python_version="3.8")
    assert "this plan's Python is 3.8" in str(e.value)
    with pytest.raises(PlanError) as e:
        plan_for(tmp_path, "jetson-agx-orin", python_version="3.10", cuda_version="11.4")
    assert "the target has CUDA 11.4" in str(e.value)
    with pytest.raises(PlanError) as e:
        plan_for(tmp_path, "generic-aarch64", cuda="on")
    assert "has no CUDA" in str(e.value)
    # --cuda off on Xavier still needs a Python 2.6.0 supports
    with pytest.raises(PlanError):
        plan_for(tmp_path, "jetson-agx-xavier", cuda="off")
    p = plan_for(tmp_path, "jetson-agx-xavier", cuda="off", python_version="3.9")
    assert p.cuda is None and p.build_version.endswith(".cpu.recipe%s" % RECIPE_VERSION)


def test_local_label_is_canonical_pep440():
    label = local_label("jetson-agx-orin", False)
    assert label == "jetson.agx.orin.recipe%s" % RECIPE_VERSION
    from packaging.version import Version  # requirements-test.txt
    v = Version("2.6.0+" + label)
    assert str(v) == "2.6.0+" + label  # already normalised: pip shows the same name


def test_max_jobs_budget():
    gb = 1024 ** 3
    assert doctor.max_jobs(64 * gb, 0, 12, cuda=True) == 12
    assert doctor.max_jobs(32 * gb, 0, 8, cuda=True) == 8
    assert doctor.max_jobs(16 * gb, 0, 8, cuda=True) == 5
    assert doctor.max_jobs(16 * gb, 16 * gb, 8, cuda=False) == 8
    assert doctor.max_jobs(3 * gb, 0, 4, cuda=True) == 1


def test_probe_reads_l4t_and_model(tmp_path):
    write(tmp_path / "etc" / "nv_tegra_release",
          "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: x\n")
    os.makedirs(str(tmp_path / "proc" / "device-tree"))
    with open(str(tmp_path / "proc" / "device-tree" / "model"), "wb") as f:
        f.write(b"Jetson-AGX\x00")
    write(tmp_path / "proc" / "meminfo", "MemTotal:       32000000 kB\nSwapTotal:       8000000 kB\n")
    write(tmp_path / "arch", "aarch64\n")
    h = doctor.probe_host(str(tmp_path))
    assert h["l4t"] == "r35.4.1" and h["device_model"] == "Jetson-AGX" and h["arch"] == "aarch64"
    assert h["mem_bytes"] == 32000000 * 1024 and h["swap_bytes"] == 8000000 * 1024


def test_dry_run_changes_nothing_and_json_matches(tmp_path):
    env = dict(os.environ, RECIPE_CACHE=str(tmp_path / "cache"))
    work, wheels = tmp_path / "work", tmp_path / "wheels"
    base = [sys.executable, os.path.join(REPO_ROOT, "build.py"), "--target", "jetson-agx", "--dry-run",
            "--work-dir", str(work), "--wheels-dir", str(wheels)]
    before = sorted(os.listdir(str(tmp_path)))
    text = subprocess.run(base, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "jetson-agx -> jetson-agx-orin" in text.stdout and "Build environment" in text.stdout
    js = subprocess.run(base + ["--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        universal_newlines=True, timeout=120)
    assert js.returncode == 0, js.stderr
    data = json.loads(js.stdout)
    assert data["target"]["name"] == "jetson-agx-orin" and data["target"]["requested"] == "jetson-agx"
    assert [s["name"] for s in data["steps"]] == list(ORDER)
    assert data["env"]["TORCH_CUDA_ARCH_LIST"] == "8.7"
    assert any(f["check"] == "host arch" for f in data["doctor"])
    assert sorted(os.listdir(str(tmp_path))) == before, "the dry run created files"


def test_verify_step_judgement_and_skips(tmp_path):
    from recipe.steps import verify
    assert verify.judge(0, {"ok": True, "failures": []}) == (True, "verify: ok")
    ok, msg = verify.judge(1, {"ok": False, "failures": ["dw3x3 c=384: 384 x thnn_conv2d (group loop)"]})
    assert not ok and "384 x thnn_conv2d" in msg
    assert verify.judge(3, None)[0] is False
    p = plan_for(tmp_path, "x86_64", h=host(), verify=False, python_version="3.10")
    assert steps(p)["verify"]["skip"] == "--no-verify"
    p = plan_for(tmp_path, "x86_64", h=host(), python_version="3.10")
    cmd = steps(p)["verify"]["commands"][0]
    assert "build.py verify --wheel" in cmd and "--json-file" in cmd
