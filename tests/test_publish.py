"""publish: wheels/ -> static PEP 503 index + index.json, consumed by pip itself."""
import hashlib
import html.parser
import json
import os
import subprocess
import sys
from urllib.parse import quote, unquote

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ship_helpers as sh  # noqa: E402

sys.path.insert(0, sh.REPO)
from recipe import publish, wheelindex  # noqa: E402

ORIN = dict(py="cp310", abi="cp310", plat="linux_aarch64")


@pytest.fixture
def wheels(tmp_path):
    d = tmp_path / "wheels"
    d.mkdir()
    host = sh.make_wheel(d, version="2.6.0+x86.64.cpu",
                         manifest=sh.manifest_for(sh.host_target()))
    orin = sh.make_wheel(d, version="2.6.0+jetson.agx.orin.cu126", **ORIN,
                         manifest=sh.manifest_for("jetson-agx-orin", python="3.10",
                                                  cuda="12.6"))
    other = sh.make_wheel(d, name="My_Pkg.Extra", version="1.0",
                          manifest=sh.manifest_for(sh.host_target()))
    return d, host, orin, other


def run_publish(*args):
    return subprocess.run([sys.executable, os.path.join(sh.REPO, "build.py"), "publish"] +
                          [str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120)


class Links(html.parser.HTMLParser):
    def __init__(self):
        html.parser.HTMLParser.__init__(self)
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs))


def links_of(path):
    p = Links()
    p.feed(path.read_text())
    return p.links


def sha(path):
    return hashlib.sha256(open(str(path), "rb").read()).hexdigest()


def test_publish_writes_pep503_and_index_json(wheels, tmp_path):
    d, host, orin, other = wheels
    out = tmp_path / "site"
    res = run_publish("--wheels", d, "--out", out)
    assert res.returncode == 0, res.stderr
    assert "published torch-2.6.0+jetson.agx.orin.cu126-cp310-cp310-linux_aarch64.whl" in \
        res.stdout
    index = json.loads((out / "index.json").read_text())
    assert index["schema"] == wheelindex.INDEX_SCHEMA and index["schema_version"] == 1
    by_name = {w["filename"]: w for w in index["wheels"]}
    assert set(by_name) == {os.path.basename(p) for p in (host, orin, other)}
    w = by_name[os.path.basename(orin)]
    assert w["sha256"] == sha(orin) and w["size"] == os.path.getsize(orin)
    assert (w["target"], w["release"], w["python"], w["python_tag"], w["cuda"],
            w["platform_tag"]) == ("jetson-agx-orin", "2.6.0", "3.10", "cp310", "12.6",
                                   "linux_aarch64")
    assert w["url"] == quote(os.path.basename(orin))  # relative to index.json, "+" -> %2B
    assert w["manifest"] == quote(os.path.basename(orin)) + ".manifest.json"
    assert w["manifest_sha256"] == sha(orin + ".manifest.json")
    assert by_name[os.path.basename(host)]["cuda"] is None
    # the wheels, manifests and PEP 658 metadata are beside index.json
    for p in (host, orin, other):
        assert sha(out / os.path.basename(p)) == sha(p)
        assert (out / (os.path.basename(p) + ".manifest.json")).exists()
        assert (out / (os.path.basename(p) + ".metadata")).read_text().startswith(
            "Metadata-Version")
    # PEP 503: root lists normalized project names; project pages link with #sha256=
    root = links_of(out / "simple" / "index.html")
    assert sorted(a["href"] for a in root) == ["my-pkg-extra/", "torch/"]
    page = links_of(out / "simple" / "torch" / "index.html")
    hrefs = sorted(a["href"] for a in page)
    assert hrefs == sorted("../../{}#sha256={}".format(quote(os.path.basename(p)), sha(p))
                           for p in (host, orin))
    for a in page:
        assert a["data-requires-python"] == ">=3.8"
        meta = out / (unquote(a["href"].split("#")[0][len("../../"):]) + ".metadata")
        assert a["data-dist-info-metadata"] == "sha256=" + sha(meta)
    assert (out / "simple" / "my-pkg-extra" / "index.html").exists()


def test_pip_download_consumes_the_published_index(wheels, tmp_path):
    d, host, orin, _ = wheels
    out = tmp_path / "site"
    assert run_publish("--wheels", d, "--out", out).returncode == 0
    env = sh.clean_pip_env()
    url = (out / "simple").as_uri()
    # this machine: pip picks the installable wheel
    dl = tmp_path / "dl"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--index-url", url,
         "-d", str(dl), "torch==2.6.0"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    assert res.returncode == 0, res.stdout
    assert [p.name for p in dl.iterdir()] == [os.path.basename(host)]
    assert sha(dl / os.path.basename(host)) == sha(host)
    # a Jetson (Python 3.10, aarch64): the Orin wheel
    dl2 = tmp_path / "dl2"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--index-url", url,
         "--only-binary=:all:", "--platform", "linux_aarch64", "--python-version", "3.10",
         "--implementation", "cp", "-d", str(dl2), "torch==2.6.0"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    assert res.returncode == 0, res.stdout
    assert [p.name for p in dl2.iterdir()] == [os.path.basename(orin)]
    # normalized names resolve too
    dl3 = tmp_path / "dl3"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--index-url", url,
         "-d", str(dl3), "my_pkg.extra==1.0"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    assert res.returncode == 0, res.stdout


def test_pip_refuses_a_wheel_whose_hash_differs_from_the_index(wheels, tmp_path):
    """The #sha256= links are real: pip checks them."""
    d, host, _, _ = wheels
    out = tmp_path / "site"
    assert run_publish("--wheels", d, "--out", out).returncode == 0
    target = out / os.path.basename(host)
    data = bytearray(target.read_bytes())
    data[-30] ^= 0xFF  # corrupt the published copy after publishing
    target.unlink()    # (the published copy may be a hard link to the source wheel)
    target.write_bytes(bytes(data))
    meta = out / (os.path.basename(host) + ".metadata")
    meta.unlink()      # make pip fetch the wheel itself
    page = out / "simple" / "torch" / "index.html"
    page.write_text(page.read_text().replace("data-dist-info-metadata", "data-x").replace(
        "data-core-metadata", "data-y"))
    res = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--index-url",
         (out / "simple").as_uri(), "-d", str(tmp_path / "dl"), "torch==2.6.0"],
        env=sh.clean_pip_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True, timeout=300)
    assert res.returncode != 0
    assert "HASHES" in res.stdout.upper() or "hash" in res.stdout.lower(), res.stdout


def test_pip_over_http_uses_pep658_metadata(wheels, tmp_path):
    d, host, _, _ = wheels
    out = tmp_path / "site"
    assert run_publish("--wheels", d, "--out", out).returncode == 0
    with sh.LoopbackServer(out) as srv:
        res = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--index-url",
             srv.url + "/simple/", "-d", str(tmp_path / "dl"), "torch==2.6.0"],
            env=sh.clean_pip_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            universal_newlines=True, timeout=300)
        reqs = [unquote(r) for r in srv.handler.requests]
    assert res.returncode == 0, res.stdout
    assert "/simple/torch/" in reqs
    assert "/" + os.path.basename(host) + ".metadata" in reqs  # PEP 658 used
    assert "/" + os.path.basename(host) in reqs
    assert (tmp_path / "dl" / os.path.basename(host)).exists()


def test_in_place_default_and_empty_index(tmp_path):
    d = tmp_path / "wheels"
    d.mkdir()
    res = run_publish("--wheels", d)
    assert res.returncode == 0, res.stderr
    assert json.loads((d / "index.json").read_text()) == wheelindex.empty_index()
    assert links_of(d / "simple" / "index.html") == []
    w = sh.make_wheel(d, manifest=sh.manifest_for(sh.host_target()))
    assert run_publish("--wheels", d).returncode == 0
    assert [x["url"] for x in json.loads((d / "index.json").read_text())["wheels"]] == \
        [quote(os.path.basename(w))]
    # removing the wheel and re-publishing drops it and its project page
    os.unlink(w)
    os.unlink(w + ".manifest.json")
    assert run_publish("--wheels", d).returncode == 0
    assert json.loads((d / "index.json").read_text())["wheels"] == []
    assert not (d / "simple" / "torch").exists()


def test_repo_index_is_valid():
    with open(os.path.join(sh.REPO, "wheels", "index.json")) as fh:
        wheelindex.validate_index(json.load(fh), "wheels/index.json")


def test_base_url_makes_absolute_links_and_keeps_remote_entries(wheels, tmp_path):
    d, host, orin, other = wheels
    out = tmp_path / "site"
    res = run_publish("--wheels", d, "--out", out, "--base-url",
                      "https://downloads.example.invalid/torch/2.6.0/")
    assert res.returncode == 0, res.stderr
    index = json.loads((out / "index.json").read_text())
    urls = sorted(w["url"] for w in index["wheels"])
    assert all(u.startswith("https://downloads.example.invalid/torch/2.6.0/") for u in urls)
    assert not (out / os.path.basename(host)).exists()  # hosted elsewhere: not copied
    hrefs = [a["href"] for a in links_of(out / "simple" / "torch" / "index.html")]
    assert all(h.startswith("https://downloads.example.invalid/") and "#sha256=" in h
               for h in hrefs)
    # a later local publish into the same folder keeps the remote entries (default)
    d2 = tmp_path / "w2"
    d2.mkdir()
    new = sh.make_wheel(d2, version="2.6.0+x86.64.cpu.r2",
                        manifest=sh.manifest_for(sh.host_target()))
    assert run_publish("--wheels", d2, "--out", out).returncode == 0
    index = json.loads((out / "index.json").read_text())
    assert len(index["wheels"]) == 4
    assert quote(os.path.basename(new)) in [w["url"] for w in index["wheels"]]
    assert run_publish("--wheels", d2, "--out", out, "--no-keep-remote").returncode == 0
    assert len(json.loads((out / "index.json").read_text())["wheels"]) == 1


def test_refuses_wheels_it_cannot_describe(tmp_path):
    d = tmp_path / "wheels"
    d.mkdir()
    w = sh.make_wheel(d)  # no manifest
    res = run_publish("--wheels", d)
    assert res.returncode == 1
    assert "no manifest" in res.stderr and "--only manifest" in res.stderr
    assert not (d / "index.json").exists()
    # manifest of another build
    m = sh.manifest_for(sh.host_target())
    m["wheel"] = {"sha256": "0" * 64}
    with open(w + ".manifest.json", "w") as fh:
        json.dump(m, fh)
    res = run_publish("--wheels", d)
    assert res.returncode == 1 and "re-run the manifest step" in res.stderr
    # manifest without a target
    with open(w + ".manifest.json", "w") as fh:
        json.dump({"release": "2.6.0"}, fh)
    res = run_publish("--wheels", d)
    assert res.returncode == 1 and "lacks target" in res.stderr
    # not a zip at all
    os.unlink(w)
    os.unlink(w + ".manifest.json")
    (d / "torch-2.6.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"not a zip")
    res = run_publish("--wheels", d)
    assert res.returncode == 1 and "not a wheel" in res.stderr


def test_nested_manifest_shapes_are_read(tmp_path):
    d = tmp_path / "wheels"
    d.mkdir()
    sh.make_wheel(d, version="2.6.0+jetson.agx.orin.cu126", **ORIN, manifest={
        "recipe_version": "0.1.0", "target": {"name": "jetson-agx-orin"},
        "release": {"name": "2.6.0", "torch_commit": "2236df1770800ffea5697b11b0bb0d910b2e59e1"},
        "python": {"version": "3.10.12"}, "cuda": {"version": "12.6.68"}})
    index = publish.publish(str(d), log=lambda *a: None)
    w = index["wheels"][0]
    assert (w["target"], w["release"], w["python"], w["cuda"]) == (
        "jetson-agx-orin", "2.6.0", "3.10", "12.6")


def test_the_recipes_manifest_shape_is_read(tmp_path):
    """The layout recipe/steps/manifest.py writes: target.name, release.name, build.python,
    build.cuda (the target's cuda map, or null for CPU), wheel.sha256."""
    d = tmp_path / "wheels"
    d.mkdir()
    shape = {"manifest_version": 1, "recipe_version": "0.1.0",
             "target": {"requested": "jetson-agx", "name": "jetson-agx-orin", "reason": "...",
                        "config": {"python": "3.10", "cuda": {"version": "12.6"}}},
             "release": {"name": "2.6.0", "config": {}},
             "build": {"python": "3.10", "env": {},
                       "cuda": {"version": "12.6", "arch_list": "8.7", "home": "/usr/local/cuda"},
                       "launcher": "sccache"}}
    sh.make_wheel(d, version="2.6.0+jetson.agx.orin.recipe0.1.0", **ORIN, manifest=shape)
    cpu = dict(shape, target=dict(shape["target"], name="generic-aarch64"),
               build=dict(shape["build"], cuda=None))
    sh.make_wheel(d, version="2.6.0+generic.aarch64.recipe0.1.0", **ORIN, manifest=cpu)
    index = publish.publish(str(d), log=lambda *a: None)
    got = sorted((w["target"], w["release"], w["python"], w["cuda"], w["recipe_version"])
                 for w in index["wheels"])
    assert got == [("generic-aarch64", "2.6.0", "3.10", None, "0.1.0"),
                   ("jetson-agx-orin", "2.6.0", "3.10", "12.6", "0.1.0")]
