"""Helpers for the pull/publish tests: real wheels (valid zip + dist-info + RECORD), the
recipe's manifests beside them, a real HTTP server on loopback, a clean pip environment."""
import base64
import functools
import hashlib
import http.server
import json
import os
import socket
import sys
import sysconfig
import threading
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def host_tags():
    py = "cp{}{}".format(*sys.version_info[:2])
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return py, py, plat


def host_target():
    import platform
    return "x86_64" if platform.machine() in ("x86_64", "AMD64") else "generic-aarch64"


def _record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(
        b"=").decode()


def make_wheel(directory, name="torch", version="2.6.0", py=None, abi=None, plat=None,
               files=None, requires_python=">=3.8", manifest=None, pad=0):
    """Write a valid wheel; returns its path. manifest: dict written beside it (the wheel's
    sha256 is filled in) or None for no manifest. pad: extra bytes (a bigger download)."""
    hp, ha, hpl = host_tags()
    py, abi, plat = py or hp, abi or ha, plat or hpl
    dist = name.replace("-", "_")
    filename = "{}-{}-{}-{}-{}.whl".format(dist, version, py, abi, plat)
    distinfo = "{}-{}.dist-info".format(dist, version)
    pkg = name.lower().replace("-", "_")
    files = dict(files or {})
    files.setdefault("{}/__init__.py".format(pkg),
                     "__version__ = {!r}\nFROM_TEST_WHEEL = True\n".format(version))
    if pad:
        files["{}/_pad.bin".format(pkg)] = os.urandom(pad)
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: {}\n".format(name, version)
    if requires_python:
        meta += "Requires-Python: {}\n".format(requires_python)
    files[distinfo + "/METADATA"] = meta
    files[distinfo + "/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: ship-tests\n"
                                  "Root-Is-Purelib: false\nTag: {}-{}-{}\n".format(py, abi, plat))
    records = []
    path = os.path.join(str(directory), filename)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc, data in sorted(files.items()):
            data = data.encode() if isinstance(data, str) else data
            zf.writestr(arc, data)
            records.append("{},{},{}".format(arc, _record_hash(data), len(data)))
        records.append(distinfo + "/RECORD,,")
        zf.writestr(distinfo + "/RECORD", "\n".join(records) + "\n")
    if manifest is not None:
        m = dict(manifest)
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        m.setdefault("wheel", {"filename": filename, "sha256": digest})
        with open(path + ".manifest.json", "w") as fh:
            json.dump(m, fh, indent=2)
    return path


def manifest_for(target, release="2.6.0", python=None, cuda=None):
    return {"recipe_version": "0.1.0", "target": target, "release": release,
            "python": python or "{}.{}".format(*sys.version_info[:2]), "cuda": cuda}


class _Handler(http.server.SimpleHTTPRequestHandler):
    truncate = set()    # paths served with a full Content-Length but half the bytes
    requests = []

    def log_message(self, fmt, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        if self.path in type(self).truncate:
            full = self.translate_path(self.path)
            with open(full, "rb") as fh:
                data = fh.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        return http.server.SimpleHTTPRequestHandler.do_GET(self)


class LoopbackServer(object):
    """http.server serving `root` on 127.0.0.1:<free port> in a thread."""

    def __init__(self, root):
        handler = type("H", (_Handler,), {"truncate": set(), "requests": []})
        self.handler = handler
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:{}".format(self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def clean_pip_env(extra=None):
    """Environment for a pip that sees only the index the test names (no user config,
    no find-links or extra index of this machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env.pop("PYTHONPATH", None)
    if extra:
        env.update(extra)
    return env
