"""Drill files (`fixtures/<name>/drill.yaml`): load, validate (cerberus; unknown keys are errors
located by file:line), and normalise times to milliseconds. The format is in docs/drills.md."""

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

DRILL_FILE = "drill.yaml"
VERBS = ("boot", "advance", "crash")
NEVER = ("order_submitted", "intent")  # besides a venue operation or "METHOD /path"

_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$")

_AT = {"type": ["string", "integer"], "required": True}
_EXPECT_ITEM = {
    "type": "dict",
    "schema": {
        "at": {"type": ["string", "integer"]},
        "state": {"type": "dict", "keysrules": {"type": "string"}, "valuesrules": {"type": "string"}},
        "reason": {"type": "string", "nullable": True},
        "transition": {"type": "dict", "keysrules": {"type": "string"}, "valuesrules": {"type": "string"}},
        "system_state": {"type": "dict", "keysrules": {"type": "string"},
                         "valuesrules": {"type": ["string", "integer"]}},
        "rows": {"type": "dict", "keysrules": {"type": "string"}, "valuesrules": {"type": "integer", "min": 0}},
        "never": {"type": "string", "empty": False},
    },
}
_GIVEN = {
    "type": "dict",
    "schema": {
        "system_state": {"type": "dict", "keysrules": {"type": "string"},
                         "valuesrules": {"type": ["string", "integer"]}},
        "safety": {"type": "dict", "schema": {"state": {"type": "string", "required": True},
                                              "reason": {"type": "string", "nullable": True}}},
        "baseline": {"type": "dict", "keysrules": {"type": "string"}, "valuesrules": {"type": ["string", "number"]}},
        "exchange": {"type": "dict", "keysrules": {"type": "string"}, "valuesrules": {"type": ["string", "number"]}},
    },
}
_CLOCK = {"type": "dict", "schema": {"start": {"type": "string", "required": True, "regex": _ISO.pattern}}}
_TIMELINE = {"type": "list", "schema": {"type": "dict", "schema": {"at": _AT, "do": {
    "type": "string", "required": True, "allowed": list(VERBS)}}}}
_EXPECT = {"type": "list", "schema": _EXPECT_ITEM}
SCHEMA: dict[str, Any] = {
    "drill": {"type": "string", "required": True, "regex": r"^[a-z0-9_]+$"},
    "runbook": {"type": "string", "required": True},
    "mode": {"type": "string", "allowed": ["live", "dry-run", "backfill-only"]},
    "config": {"type": "dict"},
    "given": _GIVEN,
    "clock": {**_CLOCK, "required": True},
    "timeline": {**_TIMELINE, "required": True, "empty": False},
    "expect": {**_EXPECT, "required": True, "empty": False},
    "variants": {"type": "list", "schema": {"type": "dict", "schema": {
        "name": {"type": "string", "required": True, "regex": r"^[a-z0-9_]+$"},
        "config": {"type": "dict"}, "given": _GIVEN, "clock": _CLOCK, "timeline": _TIMELINE,
        "expect": {**_EXPECT, "required": True, "empty": False}}}},
}


@dataclass
class Step:
    at_ms: int  # relative to clock.start
    do: str
    line: int | None


@dataclass
class Expectation:
    at_ms: int | None  # None: checked over the whole run (`never`)
    spec: dict[str, Any]
    line: int | None

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.spec.items()) if k != "at")


@dataclass
class Run:
    """One concrete run: the drill itself ("base") or one of its variants."""

    name: str
    mode: str
    config: dict[str, Any]
    given: dict[str, Any]
    start_ms: int
    timeline: list[Step]
    expect: list[Expectation]


@dataclass
class Drill:
    name: str
    runbook: str
    file: str
    fixture_hash: str
    runs: list[Run] = field(default_factory=list)


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def duration_ms(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _DURATION.match(str(value))
    return int(match.group(1)) * _UNITS[match.group(2)] if match else None


def fixture_hash(directory: Path) -> str:
    """sha256 over every file of the fixture folder (relative path + bytes), sorted."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_drill(directory: Path) -> Drill:
    path = directory / DRILL_FILE
    if not path.is_file():
        raise BadInput(Problem(str(directory), "", f"no {DRILL_FILE} in this folder"))
    src = load_yaml(path)
    if not isinstance(src.data, dict):
        raise BadInput(src.problem((), "top level must be a mapping"))
    validator = Validator(SCHEMA, allow_unknown=False)
    if not validator.validate(src.data):
        problems = [src.problem(e.document_path, _message(e)) for e in _flatten(validator._errors)]
        raise BadInput(sorted(problems, key=lambda p: (p.line or 0, p.path)))
    data = src.data
    drill = Drill(data["drill"], data["runbook"], src.file, fixture_hash(directory))
    drill.runs.append(_run(src, "base", data, ()))
    for i, variant in enumerate(data.get("variants") or []):
        merged = {"mode": data.get("mode", "live"),
                  "config": _deep_merge(data.get("config") or {}, variant.get("config") or {}),
                  "given": _deep_merge(data.get("given") or {}, variant.get("given") or {}),
                  "clock": _deep_merge(data["clock"], variant.get("clock") or {}),
                  "timeline": variant.get("timeline", data["timeline"]), "expect": variant["expect"]}
        own = ("variants", i)
        paths = {k: (own if k in variant else ()) for k in ("clock", "timeline", "given")}
        drill.runs.append(_run(src, variant["name"], merged, own, paths))
    names = [r.name for r in drill.runs]
    if len(set(names)) != len(names):
        raise BadInput(src.problem(("variants",), f"duplicate variant name in {names}"))
    return drill


def _run(src: Source, name: str, data: dict[str, Any], own: tuple[Any, ...],
         paths: dict[str, tuple[Any, ...]] | None = None) -> Run:
    paths = paths or {}
    problems: list[Problem] = []
    start_ms = iso_ms(data["clock"]["start"])
    given = copy.deepcopy(data.get("given") or {})
    system = {}
    for key, value in (given.get("system_state") or {}).items():
        system[key] = str(iso_ms(value)) if isinstance(value, str) and _ISO.match(value) else str(value)
    given["system_state"] = system
    timeline: list[Step] = []
    last = 0
    base = paths.get("timeline", ())
    for i, item in enumerate(data["timeline"]):
        where = (*base, "timeline", i, "at")
        at = duration_ms(item["at"])
        if at is None:
            problems.append(src.problem(where, f"expected a duration like 30s, 4m, 250ms, got {item['at']!r}"))
            continue
        if at < last:
            problems.append(src.problem(where, f"time goes backwards ({item['at']} after {last} ms)"))
        last = max(last, at)
        timeline.append(Step(at, item["do"], src.line(where)))
    if timeline and timeline[0].do != "boot":
        problems.append(src.problem((*base, "timeline", 0, "do"), "the first step must be boot"))
    expect: list[Expectation] = []
    for i, item in enumerate(data["expect"]):
        where = (*own, "expect", i)
        checks = set(item) - {"at", "reason"}
        if len(checks) != 1:
            problems.append(src.problem(where, "each expectation needs exactly one of state, transition, "
                                               "system_state, rows, never"))
            continue
        if "never" in item:
            if "at" in item:
                problems.append(src.problem((*where, "at"), "never holds over the whole run: no at"))
            expect.append(Expectation(None, item, src.line(where)))
            continue
        at = duration_ms(item.get("at"))
        if at is None:
            problems.append(src.problem((*where, "at"), f"expected a duration like 30s, got {item.get('at')!r}"))
            continue
        if "reason" in item and not ({"state", "transition"} & checks):
            problems.append(src.problem((*where, "reason"), "reason goes with state or transition"))
        expect.append(Expectation(at, item, src.line(where)))
    if problems:
        raise BadInput(problems)
    return Run(name, data.get("mode", "live"), data.get("config") or {}, given, start_ms, timeline, expect)
