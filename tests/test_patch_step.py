"""The patch step: whole series checked first, already-applied detection, named-hunk conflicts,
tree byte-for-byte unchanged on error; on a plain tree, a git checkout and the real 2.6.0 tree."""
import os

import pytest

from recipe import REPO_ROOT
from recipe.steps import patch as patch_step
from recipe.steps.patch import PatchConflict, SeriesError, apply_series, parse_patch, parse_series
from tests.recipe_helpers import files_hashes, format_patches, git, read, tree_hashes, write

A = "".join("line %d of a\n" % i for i in range(1, 41))
B = "int b(void) {\n  return 1;\n}\n"


def edit_a(text, n, new):
    lines = text.splitlines(True)
    lines[n - 1] = new + "\n"
    return "".join(lines)


@pytest.fixture
def series(tmp_path):
    """A series like the real one: two patches (one with two hunks), a new file, a copy entry."""
    pdir = tmp_path / "patches" / "x"
    pdir.mkdir(parents=True)
    a1 = edit_a(edit_a(A, 3, "line 3 PATCHED by 0001"), 35, "line 35 PATCHED by 0001")
    a2 = edit_a(a1, 20, "line 20 PATCHED by 0002")
    format_patches({"src/a.c": A, "src/b.c": B},
                   [{"src/a.c": a1}, {"src/a.c": a2, "src/b.c": B.replace("1", "2"), "src/new.h": "#pragma once\n"}],
                   str(pdir), ["0001-two-hunks.patch", "0002-more.patch"])
    repo = tmp_path / "repo"
    write(repo / "kernels" / "k.cpp", "// kernel\n")
    write(pdir / "series", "# test series\n0001-two-hunks.patch\n\ncopy kernels/k.cpp src/native/k.cpp  # kernel\n"
                           "0002-more.patch\n")
    return {"series": str(pdir / "series"), "repo": str(repo), "a_final": a2}


def make_tree(tmp_path, name="tree", as_git=False):
    tree = tmp_path / name
    write(tree / "src" / "a.c", A)
    write(tree / "src" / "b.c", B)
    write(tree / "README", "untouched\n")
    if as_git:
        git(tree, "init", "-q")
        git(tree, "add", "-A")
        git(tree, "commit", "-q", "-m", "base")
    return str(tree)


@pytest.mark.parametrize("as_git", [False, True], ids=["plain-tree", "git-checkout"])
def test_series_applies_then_rerun_is_noop(tmp_path, series, as_git):
    tree = make_tree(tmp_path, as_git=as_git)
    work = str(tmp_path / "work")
    res = apply_series(series["series"], tree, work, repo_root=series["repo"], log=lambda m: None)
    assert [s for _, s in res["entries"]] == ["applies"] * 3
    assert read(os.path.join(tree, "src/a.c")) == series["a_final"]
    assert read(os.path.join(tree, "src/b.c")) == B.replace("1", "2")
    assert read(os.path.join(tree, "src/new.h")) == "#pragma once\n"
    assert read(os.path.join(tree, "src/native/k.cpp")) == "// kernel\n"
    assert sorted(res["changed"]) == ["src/a.c", "src/b.c", "src/native/k.cpp", "src/new.h"]

    before = tree_hashes(tree)
    again = apply_series(series["series"], tree, work, repo_root=series["repo"], log=lambda m: None)
    assert [s for _, s in again["entries"]] == ["already applied"] * 3
    assert again["changed"] == []
    assert tree_hashes(tree) == before

    # also a no-op for a fresh work dir (no record of ours): detected from the tree itself
    third = apply_series(series["series"], tree, str(tmp_path / "work2"), repo_root=series["repo"],
                         log=lambda m: None)
    assert [s for _, s in third["entries"]] == ["already applied"] * 3
    assert tree_hashes(tree) == before


def test_conflict_names_patch_file_hunk_and_leaves_tree_untouched(tmp_path, series):
    tree = make_tree(tmp_path)
    # a local edit inside 0001's second hunk (around line 35); its first hunk still applies
    write(os.path.join(tree, "src/a.c"), edit_a(A, 36, "line 36 CHANGED LOCALLY"))
    before = tree_hashes(tree)
    with pytest.raises(PatchConflict) as e:
        apply_series(series["series"], tree, str(tmp_path / "work"), repo_root=series["repo"], log=lambda m: None)
    msg = str(e.value)
    assert "0001-two-hunks.patch" in msg
    assert "src/a.c: hunk #2 does not apply: @@ -32,7 +32,7 @@" in msg
    assert "tree was not changed" in msg
    assert tree_hashes(tree) == before
    assert not os.path.exists(os.path.join(str(tmp_path / "work"), patch_step.STATE_FILE))


def test_conflict_in_a_later_patch_still_touches_nothing(tmp_path, series):
    tree = make_tree(tmp_path)
    write(os.path.join(tree, "src/b.c"), "int b(void) { return 7; }\n")  # breaks 0002 only
    before = tree_hashes(tree)
    with pytest.raises(PatchConflict) as e:
        apply_series(series["series"], tree, str(tmp_path / "work"), repo_root=series["repo"], log=lambda m: None)
    assert "0002-more.patch" in str(e.value) and "src/b.c: hunk #1" in str(e.value)
    assert "0001-two-hunks.patch (applies)" in str(e.value)
    assert tree_hashes(tree) == before  # 0001 and the copy were NOT applied either


def test_series_errors_are_reported_with_line_numbers_before_anything(tmp_path, series):
    tree = make_tree(tmp_path)
    with open(series["series"], "a") as f:
        f.write("0009-missing.patch\ncpy a b\ncopy kernels/nope.cpp src/x.cpp\ncopy kernels/k.cpp ../escape.cpp\n")
    before = tree_hashes(tree)
    with pytest.raises(SeriesError) as e:
        apply_series(series["series"], tree, str(tmp_path / "work"), repo_root=series["repo"], log=lambda m: None)
    msg = str(e.value)
    for needle in ("series:6: 0009-missing.patch does not exist", "series:7: cannot read 'cpy a b'",
                   "series:8: copy source kernels/nope.cpp does not exist", "series:9: DEST must be relative"):
        assert needle in msg
    assert tree_hashes(tree) == before


def test_changed_series_is_reapplied_on_the_original_files(tmp_path, series):
    tree = make_tree(tmp_path)
    work = str(tmp_path / "work")
    apply_series(series["series"], tree, work, repo_root=series["repo"], log=lambda m: None)
    # the kernel file changes and 0002 is dropped from the series
    write(os.path.join(series["repo"], "kernels/k.cpp"), "// kernel v2\n")
    with open(series["series"]) as f:
        text = f.read()
    write(series["series"], text.replace("0002-more.patch\n", ""))
    res = apply_series(series["series"], tree, work, repo_root=series["repo"], log=lambda m: None)
    # replayed on the recorded originals: both entries apply there
    assert [s for _, s in res["entries"]] == ["applies", "applies"]
    assert sorted(res["changed"]) == ["src/a.c", "src/b.c", "src/native/k.cpp", "src/new.h"]
    a = read(os.path.join(tree, "src/a.c"))
    assert "PATCHED by 0001" in a and "0002" not in a       # 0002 undone from the recorded original
    assert read(os.path.join(tree, "src/b.c")) == B           # restored
    assert not os.path.exists(os.path.join(tree, "src/new.h"))  # the file 0002 created is gone
    assert read(os.path.join(tree, "src/native/k.cpp")) == "// kernel v2\n"


def test_parse_patch_counts_hunks_and_ignores_signature(tmp_path, series):
    files = parse_patch(os.path.join(os.path.dirname(series["series"]), "0001-two-hunks.patch"))
    assert [f.path for f in files] == ["src/a.c"]
    assert [h[0].split(" @@")[0] for h in files[0].hunks] == ["@@ -1,6 +1,6", "@@ -32,7 +32,7"]
    entries = parse_series(series["series"], series["repo"])
    assert [e.kind for e in entries] == ["patch", "copy", "patch"]
    assert entries[2].affected() == ["src/a.c", "src/b.c", "src/new.h"]


def test_only_patch_with_source_on_a_plain_tree(tmp_path, series):
    """`--only patch --source DIR` through the real CLI path (plan + runner)."""
    from tests.recipe_helpers import config_dir
    from recipe import buildcmd
    tree = make_tree(tmp_path)
    cfg = config_dir(tmp_path, {"patches": {"series": series["series"]}})
    # copy entries are relative to the recipe repo: use a series without one here
    with open(series["series"]) as f:
        text = f.read()
    write(series["series"], text.replace("copy kernels/k.cpp src/native/k.cpp  # kernel\n", ""))
    args = ["--target", "x86_64", "--release", "9.9.9", "--configs", cfg, "--only", "patch",
            "--source", tree, "--work-dir", str(tmp_path / "work"), "--wheels-dir", str(tmp_path / "wheels")]
    assert buildcmd.main(args) == 0
    assert read(os.path.join(tree, "src/a.c")) == series["a_final"]
    assert buildcmd.main(args) == 0  # again: a no-op
    assert read(os.path.join(tree, "src/a.c")) == series["a_final"]


# --------------------------------------------------------------------------- the real tree

REAL_SERIES = os.path.join(REPO_ROOT, "patches", "2.6.0", "series")


def _real_entries():
    if not os.path.exists(REAL_SERIES):
        pytest.skip("patches/2.6.0/series does not exist yet")
    try:
        return parse_series(REAL_SERIES)
    except SeriesError as e:  # a series that names missing files breaks every real build
        pytest.fail("patches/2.6.0/series is broken: %s" % e, pytrace=False)


@pytest.mark.source_tree
def test_real_series_applies_to_pytorch_260_and_reruns_as_noop(request, tmp_path):
    entries = _real_entries()  # before the (slow) source fixture: skip early when no series yet
    tree = str(request.getfixturevalue("pytorch_source_tree"))
    work = str(tmp_path / "work")
    res = apply_series(REAL_SERIES, tree, work, log=lambda m: None)
    assert all(s == "applies" for _, s in res["entries"]), res["entries"]
    assert res["changed"]
    touched = sorted({rel for e in entries for rel in e.affected()})
    after = files_hashes(tree, touched)
    assert all(after.values()), after
    native = tree_hashes(os.path.join(tree, "aten/src/ATen/native"))
    again = apply_series(REAL_SERIES, tree, work, log=lambda m: None)
    assert all(s == "already applied" for _, s in again["entries"]), again["entries"]
    assert again["changed"] == []
    assert files_hashes(tree, touched) == after
    assert tree_hashes(os.path.join(tree, "aten/src/ATen/native")) == native


@pytest.mark.source_tree
def test_real_series_conflict_is_named_and_tree_unchanged(request, tmp_path):
    entries = _real_entries()
    tree = str(request.getfixturevalue("pytorch_source_tree"))
    first = next(e for e in entries if e.kind == "patch")
    fp = next(f for f in first.files if f.old and f.hunks)
    header, body = fp.hunks[0]
    path = os.path.join(tree, fp.old)
    text = read(path)
    # a line of the first hunk's old side that occurs once in the file: edit exactly there
    line = next(l[1:] for l in body if l[:1] in "- " and len(l.strip()) > 3 and text.count(l[1:]) == 1)
    write(path, text.replace(line, "/* conflicting local edit */\n", 1))
    touched = sorted({rel for e in entries for rel in e.affected()})
    before = files_hashes(tree, touched)
    native = tree_hashes(os.path.join(tree, "aten/src/ATen"))
    with pytest.raises(PatchConflict) as e:
        apply_series(REAL_SERIES, tree, str(tmp_path / "work"), log=lambda m: None)
    msg = str(e.value)
    assert os.path.basename(first.patch) in msg
    assert "%s: hunk #1 does not apply: %s" % (fp.old, header.rstrip("\n")) in msg
    # byte-for-byte: every file the series touches (new ones still absent) and all of ATen
    assert files_hashes(tree, touched) == before, "the tree changed although the series conflicted"
    assert tree_hashes(os.path.join(tree, "aten/src/ATen")) == native
