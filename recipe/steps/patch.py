"""Step 4, patch: the release's patch series, checked whole before the tree is touched.

Series format (CONTRACTS.md): one entry per line, `#` starts a comment;
  NNNN-name.patch         a git format-patch file next to the series file
  copy SRC DEST           install SRC (relative to this repository) as DEST (relative to the
                          PyTorch tree); identical content already there = applied

How it works, in order:
  1. parse the series and every patch (file sections and hunks); unreadable entries, files
     that do not exist and paths outside the repo or the tree are reported with series:line
     before anything else happens (the plan refuses such a series: describe() -> errors);
  2. take the work-dir lock (recipe.locks: a second run is refused with the holder's
     pid) and complete what an interrupted run left (see 5.);
  3. copy every affected file of the tree into a scratch folder in the work dir and play the
     whole series there with `git apply`: an entry whose forward check fails but whose
     reverse check passes is already applied (a re-run is a no-op: nothing is applied
     twice). Files we did not write (or that were edited since) are first checked for the
     whole series by reversing it, so an already patched tree with a harmless edit (a line
     no hunk touches) is no conflict;
  4. on a conflict, find the first failing hunk (applying hunk prefixes one by one) and
     report patch, file, hunk number and its `@@` header; the tree has not been touched;
  5. only then write the change: first a journal (WORK/patch-journal: the new contents,
     the originals to keep, the new state; written into a staging folder and renamed, so it
     exists whole or not at all), then each file through a temporary file named after the
     run and a rename, the state, and the journal is dropped. Ctrl-C/SIGTERM wait for the
     end of this short phase; a run killed in it (SIGKILL, a crash) is completed by the
     next run, which rolls the journaled change forward (the series was already checked
     whole) and so ends with the tree fully patched.
Because git is only used on the scratch copy, it works the same on a git checkout and on a
plain unpacked tree. When the series changes between runs, the files we patched are first
put back to their recorded originals (if nobody edited them since), so the new series
applies to the pristine tree: `--from`/re-runs redo exactly what changed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading

from recipe import REPO_ROOT, locks
from recipe.patch_state import JOURNAL_DIR, STATE_FILE
from recipe.hashing import sha256_file
from recipe.steps import StepError

NAME = "patch"
TITLE = "apply the release's patch series: checked whole first, never applied twice"
DEPENDS = ("sources",)

ORIGINALS_DIR = "patch-originals"
SCRATCH_PREFIX = "patch-scratch-"  # the scratch copy, in the work dir (never the system temp)
TMP_SUFFIX = ".recipe-tmp"
KILL_HOOK_ENV = "RECIPE_TEST_KILL_AT_WRITE"


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


def _unsafe_tree_path(rel):
    """Why `rel` cannot name a file inside the tree (None when it can)."""
    if not rel or os.path.isabs(rel) or "\\" in rel or "\0" in rel:
        return "must be a path relative to the tree"
    parts = rel.split("/")
    if ".." in parts or "" in parts or "." in parts:
        return "must stay inside the tree (no '..', '.' or empty parts)"
    if parts[0] == ".git":
        return "must not point into .git"
    return None


def _read_series_lines(series_path):
    if not os.path.isfile(series_path):
        raise SeriesError("patch series not found: %s (the release config's patches.series names "
                          "it)" % series_path)
    try:
        with open(series_path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as e:
        raise SeriesError("%s: not UTF-8 text (byte %d): a series lists NNNN-name.patch and copy "
                          "lines" % (series_path, e.start))
    except OSError as e:
        raise SeriesError("cannot read the patch series %s: %s" % (series_path, e.strerror or e))


def parse_series(series_path, repo_root=REPO_ROOT):
    """Entries of a series file; every problem is reported as series:line before anything runs."""
    lines = _read_series_lines(series_path)
    folder = os.path.dirname(os.path.abspath(series_path))
    root = os.path.realpath(repo_root)
    entries, errors = [], []
    for no, raw in enumerate(lines, 1):
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
            why = _unsafe_tree_path(dest)
            if why:
                errors.append("%s: DEST %s %s" % (where, dest, why))
                continue
            full = os.path.realpath(os.path.join(root, src))
            if os.path.isabs(src) or not full.startswith(root + os.sep):
                errors.append("%s: copy source %s must be a file inside %s (relative to it)"
                              % (where, src, repo_root))
                continue
            if not os.path.isfile(full):
                errors.append("%s: copy source %s does not exist (relative to %s)" % (where, src, repo_root))
                continue
            entries.append(Entry("copy", no, text, src=full, dest=dest))
        elif len(words) == 1 and words[0].endswith(".patch"):
            if "/" in words[0] or "\\" in words[0]:
                errors.append("%s: %s: name a patch file in %s itself (no folders)"
                              % (where, words[0], folder))
                continue
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
            except OSError as err:
                errors.append("%s: cannot read %s: %s" % (where, words[0], err.strerror or err))
                continue
            if not e.files:
                errors.append("%s: %s contains no diff" % (where, words[0]))
                continue
            bad = ["%s (%s)" % (rel, _unsafe_tree_path(rel)) for rel in e.affected()
                   if _unsafe_tree_path(rel)]
            if bad:
                errors.append("%s: %s changes files outside the tree: %s" % (where, words[0], ", ".join(bad)))
                continue
            entries.append(e)
        else:
            errors.append("%s: cannot read %r (expected NNNN-name.patch or copy SRC DEST)" % (where, text))
    if errors:
        raise SeriesError("the patch series has errors (nothing was applied):\n" + "\n".join("  " + e for e in errors))
    return entries


def series_inputs(series_path, repo_root=REPO_ROOT):
    """sha256 of the series and of every file it names (the step's stamp inputs)."""
    if not os.path.isfile(series_path):
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
    return state if isinstance(state, dict) and state.get("tree") == os.path.abspath(tree) else None


def _sha(data):
    return hashlib.sha256(data).hexdigest() if data is not None else None


def _tree_file(tree, rel):
    """tree/rel, refused when a symlink inside the tree leads it outside."""
    full = os.path.join(tree, rel)
    real_tree = os.path.realpath(tree)
    if not os.path.realpath(os.path.dirname(full)).startswith(real_tree + os.sep) and \
            os.path.realpath(os.path.dirname(full)) != real_tree:
        raise StepError("%s: a symlink in the tree leads outside it (%s); the patch step writes "
                        "only inside the tree" % (rel, os.path.realpath(full)))
    return full


def _current(tree, rel):
    full = _tree_file(tree, rel)
    return _read(full) if os.path.isfile(full) else None


def recorded_base(tree, rel, state, work_dir):
    """(content before our last application, True) if we wrote the file and nobody changed it
    since; else (its current content, False)."""
    current = _current(tree, rel)
    rec = (state or {}).get("files", {}).get(rel)
    if rec and _sha(current) == rec["written"]:
        if not rec["existed"]:
            return None, True
        return _read(os.path.join(work_dir, ORIGINALS_DIR, rel)), True
    return current, False


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
    """True when the whole series is already in the tree (reverse in reverse order); the
    scratch copy is left unpatched (a copied file is taken out: the series created it)."""
    for e in reversed(entries):
        if e.kind == "copy":
            dest = os.path.join(scratch, e.dest)
            if not (os.path.isfile(dest) and _read(dest) == _read(e.src)):
                return False
            os.remove(dest)
            continue
        ok, _ = _git_apply(scratch, e.patch, reverse=True)
        if not ok:
            return False
        _git_apply(scratch, e.patch, reverse=True, check=False)
    return True


# --------------------------------------------------------------------------- writing, crash-safe

def _wrote():
    """Called after every change the step makes outside its scratch copy (a file or folder
    created, written, renamed or removed).

    Test hook: RECIPE_TEST_KILL_AT_WRITE=N[:SIGNAL] makes the process send itself SIGNAL
    (default KILL) right after its Nth change, so that the tests can stop the step at every
    write it makes and check what the next run does.
    """
    spec = os.environ.get(KILL_HOOK_ENV)
    if not spec:
        return
    _changes_made[0] += 1
    at, _, name = spec.partition(":")
    if _changes_made[0] == int(at):
        os.kill(os.getpid(), getattr(signal, "SIG" + (name or "KILL")))


_changes_made = [0]


def _tmp_name(path, token):
    """The temporary file beside `path`: unique per run (token), known to the journal."""
    return os.path.join(os.path.dirname(path), ".%s.%s%s" % (os.path.basename(path), token, TMP_SUFFIX))


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path, data):
    """A new file (must not exist), flushed to disk."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    _wrote()


def _replace(path, data, token, mode=None):
    """Give `path` the content `data` (None: remove it) through a temporary file and a rename."""
    if data is None:
        if os.path.lexists(path):
            os.remove(path)
            _wrote()
        return
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent)
        _wrote()
    tmp = _tmp_name(path, token)
    with open(tmp, "wb") as f:
        _wrote()
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    _wrote()
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)
    _wrote()


@contextlib.contextmanager
def _signals_deferred():
    """Ctrl-C or SIGTERM during the (short) write phase takes effect right after it, so
    that only SIGKILL or a crash can stop it half-way (and the journal covers those)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _remove_leftovers(work_dir):
    """What runs killed before their journal was complete left in the work dir (we hold the
    lock, so no other run is using it): scratch copies, unfinished or finished journals,
    temporary files."""
    for name in os.listdir(work_dir):
        path = os.path.join(work_dir, name)
        if name.startswith(SCRATCH_PREFIX) or name.startswith(JOURNAL_DIR + "."):
            shutil.rmtree(path, ignore_errors=True)
        elif name.endswith(TMP_SUFFIX):
            os.remove(path)


def _write_journal(work_dir, tree, token, writes, originals, state):
    """Record the whole change before the tree is touched; returns the journal's folder.

    writes: [(rel, content before or None, content after or None, mode)]; originals:
    {rel: content} for patch-originals/. Written into a staging folder, then renamed: the
    journal exists complete or not at all."""
    staging = os.path.join(work_dir, "%s.%s.staging" % (JOURNAL_DIR, token))
    os.makedirs(os.path.join(staging, "data"))
    _wrote()
    records, kept = [], []
    for i, (rel, before, after, mode) in enumerate(writes):
        if after is not None:
            _write_new(os.path.join(staging, "data", "w%d" % i), after)
        records.append({"path": rel, "before": _sha(before), "after": _sha(after), "mode": mode,
                        "data": "data/w%d" % i})
    for i, (rel, data) in enumerate(sorted(originals.items())):
        _write_new(os.path.join(staging, "data", "o%d" % i), data)
        kept.append({"path": rel, "data": "data/o%d" % i})
    _write_new(os.path.join(staging, "journal.json"), json.dumps(
        {"tree": tree, "token": token, "pid": os.getpid(), "writes": records,
         "originals": kept, "state": state}, indent=1, sort_keys=True).encode())
    _fsync_dir(os.path.join(staging, "data"))
    _fsync_dir(staging)
    final = os.path.join(work_dir, JOURNAL_DIR)
    os.rename(staging, final)
    _wrote()
    _fsync_dir(work_dir)
    return final


def _roll_forward(journal_dir, work_dir):
    """Make the tree, patch-originals/ and the state what the journal says, then drop the
    journal. Idempotent: a run killed in here is completed by the next one the same way."""
    with open(os.path.join(journal_dir, "journal.json"), encoding="utf-8") as f:
        journal = json.load(f)
    tree, token = journal["tree"], journal["token"]
    for rec in journal["originals"]:
        dest = os.path.join(work_dir, ORIGINALS_DIR, rec["path"])
        data = _read(os.path.join(journal_dir, rec["data"]))
        if os.path.lexists(_tmp_name(dest, token)):
            os.remove(_tmp_name(dest, token))
            _wrote()
        if not (os.path.isfile(dest) and _read(dest) == data):
            _replace(dest, data, token)
    changed = []
    for rec in journal["writes"]:
        full = _tree_file(tree, rec["path"])
        if os.path.lexists(_tmp_name(full, token)):
            os.remove(_tmp_name(full, token))
            _wrote()
        now = _sha(_read(full)) if os.path.isfile(full) else None
        changed.append(rec["path"])
        if now == rec["after"]:
            continue
        if now != rec["before"]:
            raise StepError(
                "%s was changed while a patch run was interrupted (it is neither the content "
                "before nor after that run): restore it (git checkout, or unpack the tree again) "
                "and run again, or remove %s to give up the interrupted change" % (full, journal_dir))
        data = None if rec["after"] is None else _read(os.path.join(journal_dir, rec["data"]))
        _replace(full, data, token, rec["mode"])
    _replace(os.path.join(work_dir, STATE_FILE),
             json.dumps(journal["state"], indent=1, sort_keys=True).encode(), token)
    done = os.path.join(work_dir, "%s.%s.done" % (JOURNAL_DIR, token))
    os.rename(journal_dir, done)
    _wrote()
    shutil.rmtree(done)
    _wrote()
    return changed


def complete_interrupted(work_dir, log=print):
    """Finish what a killed run left (the caller holds the work-dir lock); returns the files
    the interrupted change wrote, or None when there was nothing to finish."""
    if not os.path.isdir(work_dir):
        return None
    _remove_leftovers(work_dir)
    journal_dir = os.path.join(work_dir, JOURNAL_DIR)
    if not os.path.isdir(journal_dir):
        return None
    log("patch: an earlier run was interrupted while writing the tree; completing its change "
        "(journal %s)" % journal_dir)
    with _signals_deferred():
        return _roll_forward(journal_dir, work_dir)


# --------------------------------------------------------------------------- the whole operation

def apply_series(series_path, tree, work_dir, repo_root=REPO_ROOT, log=print):
    """Check the whole series on a scratch copy, then write the result into `tree`.

    Returns {"entries": [(label, status)], "changed": [paths]}. On any problem the tree is
    left exactly as it was; a run stopped while writing is completed by the next one (the
    journal). Holds the work-dir lock (Busy when another run has it).
    """
    tree = os.path.abspath(tree)
    entries = parse_series(series_path, repo_root)
    with locks.hold(work_dir):
        complete_interrupted(work_dir, log)
        return _apply_locked(entries, tree, work_dir, log)


def _apply_locked(entries, tree, work_dir, log):
    state = load_state(work_dir, tree)
    series_files = []
    for e in entries:
        for rel in e.affected():
            if rel not in series_files:
                series_files.append(rel)
    affected = series_files + [rel for rel in (state or {}).get("files", {}) if rel not in series_files]
    base, ours = {}, {}
    for rel in affected:
        base[rel], ours[rel] = recorded_base(tree, rel, state, work_dir)
    current = {rel: _current(tree, rel) for rel in affected}

    scratch_root = tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=work_dir)
    _wrote()
    try:
        if not all(ours[rel] for rel in series_files):
            # Files we did not write (a first run, a fresh work dir, an edit since our run): if
            # the whole series is already in them, their unpatched content is the base, so an
            # already patched tree (with edits elsewhere in its files) is no conflict.
            unpatched = _unpatched_contents(entries, tree, series_files, scratch_root)
            if unpatched is not None:
                base.update({rel: unpatched[rel] for rel in series_files if not ours[rel]})
        scratch = os.path.join(scratch_root, "tree")
        os.makedirs(scratch)
        statuses = simulate(entries, tree, scratch, scratch_root, base)
        # the new content of every affected file, decided before the tree is touched
        result, modes = {}, {}
        for rel in affected:
            p = os.path.join(scratch, rel)
            result[rel] = _read(p) if os.path.isfile(p) else None
            modes[rel] = stat.S_IMODE(os.stat(p).st_mode) if result[rel] is not None else None
        if result == current:
            statuses = ["already applied"] * len(entries)
        changed = _commit(tree, work_dir, affected, base, result, current, modes)
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
    log_entries(entries, statuses, log)
    return {"entries": [(e.label, s) for e, s in zip(entries, statuses)], "changed": changed}


def log_entries(entries, statuses, log):
    for e, s in zip(entries, statuses):
        log("  %-48s %s" % (e.label, s))


def _unpatched_contents(entries, tree, rels, tmp):
    """{rel: content without the series} when the whole series is in the tree, else None."""
    scratch = os.path.join(tmp, "reverse")
    os.makedirs(scratch)
    for rel in rels:
        src = _tree_file(tree, rel)
        if os.path.isfile(src):
            dest = os.path.join(scratch, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(src, dest)
    if not _all_reverse_apply(entries, scratch):
        return None
    return {rel: _read(os.path.join(scratch, rel)) if os.path.isfile(os.path.join(scratch, rel))
            else None for rel in rels}


def _commit(tree, work_dir, affected, base, result, current, modes):
    """Write the new contents (journal first); keep the originals in the work dir so a later
    series can start over. Returns the files changed in the tree."""
    files, originals = {}, {}
    for rel in affected:
        new = result[rel]
        if new != base[rel]:
            files[rel] = {"existed": base[rel] is not None, "written": _sha(new)}
            if base[rel] is not None:
                kept = os.path.join(work_dir, ORIGINALS_DIR, rel)
                if not (os.path.isfile(kept) and _read(kept) == base[rel]):
                    originals[rel] = base[rel]
    # (a file only an earlier series touched has new == base: it is put back here)
    writes = [(rel, current[rel], result[rel], modes[rel]) for rel in affected
              if result[rel] != current[rel]]
    state = {"tree": tree, "files": files}
    token = "%d-%s" % (os.getpid(), os.urandom(4).hex())
    if not writes and not originals:
        if load_state(work_dir, tree) != state:
            _replace(os.path.join(work_dir, STATE_FILE),
                     json.dumps(state, indent=1, sort_keys=True).encode(), token)
        return []
    with _signals_deferred():
        journal = _write_journal(work_dir, tree, token, writes, originals, state)
        _roll_forward(journal, work_dir)
    return [rel for rel, _, _, _ in writes]


# --------------------------------------------------------------------------- step interface

def describe(plan):
    series = plan.series_path
    inputs = series_inputs(series)
    inputs["tree"] = plan.source_dir
    errors = []
    if inputs.get("series") is None:
        errors.append("patch series %s does not exist (patches.series in %s)"
                      % (series, plan.release["_file"]))
    elif inputs.get("error"):
        errors.append(inputs["error"])
    cmds = ["# every entry of %s is checked on a scratch copy of the affected files first:" % series,
            "git apply --check [--reverse] NNNN-name.patch   # forward = to apply, reverse = already applied",
            "# then the change is journaled in %s/%s and written into %s (originals kept in %s/%s)"
            % (plan.work_dir, JOURNAL_DIR, plan.source_dir, plan.work_dir, ORIGINALS_DIR)]
    return {"skip": None, "commands": cmds, "inputs": inputs, "errors": errors,
            "outputs": [os.path.join(plan.work_dir, STATE_FILE)]}


def run_first_with_only(plan):
    """`--only patch --source DIR`: the sources step's version and dirty-tree checks first."""
    return ("sources",) if plan.source_given else ()


def run(ctx):
    plan = ctx.plan
    with locks.hold(plan.work_dir):
        complete_interrupted(plan.work_dir, ctx.log)
        res = apply_series(plan.series_path, plan.source_dir, plan.work_dir, log=ctx.log)
    applied = sum(1 for _, s in res["entries"] if s == "applies")
    ctx.log("%d entries: %d applied now, %d already there; %d files changed" % (
        len(res["entries"]), applied, len(res["entries"]) - applied, len(res["changed"])))
    return {"entries": res["entries"], "changed": res["changed"],
            "series": series_inputs(plan.series_path)}
