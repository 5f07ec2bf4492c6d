"""Pinned wheels for another platform, with pip: `pip download --platform ... --require-hashes`.

The one way the recipe (and its test harness) fetches a wheel it does not install here: the
official torch wheels whose headers the add-on builds against, the arm64 root filesystem's
wheels, the CUDA 13 runtime wheels. A file whose size or sha256 differs from its pin never
reaches `dest`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from recipe.errors import RecipeError
from recipe.hashing import sha256_file


class DownloadError(RecipeError):
    """pip could not download a wheel, or one differs from its pin (exit status 1)."""


def pip_download(requirements, dest, platforms, python_version, expected=None):
    """Download `requirements` ([(requirement, sha256 or None)], no dependencies) for
    `platforms` and CPython `python_version` into `dest`; returns the paths. `expected`
    ({file name: (size, sha256)}) is checked before a file is moved into `dest`."""
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".dl-") as tmp:
        reqs = os.path.join(tmp, "requirements.txt")
        with open(reqs, "w") as f:
            for requirement, sha in requirements:
                f.write(requirement + (" --hash=sha256:%s" % sha if sha else "") + "\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp",
               "--abi", "cp" + python_version.replace(".", ""), "--dest", tmp, "-r", reqs,
               "--disable-pip-version-check", "-q"]
        for tag in platforms:
            cmd += ["--platform", tag]
        if all(sha for _, sha in requirements):
            cmd.append("--require-hashes")  # pip takes exactly the pinned files
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True)
        got = sorted(f for f in os.listdir(tmp) if f.endswith(".whl"))
        if res.returncode != 0 or len(got) != len(requirements):
            raise DownloadError("pip download of %s (%s) failed (is the package index "
                                "reachable?):\n%s" % (", ".join(r for r, _ in requirements),
                                                      " ".join(platforms), res.stdout[-3000:]))
        for name in got:
            if expected is not None:
                size, sha = expected.get(name, (None, None))
                path = os.path.join(tmp, name)
                if size is None or os.path.getsize(path) != size or sha256_file(path) != sha:
                    raise DownloadError("the downloaded %s does not match its pin (%s bytes, "
                                        "sha256 %s)" % (name, size, sha))
            os.replace(os.path.join(tmp, name), os.path.join(dest, name))
    return [os.path.join(dest, name) for name in got]
