"""The issue-13 fuzz campaign as tests: hypothesis-generated settings, policy, drill and YAML files
and CLI calls (2,100 cases, derandomized so CI sees the same ones every run).

Every case must end in exit 0/1/2 (or a located BadInput), never a traceback or a hang (each
case runs under an alarm), and an accepted settings file never holds a value outside its range.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hlcore.config.ranges import numeric_rules
from hlcore.config.settings import Settings, load_settings
from hlcore.errors import BadInput
from hlcore.policy.lint import lint
from hlcore.policy.loader import build_policy
from hlcore.yamlsource import Source, load_yaml, parse_yaml
from hlcore_cli import app
from replay.drill import load_drill

pytestmark = pytest.mark.slow  # tens of seconds each: started first (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
CASE_SECONDS = 10  # a hang, not a slow case: a normal case takes milliseconds
WORK = Path(tempfile.mkdtemp(prefix="hlcore-fuzz-"))
runner = CliRunner()


def fuzz(examples: int) -> Any:
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@contextlib.contextmanager
def no_hang() -> Iterator[None]:
    def expire(*_: Any) -> None:
        raise TimeoutError(f"a fuzz case ran longer than {CASE_SECONDS}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def located(exc: BadInput) -> None:
    """A refusal is one or more one-line problems, never a stack."""
    assert exc.problems
    for p in exc.problems:
        assert "\n" not in str(p), str(p)
        assert "Traceback" not in str(p)


# --------------------------------------------------------------------------- values

NAMES = st.sampled_from(["a", "on", "no", "HALT", "OK", "safety", "reconcile", "x.y", "<<", "1", "", "💯", "\t",
                         "max_drift", "classified_ok", "CRIT", "reconcile_completed", "*", "always", "all", "any"])
TRICKY_TEXT = st.sampled_from([".nan", ".inf", "-.inf", "1.0e+999", "true", "false", "~", "null", "0x1F",
                               "2024-13-45", "!!binary AA==", "!!int x", "&a 1", "*a", "[", "{", "'", "\"",
                               "<<: 5", "? [a]", "-", "|", ">", "%TAG", "---", "...", "\x00", "\ufeff"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), NAMES, st.text(max_size=12),
)
KEYS = st.one_of(NAMES, st.integers(-2, 2), st.booleans(), st.none(), st.floats(allow_nan=False, width=16))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*prefix, i))


def subtrees(node: Any) -> list[Any]:
    """Every node of a document: replacements that look like the real thing (a state name where a
    guard was, a condition moved to another rule) get past the shape checks more often."""
    out = [node]
    if isinstance(node, dict):
        for v in node.values():
            out.extend(subtrees(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(subtrees(v))
    return out


def mutate(doc: Any, draw: Any, count: int) -> Any:
    """Set, delete or retype `count` nodes chosen anywhere in `doc` (a deep copy); new values are
    random or taken from elsewhere in the same document."""
    pool = subtrees(doc)
    values = st.one_of(VALUES, st.sampled_from(pool).map(copy.deepcopy))
    doc = copy.deepcopy(doc)
    for _ in range(count):
        choices = list(paths(doc))
        where = draw(st.sampled_from(choices))
        if not where:
            return draw(values)
        parent = doc
        for part in where[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[where[-1]]
        elif action == "delete":
            parent.pop(where[-1])
        elif action == "add" and isinstance(parent, dict):
            parent[draw(KEYS)] = draw(values)
        else:
            parent[where[-1]] = draw(values)
    return doc


# --------------------------------------------------------------------------- YAML reader

YAML_TEXT = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(TRICKY_TEXT, NAMES, st.sampled_from([": ", "\n", "  ", "- ", ", ", "[", "]", "{", "}", "#"])),
             max_size=30).map("".join),
    VALUES.map(dump),
)


@fuzz(1100)
@given(text=YAML_TEXT)
def test_yaml_reader_is_total(text: str) -> None:
    with no_hang():
        try:
            src = parse_yaml(text, "fuzz.yaml")
        except BadInput as exc:
            assert all(p.file == "fuzz.yaml" for p in exc.problems)
            located(exc)
            return
    assert isinstance(src, Source)
    for value in _leaves(src.data):
        assert not (isinstance(value, float) and not math.isfinite(value))


def _leaves(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _leaves(v)
    elif isinstance(node, list):
        for v in node:
            yield from _leaves(v)
    else:
        yield node


# --------------------------------------------------------------------------- settings

DEFAULTS = load_yaml(ROOT / "config" / "settings.yaml").data
RULES = {r.dotted: r.rule for r in numeric_rules(load_yaml(ROOT / "config" / "schema.yaml").data["schema"])}
NUMERIC_PATHS = sorted(k for k in RULES if "[]" not in k and "*" not in k)


@st.composite
def settings_files(draw: Any) -> str:
    doc: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 4))):
        dotted = draw(st.sampled_from(NUMERIC_PATHS))
        rule = RULES[dotted]
        value = draw(st.one_of(
            st.integers(int(rule["min"]) - 2, int(rule["max"]) + 2),
            st.floats(rule["min"] - 1, rule["max"] + 1),
            st.sampled_from([rule["min"], rule["max"], True, False, None, "5", 10**400 // 10**370, 1e300]),
            VALUES))
        node = doc
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else node
        node[parts[-1]] = value
    text = dump(doc)
    if draw(st.booleans()):
        text = dump(mutate(DEFAULTS, draw, draw(st.integers(1, 3))))
    if draw(st.integers(0, 9)) == 0:
        text += draw(TRICKY_TEXT)
    return text


def assert_in_range(s: Settings) -> None:
    for dotted, rule in RULES.items():
        if "[]" in dotted or "*" in dotted:
            continue
        value = s.get(dotted)
        assert not isinstance(value, bool), dotted
        assert isinstance(value, int | float) and math.isfinite(value), (dotted, value)
        assert rule["min"] <= value <= rule["max"], (dotted, value)
        if rule["type"] == "integer":
            assert isinstance(value, int), (dotted, value)


@fuzz(350)
@given(text=settings_files())
def test_settings_loader_accepts_only_in_range_values(text: str) -> None:
    path = WORK / "settings.yaml"
    path.write_text(text, encoding="utf-8")
    with no_hang():
        try:
            s = load_settings(path)
        except BadInput as exc:
            located(exc)
            return
    assert_in_range(s)


# --------------------------------------------------------------------------- policy

# A small, complete policy cut from the default one (one machine, its table, the facts and reason
# codes they use) keeps a case in milliseconds; every loader and lint path still runs on it.
_FACTS = load_yaml(ROOT / "rules" / "facts.yaml").data["facts"]
_REASONS = load_yaml(ROOT / "rules" / "reasons.yaml").data
POLICY: dict[str, Any] = {
    "machines/reconcile.yaml": load_yaml(ROOT / "machines" / "reconcile.yaml").data,
    "rules/reconcile.yaml": load_yaml(ROOT / "rules" / "reconcile.yaml").data,
    "rules/facts.yaml": {"facts": {"reconcile_completed": _FACTS["reconcile_completed"],
                                   "operator_command": _FACTS["operator_command"]}},
    "rules/reasons.yaml": {"severities": _REASONS["severities"], "reason_codes": {
        k: _REASONS["reason_codes"][k] for k in ("OK", "RECONCILE_WARN", "SNAPSHOT_STALE", "RECONCILE_CRITICAL")}},
}
POLICY["rules/invariants.yaml"] = {"invariants": [
    {"id": "gates", "check": "gates_declared", "gates": {"reconcile": []}},
    {"id": "live", "check": "rules_live"},
    {"id": "start", "check": "initial_is_safest"},
]}
PARSED = {f: parse_yaml(dump(doc), f) for f, doc in POLICY.items()}
CONFIG = load_settings(None)


@fuzz(250)
@given(data=st.data())
def test_policy_loader_and_lint_are_total(data: Any) -> None:
    target = data.draw(st.sampled_from(sorted(POLICY)))
    mutated = mutate(POLICY[target], data.draw, data.draw(st.integers(1, 3)))
    with no_hang():
        try:
            sources = {**PARSED, target: parse_yaml(dump(mutated), target)}
            policy = build_policy(sources, CONFIG)
            findings = lint(policy, CONFIG)
        except BadInput as exc:
            located(exc)
            return
    assert all(f.level in ("error", "violation", "warning") for f in findings)


# --------------------------------------------------------------------------- drills

DRILL = {
    "drill": "fuzz", "runbook": "fuzz", "mode": "dry-run",
    "given": {"machines": {"safety": {"state": "ARMED_SAFE", "reason": "BOOTSTRAP", "since": 1769245200000}},
              "system_state": {"boot_ms": "2026-01-24T09:00:00Z"}, "baseline": {"BTCUSDT": "0.5"}},
    "clock": {"start": "2026-01-24T10:00:00Z"},
    "timeline": [{"at": "0s", "do": "boot"}, {"at": "5s", "do": "operator", "command": "ops status"}],
    "expect": [{"at": "0s", "state": {"safety": "ARMED_SAFE"}, "reason": "BOOTSTRAP"},
               {"never_state": {"safety": "HALT"}}, {"at": "5s", "rows": {"audit_log": 0}}],
    "variants": [{"name": "v", "timeline": [{"at": "0s", "do": "boot"}], "expect": [{"never": "binance"}]}],
}


@fuzz(200)
@given(data=st.data())
def test_drill_loader_is_total(data: Any) -> None:
    folder = WORK / "drill"
    folder.mkdir(exist_ok=True)
    (folder / "drill.yaml").write_text(dump(mutate(DRILL, data.draw, data.draw(st.integers(1, 3)))), encoding="utf-8")
    with no_hang():
        try:
            load_drill(folder)
        except BadInput as exc:
            located(exc)


# --------------------------------------------------------------------------- CLI

FUZZ_FILE = WORK / "cli.yaml"
ARG = st.one_of(st.sampled_from([str(FUZZ_FILE), "/dev/zero", "/", "x" * 5000, "", "-", "--", "💯", "[red]x[/red]",
                                 ":100:", "safety", "health", "mermaid", "dot", "json", "--strict", "-k",
                                 str(ROOT / "fixtures" / "nope")]),
                st.text(max_size=10))
COMMANDS = st.sampled_from([["validate", "--config"], ["validate", "--policy"], ["hash", "--config"],
                            ["graph"], ["graph", "safety", "--format"], ["replay"], ["drill", "--fixtures"],
                            ["diff", "--textconv"], ["validate", "--strict", "--config"]])


@fuzz(200)
@given(command=COMMANDS, args=st.lists(ARG, max_size=2), text=YAML_TEXT)
def test_cli_exits_0_1_or_2_without_traceback(command: list[str], args: list[str], text: str) -> None:
    FUZZ_FILE.write_text(text, encoding="utf-8")
    with no_hang():
        result = runner.invoke(app, [*command, *args])
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
