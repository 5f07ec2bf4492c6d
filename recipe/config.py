"""Configs: YAML files under configs/, validated against configs/schema.yaml.

Every error names the file and line (`configs/targets/x.yaml:7:3: ...`), says what was
expected (the allowed values, the type, "did you mean ..." for a typo'd key), and all
errors of a file are reported together. Nothing runs when a config is wrong: callers
get a ConfigError before any plan exists.

The loader keeps YAML's node marks: `load_yaml()` returns the plain data plus a map
from a key path (`("cpu", "features", "sve")`) to its (line, column).
"""
from __future__ import annotations

import difflib
import os
import re

import yaml

from recipe import REPO_ROOT
from recipe.errors import BadInput

CONFIG_DIR = os.path.join(REPO_ROOT, "configs")

TYPE_NAMES = {"str": str, "int": int, "bool": bool, "float": float, "map": dict, "list": list}


class ConfigError(BadInput):
    """One or more config problems, each already formatted as `file:line:col: message`."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("configuration error (nothing was run):\n" +
                         "\n".join("  " + e for e in self.errors))


# --------------------------------------------------------------------------- loading

def load_yaml(path):
    """Parse one YAML document; return (data, marks) where marks[keypath] = (line, col), 1-based."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, {(): (1, 1)}
        marks = {}
        data = _to_python(loader, node, (), marks, path)
        return data, marks
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = "%s:%d:%d" % (_rel(path), mark.line + 1, mark.column + 1) if mark else _rel(path)
        raise ConfigError(["%s: YAML syntax error: %s" % (where, e.problem or e)])
    finally:
        loader.dispose()


def _to_python(loader, node, keypath, marks, path):
    marks[keypath] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise ConfigError(["%s:%d:%d: duplicate key '%s'" % (
                    _rel(path), key_node.start_mark.line + 1, key_node.start_mark.column + 1, key)])
            out[key] = _to_python(loader, value_node, keypath + (key,), marks, path)
            # errors about a key itself (unknown key) point at the key, not its value
            marks[keypath + (key, "<key>")] = (key_node.start_mark.line + 1,
                                                 key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(loader, item, keypath + (i,), marks, path)
                for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _rel(path):
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


# --------------------------------------------------------------------------- validation

_schema_cache = {}


def load_schema(config_dir=CONFIG_DIR):
    path = os.path.join(config_dir, "schema.yaml")
    if not os.path.exists(path):
        path = os.path.join(CONFIG_DIR, "schema.yaml")
    if path not in _schema_cache:
        schema, _ = load_yaml(path)  # a syntax error: ConfigError with file:line
        kinds = ("target", "release", "aliases")
        if not isinstance(schema, dict) or not all(isinstance(schema.get(k), dict) for k in kinds):
            raise ConfigError(["%s: a schema must map each of %s to its spec; restore it from "
                               "the recipe's repository" % (_rel(path), ", ".join(kinds))])
        _schema_cache[path] = schema
    return _schema_cache[path]


def validate(data, spec, path, marks, what):
    """Check `data` against a schema `spec`; return a list of formatted errors."""
    errors = []
    _check(data, spec, (), what, path, marks, errors)
    return errors


def _where(path, marks, keypath):
    for i in range(len(keypath), -1, -1):
        if keypath[:i] in marks:
            line, col = marks[keypath[:i]]
            return "%s:%d:%d" % (_rel(path), line, col)
    return _rel(path)


def _label(what, keypath):
    return ".".join([what] + [str(k) for k in keypath]) if keypath else what


def _type_ok(value, tname):
    if tname == "any":
        return True
    if tname == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if tname == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, TYPE_NAMES[tname])


def _check(value, spec, keypath, what, path, marks, errors):
    where = _where(path, marks, keypath)
    label = _label(what, keypath)
    if value is None:
        if not spec.get("nullable"):
            errors.append("%s: '%s' must not be empty (expected %s)" % (where, label, _describe(spec)))
        return
    types = spec.get("type", "any")
    types = types if isinstance(types, list) else [types]
    if not any(_type_ok(value, t) for t in types):
        hint = ""
        if "str" in types and isinstance(value, (int, float)) and not isinstance(value, bool):
            hint = " (a version like 3.10 must be quoted: \"3.10\", or YAML reads it as a number)"
        errors.append("%s: '%s' must be %s, got %s %r%s" % (
            where, label, " or ".join(_a(t) for t in types), type(value).__name__, value, hint))
        return
    allowed = spec.get("allowed")
    if allowed is not None and value not in allowed:
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        errors.append("%s: '%s' is %r; allowed values: %s%s" % (
            where, label, value, ", ".join(str(a) for a in allowed),
            "; did you mean '%s'?" % close[0] if close else ""))
    pattern = spec.get("pattern")
    if pattern and isinstance(value, str) and not re.match(pattern, value):
        errors.append("%s: '%s' is %r, which does not match %s%s" % (
            where, label, value, pattern, " (%s)" % spec["example"] if spec.get("example") else ""))
    if isinstance(value, dict):
        fields = spec.get("fields")
        if fields is not None:
            for key in value:
                if key not in fields:
                    close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
                    errors.append("%s: unknown key '%s' in %s; %sallowed keys: %s" % (
                        _where(path, marks, keypath + (key, "<key>")), key, label,
                        "did you mean '%s'? " % close[0] if close else "", ", ".join(fields)))
            for key, sub in fields.items():
                if key in value:
                    _check(value[key], sub, keypath + (key,), what, path, marks, errors)
                elif sub.get("required"):
                    errors.append("%s: %s is missing the required key '%s' (%s)" % (
                        where, label, key, _describe(sub)))
        elif "values" in spec:
            for key, item in value.items():
                if not isinstance(key, str):
                    errors.append("%s: key %r in %s must be a string" % (where, key, label))
                _check(item, spec["values"], keypath + (key,), what, path, marks, errors)
    if isinstance(value, list) and "items" in spec:
        for i, item in enumerate(value):
            _check(item, spec["items"], keypath + (i,), what, path, marks, errors)


def _a(tname):
    return {"str": "a string", "int": "an integer", "bool": "a boolean (true/false)",
            "float": "a number", "map": "a mapping", "list": "a list", "any": "anything"}[tname]


def _describe(spec):
    types = spec.get("type", "any")
    types = types if isinstance(types, list) else [types]
    text = " or ".join(_a(t) for t in types)
    if spec.get("allowed"):
        text += ", one of: " + ", ".join(str(a) for a in spec["allowed"])
    if spec.get("doc"):
        text += "; " + spec["doc"]
    return text


# --------------------------------------------------------------------------- the config set

class Configs:
    """All targets, aliases and releases of one config directory, validated."""

    def __init__(self, config_dir=CONFIG_DIR):
        missing = [d for d in ("targets", "releases") if not os.path.isdir(os.path.join(config_dir, d))]
        if missing:
            raise ConfigError(["%s: not a config folder (no %s/ in it); name the folder that holds "
                               "targets/ and releases/" % (_rel(config_dir), " or ".join(missing))])
        self.dir = config_dir
        self.schema = load_schema(config_dir)
        self._targets = {}
        self._releases = {}
        self._aliases = None

    # -- names
    def target_names(self):
        return sorted(f[:-5] for f in os.listdir(os.path.join(self.dir, "targets"))
                      if f.endswith(".yaml"))

    def release_names(self):
        return sorted((f[:-5] for f in os.listdir(os.path.join(self.dir, "releases"))
                       if f.endswith(".yaml")), key=_version_key)

    def latest_release(self):
        names = self.release_names()
        if not names:
            raise ConfigError(["%s: no release configs" % _rel(os.path.join(self.dir, "releases"))])
        return names[-1]

    # -- loading
    def _load(self, path, kind):
        data, marks = load_yaml(path)
        errors = validate(data, self.schema[kind], path, marks, kind)
        stem = os.path.basename(path)[:-5]
        if not errors and kind in ("target", "release") and data.get("name") != stem:
            errors.append("%s: %s name '%s' must match the file name '%s'" % (
                _where(path, marks, ("name",)), kind, data.get("name"), stem))
        if errors:
            raise ConfigError(errors)
        data["_file"] = _rel(path)
        return data

    def aliases(self):
        if self._aliases is None:
            path = os.path.join(self.dir, "aliases.yaml")
            self._aliases = self._load(path, "aliases") if os.path.exists(path) else {}
            self._aliases.pop("_file", None)
            for name, alias in self._aliases.items():
                unknown = [c for c in alias["candidates"] if c not in self.target_names()]
                if unknown or alias["default"] not in alias["candidates"]:
                    raise ConfigError(["%s: alias '%s' names unknown targets: %s" % (
                        _rel(path), name, ", ".join(unknown or [alias["default"]]))])
        return self._aliases

    def target(self, name):
        if name not in self._targets:
            path = os.path.join(self.dir, "targets", name + ".yaml")
            if not os.path.exists(path):
                known = self.target_names() + sorted(self.aliases())
                close = difflib.get_close_matches(name, known, n=1)
                raise ConfigError(["unknown target '%s'; %sknown targets: %s (see `python build.py list`)" % (
                    name, "did you mean '%s'? " % close[0] if close else "", ", ".join(known))])
            self._targets[name] = self._load(path, "target")
        return self._targets[name]

    def release(self, name):
        if name not in self._releases:
            path = os.path.join(self.dir, "releases", name + ".yaml")
            if not os.path.exists(path):
                known = self.release_names()
                close = difflib.get_close_matches(name, known, n=1)
                raise ConfigError(["unknown release '%s'; %sknown releases: %s" % (
                    name, "did you mean '%s'? " % close[0] if close else "", ", ".join(known))])
            self._releases[name] = self._load(path, "release")
        return self._releases[name]

    def validate_all(self):
        """Load every file; return all errors (used by tests and `list`)."""
        errors = []
        for loader, names in ((self.target, self.target_names()), (self.release, self.release_names())):
            for name in names:
                try:
                    loader(name)
                except ConfigError as e:
                    errors.extend(e.errors)
        try:
            self.aliases()
        except ConfigError as e:
            errors.extend(e.errors)
        return errors


def _version_key(text):
    return [int(p) if p.isdigit() else p for p in re.split(r"[.\-]", text)]


def version_tuple(text):
    """'3.10' -> (3, 10); '12.6' -> (12, 6); '2.6.0a0' -> (2, 6, 0)."""
    return tuple(int(p) for p in re.findall(r"\d+", re.match(r"[\d.]+", str(text)).group(0).strip(".")))
