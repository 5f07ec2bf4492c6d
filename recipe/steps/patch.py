"""Step 4, patch: the release's patch series, checked whole before the tree is touched.

Series format (CONTRACTS.md): one entry per line, `#` starts a comment;
  NNNN-name.patch         a git format-patch file next to the series file
  copy SRC DEST           install SRC (relative to this repository) as DEST (relative to the
                          PyTorch tree); identical content already there = applied

How it works, in order:
  1. parse the series and every patch (file sections and hunks); unreadable entries are
     reported with series:line before anything else happens;
  2. copy every affected file of the tree into a scratch directory and play the whole
     series there with `git apply`: an entry whose forward check fails but whose reverse
     check passes is already applied (a re-run is a no-op: nothing is applied twice);
  3. on a conflict, find the first failing hunk (applying hunk prefixes one by one) and
     report patch, file, hunk number and its `@@` header; the tree has not been touched;
  4. only then write the changed files into the tree (each via a temporary file and an
     atomic rename), remembering the original content in the work dir.
Because git is only used on the scratch copy, it works the same on a git checkout and on a
plain unpacked tree. When the series changes between runs, the files we patched are first
put back to their recorded originals (if nobody edited them since), so the new series
applies to the pristine tree: `--from`/re-runs redo exactly what changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile

from recipe import REPO_ROOT
from recipe.stamps import sha256_file
from recipe.steps import StepError

NAME = "patch"
TITLE = "apply the release's patch series: checked whole first, never applied twice"
DEPENDS = ("sources",)

STATE_FILE = "patch-state.json"
ORIGINALS_DIR = "patch-originals"


class SeriesError(StepError):
    pass


class PatchConflict(StepError):
    pass


# --------------------------------------------------------------------------- parsing

class Entry(object):
    def __init__(self, kind, line_no, text, patch=None, src=None, dest=None):
        self.kind, self.line_no, self.text = kind, line_no, text
        self.patch, self.src, self.dest = patch, src, dest
        self.files = []  # FilePatch list for patches

    @property
    def label(self):
        return os.path.basename(self.patch) if self.kind == "patch" else "copy %s" % self.dest

    def affected(self):
        if self.kind == "copy":
            return [self.dest]
        out = []
        for fp in self.files:
            for p in (fp.old, fp.new):
                if p and p not in out:
                    out.append(p)
        return out


class FilePatch(object):
    def __init__(self, old, new, header):
        self.old, self.new = old, new     # None for /dev/null
        self.header = header              # lines from `diff --git` to `+++`
        self.hunks = []                   # (header line, [lines])
        self.binary = False

    @property
    def path(self):
        return self.new or self.old


def _strip_prefix(path):
    path = path.strip().split("\t")[0]
    if path == "/dev/null":
        return None
    if path.startswith(("a/", "b/")):
        path = path[2:]
    return path


def parse_patch(path):
    """Split a (git format-)patch into FilePatches with their hunks (exact, by line counts)."""
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8", "surrogateescape").splitlines(True)
    files = []
    i, n = 0, len(lines)
    current = None
    while i < n:
        line = lines[i]
        if line.startswith("diff --git "):
            current = None
            m = re.match(r"diff --git (\S+) (\S+)", line)
            header = [line]
            old = _strip_prefix(m.group(1)) if m else None
            new = _strip_prefix(m.group(2)) if m else None
            i += 1
            while i < n and not lines[i].startswith(("@@", "diff --git ")):
                l2 = lines[i]
                header.append(l2)
                if l2.startswith("--- "):
                    old = _strip_prefix(l2[4:])
                elif l2.startswith("+++ "):
                    new = _strip_prefix(l2[4:])
                    i += 1
                    break
                elif l2.startswith("new file mode"):
                    old = None
                elif l2.startswith("deleted file mode"):
                    new = None
                elif l2.startswith("GIT binary patch") or l2.startswith("Binary files"):
                    pass
                i += 1
            current = FilePatch(old, new, header)
            current.binary = any(h.startswith(("GIT binary patch", "Binary files")) for h in header)
            files.append(current)
            continue
        if line.startswith("@@") and current is not None:
            m = re.match(r"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@", line)
            if not m:
                raise SeriesError("%s: malformed hunk header: %s" % (path, line.strip()))
            old_left = int(m.group(1)) if m.group(1) is not None else 1
            new_left = int(m.group(2)) if m.group(2) is not None else 1
            body = []
            i += 1
            while i < n and (old_left > 0 or new_left > 0):
                l2 = lines[i]
                tag = l2[:1]
                if tag == " " or l2 in ("\n", "\r\n"):
                    old_left -= 1
                    new_left -= 1
                elif tag == "-":
                    old_left -= 1
                elif tag == "+":
                    new_left -= 1
                elif tag == "\\":
                    pass
                else:
                    raise SeriesError("%s: hunk %s ends early at line %d" % (path, line.strip(), i + 1))
                body.append(l2)
                i += 1
            while i < n and lines[i].startswith("\\"):
                body.append(lines[i])
                i += 1
            current.hunks.append((line, body))
            continue
        i += 1
    return files


def parse_series(series_path, repo_root=REPO_ROOT):
    """Entries of a series file; every problem is reported as series:line before anything runs."""
    if not os.path.exists(series_path):
        raise SeriesError("patch series not found: %s" % series_path)
    folder = os.path.dirname(os.path.abspath(series_path))
    entries, errors = [], []
    with open(series_path, encoding="utf-8") as f:
        for no, raw in enumerate(f, 1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            where = "%s:%d" % (series_path, no)
            words = text.split()
            if words[0] == "copy":
                if len(words) != 3:
                    errors.append("%s: 'copy' needs SRC and DEST, got: %s" % (where, text))
                    continue
                src, dest = words[1], words[2]
                if os.path.isabs(dest) or ".." in dest.split("/"):
                    errors.append("%s: DEST must be relative to the tree, without '..': %s" % (where, dest))
                    continue
                full = os.path.join(repo_root, src)
                if not os.path.isfile(full):
                    errors.append("%s: copy source %s does not exist (relative to %s)" % (where, src, repo_root))
                    continue
                entries.append(Entry("copy", no, text, src=full, dest=dest))
            elif len(words) == 1 and words[0].endswith(".patch"):
                full = os.path.join(folder, words[0])
                if not os.path.isfile(full):
                    errors.append("%s: %s does not exist in %s" % (where, words[0], folder))
                    continue
                e = Entry("patch", no, text, patch=full)
                try:
                    e.files = parse_patch(full)
                except SeriesError as err:
                    errors.append("%s: %s" % (where, err))
                    continue
                if not e.files:
                    errors.append("%s: %s contains no diff" % (where, words[0]))
                    continue
                entries.append(e)
            else:
                errors.append("%s: cannot read %r (expected NNNN-name.patch or copy SRC DEST)" % (where, text))
    if errors:
        raise SeriesError("the patch series has errors (nothing was applied):\n" + "\n".join("  " + e for e in errors))
    return entries


def series_inputs(series_path, repo_root=REPO_ROOT):
    """sha256 of the series and of every file it names (the step's stamp inputs)."""
    if not os.path.exists(series_path):
        return {"series": None}
    out = {"series": sha256_file(series_path), "files": {}}
    try:
        for e in parse_series(series_path, repo_root):
            path = e.patch if e.kind == "patch" else e.src
            out["files"][e.text] = sha256_file(path)
    except SeriesError as err:
        out["error"] = str(err)
    return out


# --------------------------------------------------------------------------- git apply on scratch

def _git_apply(scratch, patch_file, reverse=False, check=True):
    env = dict(os.environ)
    env["GIT_CEILING_DIRECTORIES"] = os.path.dirname(os.path.abspath(scratch))
    cmd = ["git", "apply", "--whitespace=nowarn"]
    if check:
        cmd.append("--check")
    if reverse:
        cmd.append("--reverse")
    cmd.append(os.path.abspath(patch_file))
    res = subprocess.run(cmd, cwd=scratch, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True)
    return res.returncode == 0, res.stdout.strip()


def _write_partial(fp, hunks, path):
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write("".join(fp.header))
        for header, body in hunks:
            f.write(header)
            f.write("".join(body))


def diagnose(entry, scratch, tmp):
    """Name the file and the first hunk of `entry` that does not apply to the scratch state."""
    for fp in entry.files:
        if fp.old and not os.path.exists(os.path.join(scratch, fp.old)):
            return "%s: the file does not exist in the tree" % fp.old
        if not fp.old and os.path.exists(os.path.join(scratch, fp.new)):
            return "%s: the patch creates it, but a different file is already there" % fp.new
        if fp.binary:
            ok, msg = _single_file_check(entry, fp, scratch, tmp)
            if not ok:
                return "%s: binary patch does not apply" % fp.path
            continue
        for k in range(1, len(fp.hunks) + 1):
            part = os.path.join(tmp, "part.patch")
            _write_partial(fp, fp.hunks[:k], part)
            ok, msg = _git_apply(scratch, part)
            if not ok:
                header = fp.hunks[k - 1][0].rstrip("\n")
                return "%s: hunk #%d does not apply: %s" % (fp.path, k, header)
    return None


def _single_file_check(entry, fp, scratch, tmp):
    part = os.path.join(tmp, "part.patch")
    _write_partial(fp, fp.hunks, part)
    return _git_apply(scratch, part)


# --------------------------------------------------------------------------- planning the change

def _read(path):
    with open(path, "rb") as f:
        return f.read()


def load_state(work_dir, tree):
    try:
        with open(os.path.join(work_dir, STATE_FILE), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    return state if state.get("tree") == os.path.abspath(tree) else None


def base_content(tree, rel, state, work_dir):
    """What the file was before our last application (if we wrote it and nobody changed it since)."""
    full = os.path.join(tree, rel)
    current = _read(full) if os.path.isfile(full) else None
    rec = (state or {}).get("files", {}).get(rel)
    ours = rec and ((current is None and rec["written"] is None) or
                    (current is not None and hashlib.sha256(current).hexdigest() == rec["written"]))
    if ours:
        if not rec["existed"]:
            return None
        return _read(os.path.join(work_dir, ORIGINALS_DIR, rel))
    return current


def simulate(entries, tree, scratch, tmp, base):
    """Play the series on `scratch`, seeded with `base` (rel -> bytes or None); return statuses.

    Raises PatchConflict (naming patch, file, hunk) when an entry neither applies nor is applied.
    """
    for rel, data in base.items():
        if data is not None:
            dest = os.path.join(scratch, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
            src = os.path.join(tree, rel)
            if os.path.exists(src):
                shutil.copymode(src, dest)
    statuses = []
    for i, e in enumerate(entries):
        if e.kind == "copy":
            dest = os.path.join(scratch, e.dest)
            if os.path.isfile(dest) and _read(dest) == _read(e.src):
                statuses.append("already applied")
            else:
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copyfile(e.src, dest)
                statuses.append("applies")
            continue
        ok, msg = _git_apply(scratch, e.patch)
        if ok:
            ok, msg = _git_apply(scratch, e.patch, check=False)
            if not ok:
                raise PatchConflict("git apply failed after a clean check: %s\n%s" % (e.label, msg))
            statuses.append("applies")
            continue
        rev_ok, _ = _git_apply(scratch, e.patch, reverse=True)
        if rev_ok:
            statuses.append("already applied")
            continue
        where = diagnose(e, scratch, tmp) or msg
        before = ", ".join("%s (%s)" % (entries[j].label, statuses[j]) for j in range(i)) or "none"
        raise PatchConflict(
            "patch %s (series line %d) does not apply to %s:\n  %s\n  git apply: %s\n"
            "The tree was not changed (the series is checked on a scratch copy first).\n"
            "Entries before it: %s" % (e.label, e.line_no, tree, where,
                                       msg.splitlines()[0] if msg else "", before))
    return statuses


def _all_reverse_apply(entries, scratch):
    """True when the whole series is already in the tree (reverse in reverse order)."""
    for e in reversed(entries):
        if e.kind == "copy":
            dest = os.path.join(scratch, e.dest)
            if not (os.path.isfile(dest) and _read(dest) == _read(e.src)):
                return False
            continue
        ok, _ = _git_apply(scratch, e.patch, reverse=True)
        if not ok:
            return False
        _git_apply(scratch, e.patch, reverse=True, check=False)
    return True


# --------------------------------------------------------------------------- the whole operation

def apply_series(series_path, tree, work_dir, repo_root=REPO_ROOT, log=print):
    """Check the whole series on a scratch copy, then write the result into `tree`.

    Returns {"entries": [(label, status)], "changed": [paths]}. On any problem the tree is
    left exactly as it was.
    """
    tree = os.path.abspath(tree)
    entries = parse_series(series_path, repo_root)
    state = load_state(work_dir, tree)
    affected = []
    for e in entries:
        for rel in e.affected():
            if rel not in affected:
                affected.append(rel)
    for rel in (state or {}).get("files", {}):
        if rel not in affected:
            affected.append(rel)
    base = {rel: base_content(tree, rel, state, work_dir) for rel in affected}

    tmp = tempfile.mkdtemp(prefix="recipe-patch-")
    try:
        scratch = os.path.join(tmp, "tree")
        os.makedirs(scratch)
        try:
            statuses = simulate(entries, tree, scratch, tmp, base)
        except PatchConflict:
            # Patches of one series may touch the same lines, so a tree patched by someone
            # else can fail the entry-by-entry check; reversing the whole series (last entry
            # first) proves the series is all there.
            if state is not None or not _series_in_tree(entries, tree, affected, tmp):
                raise
            statuses = ["already applied"] * len(entries)
            log_entries(entries, statuses, log)
            return {"entries": [(e.label, s) for e, s in zip(entries, statuses)], "changed": []}
        # the new content of every affected file, decided before the tree is touched
        result = {}
        for rel in affected:
            p = os.path.join(scratch, rel)
            result[rel] = _read(p) if os.path.isfile(p) else None
        current = {rel: _read(os.path.join(tree, rel)) if os.path.isfile(os.path.join(tree, rel))
                   else None for rel in affected}
        if result == current:
            statuses = ["already applied"] * len(entries)
        changed = _write_tree(tree, work_dir, affected, base, result, current)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log_entries(entries, statuses, log)
    return {"entries": [(e.label, s) for e, s in zip(entries, statuses)], "changed": changed}


def log_entries(entries, statuses, log):
    for e, s in zip(entries, statuses):
        log("  %-48s %s" % (e.label, s))


def _series_in_tree(entries, tree, affected, tmp):
    scratch = os.path.join(tmp, "reverse")
    os.makedirs(scratch)
    for rel in affected:
        src = os.path.join(tree, rel)
        if os.path.isfile(src):
            dest = os.path.join(scratch, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(src, dest)
    return _all_reverse_apply(entries, scratch)


def _write_tree(tree, work_dir, affected, base, result, current):
    """Write the new contents; keep the originals in the work dir so a later series can start over."""
    originals = os.path.join(work_dir, ORIGINALS_DIR)
    files = {}
    changed = []
    for rel in affected:
        new = result[rel]
        if new != base[rel]:
            if base[rel] is not None:
                orig_path = os.path.join(originals, rel)
                os.makedirs(os.path.dirname(orig_path), exist_ok=True)
                with open(orig_path, "wb") as f:
                    f.write(base[rel])
            files[rel] = {"existed": base[rel] is not None,
                          "written": hashlib.sha256(new).hexdigest() if new is not None else None}
        # (a file only an earlier series touched has new == base: it is put back here)
        if new != current[rel]:
            _put(os.path.join(tree, rel), new)
            changed.append(rel)
    os.makedirs(work_dir, exist_ok=True)
    with open(os.path.join(work_dir, STATE_FILE), "w", encoding="utf-8") as f:
        json.dump({"tree": tree, "files": files}, f, indent=1, sort_keys=True)
    return changed


def _put(path, data):
    if data is None:
        if os.path.exists(path):
            os.remove(path)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".recipe-tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    if os.path.exists(path):
        shutil.copymode(path, tmp)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- step interface

def describe(plan):
    series = plan.series_path
    inputs = series_inputs(series)
    inputs["tree"] = plan.source_dir
    warnings = []
    if inputs.get("series") is None:
        warnings.append("patch series %s does not exist yet: the patch step will fail" % series)
    elif inputs.get("error"):
        warnings.append(inputs["error"])
    cmds = ["# every entry of %s is checked on a scratch copy of the affected files first:" % series,
            "git apply --check [--reverse] NNNN-name.patch   # forward = to apply, reverse = already applied",
            "# then the changed files are written into %s (originals kept in %s/%s)"
            % (plan.source_dir, plan.work_dir, ORIGINALS_DIR)]
    return {"skip": None, "commands": cmds, "inputs": inputs, "warnings": warnings,
            "outputs": [os.path.join(plan.work_dir, STATE_FILE)]}


def run(ctx):
    plan = ctx.plan
    res = apply_series(plan.series_path, plan.source_dir, plan.work_dir, log=ctx.log)
    applied = sum(1 for _, s in res["entries"] if s == "applies")
    ctx.log("%d entries: %d applied now, %d already there; %d files changed" % (
        len(res["entries"]), applied, len(res["entries"]) - applied, len(res["changed"])))
    return {"entries": res["entries"], "changed": res["changed"],
            "series": series_inputs(plan.series_path)}
