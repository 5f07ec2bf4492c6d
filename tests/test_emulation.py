"""The emulation harness, the source fetcher and the cross-build helpers, for real:
qemu-user + debootstrap'd arm64 Debian + the official torch 2.6.0 aarch64 wheel,
Debian's cross compiler, and Debian's pytorch 2.6.0 source tarball."""
import json
import os
import shutil

import pytest

FACTS_SCRIPT = r"""
import json, platform, sys
import numpy, torch
print(json.dumps({
    "machine": platform.machine(),
    "python": list(sys.version_info[:2]),
    "torch": torch.__version__,
    "git": torch.version.git_version,
    "mkldnn": torch.backends.mkldnn.is_available(),
    "cxx11_abi": torch._C._GLIBCXX_USE_CXX11_ABI,
    "torch_file": torch.__file__,
    "numpy_roundtrip": torch.from_numpy(numpy.arange(3.0)).add(1).tolist(),
}))
"""


@pytest.fixture(scope="module")
def facts(emulation):
    r = emulation.python(FACTS_SCRIPT, timeout=600, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_rootfs_runs_aarch64_python(facts):
    assert facts["machine"] == "aarch64"
    assert facts["python"] == [3, 11]


def test_official_torch_260_imports(facts, emulation):
    assert facts["torch"].split("+")[0] == "2.6.0"
    assert facts["git"] == "2236df1770800ffea5697b11b0bb0d910b2e59e1"
    assert facts["mkldnn"] is True
    assert facts["cxx11_abi"] is True
    assert facts["numpy_roundtrip"] == [1.0, 2.0, 3.0]
    # The torch the tests cross-compile against is the one that runs.
    assert facts["torch_file"] == emulation.guest_site + "/torch/__init__.py"
    assert os.path.isfile(os.path.join(emulation.torch_lib, "libtorch_cpu.so"))
    assert os.path.isfile(os.path.join(emulation.torch_include, "ATen", "ATen.h"))


PROFILE_SCRIPT = r"""
import json, torch
from torch.profiler import profile, ProfilerActivity
torch.manual_seed(0)
m = torch.nn.Conv2d(384, 384, 3, groups=384).eval()
x = torch.randn(1, 384, 56, 56)
out = {}
for enabled in (False, True):
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=enabled):
        m(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            y = m(x)
    counts = {e.key: e.count for e in prof.key_averages()}
    out["mkldnn_on" if enabled else "mkldnn_off"] = counts
    out["shape"] = list(y.shape)
print(json.dumps(out))
"""


def test_depthwise_group_loop_reproduces(emulation):
    """FACTS §1: oneDNN off -> 384 x thnn_conv2d + cat; on -> 1 x mkldnn_convolution."""
    r = emulation.python(PROFILE_SCRIPT, timeout=900, check=True)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    off, on = out["mkldnn_off"], out["mkldnn_on"]
    assert out["shape"] == [1, 384, 54, 54]
    assert off.get("aten::thnn_conv2d") == 384, off
    assert off.get("aten::cat") == 1, off
    assert "aten::mkldnn_convolution" not in off
    assert on.get("aten::mkldnn_convolution") == 1, on
    assert "aten::thnn_conv2d" not in on


GRAFT_CPP = r"""
#include <ATen/ATen.h>
#include <torch/library.h>

namespace {
at::Tensor add_one(const at::Tensor& x) { return x + 1; }
}  // namespace

TORCH_LIBRARY(graft_smoke, m) {
  m.def("add_one(Tensor x) -> Tensor", &add_one);
}
"""


def test_graft_loads_into_official_wheel(aarch64_torch, tmp_path):
    src = tmp_path / "graft_smoke.cpp"
    src.write_text(GRAFT_CPP)
    so = aarch64_torch.build_graft([str(src)], str(tmp_path / "libgraft_smoke.so"))
    with open(so, "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF" and head[18] == 0xB7, "not an aarch64 ELF"
    script = tmp_path / "use_graft.py"
    script.write_text(
        "import sys, torch\n"
        "torch.ops.load_library(sys.argv[1])\n"
        "y = torch.ops.graft_smoke.add_one(torch.arange(4, dtype=torch.float32))\n"
        "open(sys.argv[2], 'w').write(repr(y.tolist()))\n")
    result = tmp_path / "result.txt"
    r = aarch64_torch.python(str(script), args=[so, str(result)], timeout=600,
                             binds=[str(tmp_path)], check=True)
    assert result.read_text() == "[1.0, 2.0, 3.0, 4.0]", r.stdout + r.stderr


def test_graft_missing_symbol_fails_at_link_time(aarch64_torch, tmp_path):
    """--no-undefined: using something the wheel does not export is a link error."""
    from tests.harness.crossbuild import CrossBuildError
    src = tmp_path / "bad.cpp"
    src.write_text('extern "C" int not_exported_by_torch_anywhere(int);\n'
                   'int f(int x) { return not_exported_by_torch_anywhere(x); }\n')
    with pytest.raises(CrossBuildError) as e:
        aarch64_torch.build_graft([str(src)], str(tmp_path / "libbad.so"))
    assert "not_exported_by_torch_anywhere" in str(e.value)


ATEN_TU = r"""
#include <ATen/ATen.h>
#include <ATen/native/DispatchStub.h>

at::Tensor twice(const at::Tensor& x) { return x * 2; }
"""


@pytest.mark.parametrize("arch", ["aarch64", "x86_64"])
def test_compile_check_aten_tu(cross_toolchain, tmp_path, arch):
    tu = tmp_path / "ok.cpp"
    tu.write_text(ATEN_TU)
    r = cross_toolchain.compile_check(str(tu), arch, mode="syntax")
    assert r.ok, r.output
    assert r.cmd[0].endswith(cross_toolchain.COMPILERS[arch])


@pytest.mark.parametrize("arch", ["aarch64", "x86_64"])
def test_compile_check_reports_file_and_line(cross_toolchain, tmp_path, arch):
    tu = tmp_path / "broken.cpp"
    tu.write_text(ATEN_TU + "int broken() { return this_is_not_declared; }\n")
    r = cross_toolchain.compile_check(str(tu), arch, mode="syntax")
    assert not r.ok
    line = ATEN_TU.count("\n") + 1
    assert "%s:%d:" % (tu, line) in r.output, r.output
    assert "this_is_not_declared" in r.output
    with pytest.raises(cross_toolchain.CrossBuildError):
        r.check()


@pytest.mark.parametrize("arch", ["aarch64", "x86_64"])
def test_compile_check_real_tree_tu(cross_toolchain, pytorch_source_pristine, arch):
    """A real libtorch_cpu TU (oneDNN + XNNPACK includes) compiles with the build's defines."""
    tu = os.path.join(pytorch_source_pristine, "aten/src/ATen/native/Convolution.cpp")
    r = cross_toolchain.compile_check(tu, arch, source_tree=pytorch_source_pristine,
                                      mode="syntax")
    assert r.ok, r.output[-5000:]
    assert "-DCAFFE2_BUILD_MAIN_LIB" in r.cmd
    assert not any(c.startswith("-DCPU_CAPABILITY") for c in r.cmd)


def test_source_tree_fixture_is_a_private_writable_copy(pytorch_source_tree,
                                                        pytorch_source_pristine):
    with open(os.path.join(pytorch_source_tree, "version.txt")) as f:
        assert f.read().strip().startswith("2.6.0")
    conv = os.path.join(pytorch_source_tree, "aten/src/ATen/native/Convolution.cpp")
    pristine = os.path.join(pytorch_source_pristine, "aten/src/ATen/native/Convolution.cpp")
    assert os.stat(conv).st_ino != os.stat(pristine).st_ino
    with open(conv, "a") as f:      # in-place write, like a `copy` series entry would do
        f.write("// edited\n")
    with open(pristine) as f:
        assert "// edited" not in f.read()


def test_source_fetcher_refuses_wrong_sha256(pytorch_source_pristine, tmp_path):
    from tests.harness import pytorch_source as ps
    good = ps.tarball_path()
    bad = tmp_path / "corrupt" / ps.ORIG_TARBALL
    bad.parent.mkdir()
    shutil.copyfile(good, str(bad))
    with open(str(bad), "r+b") as f:      # same size, one byte flipped mid-file
        f.seek(ps.ORIG_SIZE // 2)
        b = f.read(1)
        f.seek(ps.ORIG_SIZE // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    dest = tmp_path / "unpacked"
    with pytest.raises(ps.SourceError) as e:
        ps.unpack_tarball(str(bad), str(dest))
    assert "sha256" in str(e.value)
    assert not dest.exists(), "something was unpacked from a tarball that failed verification"
    # A truncated one is refused on size, also before anything is written.
    with open(str(bad), "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ps.SourceError, match="size"):
        ps.unpack_tarball(str(bad), str(dest))
    assert not dest.exists()


def test_emulation_binds_pass_files_both_ways(emulation, tmp_path):
    (tmp_path / "in.txt").write_text("from host")
    code = ("import pathlib, sys\n"
            "d = pathlib.Path(sys.argv[1])\n"
            "(d / 'out.txt').write_text((d / 'in.txt').read_text() + ' and back')\n")
    emulation.python(code, args=[str(tmp_path)], binds=[str(tmp_path)], timeout=300,
                     check=True)
    assert (tmp_path / "out.txt").read_text() == "from host and back"
