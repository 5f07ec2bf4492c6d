"""recipe.download.pip_download against the real package index (the machine's pip
configuration): a pinned wheel arrives verified; a wrong pin is refused and leaves nothing."""
from __future__ import annotations

import os

import pytest

from recipe import download
from tests.harness.emulation import WHEELS

# a small pure-Python wheel the arm64 root filesystem pins anyway (requirement, file, size, sha)
MPMATH = next(w for w in WHEELS if w[1].startswith("mpmath-"))


def test_a_pinned_wheel_arrives_verified(tmp_path):
    req, name, size, sha = MPMATH
    paths = download.pip_download([(req, sha)], str(tmp_path), ["manylinux2014_aarch64"], "3.11",
                                  expected={name: (size, sha)})
    assert paths == [str(tmp_path / name)] and os.path.getsize(paths[0]) == size
    assert sorted(os.listdir(tmp_path)) == [name]  # no temporary folder left behind


def test_a_file_that_differs_from_its_pin_never_reaches_dest(tmp_path):
    req, name, size, sha = MPMATH
    with pytest.raises(download.DownloadError) as e:
        download.pip_download([(req, None)], str(tmp_path), ["manylinux2014_aarch64"], "3.11",
                              expected={name: (size + 1, sha)})
    assert "does not match its pin" in str(e.value) and e.value.exit_code == 1
    assert os.listdir(tmp_path) == []


def test_a_wrong_hash_is_pip_s_refusal(tmp_path):
    req, _, _, _ = MPMATH
    with pytest.raises(download.DownloadError) as e:
        download.pip_download([(req, "0" * 64)], str(tmp_path), ["manylinux2014_aarch64"], "3.11")
    assert "pip download of %s" % req in str(e.value) and os.listdir(tmp_path) == []
