"""Rebuilding a tree that was built before it was patched: the new kernel files get compiled.

ATen finds its sources with CMake `file(GLOB)`: aten/src/ATen/CMakeLists.txt (`native_cpp`,
`native/*.cpp`) and cmake/Codegen.cmake (`cpu_kernel_cpp_in`, `native/cpu/*.cpp`, copied once
per CPU capability through cmake/IncludeSource.cpp.in). setup.py configures only when there is
no CMakeCache.txt (tools/setup_helpers/cmake.py `generate`), then runs `cmake --build`. So a
tree with a build/ (a `--source` tree built before, a changed series) regenerates its
registrations but never sees the .cpp files the series adds: the wheel fails at link.

This builds a small real CMake + ninja project laid out like that part of PyTorch, whose
glob lines are THE lines of the real 2.6.0 tree (pristine, then with the series applied by
the recipe's patch step), builds it the way setup.py does, then changes it the way the
series changes PyTorch (copies in a new native/*.cpp and native/cpu/*.cpp, edits a caller,
and writes the CMake files as the patched tree has them) and rebuilds. Without
CONFIGURE_DEPENDS (today's 2.6.0 globs) the rebuild fails at link; with it the new files are
compiled, and a file added later (no CMake file touched) is found too.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

ATEN_CMAKE = os.path.join("aten", "src", "ATen", "CMakeLists.txt")
CODEGEN_CMAKE = os.path.join("cmake", "Codegen.cmake")


def glob_line(tree, rel, variable):
    """The `file(GLOB <variable> ...)` line of a real tree's CMake file."""
    with open(os.path.join(tree, rel)) as f:
        m = re.search(r"^\s*file\(GLOB %s\b.*\)\s*$" % re.escape(variable), f.read(), re.M)
    assert m, "%s: no file(GLOB %s ...)" % (rel, variable)
    return m.group(0).strip()


def cmake_files(tree):
    """{path: text} of the mini project's CMake files, with the tree's glob lines."""
    native = glob_line(tree, ATEN_CMAKE, "native_cpp")
    kernels = glob_line(tree, CODEGEN_CMAKE, "cpu_kernel_cpp_in")
    return {
        "CMakeLists.txt": "\n".join([
            "cmake_minimum_required(VERSION 3.18)",  # PyTorch 2.6.0's minimum
            "project(mini_aten CXX)",
            "include(cmake/Codegen.cmake)",
            "add_subdirectory(aten/src/ATen)", ""]),
        CODEGEN_CMAKE: "\n".join([
            kernels,
            "foreach(IMPL ${cpu_kernel_cpp_in})",
            '  file(RELATIVE_PATH NAME "${PROJECT_SOURCE_DIR}/aten/src/ATen/" "${IMPL}")',
            "  set(NEW_IMPL ${CMAKE_BINARY_DIR}/aten/src/ATen/${NAME}.DEFAULT.cpp)",
            '  configure_file("${PROJECT_SOURCE_DIR}/cmake/IncludeSource.cpp.in" ${NEW_IMPL})',
            "  list(APPEND cpu_kernel_cpp ${NEW_IMPL})",
            "endforeach()", ""]),
        ATEN_CMAKE: "\n".join([
            native,
            "add_library(torch_cpu STATIC ${native_cpp} ${cpu_kernel_cpp})",
            "add_executable(app app.cpp)",
            "target_link_libraries(app torch_cpu)", ""]),
    }


def write(root, rel, text):
    """Write only when the content changes (as `patch` / `git apply` do)."""
    path = os.path.join(root, rel)
    if os.path.exists(path) and open(path).read() == text:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def setup_py_build(root):
    """What `setup.py bdist_wheel` does with the build folder: configure only without a
    cache, then build (ninja re-runs CMake itself when a CMake input changed)."""
    build = os.path.join(root, "build")
    if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        subprocess.run(["cmake", "-G", "Ninja", "-S", root, "-B", build], check=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc = subprocess.run(["cmake", "--build", build], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    return proc, os.path.join(build, "aten", "src", "ATen", "app")


def run_app(app):
    return subprocess.run([app], stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()


def rebuild_after_patching(tmp_path, before_tree, after_tree):
    """Build the mini project as `before_tree` has it, then patch it as the series does and
    rebuild: returns (rebuild result, app path, root)."""
    for tool in ("cmake", "ninja", "g++"):
        if shutil.which(tool) is None:
            pytest.fail("%s not found: apt-get install cmake ninja-build g++ (or run .ci/run)" % tool)
    root = str(tmp_path / "tree")
    include_source = open(os.path.join(before_tree, "cmake", "IncludeSource.cpp.in")).read()
    write(root, os.path.join("cmake", "IncludeSource.cpp.in"), include_source)
    for rel, text in cmake_files(before_tree).items():
        write(root, rel, text)
    native = os.path.join("aten", "src", "ATen", "native")
    write(root, os.path.join(native, "Convolution.cpp"), "int convolution() { return 1; }\n")
    write(root, os.path.join(native, "cpu", "DepthwiseConvKernel.cpp"), "int winograd() { return 2; }\n")
    write(root, os.path.join("aten", "src", "ATen", "app.cpp"),
          '#include <cstdio>\nint convolution();\nint main() { std::printf("%d\\n", convolution()); }\n')
    proc, app = setup_py_build(root)
    assert proc.returncode == 0, proc.stdout
    assert run_app(app) == "1"

    # The series: new kernel files (copy lines), a patched caller, the patched CMake files.
    write(root, os.path.join(native, "DepthwiseConv2dNative.cpp"), "int native_depthwise() { return 30; }\n")
    write(root, os.path.join(native, "cpu", "DepthwiseConv2dNativeKernel.cpp"),
          "int native_depthwise_kernel() { return 400; }\n")
    write(root, os.path.join(native, "Convolution.cpp"),
          "int native_depthwise();\nint native_depthwise_kernel();\n"
          "int convolution() { return 1 + native_depthwise() + native_depthwise_kernel(); }\n")
    for rel, text in cmake_files(after_tree).items():
        write(root, rel, text)
    proc, app = setup_py_build(root)
    return proc, app, root


def test_rebuild_after_the_series_compiles_the_new_files(tmp_path, pytorch_source_pristine,
                                                         patched_source_tree):
    proc, app, root = rebuild_after_patching(tmp_path, pytorch_source_pristine, patched_source_tree)
    assert proc.returncode == 0, (
        "a tree built before patching does not build after it (new .cpp files not globbed):\n"
        + proc.stdout[-3000:])
    assert run_app(app) == "431"

    # A later change of the series adds a file and touches no CMake file: still found.
    native = os.path.join(root, "aten", "src", "ATen", "native")
    write(root, os.path.join(native, "cpu", "GroupedConvKernel.cpp"), "int grouped() { return 5000; }\n")
    write(root, os.path.join(native, "Convolution.cpp"),
          "int native_depthwise();\nint native_depthwise_kernel();\nint grouped();\n"
          "int convolution() { return 1 + native_depthwise() + native_depthwise_kernel() + grouped(); }\n")
    proc, app = setup_py_build(root)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert run_app(app) == "5431"


def test_pristine_globs_miss_new_files_on_rebuild(tmp_path, pytorch_source_pristine):
    """The defect itself, so the test above can fail: 2.6.0's globs, rebuilt after the new
    files appear, link without them."""
    proc, _, _ = rebuild_after_patching(tmp_path, pytorch_source_pristine, pytorch_source_pristine)
    assert proc.returncode != 0
    assert "undefined reference to `native_depthwise()'" in proc.stdout, proc.stdout[-3000:]


def test_series_adds_configure_depends_to_every_glob_it_adds_files_to(patched_source_tree):
    """Every folder the series copies a file into is globbed with CONFIGURE_DEPENDS."""
    from recipe import REPO_ROOT
    from recipe.steps.patch import parse_series
    copied = [e for e in parse_series(os.path.join(REPO_ROOT, "patches", "2.6.0", "series"))
              if e.kind == "copy"]
    assert copied, "the series copies no file?"
    globs = {"aten/src/ATen/native/%s" % ext: (ATEN_CMAKE, var) for ext, var in
             (("*.cpp", "native_cpp"), ("*.h", "native_h"))}
    globs["aten/src/ATen/native/cpu/*.cpp"] = (CODEGEN_CMAKE, "cpu_kernel_cpp_in")
    globs["aten/src/ATen/native/cpu/*.h"] = (ATEN_CMAKE, "native_cpu_h")
    for entry in copied:
        dest = entry.dest
        key = os.path.dirname(dest) + "/*" + os.path.splitext(dest)[1]
        assert key in globs, "%s: no known glob picks up %s" % (dest, key)
        rel, var = globs[key]
        assert "CONFIGURE_DEPENDS" in glob_line(patched_source_tree, rel, var), (rel, var)
