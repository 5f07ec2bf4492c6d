"""Stamps: a step is done when its stamp matches its inputs and its outputs are untouched.

A stamp is `<work>/stamps/<step>.json`: the key (sha256 of the step's inputs, which include
the keys of the steps it depends on, so a change flows downstream), the inputs themselves
(for humans: `diff` two stamps to see what changed), what the step reported (results), and
a fingerprint of each output file. A stamp whose outputs were changed or removed since is
stale, so the step runs again.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid

from recipe.hashing import sha256_file

# Files larger than this are fingerprinted by size + mtime instead of a full hash.
HASH_LIMIT = 64 * 1024 * 1024


# Environment variables that do not change what is built (kept out of the build's stamp key).
VOLATILE_ENV = ("MAX_JOBS", "USE_CCACHE", "CMAKE_C_COMPILER_LAUNCHER", "CMAKE_CXX_COMPILER_LAUNCHER",
                "CMAKE_CUDA_COMPILER_LAUNCHER")
VOLATILE_PREFIXES = ("CCACHE_", "SCCACHE_")


def stable_env(env):
    """The build environment minus what only affects speed (jobs, compiler cache)."""
    return {k: v for k, v in env.items() if k not in VOLATILE_ENV and not k.startswith(VOLATILE_PREFIXES)}


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def key_of(inputs):
    return hashlib.sha256(canonical(inputs).encode("utf-8")).hexdigest()


def fingerprint(path):
    """A file's identity: sha256 (small files) or size+mtime (large); a directory: exists."""
    if os.path.isdir(path):
        return "dir"
    if not os.path.exists(path):
        return None
    st = os.stat(path)
    if st.st_size > HASH_LIMIT:
        return "size=%d,mtime=%d" % (st.st_size, int(st.st_mtime))
    return "sha256=" + sha256_file(path)


class Stamps:
    def __init__(self, work_dir):
        self.dir = os.path.join(work_dir, "stamps")

    def path(self, step):
        return os.path.join(self.dir, step + ".json")

    def read(self, step):
        try:
            with open(self.path(step), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def token(self, step):
        """Identifies one run of a step: a dependent's stamp remembers it, so when the
        dependency runs again (new token) the dependent is stale even if its inputs are not."""
        stamp = self.read(step)
        return stamp.get("id") if stamp else None

    def write(self, step, key, inputs, results, outputs, upstream=None):
        os.makedirs(self.dir, exist_ok=True)
        stamp = {
            "step": step,
            "id": uuid.uuid4().hex,
            "key": key,
            "inputs": inputs,
            "upstream": upstream or {},
            "results": results,
            "outputs": {p: fingerprint(p) for p in outputs},
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp = self.path(step) + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(stamp, f, indent=1, sort_keys=True, default=str)
        os.replace(tmp, self.path(step))
        return stamp

    def remove(self, step):
        try:
            os.remove(self.path(step))
        except OSError:
            pass

    def why_stale(self, step, key, inputs=None, upstream=None):
        """None when the stamp is valid for `key` (and the upstream runs it was made from), else why not."""
        stamp = self.read(step)
        if stamp is None:
            return "not done yet"
        if stamp.get("key") != key:
            changed = diff_inputs(stamp.get("inputs"), inputs) if inputs is not None else []
            return "inputs changed" + (": " + ", ".join(changed[:6]) if changed else "")
        for dep, token in (upstream or {}).items():
            if (stamp.get("upstream") or {}).get(dep) != token:
                return "%s ran again since" % dep
        for path, fp in (stamp.get("outputs") or {}).items():
            if fingerprint(path) != fp:
                return "output changed or missing: %s" % path
        return None


def diff_inputs(old, new, prefix=""):
    """Names of the input keys that differ between two input dicts (for messages)."""
    out = []
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            out.extend(diff_inputs(old.get(k), new.get(k), prefix + str(k) + "."))
    elif canonical(old) != canonical(new):
        out.append(prefix.rstrip("."))
    return out
