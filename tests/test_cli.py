"""The command line as a user runs it: --help, list, errors with exit codes."""
import json
import os
import subprocess
import sys

from recipe import REPO_ROOT
from recipe.cli import COMMANDS
from recipe.steps import ORDER


def build_py(*args, **kw):
    env = dict(os.environ, RECIPE_CACHE=kw.pop("cache", os.environ.get("RECIPE_CACHE", "")) or
               os.path.join(os.path.expanduser("~"), ".cache", "torch-arm-recipe"))
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "build.py")] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=120, env=env, cwd=kw.pop("cwd", REPO_ROOT))


def test_help_lists_subcommands_steps_and_options():
    res = build_py("--help")
    assert res.returncode == 0
    for name in COMMANDS:
        assert "\n  %s " % name in res.stdout
    for opt in ("--target", "--release", "--source", "--allow-dirty", "--dry-run", "--json", "--from",
                "--only", "--clean", "--jobs", "--cache", "--cache-url", "--cuda", "--no-verify", "--work-dir"):
        assert opt in res.stdout, opt
    assert ", ".join(ORDER) in res.stdout.replace("\n", " ").replace("  ", " ")


def test_list_shows_targets_releases_and_what_can_build():
    res = build_py("list")
    assert res.returncode == 0, res.stderr
    for t in ("jetson-agx-orin", "jetson-agx-xavier", "jetson-agx-xavier-cpu", "generic-aarch64", "x86_64"):
        assert t in res.stdout
    assert "jetson-agx             -> jetson-agx-orin | jetson-agx-orin-jp7.2 | jetson-agx-thor" in res.stdout
    assert "torch v2.6.0 @ 2236df177080, oneDNN 3.5.3, ACL v24.09" in res.stdout
    xavier = [l for l in res.stdout.splitlines() if l.strip().startswith("jetson-agx-xavier/2.6.0")][0]
    assert "NO:" in xavier and "Python 3.9-3.13" in xavier
    data = json.loads(build_py("list", "--json").stdout)
    assert data["compatibility"]["jetson-agx-orin/2.6.0"] == []
    assert data["compatibility"]["jetson-agx-xavier/2.6.0"]
    # per target: from source yes/no and add-on yes/no, in the table and in the JSON
    rows = {l.split()[0]: l for l in res.stdout.split("Which path")[1].split("\n\n")[0].splitlines()[2:]}
    assert set(rows) == set(data["paths"]) == {t["name"] for t in data["targets"]}
    assert rows["jetson-agx-orin"].split()[1:] == ["yes", "(2.6.0,", "CUDA)", "yes:", "torch", "2.5-2.11"]
    for jp7 in ("jetson-agx-thor", "jetson-agx-thor-jp7.2", "jetson-agx-orin-jp7.2"):
        assert data["paths"][jp7] == {"from_source": "CPU-only (2.6.0, --cuda off)", "addon": "yes: torch 2.9-2.14"}
    assert data["paths"]["jetson-agx-xavier"]["from_source"] == "CPU-only (2.6.0: --target jetson-agx-xavier-cpu)"
    assert data["paths"]["jetson-agx-orin-jp5"]["from_source"] == "CPU-only (2.6.0: --cuda off --python-version 3.9)"
    assert data["paths"]["jetson-agx-xavier"]["addon"] == data["paths"]["jetson-agx-orin-jp5"]["addon"]
    assert data["paths"]["x86_64"] == {"from_source": "yes (2.6.0)", "addon": "yes: torch 2.5-2.14"}
    thor = [l for l in res.stdout.splitlines() if l.strip().startswith("jetson-agx-thor/2.6.0")][0]
    assert "NO: CUDA 13.0 / sm_110 (JetPack 7.0/7.1) need torch >= 2.9" in thor


def test_errors_exit_2_and_say_what_to_do(tmp_path):
    res = build_py("--target", "jetson-agx-orn", "--dry-run")
    assert res.returncode == 2 and "did you mean 'jetson-agx-orin'" in res.stderr
    res = build_py("--dry-run")
    assert res.returncode == 2 and "--target is required" in res.stderr
    res = build_py("--target", "x86_64", "--json")
    assert res.returncode == 2 and "--json: only goes with --dry-run" in res.stderr
    res = build_py("--target", "jetson-agx-xavier", "--work-dir", str(tmp_path / "w"))
    assert res.returncode == 2
    assert "cannot build torch 2.6.0 from source for jetson-agx-xavier" in res.stderr
    assert "--target jetson-agx-xavier-cpu" in res.stderr
    assert not (tmp_path / "w").exists()
    res = build_py("--target", "x86_64", "--from", "nosuchstep", "--dry-run")
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_jetson_agx_dry_run_explains_the_choice(tmp_path):
    res = build_py("--target", "jetson-agx", "--dry-run", "--work-dir", str(tmp_path / "w"),
                   "--wheels-dir", str(tmp_path / "wh"), cache=str(tmp_path / "cache"))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "jetson-agx -> jetson-agx-orin: not running on a Jetson" in out
    assert "JetPack 6.2" in out and "TORCH_CUDA_ARCH_LIST=8.7" in out
    for n in ORDER:
        assert ". %s" % n in out
    assert not (tmp_path / "w").exists() and not (tmp_path / "cache").exists()
