"""sha256 of a file: the one digest helper (downloads, stamps, wheels, indexes)."""
from __future__ import annotations

import hashlib


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
