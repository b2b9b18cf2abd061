"""What one observed fact led to: transitions taken, effects, and audit records.

Everything here is plain data with a canonical JSON form, so two runs of the same policy over
the same facts can be compared byte for byte.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class Transition:
    """One state or reason change of one machine instance."""

    machine: str
    instance: str
    from_state: str | None
    to_state: str
    from_reason: str | None
    reason: str | None
    event: str
    severity: str | None


@dataclass(frozen=True, slots=True)
class Effect:
    """Something a job or operator must act on: a gate opened/closed, an alert surfaced or
    suppressed, a verdict. `source` names the rule row or transition that produced it."""

    kind: str
    source: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, **self.data}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit row: who moved, from where to where, why, on which facts, under which policy."""

    at_ms: int
    category: str
    machine: str
    instance: str
    from_state: str | None
    to_state: str
    event: str
    reason_code: str | None
    severity: str | None
    fact: str
    facts: dict[str, Any]
    policy_hash: str


class Decision(NamedTuple):
    """The outcome of one fact. A NamedTuple: immutable and cheap, since most facts change nothing."""

    at_ms: int
    fact: str
    transitions: tuple[Transition, ...] = ()
    effects: tuple[Effect, ...] = ()
    audit: tuple[AuditRecord, ...] = ()
    events: tuple[tuple[str, str, str], ...] = ()
    vars: tuple[tuple[str, str, Any], ...] = ()  # (instance, variable, new value) for each change

    def effect_kinds(self) -> list[str]:
        return [e.kind for e in self.effects]

    def find(self, kind: str) -> list[Effect]:
        return [e for e in self.effects if e.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "at_ms": self.at_ms,
            "fact": self.fact,
            "events": [list(e) for e in self.events],
            "transitions": [asdict(t) for t in self.transitions],
            "effects": [e.to_dict() for e in self.effects],
            "audit": [asdict(a) for a in self.audit],
            "vars": [list(v) for v in self.vars],
        }

    def to_json(self) -> str:
        return canonical(self.to_dict())
