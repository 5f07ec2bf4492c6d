"""The plan: everything a build will do, resolved before anything runs.

make_plan() turns the command-line options and the configs into a Plan: which target (an
alias like `jetson-agx` is resolved here, with the reason), which release, the effective
CUDA/Python/ACL choices, directories, the build environment, the doctor's findings and,
for every step, its commands, inputs, outputs and stamp key. A target/release pair that
cannot work is refused here (PlanError, with the reasons and what to do instead), not hours
into the build. `--dry-run` prints the plan; `--dry-run --json` prints `to_dict()`.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys

from recipe import RECIPE_VERSION, REPO_ROOT, cache_dir
from recipe import detect, working_path
from recipe import stamps as stamps_mod
from recipe.config import Configs, ConfigError, version_tuple
from recipe.errors import BadInput, OptionError, check_folder_option
from recipe.steps import ORDER, module
from recipe.steps import doctor

# Environment variables that do not change what is built (kept out of the build's stamp key).
VOLATILE_ENV = ("MAX_JOBS", "USE_CCACHE", "CMAKE_C_COMPILER_LAUNCHER", "CMAKE_CXX_COMPILER_LAUNCHER",
                "CMAKE_CUDA_COMPILER_LAUNCHER")
VOLATILE_PREFIXES = ("CCACHE_", "SCCACHE_")


def stable_env(env):
    """The build environment minus what only affects speed (jobs, compiler cache)."""
    return {k: v for k, v in env.items() if k not in VOLATILE_ENV and not k.startswith(VOLATILE_PREFIXES)}

DEFAULT_OPTIONS = {
    "target": None, "release": None, "configs": None, "source": None, "allow_dirty": False,
    "git_url": None, "work_dir": None, "wheels_dir": None, "cuda": "auto", "cuda_version": None,
    "python": None, "python_version": None, "jobs": None, "cache": "auto", "cache_url": None,
    "from_step": None, "only": None, "clean": False, "dry_run": False, "json": False,
    "verify": True,
}


class PlanError(BadInput):
    """The requested build cannot work; `reasons` say why, `suggestions` what does."""

    def __init__(self, reasons, suggestions=(), title="cannot plan this build"):
        self.reasons = list(reasons)
        self.suggestions = list(suggestions)
        text = title + ":\n" + "\n".join("  - " + r for r in self.reasons)
        if self.suggestions:
            text += "\nwhat works instead:\n" + "\n".join("  * " + s for s in self.suggestions)
        super().__init__(text)


class Plan:
    """Attributes are filled by make_plan(); see to_dict() for the full picture."""

    def step(self, name):
        for s in self.steps:
            if s["name"] == name:
                return s
        raise KeyError(name)

    def to_dict(self):
        return {
            "recipe_version": RECIPE_VERSION,
            "target": {"requested": self.requested_target, "name": self.target["name"],
                       "reason": self.target_reason, "config": _public(self.target)},
            "release": {"name": self.release["name"], "config": _public(self.release)},
            "host": self.host,
            "python": {"version": self.python_version, "executable": self.python_exe},
            "cuda": self.cuda,
            "acl": self.acl_enabled,
            "paths": {"work": self.work_dir, "source": self.source_dir, "acl": self.acl_dir,
                      "logs": self.log_dir, "wheels": self.wheels_dir},
            "wheel": {"version": self.build_version, "expected_name": self.expected_wheel},
            "env": self.env,
            "launcher": self.launcher,
            "doctor": self.doctor,
            "steps": self.steps,
            "warnings": self.warnings,
            "options": self.options,
        }


def _public(cfg):
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


# --------------------------------------------------------------------------- target choice

def resolve_target(name, configs, host):
    """(target name, reason) for a target or an alias such as jetson-agx (recipe/detect.py)."""
    aliases = configs.aliases()
    if name not in aliases:
        configs.target(name)  # raises ConfigError naming the known targets
        return name, "as requested"
    facts = {c: detect.target_facts(configs.target(c)) for c in aliases[name]["candidates"]}
    return detect.resolve(name, aliases, facts, host)


# --------------------------------------------------------------------------- compatibility

def compatibility(target, release, cuda, python_version):
    """Reasons why this target/release pair cannot build (empty when it can)."""
    reasons = []
    rng = release["python"]
    if python_version and not (version_tuple(rng["min"]) <= version_tuple(python_version)
                               <= version_tuple(rng["max"])):
        reasons.append("PyTorch %s supports Python %s-%s (%s); this plan's Python is %s%s" % (
            release["torch"]["version"], rng["min"], rng["max"], rng.get("source", "release config"),
            python_version, " (JetPack %s's system Python)" % target["jetpack"]["version"]
            if target.get("jetpack") and python_version == target["python"] else ""))
    if cuda:
        crng = release["cuda"]
        torch_range = cuda_torch_reason(target, release) if cuda == target.get("cuda") else None
        if torch_range:
            reasons.append(torch_range)
        elif not (version_tuple(crng["min"]) <= version_tuple(cuda["version"]) <= version_tuple(crng["max"])):
            reasons.append("PyTorch %s needs CUDA %s-%s; the target has CUDA %s%s. Why: %s" % (
                release["torch"]["version"], crng["min"], crng["max"], cuda["version"],
                " (JetPack %s)" % target["jetpack"]["version"] if target.get("jetpack") else "",
                crng.get("source", "release config")))
    if target["acl"] and target["arch"] != "aarch64":
        reasons.append("ACL is Arm-only; target %s is %s" % (target["name"], target["arch"]))
    if target["acl"] and not target["cpu"].get("acl_arch"):
        reasons.append("target %s enables ACL but has no cpu.acl_arch" % target["name"])
    return reasons


def cuda_torch_reason(target, release):
    """The target's own CUDA/GPU-arch limit (cuda.torch) when this release is outside it."""
    cuda = target.get("cuda") or {}
    rng = cuda.get("torch")
    if not rng:
        return None
    version = version_tuple(release["torch"]["version"])[:2]
    if rng.get("min") and version < version_tuple(rng["min"]):
        need = "torch >= %s" % rng["min"]
    elif rng.get("max") and version > version_tuple(rng["max"]):
        need = "torch <= %s" % rng["max"]
    else:
        return None
    arch = "/".join("sm_" + a.split("+")[0].replace(".", "") for a in cuda["arch_list"].split(";"))
    return "CUDA %s / %s%s need %s; this recipe's from-source line is %s (CUDA %s-%s). Why: %s" % (
        cuda["version"], arch, " (JetPack %s)" % target["jetpack"]["version"] if target.get("jetpack") else "",
        need, release["torch"]["version"], release["cuda"]["min"], release["cuda"]["max"], rng["why"])


def suggestions_for(target, configs, release):
    out = []
    addon = working_path.addon_path(target)
    if addon:
        out.append(addon)
    if target.get("cuda"):
        out.append("a CPU-only torch %s from source: --cuda off%s" % (
            release["torch"]["version"], " --python-version %s" % release["python"]["min"]
            if version_tuple(target["python"] if target["python"] != "host" else "3.99")
            < version_tuple(release["python"]["min"]) else ""))
    for name in configs.target_names():
        if name != target["name"] and name.startswith(target["name"]):
            other = configs.target(name)
            if not compatibility(other, release, other.get("cuda"),
                                 other["python"] if other["python"] != "host" else None):
                out.append("--target %s (%s)" % (name, other["description"]))
    rng = (target.get("cuda") or {}).get("torch")
    if rng and cuda_torch_reason(target, release):
        out.append("a from-source CUDA build for this board needs a release line with torch %s: a "
                   "configs/releases/<version>.yaml + patch series this recipe does not carry" % (
                       " and ".join(x for x in (">= %s" % rng["min"] if rng.get("min") else None,
                                                "<= %s" % rng["max"] if rng.get("max") else None) if x)))
    return out


# --------------------------------------------------------------------------- versions, names

def local_label(target_name, cpu_only_variant):
    """PEP 440 local label in canonical form: lower-case alphanumerics joined by dots.

    `jetson-agx-orin` -> `jetson.agx.orin.recipe0.1.0` (pip would normalise '-' to '.' anyway,
    so we write the normalised form and the wheel name is what pip reports).
    """
    parts = re.split(r"[-_.]+", target_name.lower())
    if cpu_only_variant:
        parts.append("cpu")
    parts.append("recipe" + RECIPE_VERSION.lower())
    label = ".".join(p for p in parts if p)
    label = re.sub(r"[^a-z0-9.]", "", label)
    assert re.match(r"^[a-z0-9]+(\.[a-z0-9]+)*$", label), label
    return label


def acl_cache_key(release, target):
    acl = release["acl"]
    flags = list(acl["scons_flags"]) + ["arch=%s" % target["cpu"]["acl_arch"]]
    digest = hashlib.sha256(stamps_mod.canonical(
        {"tag": acl["tag"], "commit": acl["commit"], "flags": flags}).encode()).hexdigest()[:12]
    return "%s-%s-%s" % (acl["version"], target["cpu"]["acl_arch"], digest)


# --------------------------------------------------------------------------- options

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a config's file stem: no path in it
VERSION_XY_RE = re.compile(r"^\d+\.\d+$")
CUDA_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?$")


def validate_options(opts):
    """OptionError (one line: the option, what is wrong, what to pass) before anything runs."""
    for key, option in (("target", "--target"), ("release", "--release")):
        if opts.get(key) is not None and not NAME_RE.match(opts[key]):
            raise OptionError(option, opts[key], "not a %s name" % key,
                              "pick one of `python build.py list`")
    if opts.get("cuda_version") is not None:
        if not CUDA_VERSION_RE.match(opts["cuda_version"]):
            raise OptionError("--cuda-version", opts["cuda_version"], "not a CUDA version",
                              "give X.Y, e.g. 12.6")
        if opts.get("cuda") == "off":
            raise OptionError("--cuda-version", opts["cuda_version"], "contradicts --cuda off",
                              "drop one of them")
    if opts.get("python_version") is not None and not VERSION_XY_RE.match(opts["python_version"]):
        raise OptionError("--python-version", opts["python_version"], "not a Python version",
                          "give X.Y, e.g. 3.10")
    jobs = opts.get("jobs")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise OptionError("--jobs", jobs, "must be a positive number of compile jobs",
                          "give 1 or more, or leave it out (doctor picks it from RAM + swap)")
    if opts.get("only") and opts.get("from_step"):
        raise OptionError("--only", opts["only"], "cannot be combined with --from %s"
                          % opts["from_step"], "use --only STEP for one step, --from STEP to "
                          "redo from STEP to the end")
    if opts.get("json") and not opts.get("dry_run"):
        raise OptionError("--json", None, "only goes with --dry-run", "add --dry-run")
    if opts.get("configs") is not None:
        check_folder_option("--configs", opts["configs"], must_exist=True)
        missing = [d for d in ("targets", "releases")
                   if not os.path.isdir(os.path.join(opts["configs"], d))]
        if missing:
            raise OptionError("--configs", opts["configs"], "has no %s/ folder" % " or ".join(missing),
                              "name the folder that holds targets/ and releases/ (default: configs/)")
    if opts.get("source") is not None:
        check_folder_option("--source", opts["source"], must_exist=True)
    check_folder_option("--work-dir", opts.get("work_dir"))
    check_folder_option("--wheels-dir", opts.get("wheels_dir"))


# --------------------------------------------------------------------------- the plan

def make_plan(options, configs=None, host=None):
    opts = dict(DEFAULT_OPTIONS)
    opts.update({k: v for k, v in options.items() if v is not None or k not in opts})
    validate_options(opts)
    configs = configs or Configs(opts["configs"] or os.path.join(REPO_ROOT, "configs"))
    host = host or doctor.probe_host()
    if not opts["target"]:
        raise ConfigError(["no target: pass --target NAME (python build.py list shows them)"])

    p = Plan()
    p.options = {k: v for k, v in opts.items()}
    p.host = host
    p.requested_target = opts["target"]
    name, p.target_reason = resolve_target(opts["target"], configs, host)
    p.target = target = configs.target(name)
    p.release = release = configs.release(opts["release"] or configs.latest_release())
    p.warnings = []

    # -- CUDA, Python, ACL
    if opts["cuda"] == "on" and not target.get("cuda"):
        raise PlanError(["target %s has no CUDA (cuda: null in %s)" % (name, target["_file"])],
                        ["a Jetson target: python build.py list"])
    if opts.get("cuda_version") and not target.get("cuda"):
        raise OptionError("--cuda-version", opts["cuda_version"], "target %s builds without CUDA"
                          % name, "drop --cuda-version (it overrides a Jetson target's CUDA)")
    p.cuda = None if opts["cuda"] == "off" else (dict(target["cuda"]) if target.get("cuda") else None)
    if p.cuda and opts.get("cuda_version"):
        p.cuda["version"] = opts["cuda_version"]
    p.python_exe = opts["python"] or sys.executable
    if opts["python_version"]:
        p.python_version = opts["python_version"]
    elif target["python"] == "host":
        p.python_version = "%d.%d" % sys.version_info[:2] if not opts["python"] else \
            _interpreter_version(p.python_exe)
    else:
        p.python_version = target["python"]
    p.acl_enabled = bool(target["acl"])

    reasons = compatibility(target, release, p.cuda, p.python_version)
    if reasons:
        raise PlanError(reasons, suggestions_for(target, configs, release),
                        title="cannot build torch %s from source for %s (%s)" % (release["name"], name, target["_file"]))

    # -- directories
    tag = "%s-%s%s" % (name, release["name"], "-cpu" if (target.get("cuda") and not p.cuda) else "")
    p.work_dir = os.path.abspath(opts["work_dir"] or os.path.join(REPO_ROOT, "work", tag))
    p.source_dir = os.path.abspath(opts["source"]) if opts["source"] else os.path.join(p.work_dir, "pytorch")
    p.source_given = bool(opts["source"])
    p.git_url = opts["git_url"] or release["torch"]["git_url"]
    p.log_dir = os.path.join(p.work_dir, "logs")
    p.wheels_dir = os.path.abspath(opts["wheels_dir"] or os.path.join(REPO_ROOT, "wheels"))
    p.acl_dir = cache_dir("acl", acl_cache_key(release, target)) if p.acl_enabled else None
    p.acl_root = os.path.join(p.acl_dir, "ComputeLibrary") if p.acl_dir else None
    p.series_path = os.path.join(REPO_ROOT, release["patches"]["series"]) \
        if not os.path.isabs(release["patches"]["series"]) else release["patches"]["series"]

    # -- wheel version and name
    p.build_version = "%s+%s" % (release["torch"]["version"],
                                 local_label(name, bool(target.get("cuda")) and not p.cuda))
    py = p.python_version.replace(".", "")
    plat = ("linux_%s" % target["arch"]) if p.cuda else "manylinux_2_*_%s" % target["arch"]
    p.expected_wheel = "torch-%s-cp%s-cp%s-%s.whl" % (p.build_version, py, py, plat)

    # -- environment
    from recipe.steps import build as build_step
    p.launcher, launcher_env = build_step.compiler_launcher(opts["cache"], opts["cache_url"], bool(p.cuda))
    if opts["cache"] in ("ccache", "sccache") and not p.launcher:
        p.warnings.append("--cache %s: %s is not on PATH; building without a compiler cache"
                          % (opts["cache"], opts["cache"]))
    p.env = build_env(p, launcher_env)

    # -- steps
    p.doctor = doctor.check(p)
    p.steps = []
    keys = {}
    to_do = set()
    st = stamps_mod.Stamps(p.work_dir)
    problems = []  # what a step's describe() knows would make it fail: refused now, not hours later
    for step_name in ORDER:
        mod = module(step_name)
        d = mod.describe(p)
        problems.extend(d.get("errors") or [])
        inputs = dict(d.get("inputs") or {})
        inputs["depends"] = {dep: keys.get(dep) for dep in getattr(mod, "DEPENDS", ())}
        key = stamps_mod.key_of({"skipped": d["skip"]} if d.get("skip") else inputs)
        keys[step_name] = key
        always = getattr(mod, "ALWAYS_RUN", False)
        state = "skip" if d.get("skip") else ("always" if always else None)
        why = None
        if state is None:
            pending = [dep for dep in getattr(mod, "DEPENDS", ()) if dep in to_do]
            why = ("%s will run first" % ", ".join(pending) if pending else
                   st.why_stale(step_name, key, inputs, upstream_tokens(p.steps, mod, st)))
            state = "done" if why is None else "to do"
            if why:
                to_do.add(step_name)
        p.steps.append({
            "name": step_name, "title": mod.TITLE, "skip": d.get("skip"),
            "commands": [c if isinstance(c, str) else _join(c) for c in d.get("commands") or []],
            "inputs": inputs, "outputs": list(d.get("outputs") or []), "key": key,
            "state": state, "why": why, "notes": list(d.get("notes") or []),
        })
        p.warnings.extend(d.get("warnings") or [])
    if problems:
        raise PlanError(problems, title="this build would fail (nothing was run)")
    return p


def upstream_tokens(steps, mod, st):
    """{dependency: the id of its stamp} ('skipped' for a skipped dependency)."""
    skipped = {s["name"] for s in steps if s["skip"]}
    return {dep: ("skipped" if dep in skipped else st.token(dep)) for dep in getattr(mod, "DEPENDS", ())}


def _join(cmd):
    from recipe.proc import shell_join
    return shell_join(cmd)


def _interpreter_version(python):
    from recipe.proc import output
    out = output([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    if not out:
        raise PlanError(["cannot run the interpreter %s" % python], ["--python PATH to a working python3"])
    return out


def build_env(p, launcher_env):
    """The environment of `python setup.py bdist_wheel` (strings only)."""
    target, release = p.target, p.release
    env = {}
    env["USE_CUDA"] = "1" if p.cuda else "0"
    if p.cuda:
        env["TORCH_CUDA_ARCH_LIST"] = p.cuda["arch_list"]
        env["CUDA_HOME"] = p.cuda.get("home") or "/usr/local/cuda"
    env["USE_MKLDNN"] = "1"
    if p.acl_enabled:
        env["USE_MKLDNN_ACL"] = "1"
        env["ACL_ROOT_DIR"] = p.acl_root
    env.update(release.get("env") or {})
    env["USE_NATIVE_ARCH"] = "0"
    if target["arch"] == "aarch64":
        env["USE_FBGEMM"] = "0"
        env["BLAS"] = "OpenBLAS"
        if not target["cpu"]["features"]["sve"]:
            # 2.6.0's cmake does not read it; newer FindARM.cmake stops on no-SVE hosts without it
            env["BUILD_IGNORE_SVE_UNAVAILABLE"] = "1"
    env["MAX_JOBS"] = str(p.options.get("jobs") or doctor.max_jobs(
        p.host["mem_bytes"], p.host["swap_bytes"], p.host["cpus"], bool(p.cuda)))
    env.update(launcher_env)
    if target.get("max_page_size") is not None:
        size = target["max_page_size"]
        size = size if isinstance(size, str) else hex(size)
        env["LDFLAGS"] = "-Wl,-z,max-page-size=%s" % size
    env["PYTORCH_BUILD_VERSION"] = p.build_version
    env["PYTORCH_BUILD_NUMBER"] = "1"  # setup.py asserts it is set when the version is
    env.update(target.get("env") or {})
    return env


# --------------------------------------------------------------------------- text output

def format_plan(p):
    t, r = p.target, p.release
    lines = []
    add = lines.append
    add("Plan: torch %s for %s  (recipe %s)" % (r["torch"]["version"], t["name"], RECIPE_VERSION))
    if p.requested_target != t["name"]:
        add("  target    %s -> %s: %s" % (p.requested_target, t["name"], p.target_reason))
        add("            %s" % t["description"])
    else:
        add("  target    %s: %s" % (t["name"], t["description"]))
    add("            cpu %s%s" % (t["cpu"]["name"],
                                  " (ACL arch=%s)" % t["cpu"]["acl_arch"] if p.acl_enabled else ""))
    add("  release   %s: torch %s @ %s, oneDNN %s, ACL %s%s" % (
        r["name"], r["torch"]["tag"], r["torch"]["commit"], r["onednn"]["version"], r["acl"]["tag"],
        "" if p.acl_enabled else " (not used)"))
    add("  cuda      %s" % ("%s, TORCH_CUDA_ARCH_LIST=%s" % (p.cuda["version"], p.cuda["arch_list"])
                          if p.cuda else "off (CPU-only wheel)"))
    add("  python    %s (%s)" % (p.python_version, p.python_exe))
    add("  source    %s (%s)" % (p.source_dir, "given with --source" if p.source_given
                                 else "shallow clone of %s" % p.git_url))
    add("  work dir  %s" % p.work_dir)
    add("  wheel     %s/%s" % (p.wheels_dir, p.expected_wheel))
    addon = working_path.addon_path(t)
    if addon:
        add("  add-on    or, without this build: %s" % addon)
    add("")
    add("Doctor (this host%s):" % ("" if p.host["arch"] == t["arch"] else
                                   ", not the target: a real run here stops at the first step"))
    for f in p.doctor:
        add("  %-16s %-4s %s%s" % (f["check"], f["status"], f["value"],
                                   ("\n%22s-> %s" % ("", f["fix"])) if f["fix"] and f["status"] != "ok" else ""))
    add("")
    add("Steps:")
    for i, s in enumerate(p.steps, 1):
        state = {"skip": "skip: %s" % s["skip"], "always": "runs every time",
                 "done": "done (stamp matches)", "to do": "to do: %s" % s["why"]}[s["state"]]
        add("  %d. %-9s %s" % (i, s["name"], s["title"]))
        add("     [%s]" % state)
        for c in s["commands"]:
            add("       $ %s" % c)
        for n in s["notes"]:
            add("       note: %s" % n)
    add("")
    add("Build environment (on top of yours):")
    for k in sorted(p.env):
        add("  %s=%s" % (k, p.env[k]))
    if p.warnings:
        add("")
        add("Warnings:")
        for w in p.warnings:
            add("  - %s" % w)
    return "\n".join(lines)
