"""Dockerfile.addon (the `addon-runtime` stage), read by BuildKit's own parser (the PyPI
`dockerfile` package): the base image ARG, every `build.py` call parsed by the recipe's real
argparse parsers, the command `build.py verify`. Then (slow tier) a real build with podman
under emulation (qemu-user via binfmt_misc, chroot isolation, vfs storage) FROM a LOCAL arm64
image made with `podman import` from the emulation root filesystem, which holds the official
torch 2.6.0 aarch64 wheel (no registry is reachable here): the stage pulls the prebuilt add-on
from a `build.py publish` index served over loopback HTTP, sha256-verified; then the image's
own command runs in the image's own filesystem (`podman image mount` + chroot under qemu:
`podman run` itself fails in this sandbox, "crun: setrlimit RLIMIT_NOFILE: Operation not
permitted", see tests/test_dockerfile.py) and must pass."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import addon_helpers as ah  # noqa: E402
import ship_helpers as sh  # noqa: E402
import test_dockerfile as td  # noqa: E402
from conftest import unavailable  # noqa: E402

REPO = ah.REPO
DOCKERFILE = os.path.join(REPO, "Dockerfile.addon")


def commands():
    try:
        import dockerfile
    except ImportError:
        unavailable("the Dockerfile parser", "pip install %s (tools/test.sh)"
                    % td.DOCKERFILE_PARSER_PIN)
    return dockerfile.parse_file(DOCKERFILE)


def stage():
    global_args, cmds, name = {}, [], None
    for c in commands():
        if c.cmd == "FROM":
            assert name is None, "Dockerfile.addon has one stage"
            v = list(c.value)
            assert len(v) == 3 and v[1].upper() == "AS"
            base, name = v[0], v[2]
            continue
        if c.cmd == "ARG" and name is None:
            for item in c.value:
                k, _, default = item.partition("=")
                global_args[k] = default
            continue
        assert name is not None, "only ARG may precede FROM (line %d)" % c.start_line
        cmds.append(c)
    return global_args, base, name, cmds


def stage_args(cmds):
    args = {}
    for c in cmds:
        if c.cmd == "ARG":
            for item in c.value:
                k, _, default = item.partition("=")
                args[k] = default
    return args


def build_py_calls(cmds, values):
    calls = []
    for c in cmds:
        if c.cmd != "RUN":
            continue
        text = td.expand(" ".join(c.value), values)
        # the `case` arms: "pull)  python3 build.py ... ;;"
        for arm in re.split(r";;", text):
            arm = re.sub(r"^.*?\b(\w+)\)\s*", r"\1) ", arm.strip(), count=1)
            m = re.match(r"^(\w+)\)\s*(.*)$", arm)
            body = m.group(2) if m else arm
            for cmd in td.shell_commands(body.replace('"', "")):
                for i, tok in enumerate(cmd):
                    if tok.endswith("build.py"):
                        calls.append((m.group(1) if m else None, cmd[i - 1], cmd[i + 1:]))
    return calls


def test_addon_runtime_stage_base_image_and_args():
    g, base, name, cmds = stage()
    assert name == "addon-runtime" and base == "${BASE_IMAGE}"
    assert g["BASE_IMAGE"] == "nvcr.io/nvidia/pytorch:24.12-py3-igpu"
    assert not g["BASE_IMAGE"].endswith(":latest") and ":" in g["BASE_IMAGE"]
    args = stage_args(cmds)
    assert args["ADDON_SOURCE"] == "pull" and args["PYTHON"] == "python3"
    for c in cmds:  # every variable a command uses is declared in the stage
        for m in td.VAR_RE.finditer(" ".join(c.value) + " " + " ".join(c.flags)):
            var = m.group(1) or m.group(2)
            assert var in args or var == "RECIPE_PYTHON", (c.start_line, var)


def test_build_py_calls_parse_with_the_recipes_parsers():
    from recipe import addon, pull, verify
    _, _, _, cmds = stage()
    args = stage_args(cmds)
    calls = build_py_calls(cmds, args)
    by_arm = {arm: argv for arm, interp, argv in calls}
    assert set(by_arm) == {"pull", "build"}, calls
    assert all(interp == "python3" for _, interp, _ in calls)
    ns = td.parse_with(pull.build_parser(), by_arm["pull"][1:], "pull arm")
    assert by_arm["pull"][0] == "pull" and ns.addon and ns.index == args["ADDON_INDEX"]
    ns = td.parse_with(addon.build_parser(), by_arm["build"][1:], "build arm")
    assert by_arm["build"][0] == "addon" and ns.install
    (cmd,) = [c for c in cmds if c.cmd == "CMD"]
    assert "build.py verify" in " ".join(cmd.value)
    td.parse_with(verify.build_parser(), [], "CMD")
    run = " ".join([c for c in cmds if c.cmd == "RUN"][0].value)
    assert "-m torch_grouped_conv" in run  # the build fails unless the add-on is active


# ---------------------------------------------------------------------------------------
# a real build under emulation


@pytest.fixture(scope="module")
def arm64_base(emulation, tmp_path_factory):
    if not shutil.which("podman"):
        unavailable("podman", "not installed (Debian package podman; tools/test.sh)")
    root = tmp_path_factory.mktemp("podman-addon")
    cmd = td._podman_cmd(root)
    tar = str(root / "rootfs.tar")
    subprocess.run(["tar", "-C", emulation.rootfs, "--one-file-system", "-cf", tar, "."],
                   check=True, timeout=900)
    base = "localhost/recipe-test-arm64-torch:2.6.0"
    r = subprocess.run(cmd + ["import", "--arch", "arm64", "--change", "CMD [\"/bin/sh\"]",
                              tar, base], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=900)
    os.unlink(tar)
    if r.returncode != 0:
        unavailable("podman import of the arm64 root filesystem", r.stdout[-800:])
    try:
        yield {"cmd": cmd, "base": base, "root": root}
    finally:
        subprocess.run(cmd + ["rmi", "--all", "--force"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=900)
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)])


@pytest.fixture(scope="module")
def addon_index(tmp_path_factory):
    from recipe import addon, publish
    from recipe.addon_headers import HeadersError
    wheels = tmp_path_factory.mktemp("addon-aarch64-wheels")
    try:
        addon.build_addon("2.6.0", "aarch64", out_dir=str(wheels), quiet=True)
    except HeadersError as e:
        unavailable("the official torch 2.6.0 aarch64 wheel / cross compiler", e)
    out = tmp_path_factory.mktemp("addon-aarch64-site")
    publish.publish(str(wheels), str(out), log=lambda *a: None)
    with sh.LoopbackServer(out) as server:
        yield server


@pytest.mark.slow
def test_podman_builds_addon_runtime_on_the_arm64_torch_image_and_its_command_passes(
        arm64_base, addon_index, emulation):
    from tests.harness.emulation import Emulation
    cmd = arm64_base["cmd"]
    tag = "localhost/recipe-test-addon-runtime"
    r = subprocess.run(cmd + [
        "build", "--isolation", "chroot", "--arch", "arm64", "-f", DOCKERFILE,
        "--target", "addon-runtime", "--build-arg", "BASE_IMAGE=" + arm64_base["base"],
        "--build-arg", "ADDON_INDEX=%s/index.json" % addon_index.url, "-t", tag, REPO],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
        timeout=3600)
    assert r.returncode == 0, r.stdout[-5000:]
    # pull --addon chose the 2.6 add-on for this aarch64 torch and verified it
    assert re.search(r"pull --addon: this torch is 2\.6\.0\+cpu \(aarch64", r.stdout), r.stdout[-3000:]
    assert "verified sha256" in r.stdout and "torch_grouped_conv-0.1.0+torch2.6.0" in r.stdout
    assert "cpu capability in use: FP16" in r.stdout  # the status printed by the RUN step
    inspect = json.loads(subprocess.run(cmd + ["image", "inspect", tag], stdout=subprocess.PIPE,
                                        universal_newlines=True, check=True).stdout)[0]
    assert inspect["Architecture"] == "arm64"
    config = inspect["Config"]
    assert config["Cmd"] == ["sh", "-c", "exec \"$RECIPE_PYTHON\" build.py verify"]
    env = dict(kv.split("=", 1) for kv in config["Env"])
    assert env["RECIPE_PYTHON"] == "python3" and config["WorkingDir"] == "/opt/recipe"
    # the image's own command in the image's own filesystem
    mnt = subprocess.run(cmd + ["image", "mount", tag], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout.strip()
    try:
        res = Emulation(mnt, "chroot").run(config["Cmd"], env=env, cwd=config["WorkingDir"],
                                           timeout=3600)
    finally:
        subprocess.run(cmd + ["image", "unmount", tag], stdout=subprocess.DEVNULL)
    assert res.returncode == 0, (res.stdout[-4000:], res.stderr[-3000:])
    m = re.search(r"^(\d+) case\(s\): \1 PASS;", res.stdout, re.M)
    assert m and int(m.group(1)) >= 30, res.stdout[-3000:]
