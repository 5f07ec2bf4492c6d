"""Board detection (recipe/detect.py) and the truthful plan, on one fake root per board.

The fixtures (tests/fixtures/boards/, sources in its README) are the files a Jetson has:
device-tree model and compatible, /etc/nv_tegra_release (or dpkg's record of the L4T core
package). No board was available; these are fakes of the real thing, by necessity.
"""
import os

import pytest

from recipe import REPO_ROOT, detect, working_path
from recipe.pull import target as pull_target
from recipe.config import Configs
from recipe.plan import PlanError, format_plan, make_plan, resolve_target
from recipe.steps import doctor
from tests.recipe_helpers import host

CONFIGS = Configs()
BOARDS = os.path.join(REPO_ROOT, "tests", "fixtures", "boards")

# fixture -> (target, words the reason must contain)
EXPECTED = {
    "xavier-jp5": ("jetson-agx-xavier", ["'Jetson-AGX'", "r35.4.1", "JetPack 5.1"]),
    "orin-jp5": ("jetson-agx-orin-jp5", ["AGX Orin", "r35.4.1", "JetPack 5.1"]),
    "orin-jp6": ("jetson-agx-orin", ["AGX Orin", "r36.4.7", "JetPack 6.2"]),
    "orin-custom-carrier-jp6": ("jetson-agx-orin", ["SoC tegra234", "r36.4.3"]),
    "orin-jp7.2": ("jetson-agx-orin-jp7.2", ["AGX Orin", "r39.2.1", "JetPack 7.2"]),
    "orin-jp7.2-container": ("jetson-agx-orin-jp7.2", ["r39.2.0", "nvidia-l4t-core", "JetPack 7.2"]),
    "thor-jp7.0": ("jetson-agx-thor", ["AGX Thor", "r38.2.0", "JetPack 7.0/7.1"]),
    "thor-jp7.1": ("jetson-agx-thor", ["SoC tegra264", "r38.4.0", "JetPack 7.0/7.1"]),
    "thor-jp7.2": ("jetson-agx-thor-jp7.2", ["AGX Thor", "r39.2.0", "JetPack 7.2"]),
    "raspberry-pi-5": ("jetson-agx-orin", ["not running on a Jetson", "JetPack 6"]),
    "x86-pc": ("jetson-agx-orin", ["not running on a Jetson", "JetPack 6"]),
}


def board(name):
    return os.path.join(BOARDS, name)


def test_every_fixture_has_an_expectation():
    assert sorted(os.listdir(BOARDS)) == sorted(list(EXPECTED) + ["README.md"])


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_alias_resolves_each_board_the_same_in_plan_and_pull(fixture, monkeypatch):
    want, words = EXPECTED[fixture]
    name, why = resolve_target("jetson-agx", CONFIGS, doctor.probe_host(board(fixture)))
    assert name == want, why
    for w in words:
        assert w in why, (w, why)
    # pull on the configs, and pull where the configs cannot be loaded (no PyYAML)
    assert pull_target.resolve_target("jetson-agx", board(fixture))[0] == want
    monkeypatch.setattr(pull_target, "_configs", lambda: None)
    chosen, text = pull_target.resolve_target("jetson-agx", board(fixture))
    assert chosen == want and text.startswith("target jetson-agx -> %s: " % want)


def test_builtin_detection_facts_match_the_configs():
    """pull's copy for machines without PyYAML may not drift from configs/."""
    alias = CONFIGS.aliases()["jetson-agx"]
    builtin = detect.BUILTIN_ALIASES["jetson-agx"]
    assert builtin["candidates"] == alias["candidates"] and builtin["default"] == alias["default"]
    assert " ".join(builtin["default_reason"].split()) == " ".join(alias["default_reason"].split())
    assert detect.BUILTIN_FACTS == {c: detect.target_facts(CONFIGS.target(c)) for c in alias["candidates"]}
    for name, facts in pull_target.FALLBACK_TARGETS.items():
        t = CONFIGS.target(name)
        assert facts == {"cuda": t["cuda"]["version"] if t.get("cuda") else None,
                         "python": t["python"], "arch": t["arch"]}, name


def test_release_file_variants_and_fallbacks(tmp_path):
    assert detect.parse_l4t("# R36 (release), REVISION: 4.0, GCID: 1") == "r36.4.0"
    assert detect.parse_l4t("R38 (release), REVISION: 2.0, GCID: 41844464") == "r38.2.0"
    assert detect.parse_l4t("#R39 (release),REVISION: 2.1.3") == "r39.2.1.3"
    assert detect.parse_l4t("junk\n# R35 (release), REVISION: 4.1\n") == "r35.4.1"
    assert detect.parse_l4t("R36 revision 4") is None and detect.parse_l4t(None) is None
    assert detect.l4t_major("r39.2") == 39 and detect.l4t_major("R35") == 35 and detect.l4t_major(None) is None
    # an unreadable release file falls back to dpkg; neither: no L4T, no error
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text("garbage\n")
    assert detect.read_board(str(tmp_path))["l4t"] is None
    (tmp_path / "var" / "lib" / "dpkg").mkdir(parents=True)
    (tmp_path / "var" / "lib" / "dpkg" / "status").write_text(
        "Package: nvidia-l4t-core\nStatus: install ok installed\nVersion: 36.4.3-20250107174145\n")
    b = detect.read_board(str(tmp_path))
    assert b["l4t"] == "r36.4.3" and b["l4t_source"] == "the nvidia-l4t-core package"
    assert b["device_model"] is None and b["device_compatible"] == []


def test_what_the_board_does_not_say():
    def resolve(l4t=None, model=None, device_compatible=()):
        h = dict(host(arch="aarch64", l4t=l4t, model=model), device_compatible=list(device_compatible))
        return resolve_target("jetson-agx", CONFIGS, h)
    # L4T only: r35 is Xavier's or Orin's JetPack 5, r39 Orin's or Thor's JetPack 7.2
    name, why = resolve(l4t="r35.4.1", model="Custom carrier")
    assert name == "jetson-agx-xavier" and "jetson-agx-orin-jp5" in why and "pass --target" in why
    name, why = resolve(l4t="r39.2.0")
    assert name == "jetson-agx-orin-jp7.2" and "jetson-agx-thor-jp7.2" in why
    name, why = resolve(l4t="r38.4.0", model="Custom carrier")
    assert name == "jetson-agx-thor" and "not recognised" in why
    # the board without its L4T (a container): its default JetPack, said so
    name, why = resolve(model="NVIDIA Jetson AGX Thor Developer Kit")
    assert name == "jetson-agx-thor" and "no L4T release found" in why
    name, why = resolve(device_compatible=["nvidia,tegra234"])
    assert name == "jetson-agx-orin" and "JetPack 6.2 was assumed" in why
    # a JetPack newer than every target of the board: the nearest, and the doctor will object
    name, why = resolve(model="NVIDIA Jetson AGX Orin Developer Kit", l4t="r40.1.0")
    assert name == "jetson-agx-orin-jp7.2" and "no target of this board describes" in why
    # a Jetson that is not an AGX this recipe knows (a Nano on JetPack 4)
    name, why = resolve(model="NVIDIA Jetson Nano Developer Kit", l4t="r32.7.1")
    assert name == "jetson-agx-orin" and "no target for" in why and "r32.7.1" in why


def plan_on(fixture, tmp_path, **opts):
    o = {"target": "jetson-agx", "work_dir": str(tmp_path / "work"), "wheels_dir": str(tmp_path / "wh"),
         "cache": "none"}
    o.update(opts)
    return make_plan(o, configs=CONFIGS, host=dict(doctor.probe_host(board(fixture)), arch="aarch64"))


ADDON_COMMANDS = (working_path.PULL_ADDON, working_path.BUILD_ADDON)


@pytest.mark.parametrize("fixture", ["orin-jp6", "orin-custom-carrier-jp6"])
def test_orin_jp6_builds_from_source_and_names_the_addon_too(fixture, tmp_path):
    p = plan_on(fixture, tmp_path)
    assert p.target["name"] == "jetson-agx-orin" and p.cuda["version"] == "12.6"
    text = format_plan(p)
    assert "add-on    or, without this build: the add-on on torch 2.5-2.11" in text
    assert all(c in text for c in ADDON_COMMANDS)
    l4t = [f for f in p.doctor if f["check"] == "L4T / JetPack"][0]
    assert l4t["status"] == "ok", l4t


CUDA13 = "need torch >= 2.9; this recipe's from-source line is 2.6.0 (CUDA 11.8-12.6)"


@pytest.mark.parametrize("fixture,cuda_sm", [
    ("orin-jp7.2", "CUDA 13.2 / sm_87 (JetPack 7.2)"), ("orin-jp7.2-container", "CUDA 13.2 / sm_87 (JetPack 7.2)"),
    ("thor-jp7.0", "CUDA 13.0 / sm_110 (JetPack 7.0/7.1)"), ("thor-jp7.1", "CUDA 13.0 / sm_110 (JetPack 7.0/7.1)"),
    ("thor-jp7.2", "CUDA 13.2 / sm_110 (JetPack 7.2)")])
def test_jetpack7_refuses_cuda_with_one_reason_and_the_working_path(fixture, cuda_sm, tmp_path):
    with pytest.raises(PlanError) as e:
        plan_on(fixture, tmp_path)
    err = e.value
    assert err.reasons == [err.reasons[0]] and err.reasons[0].startswith(cuda_sm + " " + CUDA13)
    assert "cannot build torch 2.6.0 from source for jetson-agx-" in str(err)
    addon = err.suggestions[0]
    assert addon.startswith("the add-on on torch 2.9-2.14 (PyPI's aarch64 wheel, a +cu130 build")
    assert 'python3 -m pip install "torch>=2.9", then ' in addon and all(c in addon for c in ADDON_COMMANDS)
    assert "a CPU-only torch 2.6.0 from source: --cuda off" in err.suggestions
    assert not (tmp_path / "work").exists()
    # and the CPU-only 2.6.0 it offers is a plan (Python 3.12 is in 2.6.0's range)
    p = plan_on(fixture, tmp_path, cuda="off")
    assert p.cuda is None and p.python_version == "3.12" and p.env["USE_CUDA"] == "0"
    if p.target["cpu"]["features"]["sve"]:
        assert "BUILD_IGNORE_SVE_UNAVAILABLE" not in p.env


@pytest.mark.parametrize("fixture,target", [("xavier-jp5", "jetson-agx-xavier"), ("orin-jp5", "jetson-agx-orin-jp5")])
def test_jetpack5_refuses_and_keeps_nvidias_cuda_torch(fixture, target, tmp_path):
    with pytest.raises(PlanError) as e:
        plan_on(fixture, tmp_path)
    err = e.value
    assert len(err.reasons) == 2 and "this plan's Python is 3.8" in err.reasons[0]
    assert "need torch <= 2.4; this recipe's from-source line is 2.6.0" in err.reasons[1]
    assert "143624" in err.reasons[1]
    addon = err.suggestions[0]
    if working_path.addon_versions(CONFIGS.target(target)):
        assert addon.startswith("the add-on on torch 2.0-2.1 (NVIDIA's JetPack 5 wheels")
        assert all(c in addon for c in ADDON_COMMANDS)
    else:
        assert addon.startswith("the add-on is not built for torch 2.0-2.1")
    assert any("torch <= 2.4" in s and "does not carry" in s for s in err.suggestions)
    if target == "jetson-agx-xavier":
        assert any(s.startswith("--target jetson-agx-xavier-cpu") for s in err.suggestions)
