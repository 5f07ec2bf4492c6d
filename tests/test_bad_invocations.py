"""Bad invocations of build.py, table-driven: each one exits with its documented status
(2 bad input, 3 a missing prerequisite, 130/143 interrupted; README "Exit statuses"),
prints one `error: ...` line that names the option (or file) at fault, and never a
traceback. "Without torch" / "without PyYAML" run build.py with the interpreter of a fresh
`python3 -m venv --without-pip` (the standard library only)."""
import os
import signal
import subprocess
import sys

import pytest

from recipe import REPO_ROOT
from recipe.steps import patch as patch_step
from tests.recipe_helpers import config_dir, write
from tests.test_patch_step import make_tree, series  # noqa: F401  (the `series` fixture)

BUILD_PY = os.path.join(REPO_ROOT, "build.py")


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    a_file = root / "a-file"
    a_file.write_text("not a folder\n")
    (root / "empty-configs").mkdir()
    broken = config_dir(root / "broken-schema")
    with open(os.path.join(broken, "schema.yaml"), "a") as f:
        f.write("target: [\n")
    missing_patch = config_dir(root / "missing-patch")
    series_file = root / "series-missing-patch"
    series_file.write_text("0001-not-there.patch\n")
    import yaml
    rel = os.path.join(missing_patch, "releases", "9.9.9.yaml")
    with open(rel) as f:
        data = yaml.safe_load(f)
    data["patches"]["series"] = str(series_file)
    with open(rel, "w") as f:
        yaml.safe_dump(data, f)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    return {"FILE": str(a_file), "EMPTY": str(root / "empty-configs"), "BROKEN": broken,
            "MISSING_PATCH": missing_patch, "VENV_PY": str(venv / "bin" / "python")}


# (id, argv, exit status, what stderr must name)
CASES = [
    ("cuda-version-abc", ["--target", "jetson-agx-orin", "--cuda-version", "abc", "--dry-run"], 2,
     ["--cuda-version abc", "X.Y"]),
    ("cuda-version-without-cuda", ["--target", "x86_64", "--cuda-version", "12.2", "--dry-run"], 2,
     ["--cuda-version 12.2", "without CUDA"]),
    ("cuda-version-and-cuda-off", ["--target", "jetson-agx-orin", "--cuda", "off",
                                   "--cuda-version", "12.2", "--dry-run"], 2, ["--cuda off"]),
    ("python-version-abc", ["--target", "x86_64", "--python-version", "abc", "--dry-run"], 2,
     ["--python-version abc", "X.Y"]),
    ("python-missing", ["--target", "x86_64", "--python", "/nonexistent/python3", "--dry-run"], 2,
     ["--python PATH"]),
    ("work-dir-is-a-file", ["--target", "x86_64", "--work-dir", "FILE", "--dry-run"], 2,
     ["--work-dir", "is a file"]),
    ("work-dir-under-a-file", ["--target", "x86_64", "--work-dir", "FILE/sub"], 2,
     ["--work-dir", "cannot be made"]),
    ("wheels-dir-is-a-file", ["--target", "x86_64", "--wheels-dir", "FILE", "--dry-run"], 2,
     ["--wheels-dir", "is a file"]),
    ("configs-missing", ["--target", "x86_64", "--configs", "/nonexistent/configs", "--dry-run"], 2,
     ["--configs /nonexistent/configs", "no such folder"]),
    ("configs-without-targets", ["--target", "x86_64", "--configs", "EMPTY", "--dry-run"], 2,
     ["--configs", "targets/"]),
    ("schema-broken", ["--target", "x86_64", "--configs", "BROKEN", "--dry-run"], 2,
     ["schema.yaml:", "YAML syntax error"]),
    ("jobs-0", ["--target", "x86_64", "--jobs", "0", "--dry-run"], 2, ["--jobs", "1 or more"]),
    ("jobs-negative", ["--target", "x86_64", "-j", "-1", "--dry-run"], 2, ["--jobs", "1 or more"]),
    ("jobs-abc", ["--target", "x86_64", "--jobs", "many", "--dry-run"], 2, ["--jobs"]),
    ("only-and-from", ["--target", "x86_64", "--only", "patch", "--from", "build", "--dry-run"], 2,
     ["--only patch", "--from build"]),
    ("from-unknown-step", ["--target", "x86_64", "--from", "nosuch", "--dry-run"], 2, ["--from"]),
    ("target-with-a-path", ["--target", "../releases/2.6.0", "--dry-run"], 2,
     ["--target ../releases/2.6.0", "build.py list"]),
    ("release-with-a-path", ["--target", "x86_64", "--release", "../targets/x86_64", "--dry-run"], 2,
     ["--release ../targets/x86_64"]),
    ("target-unknown", ["--target", "jetson-agx-orn", "--dry-run"], 2, ["did you mean 'jetson-agx-orin'"]),
    ("no-target", ["--dry-run"], 2, ["--target is required"]),
    ("source-missing", ["--target", "x86_64", "--source", "/nonexistent/tree", "--dry-run"], 2,
     ["--source /nonexistent/tree", "no such folder"]),
    ("source-is-a-file", ["--target", "x86_64", "--source", "FILE", "--dry-run"], 2,
     ["--source", "is a file"]),
    ("json-without-dry-run", ["--target", "x86_64", "--json"], 2, ["--json", "--dry-run"]),
    ("cache-unknown", ["--target", "x86_64", "--cache", "distcc", "--dry-run"], 2, ["--cache"]),
    ("series-names-a-missing-patch", ["--target", "x86_64", "--release", "9.9.9", "--configs",
                                      "MISSING_PATCH", "--dry-run"], 2,
     ["series-missing-patch:1: 0001-not-there.patch does not exist", "nothing was run"]),
    ("list-configs-missing", ["list", "--configs", "/nonexistent/configs"], 2, ["not a config folder"]),
    ("publish-out-is-a-file", ["publish", "--out", "FILE"], 2, ["--out", "is a file"]),
    ("publish-wheels-is-a-file", ["publish", "--wheels", "FILE"], 2, ["--wheels", "is a file"]),
    ("publish-base-url-relative", ["publish", "--base-url", "releases/"], 2, ["--base-url"]),
    ("pull-timeout-0", ["pull", "--timeout", "0"], 2, ["--timeout", "above 0"]),
    ("pull-deadline-negative", ["pull", "--deadline", "-5"], 2, ["--deadline", "above 0"]),
    ("pull-deadline-abc", ["pull", "--deadline", "soon"], 2, ["--deadline"]),
    ("pull-download-only-is-a-file", ["pull", "--download-only", "FILE"], 2,
     ["--download-only", "is a file"]),
    ("pull-index-ftp", ["pull", "--index", "ftp://127.0.0.1:9/index.json"], 2,
     ["--index ftp://127.0.0.1:9/index.json", "http(s) URL or a local path"]),
    ("pull-python-abc", ["pull", "--python", "3.x"], 2, ["--python 3.x", "X.Y"]),
    ("pull-cuda-abc", ["pull", "--cuda", "twelve"], 2, ["--cuda twelve", "none"]),
    ("pull-target-unknown", ["pull", "--target", "jetson-agx-orn"], 2,
     ["--target", "did you mean 'jetson-agx-orin'"]),
    ("verify-threads-negative", ["verify", "--threads", "-3"], 2, ["set_num_threads"]),
    ("kernel-fp16-arith-bad", ["kernel", "--fp16-arith", "maybe"], 2, ["--fp16-arith"]),
    ("kernel-without-torch", ["VENV", "kernel"], 3, ["cannot import torch", "install torch first"]),
    ("bench-without-torch", ["VENV", "bench", "--quick"], 3, ["build.py bench needs PyTorch"]),
    ("dry-run-without-pyyaml", ["VENV", "--target", "x86_64", "--dry-run"], 3, ["needs PyYAML"]),
]


@pytest.mark.parametrize("argv,status,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_invocation(paths, tmp_path, argv, status, needles):
    python = sys.executable
    if argv[0] == "VENV":
        python, argv = paths["VENV_PY"], argv[1:]
    argv = [paths.get(a.split("/")[0], a.split("/")[0]) + a[len(a.split("/")[0]):] for a in argv]
    env = dict(os.environ, RECIPE_CACHE=str(tmp_path / "cache"))
    res = subprocess.run([python, BUILD_PY] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=120, env=env, cwd=str(tmp_path))
    assert res.returncode == status, res.stdout + res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    for needle in needles:
        assert needle.replace("FILE", paths["FILE"]) in res.stderr + res.stdout, res.stderr
    assert not (tmp_path / "cache").exists()  # nothing was downloaded or built


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["ctrl-c", "sigterm"])
def test_a_build_interrupted_in_a_step_says_so_in_one_line(tmp_path, series, sig, status):
    """A real build run (doctor, sources, patch, ...) on a small tree, signalled as soon as it
    has started: one line, exit 130 (143 for SIGTERM), no traceback."""
    tree = make_tree(tmp_path)
    with open(series["series"]) as f:
        text = f.read()
    write(series["series"], text.replace("copy kernels/k.cpp src/native/k.cpp  # kernel\n", ""))
    cfg = config_dir(tmp_path, {"patches": {"series": series["series"]}})
    p = subprocess.Popen([sys.executable, BUILD_PY, "--target", "x86_64", "--release", "9.9.9",
                          "--configs", cfg, "--source", tree, "--work-dir", str(tmp_path / "work"),
                          "--wheels-dir", str(tmp_path / "wheels"), "--cache", "none"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert p.stdout.readline().startswith("Building torch")
    assert p.stdout.readline().startswith("==> [1/8] doctor")  # it probes the host now
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == status, out + err
    assert "Traceback" not in out + err
    # the runner's line when the signal lands inside a step, build.py's between two steps
    said = [l for l in (out + err).splitlines() if "interrupted" in l]
    assert len(said) == 1 and "run" in said[0] and "again" in said[0], out + err


def test_ctrl_c_in_the_patch_step_through_the_command_line(tmp_path, series):
    """Ctrl-C while the patch step writes (its test hook sends SIGINT at its first write):
    exit 130, and the tree is untouched (or, past the journal, fully patched)."""
    tree = make_tree(tmp_path)
    with open(series["series"]) as f:
        text = f.read()
    write(series["series"], text.replace("copy kernels/k.cpp src/native/k.cpp  # kernel\n", ""))
    cfg = config_dir(tmp_path, {"patches": {"series": series["series"]}})
    env = dict(os.environ, **{patch_step.KILL_HOOK_ENV: "1:INT"})
    res = subprocess.run([sys.executable, BUILD_PY, "--target", "x86_64", "--release", "9.9.9",
                          "--configs", cfg, "--only", "patch", "--source", tree, "--work-dir",
                          str(tmp_path / "work"), "--wheels-dir", str(tmp_path / "wheels")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                         env=env, timeout=120)
    assert res.returncode == 130, res.stdout + res.stderr
    assert "interrupted in patch; run again to continue" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr
    with open(os.path.join(tree, "src/a.c")) as f:
        assert "PATCHED" not in f.read()
