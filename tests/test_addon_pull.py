"""Add-on wheels in the index: `publish` describes real add-on wheels (built by recipe.addon for
torch 2.13 here and for torch 2.6.0), a real HTTP server on loopback serves them, and
`build.py pull --addon` run by a fresh venv that sees the host's torch 2.13 installs the right
one (verified before pip sees it); a bad sha256 is refused with nothing installed; no match
says what the index has and how to build it; pip itself picks the right one from the
per-release-line index."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import addon_helpers as ah  # noqa: E402
from conftest import unavailable  # noqa: E402
import ship_helpers as sh  # noqa: E402

from recipe import publish  # noqa: E402

try:
    import torch
except ImportError as exc:  # tools/test.sh installs the host's torch
    unavailable("torch on the host", exc, module=True)
BUILD_PY = os.path.join(sh.REPO, "build.py")
HOST_RELEASE = torch.__version__.split("+")[0]
HOST_MINOR = ".".join(HOST_RELEASE.split(".")[:2])


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    wheels = tmp_path_factory.mktemp("addon-wheels")
    host = ah.build_host_wheel(wheels)
    other = ah.build_other_torch_wheel(wheels)
    out = tmp_path_factory.mktemp("addon-site")
    publish.publish(str(wheels), str(out), log=lambda *a: None)
    return {"root": out, "host": os.path.basename(host), "other": os.path.basename(other)}


def make_venv(path):
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(path)],
                   check=True, timeout=300)
    return str(path / "bin" / "python")


def run_pull(python, *args):
    env = ah.clean_env()
    return subprocess.run([python, BUILD_PY, "pull", "--addon", "--quiet"] + [str(a) for a in args],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=600)


def addon_state(python):
    r = subprocess.run([python, "-c", "import sys, torch; m = sys.modules.get("
                        "'torch_grouped_conv'); print(m._state['loaded'] if m else None)"],
                       env=ah.clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.split()[-1]


def test_publish_lists_addons_by_torch_and_arch(site):
    index = json.loads((site["root"] / "index.json").read_text())
    assert index["schema_version"] == 2
    entries = {e["filename"]: e for e in index["wheels"]}
    host, other = entries[site["host"]], entries[site["other"]]
    assert host["kind"] == other["kind"] == "addon"
    assert (host["torch"], host["arch"], host["cxx11_abi"]) == (HOST_RELEASE, "x86_64", 1)
    assert other["torch"] == "2.6.0" and other["torch_git"].startswith("2236df17")
    assert host["sha256"] == ah.addon._sha256(str(site["root"] / site["host"]))
    page = (site["root"] / "simple" / "torch-grouped-conv" / "index.html").read_text()
    assert site["host"].replace("+", "%2B") in page and "#sha256=" + host["sha256"] in page
    line = site["root"] / "addon" / ("torch-" + HOST_MINOR) / "simple" / "torch-grouped-conv"
    text = (line / "index.html").read_text()
    assert site["host"].replace("+", "%2B") in text and site["other"].replace("+", "%2B") not in text
    assert (site["root"] / "addon" / "torch-2.6" / "simple" / "index.html").exists()


def test_pull_addon_installs_the_one_for_this_torch(site, tmp_path):
    python = make_venv(tmp_path / "venv")
    with sh.LoopbackServer(site["root"]) as server:
        r = run_pull(python, "--index", server.url + "/index.json")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert site["host"] in r.stdout and "verified sha256" in r.stdout
    assert addon_state(python) == "True"         # import torch alone: loaded


def test_a_bad_sha256_is_refused_and_nothing_installed(site, tmp_path):
    data = json.loads((site["root"] / "index.json").read_text())
    for e in data["wheels"]:
        e["sha256"] = "0" * 64
    bad = tmp_path / "served"
    shutil.copytree(str(site["root"]), str(bad))
    (bad / "index.json").write_text(json.dumps(data))
    python = make_venv(tmp_path / "venv")
    with sh.LoopbackServer(bad) as server:
        r = run_pull(python, "--index", server.url + "/index.json")
    assert r.returncode == 1 and "sha256 mismatch" in r.stderr and "Traceback" not in r.stderr
    assert addon_state(python) == "None"         # not installed
    assert not [f for f in os.listdir(str(tmp_path)) if f.endswith((".part", ".whl"))]


def test_no_match_says_what_the_index_has_and_how_to_build_it(site, tmp_path):
    data = json.loads((site["root"] / "index.json").read_text())
    data["wheels"] = [e for e in data["wheels"] if e["filename"] == site["other"]]
    path = tmp_path / "index.json"
    path.write_text(json.dumps(data))
    r = run_pull(sys.executable, "--index", path, "--dry-run")
    assert r.returncode == 1, r.stdout
    assert site["other"] in r.stderr and "python build.py addon --install" in r.stderr
    assert "torch %s" % torch.__version__ in r.stderr


def test_simple_indexes_work_for_pull_and_for_pip(site, tmp_path):
    with sh.LoopbackServer(site["root"]) as server:
        r = run_pull(sys.executable, "--index", server.url + "/simple/", "--dry-run")
        assert r.returncode == 0 and site["host"] in r.stdout, (r.stdout, r.stderr)
        target = tmp_path / "t"
        p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target",
                            str(target), "--index-url",
                            "%s/addon/torch-%s/simple" % (server.url, HOST_MINOR),
                            "torch-grouped-conv"], env=ah.clean_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=600)
    assert p.returncode == 0, p.stdout
    installed = [d for d in os.listdir(str(target)) if d.endswith(".dist-info")]
    assert installed == ["torch_grouped_conv-0.1.0+torch%s.dist-info" % HOST_RELEASE], installed
