"""The house rules that keep the tree maintainable, checked on the tree itself:

* the product's import graph (recipe/) has no cycle, and no step imports the plan or another
  step (lazy imports inside functions count: hoisting one must never break the package);
* the product never imports the test harness (tests/harness/);
* every skip goes through tests/conftest.py: unavailable() (which fails under CI);
* CONTRACTS.md names only modules, functions and files that exist;
* no leftover of a merge or a patch run (*.orig, *.rej, *~) is tracked.
"""
from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess

from recipe import REPO_ROOT

RECIPE = os.path.join(REPO_ROOT, "recipe")
TESTS = os.path.join(REPO_ROOT, "tests")


def _modules():
    out = {}
    for d, _, files in os.walk(RECIPE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                name = os.path.relpath(path, REPO_ROOT)[:-3].replace(os.sep, ".")
                out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


def _imports(path, modules):
    """Every recipe.* / tests.* module `path` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = node.module + "." + alias.name
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith(("recipe", "tests"))}


def _graph():
    modules = _modules()
    return modules, {m: _imports(p, modules) - {m, "recipe"} for m, p in modules.items()}


def _cycles(edges):
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt in edges and nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    return cycles


def test_every_module_of_the_product_and_the_harness_imports():
    harness = ["tests.harness." + f[:-3] for f in os.listdir(os.path.join(TESTS, "harness"))
               if f.endswith(".py") and f != "__init__.py"]
    for name in sorted(_modules()) + sorted(harness):
        importlib.import_module(name)  # an ImportError here names the broken import


def test_the_product_import_graph_has_no_cycle():
    _, edges = _graph()
    assert not _cycles(edges), "\n".join(" -> ".join(c) for c in _cycles(edges))


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_steps_import_neither_the_plan_nor_each_other():
    _, edges = _graph()
    bad = {step: sorted(m for m in deps if m == "recipe.plan" or m.startswith("recipe.steps."))
           for step, deps in edges.items() if step.startswith("recipe.steps.")}
    assert not {k: v for k, v in bad.items() if v}


def test_every_step_has_the_step_interface():
    from recipe.steps import ORDER, Step, module
    for i, name in enumerate(ORDER):
        mod = module(name)
        assert mod.NAME == name and isinstance(mod.TITLE, str) and mod.TITLE
        assert set(mod.DEPENDS) <= set(ORDER[:i]), "%s depends on a later step" % name
        for fn in [m for m in vars(Step) if not m.startswith("_") and callable(getattr(Step, m))]:
            assert callable(getattr(mod, fn, None)), "%s has no %s()" % (name, fn)


# The one exception: `build.py bench --emulated` counts instructions of the real aarch64 wheel
# in the harness's root filesystem under the harness's qemu build: a developer's command that
# needs a source checkout (it says so, exit 3, where tests/harness/ is absent).
USES_THE_HARNESS = {"recipe.bench_emulated"}


def test_the_product_never_imports_the_test_harness():
    _, edges = _graph()
    bad = {m: sorted(d for d in deps if d.startswith("tests")) for m, deps in edges.items()
           if m not in USES_THE_HARNESS}
    assert not {k: v for k, v in bad.items() if v}


def test_every_skip_goes_through_unavailable():
    raw = re.compile(r"pytest\.(skip|importorskip)\(|@pytest\.mark\.skip")
    offenders = []
    for d, _, files in os.walk(TESTS):
        for f in files:
            path = os.path.join(d, f)
            if not f.endswith(".py") or path == os.path.join(TESTS, "conftest.py"):
                continue
            for n, line in enumerate(open(path, encoding="utf-8"), 1):
                if raw.search(line):
                    offenders.append("%s:%d: %s" % (os.path.relpath(path, REPO_ROOT), n, line.strip()))
    assert not offenders, "skip through conftest.unavailable() instead:\n" + "\n".join(offenders)


def test_contracts_name_only_what_exists():
    text = open(os.path.join(REPO_ROOT, "CONTRACTS.md"), encoding="utf-8").read()
    missing = []
    for ref in sorted(set(re.findall(r"`((?:recipe|tests)\.[A-Za-z_][\w.]*)", text))):
        parts = ref.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                missing.append(ref)
            break
        else:
            missing.append(ref)
    for path in sorted(set(re.findall(r"`((?:recipe|tests|kernels|addon|patches|configs)/[\w./-]+)`",
                                      text))):
        if "X.Y" not in path and not os.path.exists(os.path.join(REPO_ROOT, path)):
            missing.append(path)
    assert not missing, "CONTRACTS.md names what does not exist: %s" % ", ".join(missing)


def test_no_merge_or_patch_leftover_is_tracked():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    leftovers = [f for f in tracked if re.search(r"(\.orig|\.rej|~)$", f)]
    assert not leftovers, "remove these merge / patch leftovers: %s" % leftovers
