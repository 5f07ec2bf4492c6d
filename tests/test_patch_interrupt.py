"""The patch step stopped at every write it makes (a real SIGKILL or SIGINT sent by the step to
itself through its test hook, RECIPE_TEST_KILL_AT_WRITE=N[:SIGNAL]): the next run always ends with
a fully patched tree, nothing half-written is ever visible, nothing is left behind (no temporary
files in the tree, no scratch folders in the work dir or the system temp dir); concurrent runs
are refused with the holder's pid. Plain trees, git checkouts and the real PyTorch 2.6.0 tree."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback

import pytest

from recipe import REPO_ROOT
from recipe.errors import Busy
from recipe.steps import patch as patch_step
from recipe.steps.patch import apply_series, parse_series
from recipe.steps.sources import dirty_files, patched_files
from tests.recipe_helpers import config_dir, files_hashes, tree_hashes, write
from tests.test_patch_step import make_tree, series  # noqa: F401  (the `series` fixture)

# Runs the step in its own process (so it can be killed); Ctrl-C exits 130 like build.py.
DRIVER = """
import sys
sys.path.insert(0, %r)
from recipe.steps.patch import apply_series
try:
    apply_series(sys.argv[1], sys.argv[2], sys.argv[3], repo_root=sys.argv[4], log=lambda m: None)
except KeyboardInterrupt:
    sys.exit(130)
""" % REPO_ROOT

REAL_SERIES = os.path.join(REPO_ROOT, "patches", "2.6.0", "series")
WORK_DIR_AFTER = {patch_step.STATE_FILE, patch_step.ORIGINALS_DIR, ".lock"}


def run_step(series_path, tree, work, repo_root, system_tmp, stop_at=None):
    """The step in a forked child (a real process the hook can kill, without the cost of a
    new interpreter per write point); returns its exit status (-N: killed by signal N).
    The child's system temp dir is `system_tmp`, so anything left there shows."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            tempfile.tempdir = str(system_tmp)
            if stop_at:
                os.environ[patch_step.KILL_HOOK_ENV] = stop_at
            else:
                os.environ.pop(patch_step.KILL_HOOK_ENV, None)
            patch_step._changes_made[0] = 0
            apply_series(series_path, tree, work, repo_root=repo_root, log=lambda m: None)
        except KeyboardInterrupt:  # what build.py does with Ctrl-C
            code = 130
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def resume(case):
    """The next run, in this process (no hook)."""
    return apply_series(case["series"], case["tree"], case["work"], repo_root=case["repo"],
                        log=lambda m: None)


def stray_temporaries(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(str(root)):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        out += [os.path.join(dirpath, f) for f in filenames if f.endswith(patch_step.TMP_SUFFIX)]
    return out


def count_writes(series_path, tree, work, repo_root):
    """How many changes one run makes (the hook counts them without stopping)."""
    os.environ[patch_step.KILL_HOOK_ENV] = str(10 ** 9)
    patch_step._changes_made[0] = 0
    try:
        apply_series(series_path, tree, work, repo_root=repo_root, log=lambda m: None)
        return patch_step._changes_made[0]
    finally:
        del os.environ[patch_step.KILL_HOOK_ENV]


def stop_and_resume(case, points, signal_name="KILL"):
    """For each write point: reset, run the step stopped there, check what it left, run it
    again, check that the tree is fully patched and clean. Returns the outcomes seen."""
    seen = set()
    for n in points:
        case["reset"]()
        rc = run_step(case["series"], case["tree"], case["work"], case["repo"], case["system_tmp"],
                      stop_at="%d:%s" % (n, signal_name))
        where = "stopped by SIG%s at write %d" % (signal_name, n)
        assert rc == (-signal.SIGKILL if signal_name == "KILL" else 130), (where, rc)
        assert os.listdir(str(case["system_tmp"])) == [], where  # nothing in the system temp dir
        files = files_hashes(case["tree"], case["files"])
        journal = os.path.isdir(os.path.join(case["work"], patch_step.JOURNAL_DIR))
        if journal:  # stopped while writing: the next run completes the change
            outcome = "journaled"
            for rel, digest in files.items():  # never a half-written file: old or new content
                assert digest in (case["before"][rel], case["after"][rel]), (where, rel)
        elif files == case["before"]:
            outcome = "untouched"
            assert case["snapshot"]() == case["before_snapshot"], where  # byte-identical
        else:
            outcome = "done"
            assert files == case["after"], "%s: half patched without a journal: %s" % (where, files)
        if signal_name != "KILL":  # Ctrl-C waits for the write phase: never half patched
            assert outcome in ("untouched", "done") and not stray_temporaries(case["tree"]), where
        if case.get("git"):
            # what the step wrote or is writing is not a "local change" for the sources step
            assert dirty_files(case["tree"], patched_files(case["work"])) == [], where
        seen.add(outcome)

        resume(case)
        assert files_hashes(case["tree"], case["files"]) == case["after"], where
        assert stray_temporaries(case["tree"]) == [], where
        assert set(os.listdir(case["work"])) <= WORK_DIR_AFTER, (where, os.listdir(case["work"]))
        assert os.listdir(str(case["system_tmp"])) == [], where
    return seen


def small_case(tmp_path, series, as_git, series_change=False):
    """A plain tree or a git checkout; optionally the second run of a changed series."""
    template = make_tree(tmp_path, "template", as_git=as_git)
    tree, work = str(tmp_path / "tree"), str(tmp_path / "work")
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    with open(series["series"]) as f:
        full_series = f.read()
    smaller = full_series.replace("0002-more.patch\n", "")
    files = sorted({rel for e in parse_series(series["series"], series["repo"]) for rel in e.affected()})

    def reset():
        for p in (tree, work):
            if os.path.exists(p):
                shutil.rmtree(p)
        shutil.copytree(template, tree, symlinks=True)
        write(series["series"], full_series)
        if series_change:  # the full series is in; the run under test drops 0002 again
            apply_series(series["series"], tree, work, repo_root=series["repo"], log=lambda m: None)
            write(series["series"], smaller)

    reset()
    before_snapshot, before = tree_hashes(tree), files_hashes(tree, files)
    n = count_writes(series["series"], tree, work, series["repo"])
    after = files_hashes(tree, files)
    assert after != before
    reset()
    return {"tree": tree, "work": work, "repo": series["repo"], "series": series["series"],
            "system_tmp": system_tmp, "files": files, "before": before, "after": after,
            "snapshot": lambda: tree_hashes(tree), "before_snapshot": before_snapshot,
            "reset": reset, "git": as_git, "writes": n}


EVERY = 1
SAMPLE = 3  # every third write point: the default tier; the slow tier runs them all


@pytest.mark.parametrize("as_git,step", [
    (False, EVERY),
    (True, SAMPLE),
    pytest.param(True, EVERY, marks=pytest.mark.slow),
], ids=["plain-tree-every-write", "git-checkout-every-third-write", "git-checkout-every-write"])
def test_killed_at_every_write_the_next_run_ends_fully_patched(tmp_path, series, as_git, step):
    case = small_case(tmp_path, series, as_git)
    assert case["writes"] > 20  # the journal, originals, 4 tree files, the state
    seen = stop_and_resume(case, range(1, case["writes"] + 1, step))
    assert seen == {"untouched", "journaled", "done"}, seen
    # and one past the last write: the run is not stopped at all
    case["reset"]()
    assert run_step(case["series"], case["tree"], case["work"], case["repo"], case["system_tmp"],
                    stop_at="%d" % (case["writes"] + 1)) == 0


@pytest.mark.parametrize("step", [SAMPLE, pytest.param(EVERY, marks=pytest.mark.slow)],
                         ids=["every-third-write", "every-write"])
def test_ctrl_c_at_every_write_leaves_the_tree_untouched_or_fully_patched(tmp_path, series, step):
    case = small_case(tmp_path, series, as_git=False)
    seen = stop_and_resume(case, range(1, case["writes"] + 1, step), signal_name="INT")
    assert seen == {"untouched", "done"}, seen


@pytest.mark.slow
def test_killed_at_every_write_of_a_changed_series(tmp_path, series):
    """The run that replays a changed series on the recorded originals (files put back,
    created files removed), killed at every write."""
    case = small_case(tmp_path, series, as_git=True, series_change=True)
    seen = stop_and_resume(case, range(1, case["writes"] + 1))
    assert "journaled" in seen, seen


def real_case(request, tmp_path):
    """The real 2.6.0 tree; "byte-identical" is checked on every folder the series writes in
    (hashing all 158 MB at each point would not fit the time budget)."""
    pristine = request.getfixturevalue("pytorch_source_pristine")
    tree = str(request.getfixturevalue("pytorch_source_tree"))
    files = sorted({rel for e in parse_series(REAL_SERIES) for rel in e.affected()})
    folders = sorted({os.path.dirname(rel) for rel in files})
    work = str(tmp_path / "work")
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()

    def reset():
        if os.path.exists(work):
            shutil.rmtree(work)
        for rel in files:
            src, dest = os.path.join(pristine, rel), os.path.join(tree, rel)
            if os.path.exists(src):
                shutil.copy2(src, dest)
            elif os.path.exists(dest):
                os.remove(dest)
        for tmp in stray_temporaries(tree):
            os.remove(tmp)

    def snapshot():
        return {d: tree_hashes(os.path.join(tree, d)) for d in folders}

    before, before_snapshot = files_hashes(tree, files), snapshot()
    n = count_writes(REAL_SERIES, tree, work, REPO_ROOT)
    after = files_hashes(tree, files)
    reset()
    assert snapshot() == before_snapshot
    return {"tree": tree, "work": work, "repo": REPO_ROOT, "series": REAL_SERIES,
            "system_tmp": system_tmp, "files": files, "before": before, "after": after,
            "snapshot": snapshot, "before_snapshot": before_snapshot, "reset": reset, "writes": n}


@pytest.mark.source_tree
def test_real_tree_killed_while_writing_is_completed_by_the_next_run(request, tmp_path):
    case = real_case(request, tmp_path)
    n = case["writes"]
    # in the journal, in the originals, in the tree's files; the slow tier tries them all
    seen = stop_and_resume(case, [n // 4, n // 2, n - HALF_PATCHED])
    assert "journaled" in seen, seen


@pytest.mark.slow
@pytest.mark.source_tree
def test_real_tree_killed_at_every_write(request, tmp_path):
    case = real_case(request, tmp_path)
    seen = stop_and_resume(case, range(1, case["writes"] + 1))
    assert seen == {"untouched", "journaled", "done"}, seen


def only_patch_command(tmp_path, series, tree, work):
    """`build.py --only patch --source TREE` with a release whose series is the test's (its
    copy entry removed: copy sources are relative to the recipe's own repository)."""
    with open(series["series"]) as f:
        text = f.read()
    write(series["series"], text.replace("copy kernels/k.cpp src/native/k.cpp  # kernel\n", ""))
    cfg = config_dir(tmp_path, {"patches": {"series": series["series"]}})
    return [sys.executable, os.path.join(REPO_ROOT, "build.py"), "--target", "x86_64", "--release",
            "9.9.9", "--configs", cfg, "--only", "patch", "--source", tree, "--work-dir", work,
            "--wheels-dir", str(tmp_path / "wheels")]


def kill_then_rerun_command(cmd, case, stop_at):
    env = dict(os.environ, TMPDIR=str(case["system_tmp"]))
    env[patch_step.KILL_HOOK_ENV] = str(stop_at)
    killed = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stdout
    assert os.path.isdir(os.path.join(case["work"], patch_step.JOURNAL_DIR))
    assert files_hashes(case["tree"], case["files"]) not in (case["before"], case["after"])
    del env[patch_step.KILL_HOOK_ENV]
    again = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=300)
    assert again.returncode == 0, again.stdout
    assert "interrupted while writing the tree; completing its change" in again.stdout
    assert files_hashes(case["tree"], case["files"]) == case["after"]
    assert stray_temporaries(case["tree"]) == []
    assert os.listdir(str(case["system_tmp"])) == []


# The kill point: in the last tree file's write, so the tree is half patched (that file's
# rename, the state (3 writes), the journal's rename and removal come after it).
HALF_PATCHED = 7


def test_killed_through_the_command_line_then_the_same_command_completes_it(tmp_path, series):
    cmd = only_patch_command(tmp_path, series, str(tmp_path / "tree"), str(tmp_path / "work"))
    case = small_case(tmp_path, series, as_git=False)
    case["reset"]()
    kill_then_rerun_command(cmd, case, case["writes"] - HALF_PATCHED)


@pytest.mark.slow
@pytest.mark.source_tree
def test_real_tree_killed_through_the_command_line_then_resumed(request, tmp_path):
    case = real_case(request, tmp_path)
    cmd = [sys.executable, os.path.join(REPO_ROOT, "build.py"), "--target", "x86_64", "--only",
           "patch", "--source", case["tree"], "--work-dir", case["work"],
           "--wheels-dir", str(tmp_path / "wheels")]
    kill_then_rerun_command(cmd, case, case["writes"] - HALF_PATCHED)


# --------------------------------------------------------------------------- concurrent runs

HOLDER = """
import sys, time
sys.path.insert(0, %r)
from recipe import locks
with locks.hold(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(60)
""" % REPO_ROOT


def test_a_second_run_on_the_same_work_dir_is_refused_with_the_holders_pid(tmp_path, series):
    tree, work = make_tree(tmp_path), str(tmp_path / "work")
    before = tree_hashes(tree)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, work], stdout=subprocess.PIPE,
                              universal_newlines=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(Busy) as e:
            apply_series(series["series"], tree, work, repo_root=series["repo"], log=lambda m: None)
        assert "another run holds the work dir %s (pid %d)" % (work, holder.pid) in str(e.value)
        assert tree_hashes(tree) == before
        # the command line says the same in one line, exit status 4 (busy)
        res = subprocess.run(only_patch_command(tmp_path, series, tree, work), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
        assert res.returncode == 4, res.stdout + res.stderr
        assert "another run holds the work dir" in res.stderr and "(pid %d)" % holder.pid in res.stderr
        assert "Traceback" not in res.stderr
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed: the kernel dropped its lock): the run goes through
    res = apply_series(series["series"], tree, work, repo_root=series["repo"], log=lambda m: None)
    assert [s for _, s in res["entries"]] == ["applies"] * 2


def test_concurrent_runs_on_one_tree_never_crash_or_report_false_conflicts(tmp_path, series):
    tree, work = make_tree(tmp_path), str(tmp_path / "work")
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(system_tmp))
    runs = [subprocess.Popen([sys.executable, "-c", DRIVER, series["series"], tree, work, series["repo"]],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True) for _ in range(4)]
    outs = [(p.wait(timeout=120), p.stdout.read()) for p in runs]
    for rc, out in outs:
        assert rc == 0 or ("another run holds the work dir" in out and "Busy" in out), out
        assert "conflict" not in out.lower() and "does not apply" not in out, out
    assert any(rc == 0 for rc, _ in outs)
    with open(os.path.join(tree, "src/a.c")) as f:
        assert f.read() == series["a_final"]
    assert stray_temporaries(tree) == [] and os.listdir(str(system_tmp)) == []
