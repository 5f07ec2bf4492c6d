"""Which target this machine is (recipe/detect.py), and the facts pull needs of it (Python,
CUDA, arch) with or without the recipe's configs (PyYAML)."""
from __future__ import annotations

from recipe import detect, errors
from recipe.pull.base import PullError

# Used only while the recipe's configs/targets are not available (see _target_facts).
FALLBACK_TARGETS = {
    "jetson-agx-orin": {"cuda": "12.6", "python": "3.10", "arch": "aarch64"},
    "jetson-agx-orin-jp7.2": {"cuda": "13.2", "python": "3.12", "arch": "aarch64"},
    "jetson-agx-orin-jp5": {"cuda": "11.4", "python": "3.8", "arch": "aarch64"},
    "jetson-agx-thor": {"cuda": "13.0", "python": "3.12", "arch": "aarch64"},
    "jetson-agx-thor-jp7.2": {"cuda": "13.2", "python": "3.12", "arch": "aarch64"},
    "jetson-agx-xavier": {"cuda": "11.4", "python": "3.8", "arch": "aarch64"},
    "jetson-agx-xavier-cpu": {"cuda": None, "python": "3.9", "arch": "aarch64"},
    "generic-aarch64": {"cuda": None, "python": "host", "arch": "aarch64"},
    "x86_64": {"cuda": None, "python": "host", "arch": "x86_64"},
}


def _configs():
    """The recipe's validated configs, or None while there are none (early development)."""
    try:
        from recipe.config import Configs
        cfg = Configs()
        if not cfg.target_names():
            return None
        return cfg
    except (ImportError, OSError):
        return None


def resolve_target(name, root="/"):
    """(concrete target name, reason) for a target or an alias such as jetson-agx.

    recipe.detect decides, so `pull` and the build always agree: on the recipe's configs
    (recipe.plan.resolve_target on doctor.probe_host()) when they load, on detect's built-in
    copy of the targets' detection facts otherwise (an environment without PyYAML)."""
    cfg = _configs()
    if cfg is not None:
        from recipe.plan import resolve_target as plan_resolve
        from recipe.steps.doctor import probe_host
        try:
            chosen, reason = plan_resolve(name, cfg, probe_host(root))
        except Exception as exc:  # ConfigError: unknown target, with the known ones
            raise errors.BadInput("--target: %s" % "; ".join(getattr(exc, "errors", None) or [str(exc)]))
    else:
        chosen, reason = detect.resolve(name, detect.BUILTIN_ALIASES, detect.BUILTIN_FACTS,
                                        detect.read_board(root))
    if chosen == name:
        return name, "target {}".format(name)
    return chosen, "target {} -> {}: {}".format(name, chosen, " ".join(reason.split()))


def _target_facts(name):
    """{'cuda': '12.6'|None, 'python': '3.10'|'host', 'arch': ...} for a concrete target."""
    cfg = _configs()
    if cfg is not None:
        try:
            t = cfg.target(name)
        except Exception as exc:
            raise PullError(str(exc))
        cuda = (t.get("cuda") or {}).get("version") if t.get("cuda") else None
        return {"cuda": cuda, "python": t.get("python"), "arch": t.get("arch")}
    if name in FALLBACK_TARGETS:
        return dict(FALLBACK_TARGETS[name])
    return {"cuda": None, "python": "host", "arch": None}
