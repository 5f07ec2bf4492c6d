"""Headers that compile checks of patched PyTorch TUs need and neither tree nor wheel has.

Debian's PyTorch tree has third_party stripped, and the official wheel ships only the
headers of its public API. Two TUs our series touches need more:

* ``aten/src/ATen/native/Convolution.cpp`` includes ``mkldnn/Utils.h`` -> ideep (C++ wrapper
  of oneDNN) -> ``oneapi/dnnl/dnnl.hpp`` (the wheel has oneDNN's C headers only).
* ``torch/csrc/Module.cpp`` includes ``fmt/core.h``.

They come from Debian trixie's header packages, the same ones Debian's own
``pytorch 2.6.0+dfsg-7`` is built against (so 2.6.0's sources are known to compile
with them): pinned by version, size and sha256, downloaded from the machine's Debian
mirror, verified before they are unpacked into ``recipe.cache_dir("devheaders")``.
The versions differ from PyTorch's submodules (oneDNN 3.7.2 vs 3.5.3; fmt 10 vs 11);
that matters for linking, not for checking that our edits compile.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.request

from recipe import cache_dir
from recipe.emulation import debian_mirror, sha256_file

# (package, pool path, size, sha256) from Debian trixie main.
DEBS = (
    ("libideep-dev", "pool/main/i/ideep/libideep-dev_0.0~git20250115.9873ffc-2_all.deb", 49824,
     "e3edfbd98bbe9ec1b68b261db7609e25e8933f76bc73bca15330c52c515ebe79"),
    ("libdnnl-dev", "pool/main/o/onednn/libdnnl-dev_3.7.2+ds-2_amd64.deb", 118268,
     "0c91dae973a7ff0bdcd875a5dca0e4c02f77b8d8cfce5e5db4bd57bd869e040d"),
    ("libfmt-dev", "pool/main/f/fmtlib/libfmt-dev_10.1.1+ds1-4_amd64.deb", 177208,
     "c084df80e2842bc57157e8def529f4ca6bc8743d005550b56a5ef96c9bc92f0f"),
)


class DevHeadersError(RuntimeError):
    pass


def _stamp(root):
    return os.path.join(root, ".complete")


def _download(url, dest, size, sha256):
    partial = dest + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        raise DevHeadersError("download of %s failed: %s (check the Debian mirror in "
                              "/etc/apt/sources.list.d or set RECIPE_DEBIAN_MIRROR)" % (url, exc))
    got_size, got_sha = os.path.getsize(partial), sha256_file(partial)
    if got_size != size or got_sha != sha256:
        os.unlink(partial)
        raise DevHeadersError("%s: expected %d bytes sha256 %s, got %d bytes sha256 %s; nothing "
                              "was unpacked" % (url, size, sha256, got_size, got_sha))
    os.rename(partial, dest)


def ensure_dev_headers():
    """Return an include directory holding ideep/, oneapi/dnnl/ and fmt/ (cached)."""
    root = cache_dir("devheaders", "trixie")
    include = os.path.join(root, "usr", "include")
    if os.path.exists(_stamp(root)):
        return include
    downloads = cache_dir("devheaders", "debs")
    os.makedirs(downloads, exist_ok=True)
    staging = tempfile.mkdtemp(prefix="trixie.tmp-", dir=os.path.dirname(root))
    try:
        mirror = debian_mirror()
        for package, pool_path, size, sha256 in DEBS:
            deb = os.path.join(downloads, os.path.basename(pool_path))
            if not (os.path.exists(deb) and sha256_file(deb) == sha256):
                _download(mirror + "/" + pool_path, deb, size, sha256)
            subprocess.run(["dpkg-deb", "-x", deb, staging], check=True)
        with open(_stamp(staging), "w") as f:
            f.write("\n".join(p for p, _, _, _ in DEBS) + "\n")
        if os.path.exists(root):
            shutil.rmtree(root)
        os.rename(staging, root)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return include
