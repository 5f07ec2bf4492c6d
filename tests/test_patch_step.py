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
    write(tree / "version.txt", "2.6.0a0\n")  # what `--only patch --source` checks, like `sources`
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
                   "series:8: copy source kernels/nope.cpp does not exist",
                   "series:9: DEST ../escape.cpp must stay inside the tree"):
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
    from recipe import cli
    tree = make_tree(tmp_path)
    cfg = config_dir(tmp_path, {"patches": {"series": series["series"]}})
    # copy entries are relative to the recipe repo: use a series without one here
    with open(series["series"]) as f:
        text = f.read()
    write(series["series"], text.replace("copy kernels/k.cpp src/native/k.cpp  # kernel\n", ""))
    args = ["--target", "x86_64", "--release", "9.9.9", "--configs", cfg, "--only", "patch",
            "--source", tree, "--work-dir", str(tmp_path / "work"), "--wheels-dir", str(tmp_path / "wheels")]
    assert cli.main(args) == 0
    assert read(os.path.join(tree, "src/a.c")) == series["a_final"]
    assert cli.main(args) == 0  # again: a no-op
    assert read(os.path.join(tree, "src/a.c")) == series["a_final"]


# --------------------------------------------------------------------------- the real tree

REAL_SERIES = os.path.join(REPO_ROOT, "patches", "2.6.0", "series")


def _real_entries():
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


# --------------------------------------------------------------------------- edits, checks

@pytest.fixture
def overlapping(tmp_path):
    """Two patches whose hunks overlap (0002 edits a context line of 0001's hunk, as the real
    series does in Convolution.cpp): a patched tree cannot be checked entry by entry."""
    pdir = tmp_path / "patches" / "o"
    pdir.mkdir(parents=True)
    a1 = edit_a(A, 3, "line 3 PATCHED by 0001")
    a2 = edit_a(a1, 5, "line 5 PATCHED by 0002")
    format_patches({"src/a.c": A, "src/b.c": B}, [{"src/a.c": a1}, {"src/a.c": a2}], str(pdir),
                   ["0001-first.patch", "0002-overlaps.patch"])
    write(pdir / "series", "0001-first.patch\n0002-overlaps.patch\n")
    return {"series": str(pdir / "series"), "repo": str(tmp_path / "repo"), "a_final": a2,
            "a_first": a1}


def test_a_harmless_edit_to_a_patched_file_is_no_conflict_with_the_same_work_dir(tmp_path, overlapping):
    tree, work = make_tree(tmp_path), str(tmp_path / "work")
    apply_series(overlapping["series"], tree, work, repo_root=overlapping["repo"], log=lambda m: None)
    edited = edit_a(overlapping["a_final"], 30, "line 30 edited by hand (no hunk is near it)")
    write(os.path.join(tree, "src/a.c"), edited)
    res = apply_series(overlapping["series"], tree, work, repo_root=overlapping["repo"], log=lambda m: None)
    assert [s for _, s in res["entries"]] == ["already applied"] * 2 and res["changed"] == []
    assert read(os.path.join(tree, "src/a.c")) == edited
    # the edit is part of the file's original now: dropping 0002 keeps it
    write(overlapping["series"], "0001-first.patch\n")
    res = apply_series(overlapping["series"], tree, work, repo_root=overlapping["repo"], log=lambda m: None)
    assert res["changed"] == ["src/a.c"]
    assert read(os.path.join(tree, "src/a.c")) == edit_a(overlapping["a_first"], 30,
                                                         "line 30 edited by hand (no hunk is near it)")


def test_an_edit_inside_a_hunk_is_still_a_conflict(tmp_path, overlapping):
    tree, work = make_tree(tmp_path), str(tmp_path / "work")
    apply_series(overlapping["series"], tree, work, repo_root=overlapping["repo"], log=lambda m: None)
    write(os.path.join(tree, "src/a.c"), edit_a(overlapping["a_final"], 4, "line 4 CHANGED"))
    before = tree_hashes(tree)
    with pytest.raises(PatchConflict, match="0001-first.patch"):
        apply_series(overlapping["series"], tree, work, repo_root=overlapping["repo"], log=lambda m: None)
    assert tree_hashes(tree) == before


@pytest.mark.source_tree
def test_real_tree_harmless_edit_then_rerun_with_the_same_work_dir(request, tmp_path):
    _real_entries()
    tree = str(request.getfixturevalue("pytorch_source_tree"))
    work = str(tmp_path / "work")
    apply_series(REAL_SERIES, tree, work, log=lambda m: None)
    path = os.path.join(tree, "aten/src/ATen/native/Convolution.cpp")
    lines = read(path).splitlines(True)
    middle = len(lines) // 2  # line 1178 of 2357: no hunk of the series is near it
    lines[middle] = lines[middle].rstrip("\n") + "  // a local note\n"
    write(path, "".join(lines))
    res = apply_series(REAL_SERIES, tree, work, log=lambda m: None)
    assert all(s == "already applied" for _, s in res["entries"]) and res["changed"] == []
    assert read(path) == "".join(lines)


def test_series_refuses_paths_outside_the_repo_and_the_tree(tmp_path, series):
    pdir = os.path.dirname(series["series"])
    outside = tmp_path / "outside.cpp"
    write(outside, "// not in the repo\n")
    with open(os.path.join(pdir, "0002-more.patch")) as f:
        text = f.read()
    write(os.path.join(pdir, "0003-escape.patch"), text.replace("src/b.c", "../b.c"))
    write(series["series"], "copy %s src/x.cpp\ncopy ../outside.cpp src/x.cpp\n"
                            "copy kernels/k.cpp /abs/x.cpp\ncopy kernels/k.cpp src/./x.cpp\n"
                            "0003-escape.patch\nsub/0001-two-hunks.patch\n" % outside)
    with pytest.raises(SeriesError) as e:
        parse_series(series["series"], series["repo"])
    msg = str(e.value)
    for needle in ("series:1: copy source %s must be a file inside" % outside,
                   "series:2: copy source ../outside.cpp must be a file inside",
                   "series:3: DEST /abs/x.cpp must be a path relative to the tree",
                   "series:4: DEST src/./x.cpp must stay inside the tree",
                   "series:5: 0003-escape.patch changes files outside the tree: ../b.c",
                   "series:6: sub/0001-two-hunks.patch: name a patch file in"):
        assert needle in msg, msg


def test_series_file_missing_or_not_text(tmp_path):
    with pytest.raises(SeriesError, match="patch series not found: .*nope"):
        parse_series(str(tmp_path / "nope"))
    write(tmp_path / "series", "")
    with open(str(tmp_path / "series"), "wb") as f:
        f.write(b"0001-x.patch\n\xff\xfe\n")
    with pytest.raises(SeriesError, match="not UTF-8 text"):
        parse_series(str(tmp_path / "series"))


def only_patch(tmp_path, series, tree, *extra, **release):
    """`build.py --only patch --source TREE` through the real CLI path (plan + runner)."""
    from tests.recipe_helpers import config_dir
    from recipe import cli
    with open(series["series"]) as f:
        text = f.read()
    write(series["series"], text.replace("copy kernels/k.cpp src/native/k.cpp  # kernel\n", ""))
    cfg = config_dir(tmp_path, dict({"patches": {"series": series["series"]}}, **release))
    return cli.main(["--target", "x86_64", "--release", "9.9.9", "--configs", cfg, "--only",
                          "patch", "--source", tree, "--work-dir", str(tmp_path / "work"),
                          "--wheels-dir", str(tmp_path / "wheels")] + list(extra))


def test_only_patch_checks_the_source_like_the_sources_step(tmp_path, series, capsys):
    # a plain tree of another version
    old = make_tree(tmp_path, "old")
    write(os.path.join(old, "version.txt"), "2.5.0\n")
    before = tree_hashes(old)
    assert only_patch(tmp_path, series, old) == 1
    assert "version.txt says 2.5.0; release 9.9.9 needs 2.6.0" in capsys.readouterr().out
    assert tree_hashes(old) == before
    # a git checkout with a local change, then at the wrong commit
    tree = make_tree(tmp_path, as_git=True)
    head = git(tree, "rev-parse", "HEAD")
    write(os.path.join(tree, "README"), "changed locally\n")
    before = tree_hashes(tree)
    assert only_patch(tmp_path, series, tree, torch={"commit": head}) == 1
    out = capsys.readouterr().out
    assert "has local changes" in out and "README" in out and "--allow-dirty" in out
    assert tree_hashes(tree) == before
    assert only_patch(tmp_path, series, tree, torch={"commit": "0" * 40}) == 1
    assert "but the release pins %s" % ("0" * 40) in capsys.readouterr().out
    assert tree_hashes(tree) == before
    # --allow-dirty: patched (the oneDNN check of a git checkout is the sources step's too)
    os.makedirs(os.path.join(tree, "third_party/ideep/mkl-dnn"))
    write(os.path.join(tree, "third_party/ideep/mkl-dnn/CMakeLists.txt"),
          "project(oneDNN VERSION 3.5.3 LANGUAGES C CXX)\n")
    assert only_patch(tmp_path, series, tree, "--allow-dirty", torch={"commit": head}) == 0
    assert read(os.path.join(tree, "src/a.c")) == series["a_final"]
