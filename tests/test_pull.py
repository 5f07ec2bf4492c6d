"""pull: a real wheel served by a real HTTP server on loopback, installed by real pip into a
fresh virtual environment; refusals leave nothing installed and no file behind."""
import json
import os
import subprocess
import time
import sys
from urllib.parse import quote

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ship_helpers as sh  # noqa: E402

sys.path.insert(0, sh.REPO)
from recipe import cli, publish, wheelindex  # noqa: E402
from recipe.pull import base, fetch, selection, target  # noqa: E402
from recipe.pull import index as pull_index  # noqa: E402
from recipe.hashing import sha256_file  # noqa: E402

BUILD_PY = os.path.join(sh.REPO, "build.py")
HOST_VERSION = "2.6.0+x86.64.cpu"
ORIN = dict(py="cp310", abi="cp310", plat="linux_aarch64")
ORIN_VERSION = "2.6.0+jetson.agx.orin.cu126"
XAVIER = dict(py="cp38", abi="cp38", plat="linux_aarch64")
XAVIER_VERSION = "2.6.0+jetson.agx.xavier.cu114"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A published folder: a wheel for this machine (with some bulk so the download takes
    more than one read), an Orin and a Xavier wheel, manifests, index.json, simple/."""
    root = tmp_path_factory.mktemp("site")
    wheels = root / "wheels"
    wheels.mkdir()
    host = sh.make_wheel(wheels, version=HOST_VERSION, pad=3 << 20,
                         manifest=sh.manifest_for(sh.host_target()))
    orin = sh.make_wheel(wheels, version=ORIN_VERSION, **ORIN,
                         manifest=sh.manifest_for("jetson-agx-orin", python="3.10",
                                                  cuda="12.6"))
    xavier = sh.make_wheel(wheels, version=XAVIER_VERSION, **XAVIER,
                           manifest=sh.manifest_for("jetson-agx-xavier", python="3.8",
                                                    cuda="11.4"))
    out = root / "out"
    publish.publish(str(wheels), str(out), log=lambda *a: None)
    return {"root": out, "host": os.path.basename(host), "orin": os.path.basename(orin),
            "xavier": os.path.basename(xavier), "wheels": wheels}


def make_venv(path):
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    return str(path / "bin" / "python")


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh environment the refusal tests must leave without torch."""
    return make_venv(tmp_path_factory.mktemp("venv-refusals") / "v")


def has_torch(python):
    res = subprocess.run([python, "-c", "import torch"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    return res.returncode == 0


def run_pull(python, *args, tmpdir=None):
    env = sh.clean_pip_env({"RECIPE_CACHE": str(tmpdir or "/nonexistent")})
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return subprocess.run([python, BUILD_PY, "pull"] + [str(a) for a in args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300)


def edited_index(site, tmp_path, edit):
    """A copy of the site's index.json (absolute URLs to the server) changed by edit()."""
    data = json.loads((site["root"] / "index.json").read_text())
    edit(data)
    p = tmp_path / "index.json"
    p.write_text(json.dumps(data))
    return p


def with_server_urls(url):
    def edit(data):
        for w in data["wheels"]:
            w["url"] = url + "/" + w["url"]
    return edit


# ---------------------------------------------------------------------------------------


def test_pull_installs_the_verified_wheel_into_a_fresh_env(site, tmp_path):
    py = make_venv(tmp_path / "v")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with sh.LoopbackServer(site["root"]) as srv:
        res = run_pull(py, "--target", sh.host_target(), "--index", srv.url + "/index.json",
                       tmpdir=tmp)
        reqs = list(srv.handler.requests)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "/index.json" in reqs and "/" + quote(site["host"]) in reqs
    assert "verified sha256" in res.stdout and "installed " + site["host"] in res.stdout
    assert "MB" in res.stderr  # progress
    out = subprocess.run([py, "-c", "import torch, sys; print(torch.__version__); "
                                    "print(torch.__file__.startswith(sys.prefix)); "
                                    "print(torch.FROM_TEST_WHEEL)"],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    assert out.split() == [HOST_VERSION, "True", "True"]
    assert os.listdir(str(tmp)) == []  # the download dir is gone
    # pulling again (same version installed) reinstalls torch only, and works
    with sh.LoopbackServer(site["root"]) as srv:
        res = run_pull(py, "--target", sh.host_target(), "--index", srv.url + "/index.json",
                       "--quiet", tmpdir=tmp)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "--force-reinstall --no-deps" in res.stdout


def test_wrong_sha256_is_refused_and_nothing_installed(site, tmp_path, venv):
    dl = tmp_path / "dl"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with sh.LoopbackServer(site["root"]) as srv:
        def edit(data):
            with_server_urls(srv.url)(data)
            for w in data["wheels"]:
                w["sha256"] = "ab" * 32
        idx = edited_index(site, tmp_path, edit)
        for extra in ([], ["--download-only", dl]):
            res = run_pull(venv, "--target", sh.host_target(), "--index", idx, *extra,
                           tmpdir=tmp)
            assert res.returncode == 1, res.stdout + res.stderr
            assert "sha256 mismatch for {}/{}".format(srv.url, quote(site["host"])) in \
                res.stderr
            assert "expected " + "ab" * 32 in res.stderr and "Nothing was installed" in \
                res.stderr
    assert not has_torch(venv)
    assert list(dl.iterdir()) == []   # no partial, no .part
    assert os.listdir(str(tmp)) == []


def test_truncated_download_is_refused(site, tmp_path, venv):
    dl = tmp_path / "dl"
    with sh.LoopbackServer(site["root"]) as srv:
        srv.handler.truncate.add("/" + quote(site["host"]))
        res = run_pull(venv, "--target", sh.host_target(), "--index",
                       srv.url + "/index.json", "--download-only", dl)
        res2 = run_pull(venv, "--target", sh.host_target(), "--index",
                        srv.url + "/index.json", tmpdir=tmp_path)
    for r in (res, res2):
        assert r.returncode == 1, r.stdout + r.stderr
        assert ("truncated download of {}/{}".format(srv.url, quote(site["host"])) in r.stderr
                or "broke off" in r.stderr), r.stderr
    assert list(dl.iterdir()) == []
    assert not has_torch(venv)


def test_no_matching_wheel_says_what_the_index_has(site, tmp_path, venv):
    with sh.LoopbackServer(site["root"]) as srv:
        res = run_pull(venv, "--target", sh.host_target(), "--release", "2.5.1", "--index",
                       srv.url + "/index.json")
        res_py = run_pull(venv, "--target", "jetson-agx-orin", "--python", "3.12",
                          "--download-only", tmp_path / "dl", "--index",
                          srv.url + "/index.json")
    assert res.returncode == 1
    assert "no wheel in the index for target {}, release 2.5.1".format(sh.host_target()) in \
        res.stderr
    assert site["orin"] in res.stderr and "python build.py --target" in res.stderr
    assert res_py.returncode == 1 and "python 3.12, cuda 12.6" in res_py.stderr
    assert not has_torch(venv)


def test_server_down(site, tmp_path, venv):
    port = sh.free_port()  # nothing listens there
    url = "http://127.0.0.1:{}/index.json".format(port)
    res = run_pull(venv, "--target", sh.host_target(), "--index", url, "--timeout", "5")
    assert res.returncode == 1
    assert "cannot reach {}".format(url) in res.stderr and "server up" in res.stderr
    # the index is reachable but the wheel's host is down
    idx = edited_index(site, tmp_path, with_server_urls("http://127.0.0.1:{}".format(port)))
    dl = tmp_path / "dl"
    res = run_pull(venv, "--target", sh.host_target(), "--index", idx, "--download-only", dl,
                   "--timeout", "5")
    assert res.returncode == 1
    assert "cannot download http://127.0.0.1:{}/".format(port) in res.stderr
    assert list(dl.iterdir()) == []
    assert not has_torch(venv)


def test_stale_index_404(site, tmp_path, venv):
    with sh.LoopbackServer(site["root"]) as srv:
        def edit(data):
            for w in data["wheels"]:
                w["url"] = srv.url + "/gone/" + w["url"]
        idx = edited_index(site, tmp_path, edit)
        res = run_pull(venv, "--target", sh.host_target(), "--index", idx)
    assert res.returncode == 1
    assert "HTTP 404" in res.stderr and srv.url + "/gone/" in res.stderr
    assert not has_torch(venv)


def test_download_only_from_a_simple_index_with_the_alias(site, tmp_path):
    """jetson-agx on a non-Jetson picks Orin and says why; the PEP 503 page gives the hash,
    the manifest beside the wheel gives the target."""
    dl = tmp_path / "dl"
    with sh.LoopbackServer(site["root"]) as srv:
        res = run_pull(sys.executable, "--target", "jetson-agx", "--index",
                       srv.url + "/simple/", "--download-only", dl)
        reqs = list(srv.handler.requests)
        res_x = run_pull(sys.executable, "--target", "jetson-agx-xavier", "--index",
                         srv.url + "/simple/torch/", "--download-only", dl)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "jetson-agx -> jetson-agx-orin" in res.stdout
    assert "not running on a Jetson" in res.stdout
    assert "/" + quote(site["orin"]) + ".manifest.json" in reqs
    assert res_x.returncode == 0, res_x.stdout + res_x.stderr
    assert sorted(p.name for p in dl.iterdir()) == sorted([site["orin"], site["xavier"]])
    assert sha256_file(str(dl / site["orin"])) == sha256_file(
        str(site["wheels"] / site["orin"]))


def test_local_index_path_and_directory(site, tmp_path):
    for index in (site["root"] / "index.json", site["root"],
                  (site["root"] / "simple").as_uri() + "/"):
        dl = tmp_path / ("dl-%d" % len(list(tmp_path.iterdir())))
        res = run_pull(sys.executable, "--target", "jetson-agx-orin", "--index", index,
                       "--download-only", dl)
        assert res.returncode == 0, res.stdout + res.stderr
        assert [p.name for p in dl.iterdir()] == [site["orin"]]


def test_a_wheel_for_another_machine_is_not_downloaded_for_install(site, venv):
    res = run_pull(venv, "--target", "jetson-agx-orin", "--python", "3.10", "--index",
                   site["root"] / "index.json")
    assert res.returncode == 1
    assert "not installable here" in res.stderr and "--download-only" in res.stderr
    assert not has_torch(venv)


def test_dry_run_downloads_nothing(site, tmp_path):
    res = run_pull(sys.executable, "--target", "jetson-agx-xavier", "--index",
                   site["root"] / "index.json", "--download-only", tmp_path / "dl",
                   "--dry-run")
    assert res.returncode == 0, res.stderr
    assert site["xavier"] in res.stdout
    assert not (tmp_path / "dl").exists()


# ---------------------------------------------------------------------------------------
# selection and detection (no server)


@pytest.mark.parametrize("source", ["recipe", "builtin"])
def test_alias_detection(tmp_path, monkeypatch, source):
    """Same answers from the recipe's resolver (configs + doctor.probe_host) and from pull's
    built-in copy used where the configs cannot be loaded (no PyYAML)."""
    if source == "builtin":
        monkeypatch.setattr(target, "_configs", lambda: None)
    else:
        assert target._configs() is not None, "the recipe's configs do not load (PyYAML?)"
    def root(model=None, tegra=None):
        r = tmp_path / ("r%d" % len(list(tmp_path.iterdir())))
        (r / "proc" / "device-tree").mkdir(parents=True)
        (r / "etc").mkdir()
        if model:
            (r / "proc" / "device-tree" / "model").write_bytes(model.encode() + b"\0")
        if tegra:
            (r / "etc" / "nv_tegra_release").write_text(tegra)
        return str(r)

    t, why = target.resolve_target("jetson-agx", root(model="NVIDIA Jetson AGX Orin Developer Kit"))
    assert t == "jetson-agx-orin" and "Orin" in why
    t, why = target.resolve_target("jetson-agx", root(model="Jetson-AGX"))
    assert t == "jetson-agx-orin" or t == "jetson-agx-xavier"
    t, why = target.resolve_target("jetson-agx", root(model="NVIDIA Jetson AGX Xavier"))
    assert t == "jetson-agx-xavier"
    t, why = target.resolve_target("jetson-agx", root(
        tegra="# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref"))
    assert t == "jetson-agx-xavier" and "r35" in why.lower()
    t, why = target.resolve_target("jetson-agx", root())
    assert t == "jetson-agx-orin" and "not running on a Jetson" in why
    assert target.resolve_target("generic-aarch64")[0] == "generic-aarch64"


def entry(**kw):
    e = {"filename": "torch-2.6.0-cp310-cp310-linux_aarch64.whl", "url": "u", "sha256": "0" * 64,
         "target": "jetson-agx-orin", "release": "2.6.0", "python": "3.10", "cuda": "12.6",
         "version": "2.6.0+a"}
    e.update(kw)
    return e


def test_select_prefers_newest_and_filters_by_cuda_and_python():
    es = [entry(version="2.6.0+a", filename="a.whl"),
          entry(version="2.6.0+b", filename="b.whl", recipe_version="0.2.0"),
          entry(filename="cpu.whl", cuda=None),
          entry(filename="py38.whl", python="3.8")]
    assert selection.select(es, "jetson-agx-orin", "2.6.0", "3.10", "12.6", False)["filename"] == \
        "b.whl"
    assert selection.select(es, "jetson-agx-orin", "2.6.0", "3.10", None, True)["filename"] == \
        "cpu.whl"
    assert selection.select(es, "jetson-agx-orin", "2.6.0", "3.8", "12.6", False)["filename"] == \
        "py38.whl"
    with pytest.raises(base.PullError, match="cuda 11.4"):
        selection.select(es, "jetson-agx-orin", "2.6.0", "3.10", "11.4", True)


def test_simple_page_parsing():
    page = ('<a href="../../torch-2.6.0%2Bx-cp310-cp310-linux_aarch64.whl#sha256=' + "ab" * 32 +
            '" data-requires-python="&gt;=3.9">t</a><a href="https://h/x/other-1.0-py3-none-any.whl">'
            'o</a>')
    links = wheelindex.parse_simple_page(page, "http://h:1/simple/torch/")
    assert links[0][0] == "http://h:1/torch-2.6.0%2Bx-cp310-cp310-linux_aarch64.whl"
    assert links[0][1] == "ab" * 32 and links[0][2]["data-requires-python"] == ">=3.9"
    assert links[1][1] is None
    facts = pull_index._local_label_facts("2.6.0+jetson.agx.orin.cu126")
    assert facts["cuda"] == "12.6" and "orin" in facts["tokens"]


def test_download_refuses_an_entry_without_a_hash(tmp_path):
    with pytest.raises(base.PullError, match="no valid sha256"):
        fetch.download("http://127.0.0.1:9/x-1.0-py3-none-any.whl", str(tmp_path),
                      "x-1.0-py3-none-any.whl", None)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------
# an index and a server that misbehave on purpose

BLOB = os.urandom(1 << 20)  # served by the misbehaving paths
BLOB_SHA = __import__("hashlib").sha256(BLOB).hexdigest()
WHEEL = "torch-2.6.0+x86.64.cpu-{}-{}-{}.whl".format(*sh.host_tags())


class Hostile(object):
    """A real HTTP server on loopback: /index.json is whatever the test sets, and
    /trickle/*, /stall/*, /redirect?to=URL misbehave; it counts the body bytes it sent."""

    def __init__(self):
        import http.server
        import threading
        hostile = self
        self.index = {}
        self.sent = 0
        self.stop = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                from urllib.parse import parse_qs, urlsplit
                path = urlsplit(self.path).path
                if path == "/index.json":
                    body = json.dumps(hostile.index).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", parse_qs(urlsplit(self.path).query)["to"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path.startswith(("/trickle/", "/stall/")):
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(BLOB)))
                    self.end_headers()
                    try:
                        if path.startswith("/stall/"):  # half, then silence
                            # counted before it is written: the client may have it
                            # before this thread runs again
                            hostile.sent += len(BLOB) // 2
                            self.wfile.write(BLOB[:len(BLOB) // 2])
                            self.wfile.flush()
                            hostile.stop.wait(60)
                        else:  # a byte every 20 ms: never silent for long, never done
                            for i in range(len(BLOB)):
                                if hostile.stop.wait(0.02):
                                    break
                                hostile.sent += 1  # counted first, as above
                                self.wfile.write(BLOB[i:i + 1])
                                self.wfile.flush()
                    except OSError:  # the client hung up
                        pass
                else:
                    self.send_error(404)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:{}".format(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def wheel(self, **kw):
        e = {"filename": WHEEL, "url": self.url + "/trickle/" + WHEEL, "sha256": BLOB_SHA,
             "size": len(BLOB), "target": sh.host_target(), "release": "2.6.0",
             "python": "{}.{}".format(*sys.version_info[:2]), "cuda": None,
             "version": HOST_VERSION}
        e.update(kw)
        self.index = {"schema": wheelindex.INDEX_SCHEMA, "schema_version": 1, "wheels": [e]}
        return self.url + "/index.json"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def pull_download(index, dl, *extra):
    """`build.py pull --download-only DL` in this process (recipe.cli.main, as build.py calls
    it; an uncaught exception would fail the test): (exit status, stdout, stderr)."""
    import contextlib
    import io
    import signal
    out, err = io.StringIO(), io.StringIO()
    sigterm = signal.getsignal(signal.SIGTERM)  # pull's main makes SIGTERM raise: restore it
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(["pull", "--target", sh.host_target(), "--index", str(index),
                            "--download-only", str(dl), "--quiet"] + [str(a) for a in extra])
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    return subprocess.CompletedProcess([], rc, out.getvalue(), err.getvalue())


def one_error_line(res):
    assert "Traceback" not in res.stderr, res.stderr
    lines = [l for l in res.stderr.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.mark.parametrize("filename", ["/ABS/" + WHEEL, "../../" + WHEEL, "sub/" + WHEEL, "..",
                                      ".hidden.whl", "torch.whl", "evil.txt"])
def test_an_index_cannot_name_a_file_outside_the_download_folder(tmp_path, filename):
    dl = tmp_path / "a" / "b" / "dl"
    filename = filename.replace("/ABS", str(tmp_path))
    with Hostile() as srv:
        res = pull_download(srv.wheel(filename=filename), dl)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "refused: the index" in one_error_line(res) and "bare" in res.stderr
    assert not dl.exists() and sorted(p.name for p in tmp_path.rglob("*.whl")) == []


def test_a_simple_index_cannot_smuggle_folders_in_an_escaped_name(tmp_path):
    page = tmp_path / "simple" / "torch"
    page.mkdir(parents=True)
    (page / "index.html").write_text('<a href="..%2F..%2F{}#sha256={}">w</a>'.format(
        quote(WHEEL), BLOB_SHA))
    with sh.LoopbackServer(tmp_path) as srv:
        res = pull_download(srv.url + "/simple/torch/", tmp_path / "dl")
    assert res.returncode == 1 and "refused" in one_error_line(res)
    assert not (tmp_path / "dl").exists() and not list(tmp_path.rglob("*.whl"))


@pytest.mark.parametrize("kind", ["file", "ftp", "data", "redirect-to-file", "redirect-to-ftp"])
def test_a_remote_index_may_only_point_at_http(tmp_path, kind):
    secret = tmp_path / "secret.whl"
    secret.write_bytes(BLOB)
    dl = tmp_path / "dl"
    with Hostile() as srv:
        url = {"file": secret.as_uri(), "ftp": "ftp://127.0.0.1:9/" + WHEEL,
               "data": "data:application/octet-stream;base64,AAAA",
               "redirect-to-file": srv.url + "/redirect?to=" + quote(secret.as_uri()),
               "redirect-to-ftp": srv.url + "/redirect?to=" + quote("ftp://127.0.0.1:9/x")}[kind]
        res = pull_download(srv.wheel(url=url), dl)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "refused" in one_error_line(res) and "http(s)" in res.stderr
    assert not dl.exists() or list(dl.iterdir()) == []


def test_the_refusal_of_a_file_url_says_nothing_about_local_files(tmp_path):
    """A wrong sha256 used to tell whether the local file existed: now no local file is
    opened, and the message for an existing and a missing file is the same."""
    there = tmp_path / "there.whl"
    there.write_bytes(BLOB)
    with Hostile() as srv:
        msgs = [one_error_line(pull_download(srv.wheel(url=p.as_uri(), sha256="ab" * 32),
                                             tmp_path / "dl")).replace(p.name, "NAME")
                for p in (there, tmp_path / "missing.whl")]
    assert msgs[0] == msgs[1] and "sha256" not in msgs[0]


def test_a_local_index_may_point_at_local_files_but_not_ftp(site, tmp_path):
    idx = edited_index(site, tmp_path, lambda d: [w.update(url="ftp://127.0.0.1:9/" + w["url"])
                                                  for w in d["wheels"]])
    res = pull_download(idx, tmp_path / "dl")
    assert res.returncode == 1 and "a local index may only point at http(s) URLs or local files" \
        in one_error_line(res)


@pytest.mark.parametrize("size", ["1048576", 1.5, -1, True, [1]])
def test_a_size_that_is_not_a_whole_number_is_one_clear_line(tmp_path, size):
    with Hostile() as srv:
        res = pull_download(srv.wheel(size=size), tmp_path / "dl")
    assert res.returncode == 1, res.stdout + res.stderr
    line = one_error_line(res)
    assert "size %r is not a whole number of bytes" % (size,) in line and "re-publish" in line


def test_a_server_that_trickles_is_cut_off_by_the_deadline(tmp_path):
    dl = tmp_path / "dl"
    with Hostile() as srv:
        res = pull_download(srv.wheel(), dl, "--deadline", "2", "--timeout", "5")
        sent = srv.sent
    assert res.returncode == 1, res.stdout + res.stderr
    line = one_error_line(res)
    assert "did not finish within --deadline 2 s" in line and "raise --deadline" in line
    got = int(line.split(": ")[2].split(" of ")[0].replace(",", ""))  # "N of M bytes arrived"
    assert 0 < got <= sent and "of {:,} bytes".format(len(BLOB)) in line
    assert list(dl.iterdir()) == []


def test_a_stall_mid_body_reports_the_bytes_that_arrived(tmp_path):
    dl = tmp_path / "dl"
    with Hostile() as srv:
        res = pull_download(srv.wheel(url=srv.url + "/stall/" + WHEEL), dl, "--timeout", "1")
    assert res.returncode == 1, res.stdout + res.stderr
    line = one_error_line(res)
    assert "stalled: no data for 1 s (--timeout) after {:,} of {:,} bytes".format(
        len(BLOB) // 2, len(BLOB)) in line
    assert list(dl.iterdir()) == []


def _pull_until_bytes_arrive(srv, dl, tmp):
    env = sh.clean_pip_env({"RECIPE_CACHE": "/nonexistent", "TMPDIR": str(tmp)})
    args = [sys.executable, BUILD_PY, "pull", "--target", sh.host_target(), "--index",
            srv.wheel(), "--quiet"] + (["--download-only", str(dl)] if dl else [])
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    for _ in range(600):
        if srv.sent > 0:
            break
        time.sleep(0.05)
    assert srv.sent > 0, "the download did not start"
    return p


@pytest.mark.parametrize("sig,code,name", [(15, 143, "SIGTERM"), (2, 130, "Ctrl-C")],
                         ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("mode", ["download-only", "install"])
def test_a_signal_mid_download_leaves_no_file(tmp_path, sig, code, name, mode):
    dl = tmp_path / "dl" if mode == "download-only" else None
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with Hostile() as srv:
        p = _pull_until_bytes_arrive(srv, dl, tmp)
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert "Traceback" not in err
    assert "error: interrupted ({}); nothing was installed and no file is left".format(name) in err
    if dl:
        assert list(dl.iterdir()) == []  # no hidden .part either
    assert list(tmp.iterdir()) == []


def test_a_download_killed_by_sigkill_is_cleaned_up_by_the_next_pull(site, tmp_path):
    dl = tmp_path / "dl"
    with Hostile() as srv:
        p = _pull_until_bytes_arrive(srv, dl, tmp_path)
        p.kill()
        p.wait(timeout=60)
    left = [f.name for f in dl.iterdir()]
    assert len(left) == 1 and left[0].startswith("." + WHEEL + ".") and left[0].endswith(".part")
    with sh.LoopbackServer(site["root"]) as srv:
        res = pull_download(srv.url + "/index.json", dl)
    assert res.returncode == 0, res.stdout + res.stderr
    assert [f.name for f in dl.iterdir()] == [site["host"]]
