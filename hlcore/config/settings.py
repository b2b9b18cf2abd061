"""Settings: the packaged defaults, a user's partial file over them, validated as data.

Owns `config/settings.yaml` (the only place defaults live) and `config/schema.yaml` (a cerberus
schema plus cross-field `checks:`). Python here interprets those two files: it holds no default
and no threshold, so changing one is a one-line YAML change. Every problem found is collected
and raised together as one `BadInput` naming file, line and dotted path (copytrader §7, monitor §7).
Secrets never enter settings; they come from the environment, checked by `check_env`.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cerberus.errors import REQUIRED_FIELD, UNKNOWN_FIELD, BasicErrorHandler, ValidationError
from cerberus.schema import SchemaError
from dotenv import load_dotenv

from hlcore import consulted
from hlcore.config.hashing import redact_url
from hlcore.config.ranges import StrictNumbers, checks_off, non_finite, schema_problems
from hlcore.errors import BadInput, Problem
from hlcore.resources import default_dir
from hlcore.yamlsource import PathKey, Source, format_path, load_yaml, read_text

SETTINGS_FILE = "settings.yaml"
SCHEMA_FILE = "schema.yaml"

# Run modes and their secrets are the CLI contract of copytrader §1/§7, not tunable policy.
RUN_MODES = ("live", "dry-run", "backfill-only")
DEFAULT_MODE = "dry-run"  # the safe mode (never sends an order): every command's --mode default
WALLET_ENV = "HYPERLIQUID_TARGET_WALLET"
BINANCE_KEY_ENV = "BINANCE_API_KEY"
BINANCE_SECRET_ENV = "BINANCE_API_SECRET"
WALLET_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")

_Origins = dict[PathKey, tuple[str, int]]


# --------------------------------------------------------------------------- Settings value


@dataclass(frozen=True)
class Settings:
    """Validated settings as a plain dict with dotted access.

    Attributes:
        data: the merged, validated settings (treat as read-only; `to_dict` gives a copy).
        maps: dotted paths of dict-valued settings (`meta: {map: true}` in the schema), which
            `keys()` lists as leaves while their entries stay addressable.
        file: the user file it was loaded from, or None for the defaults alone.
        base_dir: the absolute folder of that file, against which relative paths such as
            `db_path` resolve (not the current directory: `live` started elsewhere must find the
            same database); None for the defaults alone (then the current directory).
    """

    data: dict[str, Any]
    maps: frozenset[str] = frozenset()
    file: str | None = None
    # Settings at a value the schema says turns a check off (`meta.off`), located: validate warns.
    checks_off: tuple[Problem, ...] = ()
    base_dir: str | None = None

    def path(self, dotted: str) -> Path:
        """A path setting made absolute: relative to the config file's folder (`base_dir`)."""
        value = Path(str(self.get(dotted))).expanduser()
        if value.is_absolute():
            return value
        return (Path(self.base_dir) if self.base_dir else Path.cwd()) / value

    def get(self, dotted: str) -> Any:
        """`get("safety.warn_threshold")`; a section or map comes back as a copy."""
        consulted.note("settings", dotted)
        node: Any = self.data
        walked: list[str] = []
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                where = f" under '{'.'.join(walked)}'" if walked else ""
                raise KeyError(f"unknown setting '{dotted}': no key '{part}'{where}")
            node = node[part]
            walked.append(part)
        return copy.deepcopy(node) if isinstance(node, dict | list) else node

    def has(self, dotted: str) -> bool:
        try:
            self.get(dotted)
        except KeyError:
            return False
        return True

    def keys(self) -> list[str]:
        """Every dotted leaf path, sorted; a map is a leaf and so is each of its entries."""
        return sorted(self._leaves(self.data, ""))

    def _leaves(self, node: dict[str, Any], prefix: str) -> Iterator[str]:
        for key, value in node.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                if dotted in self.maps:
                    yield dotted
                yield from self._leaves(value, dotted)
            else:
                yield dotted

    def to_dict(self) -> dict[str, Any]:
        consulted.note("settings", consulted.ALL)
        return copy.deepcopy(self.data)


# --------------------------------------------------------------------------- loading


_VALIDATED: dict[tuple[str, bytes | None, str | None], Settings] = {}


def _stamp(config_dir: Path) -> str:
    """Sizes and mtimes of the packaged defaults and schema: an edited one is validated afresh."""
    stats = [(config_dir / name).stat() for name in (SETTINGS_FILE, SCHEMA_FILE)]
    return f"{config_dir}|" + "|".join(f"{st.st_size}:{st.st_mtime_ns}" for st in stats)


def load_settings(path: Path | None, mode: str | None = None) -> Settings:
    """Defaults, then the user's file deep-merged over them, validated by schema and checks.

    `mode` (a run mode) also runs the checks declared with `modes:` for it, e.g. live needs a
    gap window. Raises one BadInput holding every problem; never a traceback for bad input.
    A process keeps what it validated, by (defaults, file content, mode): a drill boots the app
    and runs operator commands many times over the same settings, and cerberus is most of the
    cost. Bad input is never kept (it is reported afresh, with its file and line).
    """
    raw = read_text(path) if path is not None else None  # bounded: a fifo or /dev/zero is bad input, not a hang
    where = str(path.resolve()) if path is not None else None  # relative paths resolve against the file's folder
    key = (_stamp(default_dir("config")), where, raw, mode)
    cached = _VALIDATED.get(key)
    if cached is None:
        cached = _VALIDATED[key] = _load_settings(path, mode)
        while len(_VALIDATED) > 32:
            _VALIDATED.pop(next(iter(_VALIDATED)))
    return cached if path is None or cached.file == str(path) else replace(cached, file=str(path))


def _load_settings(path: Path | None, mode: str | None) -> Settings:
    user = load_yaml(path) if path is not None else None  # first: a hostile file fails before any other work
    config_dir = default_dir("config")
    defaults = _packaged(config_dir / SETTINGS_FILE)
    schema_src = _packaged(config_dir / SCHEMA_FILE)
    schema, checks = _split_schema_file(schema_src)
    schema = copy.deepcopy(schema)  # cerberus may normalise it in place; the cached Source stays pristine
    if mode is not None and mode not in RUN_MODES:
        raise BadInput(Problem("", "mode", f"unknown run mode '{mode}', expected one of {list(RUN_MODES)}"))

    if not isinstance(defaults.data, dict):
        raise BadInput(defaults.problem((), "top level must be a mapping of settings"))
    origins: _Origins = {p: (defaults.file, line) for p, line in defaults.lines.items()}
    merged = copy.deepcopy(defaults.data)
    user_file = None
    if user is not None:
        user_file = user.file
        data = {} if user.data is None else user.data
        if not isinstance(data, dict):
            raise BadInput(user.problem((), f"top level must be a mapping of settings, got {_kind(data)}"))
        _merge(merged, data, (), schema, user, origins)

    problems = [_locate(p, origins, "must be a finite number") for p in non_finite(merged)]
    if problems:  # the reader refuses .nan/.inf; this guards every other way a value gets in
        raise BadInput(problems)
    problems, bad_paths = _validate(merged, schema, origins, schema_src.file)
    problems += _Checker(merged, origins, bad_paths, mode, user_file).run(checks, schema_src)
    if problems:
        raise BadInput(sorted(problems, key=lambda p: (p.file, p.line or 0, p.path)))
    off = tuple(_locate(_path_key(c.dotted), origins, c.message()) for c in checks_off(schema, merged, defaults.data))
    return Settings(data=merged, maps=frozenset(_map_paths(schema, "")), file=user_file, checks_off=off,
                    base_dir=str(path.resolve().parent) if path is not None else None)


_PACKAGED: dict[tuple[str, str, int, int], Source] = {}


def _packaged(path: Path) -> Source:
    """The packaged defaults or schema, parsed once per file version: a drill or a fuzz run loads
    settings hundreds of times, and parsing the two files was most of the cost. Callers copy
    before changing anything (`_merge` works on a deep copy)."""
    display = _display(path)
    try:
        info = path.stat()
        key = (str(path), display, info.st_size, info.st_mtime_ns)
    except OSError:
        return load_yaml(path, display)  # reports the problem
    src = _PACKAGED.get(key)
    if src is None:
        src = _PACKAGED[key] = load_yaml(path, display)
        while len(_PACKAGED) > 8:
            _PACKAGED.pop(next(iter(_PACKAGED)))
    return src


def _display(path: Path) -> str:
    """The defaults' file name as an operator would type it: relative when under the cwd."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _split_schema_file(src: Source) -> tuple[dict[str, Any], list[Any]]:
    data = src.data
    if not isinstance(data, dict) or not isinstance(data.get("schema"), dict):
        raise BadInput(src.problem((), "expected a mapping with `schema:` (and `checks:`)"))
    extra = set(data) - {"schema", "checks", "_shapes"}
    if extra:
        raise BadInput([src.problem((k,), "unknown top-level key") for k in sorted(extra)])
    checks = data.get("checks") or []
    if not isinstance(checks, list):
        raise BadInput(src.problem(("checks",), "must be a list"))
    problems = schema_problems(data["schema"], src)
    if problems:
        raise BadInput(problems)
    return data["schema"], checks


def _merge(
    base: dict[str, Any],
    user: dict[str, Any],
    path: PathKey,
    rules: Mapping[str, Any] | None,
    src: Source,
    origins: _Origins,
) -> None:
    """Deep-merge `user` into `base` in place, recording which file each value now comes from.

    Sections (and maps with fixed keys) merge key by key; lists, scalars and free-keyed maps
    replace the default whole, so a user can drop a default symbol mapping.
    """
    for key, value in user.items():
        kpath = (*path, key)
        rule = rules.get(key) if isinstance(rules, Mapping) else None
        sub = _dict_schema(rule)
        current = base.get(key)
        if isinstance(current, dict) and sub is not None and (isinstance(value, dict) or value is None):
            origins[kpath] = (src.file, src.lines.get(kpath, 0))
            _merge(current, value or {}, kpath, sub, src, origins)  # `section:` alone = no overrides
            continue
        for known in [p for p in origins if p[: len(kpath)] == kpath]:
            del origins[known]
        for p, line in src.lines.items():
            if p[: len(kpath)] == kpath:
                origins[p] = (src.file, line)
        base[key] = copy.deepcopy(value)


def _dict_schema(rule: Any) -> Mapping[str, Any] | None:
    """The field rules of a dict rule with fixed keys, else None."""
    if isinstance(rule, Mapping) and rule.get("type") == "dict" and isinstance(rule.get("schema"), Mapping):
        return rule["schema"]
    return None


def _map_paths(rules: Mapping[str, Any], prefix: str) -> Iterator[str]:
    for key, rule in rules.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(rule, Mapping) and isinstance(rule.get("meta"), Mapping) and rule["meta"].get("map"):
            yield dotted
        sub = _dict_schema(rule)
        if sub is not None:
            yield from _map_paths(sub, dotted)


def _locate(path: Sequence[str | int], origins: _Origins, message: str) -> Problem:
    key = tuple(path)
    while key and key not in origins:
        key = key[:-1]
    file, line = origins.get(key) or origins.get((), ("", 0))
    return Problem(file=file, path=format_path(path), message=message, line=line or None)


# --------------------------------------------------------------------------- schema


def _validate(
    merged: dict[str, Any], schema: dict[str, Any], origins: _Origins, schema_file: str
) -> tuple[list[Problem], set[PathKey]]:
    """Cerberus over the merged document; also returns the rejected paths so checks skip them."""
    try:
        validator = StrictNumbers(schema, require_all=True, allow_unknown=False)
    except SchemaError as exc:
        raise BadInput(Problem(schema_file, "schema", f"invalid cerberus schema: {exc}")) from None
    if validator.validate(merged):
        return [], set()
    errors = list(_flatten(validator._errors))  # the raw ValidationErrors carry path, rule and value
    problems = [_locate(e.document_path, origins, _message(e)) for e in errors]
    return problems, {tuple(e.document_path) for e in errors}


def _flatten(errors: Iterable[ValidationError]) -> Iterator[ValidationError]:
    """Leaf errors only: a group error (a sub-document failed) is reported through its children."""
    for error in errors:
        if error.is_group_error and error.child_errors:
            yield from _flatten(error.child_errors)
        else:
            yield error


def _show(value: Any) -> str:
    return repr(redact_url(value)) if isinstance(value, str) else repr(value)


def _message(error: ValidationError) -> str:
    """One line saying what was expected and what was found."""
    rule, want, got = error.rule, error.constraint, error.value
    if error.code == UNKNOWN_FIELD.code:
        return "unknown key"
    if error.code == REQUIRED_FIELD.code:
        return "required key missing"
    if rule == "type":
        kinds = " or ".join(want) if isinstance(want, list) else want
        return f"expected {kinds}, got {_kind(got)} {_show(got)}"
    if rule == "nullable":
        return "must not be null"
    if rule == "allowed":
        return f"must be one of {want}, got {_show(got)}"
    if rule == "min":
        return f"must be >= {want}, got {got!r}"
    if rule == "max":
        return f"must be <= {want}, got {got!r}"
    if rule == "regex":
        return f"must match {want}, got {_show(got)}"
    if rule == "empty":
        return "must not be empty"
    if rule in ("minlength", "maxlength", "items"):
        expected = len(want) if rule == "items" else want
        bound = {"minlength": "at least ", "maxlength": "at most ", "items": "exactly "}[rule]
        return f"must have {bound}{expected} items, got {len(got)}"
    template = BasicErrorHandler.messages.get(error.code, "invalid value")
    return template.format(*error.info, constraint=want, field=error.field, value=got)


# --------------------------------------------------------------------------- cross-field checks

_COMPARE: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "lt": (lambda a, b: a < b, "less than"),
    "le": (lambda a, b: a <= b, "at most"),
    "gt": (lambda a, b: a > b, "greater than"),
    "ge": (lambda a, b: a >= b, "at least"),
}
_FLIPPED = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}
_UNARY = ("positive", "increasing", "is_true")


class _CheckError(Exception):
    """A malformed check in schema.yaml (a bug in the shipped schema, reported with its line)."""


@dataclass
class _Operand:
    """A resolved check operand: its value, a readable label, and the settings it read."""

    value: Any
    label: str
    paths: list[str] = field(default_factory=list)


@dataclass
class _Checker:
    """Evaluates the declared cross-field rules over the merged settings."""

    data: dict[str, Any]
    origins: _Origins
    bad_paths: set[PathKey]
    mode: str | None
    user_file: str | None

    def run(self, checks: list[Any], schema_src: Source) -> list[Problem]:
        problems: list[Problem] = []
        for index, check in enumerate(checks):
            try:
                problems += self.check(check)
            except _CheckError as exc:
                problems.append(schema_src.problem(("checks", index), f"invalid check: {exc}"))
            except TypeError as exc:  # e.g. a list compared with a number: a broken check
                problems.append(schema_src.problem(("checks", index), f"check cannot be evaluated: {exc}"))
        return problems

    def check(self, check: Any) -> list[Problem]:
        if not isinstance(check, dict):
            raise _CheckError("must be a mapping")
        ops = [k for k in check if k in _COMPARE or k in _UNARY]
        if len(ops) != 1 or set(check) - {*ops, "message", "modes"}:
            raise _CheckError(f"needs exactly one of {[*_COMPARE, *_UNARY]}, plus optional message/modes")
        modes = check.get("modes")
        if modes is not None and (not isinstance(modes, list) or set(modes) - set(RUN_MODES)):
            raise _CheckError(f"modes must be a list of {list(RUN_MODES)}")
        if modes is not None and self.mode not in modes:
            return []
        op, args = ops[0], check[ops[0]]
        note = f"; {check['message']}" if check.get("message") else ""
        if op in _COMPARE:
            return self.compare(op, args, note)
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            raise _CheckError(f"{op} takes a list of dotted paths")
        problems = []
        for dotted in args:
            value = self.operand(dotted).value
            if self.skipped([dotted]) or value is None:
                continue
            failed = _unary_failure(op, value)
            if failed:
                problems.append(_locate(_path_key(dotted), self.origins, f"{failed}, got {value!r}{note}"))
        return problems

    def compare(self, op: str, args: Any, note: str) -> list[Problem]:
        """A failed comparison is reported at the side the user wrote, phrased from that side."""
        if not isinstance(args, list) or len(args) != 2:
            raise _CheckError(f"{op} takes two operands")
        left, right = self.operand(args[0]), self.operand(args[1])
        if not left.paths:
            raise _CheckError("the first operand must read a setting")
        if self.skipped(left.paths + right.paths) or left.value is None or right.value is None:
            return []
        if _COMPARE[op][0](left.value, right.value):
            return []
        if all(isinstance(a, str) for a in args):
            if self.by_user(right.paths) and not self.by_user(left.paths):
                op, left, right = _FLIPPED[op], right, left
            message = f"must be {_COMPARE[op][1]} {right.label}, got {left.value!r}{note}"
            return [_locate(_path_key(left.paths[0]), self.origins, message)]
        blamed = (self.by_user(left.paths + right.paths) or left.paths)[0]
        message = f"{left.label} must be {_COMPARE[op][1]} {right.label}{note}"
        return [_locate(_path_key(blamed), self.origins, message)]

    def operand(self, spec: Any) -> _Operand:
        if isinstance(spec, str):
            value = self.lookup(spec)
            return _Operand(value, f"{spec} ({value!r})", [spec])
        if isinstance(spec, dict) and len(spec) == 1:
            ((op, args),) = spec.items()
            if op == "mul" and isinstance(args, list) and args:
                parts = [self.factor(a) for a in args]
                product = math.prod(p.value for p in parts)
                label = " * ".join(p.paths[0] if p.paths else repr(p.value) for p in parts)
                return _Operand(product, f"{label} ({product!r})", [q for p in parts for q in p.paths])
            if (
                op == "pct"
                and isinstance(args, list)
                and len(args) == 2
                and all(isinstance(a, str) for a in args)
            ):
                share, whole = self.lookup(args[0]), self.lookup(args[1])
                value = share * whole / 100
                return _Operand(value, f"{args[0]}% of {args[1]} ({value!r})", list(args))
        raise _CheckError(f"operand must be a dotted path, {{mul: [...]}} or {{pct: [P, Q]}}, got {spec!r}")

    def factor(self, spec: Any) -> _Operand:
        if isinstance(spec, int | float) and not isinstance(spec, bool):
            return _Operand(spec, repr(spec))
        return self.operand(spec)

    def lookup(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise _CheckError(f"refers to unknown setting '{dotted}'")
            node = node[part]
        return node

    def skipped(self, paths: list[str]) -> bool:
        """True when the schema already rejected one of these values: no second, confusing error."""
        keys = [_path_key(p) for p in paths]
        return any(b[: len(k)] == k or k[: len(b)] == b for k in keys for b in self.bad_paths)

    def by_user(self, paths: list[str]) -> list[str]:
        return [p for p in paths if _locate(_path_key(p), self.origins, "").file == self.user_file]


def _path_key(dotted: str) -> PathKey:
    return tuple(dotted.split("."))


def _unary_failure(op: str, value: Any) -> str | None:
    if op == "positive":
        return None if value > 0 else "must be greater than 0"
    if op == "is_true":
        return None if value is True else "must be true"
    if not isinstance(value, list):
        raise _CheckError("increasing applies to lists")
    ascending = all(a < b for a, b in itertools.pairwise(value))
    return None if ascending else "must be strictly ascending"


# --------------------------------------------------------------------------- environment


def load_env(dotenv_path: Path | None = None) -> bool:
    """Load `.env` (default: the working directory's); variables already set win (copytrader §7)."""
    path = dotenv_path if dotenv_path is not None else Path.cwd() / ".env"
    if not path.is_file():
        if dotenv_path is not None:
            raise BadInput(Problem(str(path), "", "env file not found"))
        return False
    return load_dotenv(path, override=False)


def secret_env_status(names: Iterable[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`SET (len N)` or `UNSET` per variable: enough to debug, never the value."""
    env = os.environ if environ is None else environ
    return {name: f"SET (len {len(env[name])})" if name in env else "UNSET" for name in names}


def required_env(mode: str, settings: Settings) -> list[str]:
    """Env vars a run mode needs (copytrader §7): the wallet to ingest, keys to execute live."""
    if mode not in RUN_MODES:
        raise BadInput(Problem("", "mode", f"unknown run mode '{mode}', expected one of {list(RUN_MODES)}"))
    needed = [WALLET_ENV] if settings.get("ingest.hyperliquid.enabled") else []
    if mode == "live" and settings.get("execution.binance.enabled"):
        needed += [BINANCE_KEY_ENV, BINANCE_SECRET_ENV]
    return needed


def check_env(mode: str, settings: Settings, environ: Mapping[str, str] | None = None) -> list[Problem]:
    """Missing or malformed env vars for `mode`; messages never include a value."""
    env = os.environ if environ is None else environ
    problems = []
    for name in required_env(mode, settings):
        value = env.get(name, "")
        if not value:
            state = "empty" if name in env else "not set"
            problems.append(Problem("environment", name, f"required for mode {mode} but {state}"))
        elif name == WALLET_ENV and not WALLET_RE.match(value):
            problems.append(
                Problem(
                    "environment", name, f"must match {WALLET_RE.pattern} (value hidden, len {len(value)})"
                )
            )
    return problems
