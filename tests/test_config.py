"""Config validation: file:line errors, did-you-mean, types, allowed values; nothing runs on error."""
import os
import shutil

import pytest

from recipe import REPO_ROOT, cli
from recipe.config import ConfigError, Configs, load_yaml, version_tuple
from tests.recipe_helpers import read, write


@pytest.fixture
def cfg(tmp_path):
    dest = tmp_path / "configs"
    shutil.copytree(os.path.join(REPO_ROOT, "configs"), str(dest))
    return dest


def errors_for(cfg, name, text, kind="target"):
    sub = "targets" if kind == "target" else "releases"
    write(cfg / sub / (name + ".yaml"), text)
    c = Configs(str(cfg))
    with pytest.raises(ConfigError) as e:
        (c.target if kind == "target" else c.release)(name)
    return e.value.errors


def test_shipped_configs_are_valid():
    c = Configs()
    assert c.validate_all() == []
    assert {"jetson-agx-orin", "jetson-agx-xavier", "generic-aarch64", "x86_64"} <= set(c.target_names())
    assert "2.6.0" in c.release_names()
    rel = c.release("2.6.0")
    assert rel["torch"]["commit"] == "2236df1770800ffea5697b11b0bb0d910b2e59e1"
    assert rel["torch"]["tag"] == "v2.6.0"
    assert rel["onednn"]["version"] == "3.5.3" and rel["acl"]["tag"] == "v24.09"
    assert c.aliases()["jetson-agx"]["candidates"] == [
        "jetson-agx-orin", "jetson-agx-orin-jp7.2", "jetson-agx-thor", "jetson-agx-thor-jp7.2",
        "jetson-agx-xavier", "jetson-agx-orin-jp5"]


def test_typo_key_gets_file_line_and_did_you_mean(cfg):
    text = read(cfg / "targets" / "x86_64.yaml").replace("python: host", "pyhton: host")
    errs = errors_for(cfg, "x86_64", text)
    line = [i for i, l in enumerate(text.splitlines(), 1) if l.startswith("pyhton")][0]
    assert any(("x86_64.yaml:%d:1: unknown key 'pyhton'" % line) in e and "did you mean 'python'" in e
               for e in errs), errs
    assert any("missing the required key 'python'" in e for e in errs), errs


def test_wrong_type_and_allowed_values(cfg):
    text = read(cfg / "targets" / "jetson-agx-orin.yaml")
    text = text.replace("acl: true", "acl: maybe").replace("arch: aarch64", "arch: arm64")
    text = text.replace('python: "3.10"', "python: 3.10")
    errs = errors_for(cfg, "jetson-agx-orin", text)
    joined = "\n".join(errs)
    assert "'target.acl' must be a boolean (true/false), got str 'maybe'" in joined
    assert "'target.arch' is 'arm64'; allowed values: aarch64, x86_64" in joined
    assert "'target.python' must be a string, got float 3.1" in joined and "must be quoted" in joined
    for e in errs:
        assert e.startswith("configs/") or "jetson-agx-orin.yaml:" in e
        assert "jetson-agx-orin.yaml:" in e


def test_nested_and_pattern_errors_point_at_the_line(cfg):
    text = read(cfg / "targets" / "jetson-agx-orin.yaml").replace("acl_arch: armv8.2-a", "acl_arch: armv8.2a")
    text = text.replace('arch_list: "8.7"', 'arch_list: "sm_87"')
    errs = errors_for(cfg, "jetson-agx-orin", text)
    lines = text.splitlines()
    acl_line = [i for i, l in enumerate(lines, 1) if "acl_arch:" in l][0]
    assert any(":%d:" % acl_line in e and "did you mean 'armv8.2-a'" in e for e in errs), errs
    assert any("'target.cuda.arch_list' is 'sm_87', which does not match" in e for e in errs), errs


def test_release_errors_and_name_mismatch(cfg):
    text = read(cfg / "releases" / "2.6.0.yaml").replace(
        "commit: 2236df1770800ffea5697b11b0bb0d910b2e59e1", "commit: 2236df17")
    errs = errors_for(cfg, "2.6.0", text, kind="release")
    assert any("release.torch.commit" in e and "40 hex digits" in e for e in errs), errs
    write(cfg / "releases" / "2.7.0.yaml", read(os.path.join(REPO_ROOT, "configs/releases/2.6.0.yaml")))
    with pytest.raises(ConfigError) as e:
        Configs(str(cfg)).release("2.7.0")
    assert "must match the file name '2.7.0'" in str(e.value)


def test_yaml_syntax_and_duplicate_keys(cfg):
    errs = errors_for(cfg, "x86_64", "name: x86_64\narch: [x86_64\n")
    assert "YAML syntax error" in errs[0] and "x86_64.yaml:" in errs[0]
    errs = errors_for(cfg, "x86_64", read(os.path.join(REPO_ROOT, "configs/targets/x86_64.yaml")) + "acl: true\n")
    assert "duplicate key 'acl'" in errs[0]


def test_unknown_target_lists_known_ones(cfg):
    with pytest.raises(ConfigError) as e:
        Configs(str(cfg)).target("jetson-agx-orn")
    msg = str(e.value)
    assert "unknown target 'jetson-agx-orn'" in msg and "did you mean 'jetson-agx-orin'" in msg
    assert "generic-aarch64" in msg and "jetson-agx" in msg


def test_marks_are_one_based_lines(tmp_path):
    write(tmp_path / "a.yaml", "a: 1\nb:\n  c: [1, 2]\n")
    data, marks = load_yaml(str(tmp_path / "a.yaml"))
    assert data == {"a": 1, "b": {"c": [1, 2]}}
    assert marks[("b", "c", "<key>")] == (3, 3)
    assert marks[("a",)][0] == 1


def test_broken_config_runs_nothing(cfg, tmp_path, capsys):
    write(cfg / "targets" / "x86_64.yaml", read(cfg / "targets" / "x86_64.yaml").replace("acl: false", "acll: false"))
    work = tmp_path / "work"
    rc = cli.main(["--target", "x86_64", "--configs", str(cfg), "--work-dir", str(work),
                        "--wheels-dir", str(tmp_path / "wheels")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "configuration error (nothing was run)" in err and "did you mean 'acl'" in err
    assert not work.exists() and not (tmp_path / "wheels").exists()


def test_version_tuple():
    assert version_tuple("2.6.0a0") == (2, 6, 0)
    assert version_tuple("3.10") > version_tuple("3.9")
