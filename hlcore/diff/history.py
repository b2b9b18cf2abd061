"""`--history FILE`: a recorded tape of facts run through both sides' engines.

A tape is JSON lines `{"at_ms": int, "kind": str, "fields": {...}}` in time order (parquet with
the same columns when pyarrow is installed). Each side's engine starts at the first fact's time
and sees every fact; we measure time in each state per machine (summed over a template's
instances, counted from when an instance is first seen) and count transitions and effects.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hlcore.diff.sides import Side
from hlcore.engine.clock import ManualClock
from hlcore.engine.core import Engine
from hlcore.errors import BadInput, HlcoreError, Problem
from hlcore.yamlsource import read_text


@dataclass(frozen=True)
class Fact:
    line: int
    at_ms: int
    kind: str
    fields: dict[str, Any]


@dataclass
class SideHistory:
    """What one side did over the tape."""

    time_in_state: dict[str, dict[str, int]] = field(default_factory=dict)  # machine -> state -> ms
    transitions: Counter[str] = field(default_factory=Counter)  # machine -> count
    effects: Counter[str] = field(default_factory=Counter)  # effect kind -> count

    def to_dict(self) -> dict[str, Any]:
        return {"time_in_state_ms": self.time_in_state, "transitions": dict(sorted(self.transitions.items())),
                "effects": dict(sorted(self.effects.items()))}


@dataclass
class HistoryReport:
    file: str
    facts: int
    span_ms: int
    base: SideHistory
    head: SideHistory

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "facts": self.facts, "span_ms": self.span_ms, "base": self.base.to_dict(),
                "head": self.head.to_dict()}

    def state_rows(self) -> list[tuple[str, str, int, int]]:
        """(machine, state, base ms, head ms) where the time differs."""
        rows = []
        for m in sorted(set(self.base.time_in_state) | set(self.head.time_in_state)):
            b, h = self.base.time_in_state.get(m, {}), self.head.time_in_state.get(m, {})
            for s in sorted(set(b) | set(h)):
                if b.get(s, 0) != h.get(s, 0):
                    rows.append((m, s, b.get(s, 0), h.get(s, 0)))
        return rows

    def count_rows(self, what: str) -> list[tuple[str, int, int]]:
        b, h = getattr(self.base, what), getattr(self.head, what)
        return [(k, b.get(k, 0), h.get(k, 0)) for k in sorted(set(b) | set(h)) if b.get(k, 0) != h.get(k, 0)]


def read_tape(path: Path) -> list[Fact]:
    """Parse and check a tape; every problem names file:line."""
    name = str(path)
    if path.suffix == ".parquet":
        return _read_parquet(path)
    text = read_text(path, name, "history")  # regular file, size cap, UTF-8
    facts: list[Fact] = []
    problems: list[Problem] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(Problem(name, "", f"not JSON: {exc.msg}", n))
            continue
        fact = _fact(obj, name, n, problems)
        if fact is not None:
            facts.append(fact)
    _check_order(facts, name, problems)
    if problems:
        raise BadInput(problems)
    if not facts:
        raise BadInput(Problem(name, "", "the history holds no facts"))
    return facts


def _fact(obj: Any, name: str, n: int, problems: list[Problem]) -> Fact | None:
    if not isinstance(obj, dict):
        problems.append(Problem(name, "", "expected an object {at_ms, kind, fields}", n))
        return None
    at, kind, fields = obj.get("at_ms"), obj.get("kind"), obj.get("fields", {})
    if not isinstance(at, int) or isinstance(at, bool):
        problems.append(Problem(name, "at_ms", f"expected an integer (epoch ms), got {at!r}", n))
    elif not isinstance(kind, str) or not kind:
        problems.append(Problem(name, "kind", f"expected a fact kind, got {kind!r}", n))
    elif not isinstance(fields, dict):
        problems.append(Problem(name, "fields", "expected an object", n))
    else:
        return Fact(n, at, kind, fields)
    return None


def _check_order(facts: list[Fact], name: str, problems: list[Problem]) -> None:
    for a, b in itertools.pairwise(facts):
        if b.at_ms < a.at_ms:
            problems.append(Problem(name, "at_ms", f"time goes backwards ({b.at_ms} < {a.at_ms} on line {a.line})",
                                    b.line))
            return


def _read_parquet(path: Path) -> list[Fact]:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-not-found]
    except ImportError:
        raise BadInput(Problem(str(path), "", "parquet history needs pyarrow, which is not installed; "
                               "record the tape as JSON lines (.jsonl) instead")) from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow's errors for a file that is not parquet
        raise BadInput(Problem(str(path), "", f"cannot read parquet history: {exc}")) from None
    facts: list[Fact] = []
    problems: list[Problem] = []
    for n, row in enumerate(rows, start=1):
        fields = row.get("fields")
        if isinstance(fields, str):
            fields = json.loads(fields)
        fact = _fact({**row, "fields": fields if fields is not None else {}}, str(path), n, problems)
        if fact is not None:
            facts.append(fact)
    _check_order(facts, str(path), problems)
    if problems:
        raise BadInput(problems)
    return facts


def run_side(side: Side, facts: list[Fact], file: str) -> SideHistory:
    clock = ManualClock(facts[0].at_ms)
    engine = Engine(side.policy, side.settings, clock)
    out = SideHistory()
    current: dict[str, tuple[str, str, int]] = {}  # instance -> (machine, state, since)

    def spend(machine: str, state: str, ms: int) -> None:
        if ms > 0:
            out.time_in_state.setdefault(machine, {}).setdefault(state, 0)
            out.time_in_state[machine][state] += ms

    def apply(decision: Any, now: int) -> None:
        for t in decision.transitions:
            prev = current.get(t.instance)
            if prev is not None:
                spend(prev[0], prev[1], now - prev[2])
            current[t.instance] = (t.machine, t.to_state, now)
            if t.from_state is not None:
                out.transitions[t.machine] += 1
        for e in decision.effects:
            out.effects[e.kind] += 1

    apply(engine.start(), facts[0].at_ms)
    for fact in facts:
        try:
            clock.set(fact.at_ms)
            apply(engine.observe(fact.kind, fact.fields), fact.at_ms)
        except HlcoreError as exc:
            raise BadInput(Problem(file, "", f"[{side.label}] {exc}", fact.line)) from None
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:  # a fact the policy cannot read
            raise BadInput(Problem(file, "fields", f"[{side.label}] fact '{fact.kind}' cannot be evaluated: "
                                   f"{type(exc).__name__}: {exc}", fact.line)) from None
    end = facts[-1].at_ms
    for row in engine.instances():  # instances that never moved, and the time since the last move
        prev = current.get(row["instance"])
        since = prev[2] if prev is not None else int(row["since_ms"])
        spend(row["machine"], row["state"], end - since)
    return out


def history_diff(base: Side, head: Side, path: Path) -> HistoryReport:
    facts = read_tape(path)
    return HistoryReport(str(path), len(facts), facts[-1].at_ms - facts[0].at_ms,
                         run_side(base, facts, str(path)), run_side(head, facts, str(path)))
