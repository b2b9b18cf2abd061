"""Drill files (`fixtures/<name>/drill.yaml`): load, validate (cerberus; unknown keys are errors
located by file:line), and normalise times to milliseconds. The format is in docs/drills.md;
the verbs, checks and seeds it may use are registered in `replay.registry`."""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cerberus import Validator

from hlcore.config.settings import _flatten, _message
from hlcore.errors import BadInput, Problem
from hlcore.yamlsource import Source, load_yaml
from replay.registry import CHECKS, GIVENS, MODIFIERS, STEPS, Kind, load_all

DRILL_FILE = "drill.yaml"
CASSETTE_DIR = "cassettes"
GOLDEN_FILE = "golden.jsonl"  # the drill's reviewed journal (replay.golden); not part of the fixture's hash
COVERAGE_FILE = "coverage.json"  # what the drill consulted (replay.selection); an output too, not hashed
APPS = ("copytrader", "monitor")

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")
# a duration argument (`takes: 10s`, `every: 5m`): checked when the drill loads, located by file:line
DURATION: dict[str, Any] = {"type": ["string", "integer"], "regex": r"^(?=\d)" + _DURATION.pattern[1:]}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$")  # an ISO UTC instant

_CLOCK = {"type": "dict", "schema": {"start": {"type": "string", "required": True, "regex": ISO.pattern}}}
_ENV = {"type": "dict", "keysrules": {"type": "string", "regex": r"^[A-Z][A-Z0-9_]*$"},
        "valuesrules": {"type": "string", "nullable": True}}
_LIST_OF_DICTS = {"type": "list", "schema": {"type": "dict"}}
_NAMES = {"type": "list", "schema": {"type": "string", "regex": r"^[\w.-]+\.ya?ml$"}}
_MODE = {"type": "string", "allowed": ["live", "dry-run", "backfill-only"]}
_RUN_KEYS: dict[str, Any] = {
    "config": {"type": "dict"}, "env": _ENV, "given": {"type": "dict"}, "cassettes": _NAMES, "clock": _CLOCK,
    "timeline": _LIST_OF_DICTS, "expect": {**_LIST_OF_DICTS, "empty": False},
}
SCHEMA: dict[str, Any] = {
    "drill": {"type": "string", "required": True, "regex": r"^[a-z0-9_]+$"},
    "runbook": {"type": "string", "required": True},
    "app": {"type": "string", "allowed": list(APPS)},
    "mode": _MODE,
    **_RUN_KEYS,
    "clock": {**_CLOCK, "required": True},
    "timeline": {**_LIST_OF_DICTS, "required": True, "empty": False},
    "expect": {**_LIST_OF_DICTS, "required": True, "empty": False},
    "variants": {"type": "list", "schema": {"type": "dict", "schema": {
        "name": {"type": "string", "required": True, "regex": r"^[a-z0-9_]+$"}, "mode": _MODE, **_RUN_KEYS,
        "expect": {**_LIST_OF_DICTS, "required": True, "empty": False}}}},
}
_AT = {"type": ["string", "integer"]}
REPEAT = "repeat"  # the verb the loader expands into its inner steps


@dataclass
class Step:
    at_ms: int  # relative to clock.start
    do: str
    args: dict[str, Any]
    line: int | None
    repeat: str | None = None  # "k/N": the k-th occurrence of a `repeat` step's inner step


@dataclass
class Expectation:
    at_ms: int | None  # None: checked over the whole run (e.g. `never`)
    kind: str
    spec: dict[str, Any]
    line: int | None

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.spec.items()) if k != "at")


@dataclass
class Run:
    """One concrete run: the drill itself ("base") or one of its variants."""

    name: str
    app: str
    mode: str
    config: dict[str, Any]
    env: dict[str, str | None]
    given: dict[str, Any]
    cassettes: list[str]
    start_ms: int
    timeline: list[Step]
    expect: list[Expectation]


@dataclass
class Drill:
    name: str
    runbook: str
    file: str
    directory: Path
    fixture_hash: str
    runs: list[Run] = field(default_factory=list)
    words: list[str] = field(default_factory=list)  # the vocabulary it uses ("step:boot", "check:state", ...)


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def duration_ms(value: Any) -> int | None:
    """`250ms`, `30s`, `4m`, `1h`, compounds like `1h5m` or `10m0s1ms`, or a bare integer of ms."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    match = _DURATION.match(str(value))
    if not match or not any(match.groups()):
        return None
    h, m, s, ms = (int(g or 0) for g in match.groups())
    return ((h * 60 + m) * 60 + s) * 1000 + ms


def fixture_hash(directory: Path) -> str:
    """sha256 over every file of the fixture folder (relative path + bytes), sorted; the golden
    journal is the output, not the input, so it is left out (it records this very hash); so is the
    coverage file, for the same reason."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name not in (GOLDEN_FILE, COVERAGE_FILE)):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _validate(src: Source, data: Any, schema: dict[str, Any], prefix: tuple[Any, ...]) -> list[Problem]:
    validator = Validator(schema, allow_unknown=False)
    if validator.validate(data):
        return []
    return [src.problem((*prefix, *e.document_path), _message(e)) for e in _flatten(validator._errors)]


def _usable(kind: Kind, app: str) -> bool:
    return not kind.apps or app in kind.apps


def load_drill(directory: Path) -> Drill:
    load_all()
    directory = directory.resolve()
    path = directory / DRILL_FILE
    if not path.is_file():
        raise BadInput(Problem(str(directory), "", f"no {DRILL_FILE} in this folder"))
    src = load_yaml(path)
    if not isinstance(src.data, dict):
        raise BadInput(src.problem((), "top level must be a mapping"))
    problems = _validate(src, src.data, SCHEMA, ())
    if problems:
        raise BadInput(sorted(problems, key=lambda p: (p.line or 0, p.path)))
    data = src.data
    drill = Drill(data["drill"], data["runbook"], src.file, directory, fixture_hash(directory))
    base_keys = ("mode", "config", "env", "given", "cassettes", "clock", "timeline", "expect")
    runs: list[tuple[str, dict[str, Any], dict[str, tuple[Any, ...]]]] = [
        ("base", {k: data[k] for k in base_keys if k in data}, {})]
    for i, variant in enumerate(data.get("variants") or []):
        own = ("variants", i)
        merged = {
            "mode": variant.get("mode", data.get("mode")),
            "config": deep_merge(data.get("config") or {}, variant.get("config") or {}),
            "env": {**(data.get("env") or {}), **(variant.get("env") or {})},
            "given": deep_merge(data.get("given") or {}, variant.get("given") or {}),
            "cassettes": variant.get("cassettes", data.get("cassettes") or []),
            "clock": deep_merge(data["clock"], variant.get("clock") or {}),
            "timeline": variant.get("timeline", data["timeline"]), "expect": variant["expect"]}
        runs.append((variant["name"], merged, {k: (own if k in variant else ()) for k in base_keys}))
    names = [name for name, _, _ in runs]
    if len(set(names)) != len(names):
        raise BadInput(src.problem(("variants",), f"duplicate variant name in {names}"))
    problems = []
    for name, run_data, paths in runs:
        try:
            drill.runs.append(_run(src, name, data.get("app", "copytrader"), run_data, paths))
        except BadInput as exc:
            problems.extend(exc.problems)
    for name in sorted({c for r in drill.runs for c in r.cassettes}):
        if not (directory / CASSETTE_DIR / name).is_file():
            problems.append(src.problem(("cassettes",), f"no such cassette: {CASSETTE_DIR}/{name}"))
    if problems:
        raise BadInput(sorted(set(problems), key=lambda p: (p.line or 0, p.path, p.message)))
    drill.words = words_of(data)
    return drill


def words_of(data: dict[str, Any]) -> list[str]:
    """The registered words a (valid) drill file uses, as "table:name", sorted."""
    runs = [data, *(data.get("variants") or [])]
    words: set[str] = set()
    for run in runs:
        words |= {f"given:{k}" for k in run.get("given") or {} if k in GIVENS}
        items = list(run.get("timeline") or [])
        while items:
            item = items.pop()
            words.add(f"step:{item.get('do')}")
            items += item.get("steps") or [] if item.get("do") == REPEAT else []
        for item in run.get("expect") or []:
            words |= {f"check:{k}" for k in item if k in CHECKS} | {f"modifier:{k}" for k in item if k in MODIFIERS}
    return sorted(words)


def _timed_step(src: Source, item: Any, where: tuple[Any, ...], app: str, problems: list[Problem], *,
                required: bool) -> int | None:
    """Validate one timeline item (its verb and keys); its `at` in ms, None when unusable."""
    kind = STEPS.get(item.get("do")) if isinstance(item.get("do"), str) else None
    if kind is None or not _usable(kind, app) or (not required and kind.name == REPEAT):
        allowed = sorted(k for k, v in STEPS.items() if _usable(v, app) and (required or k != REPEAT))
        problems.append(src.problem((*where, "do"), f"expected one of {allowed}, got {item.get('do')!r}"))
        return None
    problems += _validate(src, item, {"at": {**_AT, "required": required}, "do": {"type": "string"},
                                      **kind.schema}, where)
    at = duration_ms(item.get("at", 0))
    if at is None:
        problems.append(src.problem((*where, "at"), f"expected a duration like 30s, 4m, 250ms, got "
                                                    f"{item.get('at')!r}"))
    return at


def _expand_step(src: Source, item: dict[str, Any], where: tuple[Any, ...], at: int, app: str,
                 problems: list[Problem]) -> list[Step]:
    """One timeline item as steps: itself, or a `repeat`'s inner steps at each period."""
    if item["do"] != REPEAT:
        return [Step(at, item["do"], {k: v for k, v in item.items() if k not in ("at", "do")}, src.line(where))]
    every, times = duration_ms(item.get("every")), item.get("times")
    if not every or not isinstance(times, int) or times < 1:
        problems.append(src.problem((*where, "every"), f"expected a positive duration like 5m, got "
                                                       f"{item.get('every')!r}"))
        return []
    inner: list[tuple[int, dict[str, Any], int | None]] = []
    for j, sub in enumerate(item.get("steps") or []):
        sub_where = (*where, "steps", j)
        if not isinstance(sub, dict):
            continue  # the schema reported it
        offset = _timed_step(src, sub, sub_where, app, problems, required=False)
        if offset is None:
            continue
        if offset >= every:
            problems.append(src.problem((*sub_where, "at"), f"an offset inside the period must be under "
                                                            f"{item['every']}, got {sub.get('at')!r}"))
        inner.append((offset, sub, src.line(sub_where)))
    out = []
    for k in range(times):
        for offset, sub, line in inner:
            args = {key: v for key, v in sub.items() if key not in ("at", "do")}
            out.append(Step(at + k * every + offset, sub["do"], args, line, f"{k + 1}/{times}"))
    return out


def _run(src: Source, name: str, app: str, data: dict[str, Any], paths: dict[str, tuple[Any, ...]]) -> Run:
    problems: list[Problem] = []
    start_ms = iso_ms(data["clock"]["start"])
    given = copy.deepcopy(data.get("given") or {})
    gpath = (*paths.get("given", ()), "given")
    for key, value in sorted(given.items()):
        kind = GIVENS.get(key)
        if kind is None or not _usable(kind, app):
            allowed = sorted(k for k, v in GIVENS.items() if _usable(v, app))
            problems.append(src.problem((*gpath, key), f"unknown given '{key}' for app {app}, expected one of "
                                                       f"{allowed}"))
            continue
        problems += _validate(src, {key: value}, {key: kind.schema}, gpath)
    if isinstance(given.get("system_state"), dict):
        given["system_state"] = {k: str(iso_ms(v)) if isinstance(v, str) and ISO.match(v) else str(v)
                                 for k, v in given["system_state"].items()}

    timeline: list[Step] = []
    last = 0
    tpath = (*paths.get("timeline", ()), "timeline")
    for i, item in enumerate(data["timeline"]):
        where = (*tpath, i)
        at = _timed_step(src, item, where, app, problems, required=True)
        if at is None:
            continue
        if at < last:
            problems.append(src.problem((*where, "at"), f"time goes backwards ({item['at']} after {last} ms)"))
        last = max(last, at)
        timeline += _expand_step(src, item, where, at, app, problems)
    if timeline and timeline[0].do != "boot":
        problems.append(src.problem((*tpath, 0, "do"), "the first step must be boot"))
    # a repeat's later occurrences interleave with the steps after it: by time, then file order
    timeline.sort(key=lambda s: s.at_ms)

    expect: list[Expectation] = []
    epath = (*paths.get("expect", ()), "expect")
    for i, item in enumerate(data["expect"]):
        where = (*epath, i)
        found = [k for k in item if k in CHECKS and _usable(CHECKS[k], app)]
        if len(found) != 1:
            allowed = sorted(k for k, v in CHECKS.items() if _usable(v, app))
            problems.append(src.problem(where, f"each expectation needs exactly one of {allowed}, got "
                                               f"{sorted(item)}"))
            continue
        kind = CHECKS[found[0]]
        mods = {k: MODIFIERS[k].schema[k] for k in item if k in MODIFIERS}
        own = _validate(src, item, {"at": _AT, **mods, **kind.schema}, where)
        problems += own
        if own:
            continue
        if "at" not in item:
            if mods:
                problems.append(src.problem(where, f"{sorted(mods)[0]} needs an `at` (the first time)"))
            expect.append(Expectation(None, kind.name, item, src.line(where)))
            continue
        at = duration_ms(item["at"])
        if at is None:
            problems.append(src.problem((*where, "at"), f"expected a duration like 30s, got {item['at']!r}"))
            continue
        one = Expectation(at, kind.name, {k: v for k, v in item.items() if k not in MODIFIERS}, src.line(where))
        items = [one]
        for mod in sorted(mods):
            try:
                items = [e for it in items for e in MODIFIERS[mod].handler(it, item[mod])]
            except ValueError as exc:
                problems.append(src.problem((*where, mod), str(exc)))
        expect += items
    if problems:
        raise BadInput(problems)
    mode = data.get("mode") or "live"
    return Run(name, app, mode, data.get("config") or {}, data.get("env") or {}, given,
               list(data.get("cassettes") or []), start_ms, timeline, expect)
