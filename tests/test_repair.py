"""The repair step on a REAL wheel: a C extension linked against a real shared library the
test builds; the library must be bundled with $ORIGIN RUNPATH and the wheel must install and
import with the original library gone."""
import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from recipe.steps import StepError
from recipe.steps.repair import elf_dynamic, glibc_max, repair_wheel
from tests.recipe_helpers import require_tools, write

@pytest.fixture(autouse=True)
def _tools():
    require_tools("gcc", "patchelf", "readelf")

EXT_C = r'''
#include <Python.h>
int tm_add(int a, int b);
static PyObject* add(PyObject* self, PyObject* args) {
    int a, b;
    if (!PyArg_ParseTuple(args, "ii", &a, &b)) return NULL;
    return PyLong_FromLong(tm_add(a, b));
}
static PyMethodDef methods[] = {{"add", add, METH_VARARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_ext", NULL, -1, methods};
PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&mod); }
'''

SETUP = r'''
from setuptools import setup, Extension
setup(name="tinypkg", version="0.1", packages=["tinypkg"],
      ext_modules=[Extension("tinypkg._ext", ["_ext.c"], library_dirs=[{libdir!r}], libraries=["tinymath"])])
'''


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("repair")
    libdir = root / "libs"
    # getrandom() is GLIBC_2.25: the platform tag must follow the newest symbol version used
    write(libdir / "tinymath.c", "#include <sys/random.h>\n"
                                 "int tm_add(int a, int b) { char c; getrandom(&c, 1, GRND_NONBLOCK);"
                                 " return a + b + 1000; }\n")
    subprocess.check_call(["gcc", "-shared", "-fPIC", "-O2", "-Wl,-soname,libtinymath.so.1",
                           "-o", str(libdir / "libtinymath.so.1"), str(libdir / "tinymath.c")])
    os.symlink("libtinymath.so.1", str(libdir / "libtinymath.so"))
    pkg = root / "pkg"
    write(pkg / "tinypkg" / "__init__.py", "")
    write(pkg / "_ext.c", EXT_C)
    write(pkg / "setup.py", SETUP.format(libdir=str(libdir)))
    res = subprocess.run([sys.executable, "setup.py", "-q", "bdist_wheel"], cwd=str(pkg),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if res.returncode != 0:
        from tests.conftest import unavailable
        unavailable("a test wheel (setuptools >= 70.1 with bdist_wheel, Python headers)", res.stdout[-800:])
    wheel = [os.path.join(str(pkg / "dist"), w) for w in os.listdir(str(pkg / "dist"))][0]
    return {"root": root, "libdir": str(libdir), "wheel": wheel}


def unpack(wheel, dest):
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest)
        return z.namelist(), {n: z.read(n) for n in z.namelist()}


def test_bundles_library_sets_origin_runpath_and_retags(built, tmp_path):
    out = tmp_path / "wheels"
    rep = repair_wheel(built["wheel"], str(out), lib_dir="tinypkg/lib", search_dirs=[built["libdir"]],
                       log=lambda m: None)
    assert [b["name"] for b in rep["bundled"]] == ["libtinymath.so.1"]
    assert rep["bundled"][0]["from"] == os.path.join(built["libdir"], "libtinymath.so.1")
    names, data = unpack(rep["wheel"], str(tmp_path / "x"))
    assert "tinypkg/lib/libtinymath.so.1" in names
    ext = [n for n in names if n.startswith("tinypkg/_ext") and n.endswith(".so")][0]
    dyn = elf_dynamic(str(tmp_path / "x" / ext))
    assert dyn["runpath"] == ["$ORIGIN/lib"] and not dyn["rpath"]
    readelf = subprocess.run(["readelf", "-d", str(tmp_path / "x" / ext)], stdout=subprocess.PIPE,
                             universal_newlines=True).stdout
    assert "(RUNPATH)" in readelf and "Library runpath: [$ORIGIN/lib]" in readelf
    assert "Shared library: [libtinymath.so.1]" in readelf
    assert elf_dynamic(str(tmp_path / "x" / "tinypkg/lib/libtinymath.so.1"))["runpath"] == ["$ORIGIN"]

    # platform tag from the newest glibc symbol version actually used
    arch = os.uname().machine
    used = [glibc_max(str(tmp_path / "x" / n)) for n in (ext, "tinypkg/lib/libtinymath.so.1")]
    g = max([v for v in used if v] + [(2, 17)])
    assert g >= (2, 25)
    tag = "manylinux_%d_%d_%s" % (g[0], g[1], arch)
    assert rep["platform"] == tag and os.path.basename(rep["wheel"]).endswith("-%s.whl" % tag)
    wheel_meta = [data[n].decode() for n in names if n.endswith(".dist-info/WHEEL")][0]
    assert "Tag: cp%d%d-cp%d%d-%s" % (sys.version_info[0], sys.version_info[1],
                                      sys.version_info[0], sys.version_info[1], tag) in wheel_meta
    assert "Root-Is-Purelib: false" in wheel_meta

    # RECORD lists every file with its real hash
    record = [data[n].decode() for n in names if n.endswith(".dist-info/RECORD")][0]
    rows = {r[0]: r for r in csv.reader(io.StringIO(record))}
    assert set(rows) == set(names)
    for name, (_, digest, size) in ((n, rows[n]) for n in names if rows[n][1]):
        h = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data[name]).digest()).rstrip(b"=").decode()
        assert digest == h and int(size) == len(data[name])


def test_repaired_wheel_installs_and_imports_without_the_original_library(built, tmp_path):
    rep = repair_wheel(built["wheel"], str(tmp_path / "wheels"), lib_dir="tinypkg/lib",
                       search_dirs=[built["libdir"]], log=lambda m: None)
    hidden = built["libdir"] + ".hidden"
    shutil.move(built["libdir"], hidden)  # the build machine's copy is gone now
    try:
        target = tmp_path / "site"
        res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps",
                              "--disable-pip-version-check", "--target", str(target), rep["wheel"]],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        assert res.returncode == 0, res.stdout
        env = dict(os.environ)
        env.pop("LD_LIBRARY_PATH", None)
        code = "import sys; sys.path.insert(0, %r); import tinypkg._ext as e; print(e.add(2, 3))" % str(target)
        out = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True)
        assert out.returncode == 0 and out.stdout.strip() == "1005", out.stdout
        # and the unrepaired wheel does NOT import once the library is gone: the test can fail
        raw = tmp_path / "raw"
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "-q",
                               "--disable-pip-version-check", "--target", str(raw), built["wheel"]])
        code = "import sys; sys.path.insert(0, %r); import tinypkg._ext" % str(raw)
        bad = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True)
        assert bad.returncode != 0 and "libtinymath.so.1" in bad.stdout
    finally:
        shutil.move(hidden, built["libdir"])


def test_system_provided_libraries_are_not_bundled_and_force_linux_tag(built, tmp_path):
    rep = repair_wheel(built["wheel"], str(tmp_path / "w"), lib_dir="tinypkg/lib", search_dirs=[built["libdir"]],
                       never_bundle=["libtinymath.so*"], log=lambda m: None)
    assert rep["bundled"] == [] and rep["external"] == ["libtinymath.so.1"]
    assert rep["platform"] == "linux_%s" % os.uname().machine and "target system" in rep["platform_reason"]


def test_missing_library_is_named(built, tmp_path, monkeypatch):
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    hidden = built["libdir"] + ".gone"
    shutil.move(built["libdir"], hidden)
    try:
        with pytest.raises(StepError) as e:
            repair_wheel(built["wheel"], str(tmp_path / "w"), lib_dir="tinypkg/lib", log=lambda m: None)
        assert "needs libtinymath.so.1" in str(e.value)
    finally:
        shutil.move(hidden, built["libdir"])
