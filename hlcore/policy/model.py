"""The policy as a value: machines, rule tables and the fact catalog, built from validated YAML.

Objects are frozen and built by splatting the validated dicts, so `to_dict()` round-trips the
normalised policy for hashing, diffing and the textconv driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hlcore.consulted import Noted
from hlcore.yamlsource import Source

ANY_STATE = "*"


@dataclass(frozen=True)
class StateDef:
    name: str
    allows: tuple[str, ...] = ()
    halt: bool = False
    final: bool = False
    description: str = ""
    stored_as: str | None = None  # the state's name in storage tables when it is not its own (order_results.status)


@dataclass(frozen=True)
class EventDef:
    name: str
    operator: bool = False
    description: str = ""


@dataclass(frozen=True)
class TransitionDef:
    index: int
    event: str
    sources: tuple[str, ...]
    dest: str
    guards: tuple[str, ...] = ()
    reason: Any = None
    priority: int | None = None
    set: Mapping[str, Any] = field(default_factory=dict)
    effects: tuple[Mapping[str, Any], ...] = ()
    emit: tuple[Mapping[str, Any], ...] = ()
    description: str = ""

    def leaves(self, state: str) -> bool:
        return ANY_STATE in self.sources or state in self.sources


@dataclass(frozen=True)
class MachineDef:
    name: str
    file: str
    initial: str
    states: Mapping[str, StateDef]
    events: Mapping[str, EventDef]
    transitions: tuple[TransitionDef, ...]
    initial_reason: str | None = None
    fallback: Mapping[str, str] = field(default_factory=dict)
    key: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)
    audit_category: str = ""
    mirror: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def is_template(self) -> bool:
        return bool(self.key)

    def sources_of(self, t: TransitionDef) -> list[str]:
        return list(self.states) if ANY_STATE in t.sources else list(t.sources)

    def gates(self) -> set[str]:
        return {g for s in self.states.values() for g in s.allows}

    def stored(self, state: str) -> str:
        """How `state` is written to a storage column: its `stored_as`, else its own name."""
        d = self.states.get(state)
        return d.stored_as if d is not None and d.stored_as else state

    def entry_reasons(self, state: str) -> tuple[str, ...]:
        """The literal reasons the transitions into `state` record: with `stored_as`, the stored reason
        (error code) is what tells this state's rows from the other state's (the loader checks it)."""
        return tuple(dict.fromkeys(t.reason for t in self.transitions
                                   if t.dest == state and isinstance(t.reason, str)))


@dataclass(frozen=True)
class RowDef:
    index: int
    id: str
    on: tuple[str, ...]
    when: Mapping[str, Any]
    then: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True)
class TableDef:
    name: str
    file: str
    machine: str | None
    order: int
    match: str
    rows: tuple[RowDef, ...]
    description: str = ""


@dataclass(frozen=True)
class ReasonDef:
    code: str
    severity: str
    file: str
    text: str = ""


@dataclass(frozen=True)
class FactDef:
    name: str
    fields: Mapping[str, str]
    key: tuple[str, ...] = ()
    internal: bool = False
    operator: bool = False  # fed only by an operator command, never by a job
    description: str = ""


@dataclass(frozen=True)
class Policy:
    """Everything the interpreter runs and the linter checks; one value, one hash."""

    machines: Mapping[str, MachineDef]
    tables: tuple[TableDef, ...]
    facts: Mapping[str, FactDef]
    reasons: Mapping[str, ReasonDef]
    lists: Mapping[str, tuple[Any, ...]]
    allowlists: Mapping[str, Mapping[str, Any]]
    guards: Mapping[str, Any]
    tallies: Mapping[str, Mapping[str, Any]]
    bands: Mapping[str, Mapping[str, Any]]
    severities: tuple[str, ...]
    documents: Mapping[str, Any]
    sources: Mapping[str, Source]
    hash: str = ""

    # The catalogs a run reads by name: each lookup is noted while `hlcore.consulted` collects.
    NOTED = ("machines", "facts", "reasons", "lists", "allowlists", "guards", "tallies", "bands")

    def __post_init__(self) -> None:
        for kind in self.NOTED:
            object.__setattr__(self, kind, Noted(kind, getattr(self, kind)))

    def to_dict(self) -> dict[str, Any]:
        """The normalised policy: file name -> parsed document (formatting and anchors gone)."""
        return {name: doc for name, doc in sorted(self.documents.items())}

    def where(self, file: str, path: tuple[str | int, ...]) -> tuple[str, int | None]:
        src = self.sources.get(file)
        return file, (src.line(path) if src else None)
