"""Dockerfile.jetson, read by BuildKit's own parser (the PyPI `dockerfile` package wraps
moby/buildkit's Go parser): stages, ARGs, cache mounts, and every `build.py` call parsed by
the recipe's real argparse parsers, so a renamed flag breaks this test. Then, where podman
works (Debian package; rootless-free chroot isolation, vfs storage), a real build of the
first stages from a base image made here from local files (no registry is reachable)."""
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import unavailable  # noqa: E402
DOCKERFILE = os.path.join(REPO, "Dockerfile.jetson")

DOCKERFILE_PARSER_PIN = "dockerfile==3.4.0"
STAGES = ["os", "recipe", "acl", "build", "wheels", "runtime"]


def parse():
    try:
        import dockerfile
    except ImportError:
        unavailable("the Dockerfile parser",
                    "pip install {} (tools/test.sh)".format(DOCKERFILE_PARSER_PIN))
    return dockerfile.parse_file(DOCKERFILE)


class Stage(object):
    def __init__(self, name, base, line):
        self.name, self.base, self.line = name, base, line
        self.args = {}      # declared in the stage: name -> default (None = inherit global)
        self.env = {}
        self.cmds = []


def stages_and_globals():
    cmds = parse()
    global_args, stages = {}, []
    for c in cmds:
        if c.cmd == "FROM":
            v = list(c.value)
            assert len(v) == 3 and v[1].upper() == "AS", "unnamed stage at line %d" % c.start_line
            stages.append(Stage(v[2], v[0], c.start_line))
            continue
        if c.cmd == "ARG":
            for item in c.value:
                name, eq, default = item.partition("=")
                target = stages[-1].args if stages else global_args
                target[name] = default if eq else None
        if not stages:
            assert c.cmd == "ARG", "only ARG may precede the first FROM (line %d)" % c.start_line
            continue
        if c.cmd == "ENV":
            vals = list(c.value)
            for k, v in zip(vals[0::2], vals[1::2]):
                stages[-1].env[k] = v
        stages[-1].cmds.append(c)
    return global_args, stages


def arg_values(global_args, stage, overrides=None):
    vals = {}
    for k, v in stage.args.items():
        vals[k] = v if v is not None else global_args.get(k, "")
    for k, v in (overrides or {}).items():
        if k in stage.args:
            vals[k] = v
    return vals


VAR_RE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def expand(text, values):
    return VAR_RE.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def shell_commands(run_text):
    """Split a RUN's shell text into simple commands (on && || ; |)."""
    lex = shlex.shlex(run_text, posix=True, punctuation_chars=";&|")
    lex.whitespace_split = True
    cmd, out = [], []
    for tok in lex:
        if tok in ("&&", "||", ";", "|", "&"):
            if cmd:
                out.append(cmd)
            cmd = []
        else:
            cmd.append(tok)
    if cmd:
        out.append(cmd)
    return out


def build_py_calls(global_args, stage, overrides=None):
    """[(argv after build.py, the RUN command)] for the stage, ARGs substituted as
    BuildKit/the shell would with the defaults."""
    values = arg_values(global_args, stage, overrides)
    values.update({k: expand(v, values) for k, v in stage.env.items() if k not in values})
    calls = []
    for c in stage.cmds:
        if c.cmd != "RUN":
            continue
        for cmd in shell_commands(" ".join(c.value)):
            for i, tok in enumerate(cmd):
                if tok.endswith("build.py"):
                    calls.append(([expand(t, values) for t in cmd[i + 1:]], c))
                    assert i >= 1, "build.py called without an interpreter: %s" % cmd
                    interp = expand(cmd[i - 1], values)
                    assert re.match(r"^python3(\.\d+)?$", interp), interp
    return calls


def real_build_parser():
    """The build's own argparse parser (the Dockerfile's build flags are checked against it)."""
    from recipe import buildcmd
    return buildcmd.build_parser()


def parse_with(parser, argv, where):
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail("{}: `build.py {}` is rejected by the recipe's parser (exit {})".format(
            where, " ".join(argv), exc.code))


# ---------------------------------------------------------------------------------------


def test_stages_and_base_images():
    g, stages = stages_and_globals()
    assert [s.name for s in stages] == STAGES
    assert g["BASE_IMAGE"] == "nvcr.io/nvidia/l4t-jetpack:r36.4.0"
    assert g["TARGET"] == "jetson-agx-orin" and g["RELEASE"] == "2.6.0"
    base = {s.name: s.base for s in stages}
    assert base == {"os": "${BASE_IMAGE}", "recipe": "os", "acl": "recipe", "build": "acl",
                    "wheels": "scratch", "runtime": "${BASE_IMAGE}"}
    # base images pinned by tag (digests cannot be fetched here), never :latest
    text = open(DOCKERFILE).read()
    for ref in re.findall(r"(?:nvcr\.io|ubuntu|debian)[\w./-]*:[\w.@:-]+", text):
        assert not ref.endswith(":latest"), ref
    assert "nvcr.io/nvidia/l4t-jetpack:r35.4.1" in text  # Xavier / JetPack 5
    assert re.search(r"BASE_IMAGE=(ubuntu|debian):\d", text)  # generic-aarch64
    # the global defaults name a real target and release of the recipe
    from recipe.config import Configs
    cfg = Configs()
    assert g["TARGET"] in cfg.target_names()
    assert g["RELEASE"] in cfg.release_names()
    for t in re.findall(r"--build-arg TARGET=([\w.-]+)", text):
        assert t in cfg.target_names(), t


def test_each_stage_declares_the_args_it_uses():
    """A global ARG is empty inside a stage unless redeclared: the classic silent bug."""
    g, stages = stages_and_globals()
    for s in stages:
        known = set(s.args) | set(s.env)
        parent = next((p for p in stages if p.name == s.base), None)
        while parent is not None:  # ENV is inherited from the parent stage, ARG is not
            known |= set(parent.env)
            parent = next((p for p in stages if p.name == parent.base), None)
        for c in s.cmds:
            text = " ".join(c.value) + " " + " ".join(c.flags)
            for m in VAR_RE.finditer(text):
                name = m.group(1) or m.group(2)
                assert name in known, "stage {} line {} uses ${} without ARG/ENV {}".format(
                    s.name, c.start_line, name, name)


def test_build_stages_call_build_py_with_the_recipes_flags():
    g, stages = stages_and_globals()
    parser = real_build_parser()
    by = {s.name: s for s in stages}
    seen = {}
    for name in ("recipe", "acl", "build"):
        for argv, c in build_py_calls(g, by[name]):
            if argv and argv[0] in ("pull", "publish", "verify"):
                continue
            ns = parse_with(parser, argv, "stage {} line {}".format(name, c.start_line))
            seen.setdefault(name, []).append((argv, ns))
    assert any("--dry-run" in a for a, _ in seen["recipe"])
    assert [a[a.index("--only") + 1] for a, _ in seen["acl"]] == ["doctor", "acl"]
    (argv, _), = seen["build"]
    assert argv[argv.index("--from") + 1] == "sources"
    assert argv[argv.index("--cache") + 1] == "sccache"
    # every build call: the same target, release and work dir (the stamps carry over)
    for name, calls in seen.items():
        for a, _ in calls:
            assert a[a.index("--target") + 1] == "jetson-agx-orin"
            assert a[a.index("--release") + 1] == "2.6.0"
            assert a[a.index("--work-dir") + 1] == "/work"


def test_subcommand_calls_parse_and_fit_together():
    from recipe import publish, pull
    g, stages = stages_and_globals()
    by = {s.name: s for s in stages}
    (pub, pc), = [(a, c) for a, c in build_py_calls(g, by["build"]) if a[0] == "publish"]
    ns = parse_with(publish.build_parser(), pub[1:], "publish line %d" % pc.start_line)
    # publish reads the wheels the build wrote: WORKDIR/wheels
    workdir = [c for c in by["recipe"].cmds if c.cmd == "WORKDIR"][0].value[0]
    assert ns.wheels == workdir + "/wheels" and ns.out == "/dist"
    # wheels stage exports /dist; runtime mounts it and pulls from its index.json
    (cp,) = [c for c in by["wheels"].cmds if c.cmd == "COPY"]
    assert "--from=build" in cp.flags and cp.value[0].rstrip("/") == "/dist"
    (pl, plc), = build_py_calls(g, by["runtime"])
    assert pl[0] == "pull"
    ns = parse_with(pull.build_parser(), pl[1:], "pull line %d" % plc.start_line)
    mount = [f for f in plc.flags if "type=bind" in f and "from=wheels" in f]
    assert mount, plc.flags
    target = dict(kv.split("=", 1) for kv in mount[0].split("=", 1)[1].split(","))["target"]
    assert ns.index == target + "/index.json"
    assert ns.target == "jetson-agx-orin" and ns.release == "2.6.0" and not ns.download_only
    # the image's command is the recipe's verify
    (cmd,) = [c for c in by["runtime"].cmds if c.cmd == "CMD"]
    assert "build.py verify" in " ".join(cmd.value)
    try:
        from recipe import verify
        parse_with(verify.build_parser(), [], "CMD")
    except ImportError:
        pass


def test_cache_mounts_for_compiler_cache_and_pip():
    from recipe import compile_cache
    g, stages = stages_and_globals()
    by = {s.name: s for s in stages}
    (run,) = [c for c in by["build"].cmds if c.cmd == "RUN"]
    mounts = [dict(kv.split("=", 1) for kv in f.split("=", 1)[1].split(","))
              for f in run.flags if f.startswith("--mount=")]
    caches = {m["target"]: m for m in mounts if m.get("type") == "cache"}
    cache_url = by["build"].args["CACHE_URL"]
    assert cache_url in caches, "the default --cache-url must be the BuildKit cache mount"
    assert "/root/.cache/pip" in caches
    assert by["build"].args["CACHE"] in compile_cache.KINDS
    assert by["os"].args["SCCACHE_VERSION"] == compile_cache.SCCACHE_VERSION
    pip_runs = [c for s in stages for c in s.cmds if c.cmd == "RUN" and "pip install" in
                " ".join(c.value)]
    assert pip_runs
    for c in pip_runs:
        assert any("type=cache" in f and "/root/.cache/pip" in f for f in c.flags), c.start_line
    apt_runs = [c for s in stages for c in s.cmds if c.cmd == "RUN" and "apt-get install" in
                " ".join(c.value)]
    for c in apt_runs:
        assert any("type=cache" in f and "/var/cache/apt" in f for f in c.flags), c.start_line
    # RECIPE_CACHE (where the ACL build lands) must NOT be a cache mount: later stages and
    # the stamps need it in the image layers
    recipe_cache = by["os"].env["RECIPE_CACHE"]
    for s in stages:
        for c in s.cmds:
            assert not any(recipe_cache in f for f in c.flags)


def test_dockerignore_keeps_local_builds_out():
    text = open(os.path.join(REPO, ".dockerignore")).read().split()
    for must in (".git", "work", "wheels/*.whl", "!wheels/index.json"):
        assert must in text


# ---------------------------------------------------------------------------------------
# a real build with podman, from a local base image


def _podman_cmd(root):
    # podman refuses a runroot longer than 50 characters (pytest-xdist's tmp paths are)
    runroot = os.path.join("/tmp", "podrun-" + hashlib.sha1(str(root).encode()).hexdigest()[:10])
    os.makedirs(runroot, exist_ok=True)
    return ["podman", "--root", str(root / "storage"), "--runroot", runroot,
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
            "--events-backend", "file"]


def _ldd_deps(paths):
    deps = set()
    for p in paths:
        out = subprocess.run(["ldd", p], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True).stdout
        for m in re.finditer(r"(/\S+)\s+\(0x", out):
            deps.add(m.group(1))
    return deps


def make_python_rootfs_tar(dest):
    """A tiny Linux userland from this machine's files: busybox (sh, coreutils) +
    Debian's python3 with its stdlib and PyYAML + the shared libraries they load."""
    busybox = shutil.which("busybox")
    py = os.path.realpath("/usr/bin/python3")
    ver = "python%d.%d" % tuple(int(x) for x in re.findall(r"\d+", os.path.basename(py))[:2])
    stdlib = os.path.join("/usr/lib", ver)
    dist = "/usr/lib/python3/dist-packages"
    if not busybox or not os.path.exists(py) or not os.path.isdir(stdlib) or \
            not os.path.isdir(os.path.join(dist, "yaml")):
        return "needs busybox (busybox-static), Debian's python3 and python3-yaml " \
            "(tools/test.sh installs them)"
    sos = [busybox, py] + [os.path.join(r, f) for r, _, fs in os.walk(stdlib) for f in fs
                  if f.endswith(".so")] + \
          [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(dist, "_yaml"))
           for f in fs if f.endswith(".so")]
    libs = _ldd_deps(sos) | {"/lib64/ld-linux-x86-64.so.2"}
    with tarfile.open(dest, "w") as tar:
        def add(path, arc=None, **kw):
            tar.add(path, arcname=(arc or path).lstrip("/"), **kw)

        def skip_cache(ti):
            return None if "__pycache__" in ti.name or "/test/" in ti.name else ti
        for d in ("bin", "usr/bin", "tmp", "etc", "root", "work"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(ti)
        add(busybox, "/bin/busybox")
        for applet in ("sh", "ls", "cat", "echo", "mkdir", "rm", "env", "test", "["):
            ti = tarfile.TarInfo("bin/" + applet)
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(ti)
        add(py, "/usr/bin/" + os.path.basename(py))
        for name in ("python3", "python"):
            ti = tarfile.TarInfo("usr/bin/" + name)
            ti.type, ti.linkname = tarfile.SYMTYPE, os.path.basename(py)
            tar.addfile(ti)
        add(stdlib, filter=skip_cache)
        for name in ("yaml", "_yaml"):
            add(os.path.join(dist, name), filter=skip_cache)
        for lib in sorted(libs):
            add(os.path.realpath(lib), lib)
            # the loader may look in /lib/... or /usr/lib/... (usrmerge): put both
            other = lib[4:] if lib.startswith("/usr/") else "/usr" + lib
            add(os.path.realpath(lib), other)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        ti = tarfile.TarInfo("etc/passwd")
        ti.size = len(passwd)
        import io
        tar.addfile(ti, io.BytesIO(passwd))
    return None


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    if not shutil.which("podman"):
        unavailable("podman", "not installed (Debian package podman; tools/test.sh)")
    root = tmp_path_factory.mktemp("podman")
    why = make_python_rootfs_tar(str(root / "rootfs.tar"))
    if why:
        unavailable("a local base image for podman", why)
    base = "localhost/recipe-test-base:py3"
    cmd = _podman_cmd(root)
    res = subprocess.run(cmd + ["import", str(root / "rootfs.tar"), base],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, timeout=300)
    if res.returncode != 0:
        unavailable("podman image import in this sandbox", res.stdout[-800:])
    # (only builds are tested: `podman run` fails in this sandbox with "crun: setrlimit
    # RLIMIT_NOFILE: Operation not permitted", while RUN steps with chroot isolation work)
    try:
        yield {"cmd": cmd, "base": base, "root": root}
    finally:
        subprocess.run(cmd + ["rmi", "--all", "--force"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)
        shutil.rmtree(str(root), ignore_errors=True)


def podman_build(podman, stage, target_name, tag):
    # chroot isolation: RUN steps need no namespaces of their own (it implies host network;
    # nothing here uses the network: INSTALL_DEPS=0)
    cmd = podman["cmd"] + [
        "build", "--isolation", "chroot", "-f", DOCKERFILE,
        "--target", stage, "--build-arg", "BASE_IMAGE=" + podman["base"],
        "--build-arg", "INSTALL_DEPS=0", "--build-arg", "TARGET=" + target_name,
        "-t", tag, REPO]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=600)


def test_podman_builds_the_os_stage_from_a_local_base(podman):
    res = podman_build(podman, "os", "x86_64", "recipe-test-os")
    if res.returncode != 0 and ("operation not permitted" in res.stdout.lower() or
                                "unshare" in res.stdout.lower()):
        unavailable("podman build steps in this sandbox", res.stdout[-600:])
    assert res.returncode == 0, res.stdout[-4000:]
    # the ENV of the os stage is in the image
    out = subprocess.run(podman["cmd"] + ["image", "inspect", "--format",
                                          "{{.Config.Env}}", "recipe-test-os"],
                         stdout=subprocess.PIPE, universal_newlines=True, timeout=120).stdout
    assert "RECIPE_CACHE=/var/cache/torch-arm-recipe" in out


def test_podman_builds_the_recipe_stage_whose_plan_runs(podman):
    real_build_parser()  # skips, with the reason, while the build command does not exist
    import platform
    target = "x86_64" if platform.machine() == "x86_64" else "generic-aarch64"
    res = podman_build(podman, "recipe", target, "recipe-test-recipe")
    assert res.returncode == 0, res.stdout[-4000:]
    # the plan printed by --dry-run inside the image, for the target given as a build ARG
    assert re.search(r"Plan: torch 2\.6\.0 for {}\b".format(target), res.stdout), \
        res.stdout[-3000:]
