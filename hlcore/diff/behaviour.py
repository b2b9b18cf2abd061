"""The behavioural diff's report: what counts as a changed drill, and how it is described.

A drill is the same timeline of world changes on both sides, so any journal difference is the
policy change at work. The policy and config hashes (and any SHA-256 a line prints) differ
whenever anything does, so they are masked before comparing. This half is pure data and
comparison (the renderer prints it); replaying the drills is `replay/behaviour.py`, above the core.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MASK = "<hash>"
NO_DRILLS = "NO DRILLS"
_SHA256 = re.compile(r"\b[0-9a-f]{64}\b")


@dataclass(frozen=True)
class Replayed:
    """One drill under one side: comparable journal lines, or the error that stopped it."""

    drill: str
    verdict: str = ""
    failures: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()
    entries: tuple[dict[str, Any], ...] = ()
    error: str = ""


@dataclass
class DrillChange:
    """A drill whose outcome differs between the sides."""

    drill: str
    path: str
    verdict: tuple[str, str]
    first_difference: dict[str, Any]
    states: list[dict[str, Any]] = field(default_factory=list)  # run, instance, before, after
    alerts: dict[str, tuple[int, int]] = field(default_factory=dict)
    failures: tuple[list[str], list[str]] = ((), ())  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        return {"drill": self.drill, "path": self.path, "verdict": {"base": self.verdict[0], "head": self.verdict[1]},
                "first_difference": self.first_difference, "states": self.states,
                "alerts": {k: {"base": b, "head": h} for k, (b, h) in sorted(self.alerts.items())},
                "failures": {"base": list(self.failures[0]), "head": list(self.failures[1])}}


@dataclass
class BehaviourReport:
    replayed: int = 0
    changed: list[DrillChange] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)  # drill, side, message
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the behaviour was not checked: said loudly
    selected: list[dict[str, str]] = field(default_factory=list)  # drill, why it was replayed
    skipped: list[dict[str, str]] = field(default_factory=list)  # drill, why it could not be affected
    change: str = ""  # the change set drills were selected against ("" with --all)

    def to_dict(self) -> dict[str, Any]:
        return {"replayed": self.replayed, "changed": [c.to_dict() for c in self.changed], "errors": self.errors,
                "notes": self.notes, "warnings": self.warnings, "no_drills": self.no_drills,
                "selection": {"change": self.change, "replayed": self.selected, "skipped": self.skipped}}

    @property
    def no_drills(self) -> bool:
        """No drill was found to replay: nothing says what the change does."""
        return any(w.startswith(NO_DRILLS) for w in self.warnings)


def _mask(node: Any, secrets: frozenset[str]) -> Any:
    """Hide the sides' hashes, and any SHA-256 printed inside a line (`config_hash=…` of a drill's own
    merged settings): they differ whenever anything differs, and the change itself is shown elsewhere."""
    if isinstance(node, str):
        return MASK if node in secrets else _SHA256.sub(MASK, node)
    if isinstance(node, dict):
        return {k: _mask(v, secrets) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask(v, secrets) for v in node]
    return node


def _final_states(entries: Iterable[dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(run, instance) -> (state, reason) after the last transition or audit row of each run."""
    out: dict[tuple[str, str], tuple[str, str | None]] = {}
    for e in entries:
        if e.get("kind") in ("transition", "audit") and e.get("instance"):
            out[(e.get("run", ""), e["instance"])] = (e.get("to"), e.get("reason"))
    return out


def _alert_counts(entries: Iterable[dict[str, Any]]) -> Counter[str]:
    """Alert journal lines by kind and outcome (delivered, suppressed, …), whatever the drill emits."""
    counts: Counter[str] = Counter()
    for e in entries:
        kind = str(e.get("kind", ""))
        row = e.get("row")
        if kind == "row" and e.get("table") == "alerts" and isinstance(row, dict):
            reason = row.get("suppressed_reason") or "?"
            outcome = f"suppressed/{reason}" if row.get("suppressed") else "delivered"
            counts[f"{row.get('alert_type', 'alert')} {outcome}"] += 1
            continue
        if "alert" in kind:
            outcome = e.get("status") or e.get("outcome") or e.get("result") or e.get("event")
            counts[f"{kind}:{outcome}" if outcome else kind] += 1
    return counts


def compare(path: Path, base: Replayed, head: Replayed) -> DrillChange | None:
    if base.lines == head.lines:
        return None
    n = next((i for i, (a, b) in enumerate(zip(base.lines, head.lines, strict=False)) if a != b),
             min(len(base.lines), len(head.lines)))
    first = {"line": n + 1, "base": base.lines[n] if n < len(base.lines) else None,
             "head": head.lines[n] if n < len(head.lines) else None}
    fb, fh = _final_states(base.entries), _final_states(head.entries)
    states = [{"run": run, "instance": inst, "base": list(fb.get((run, inst), (None, None))),
               "head": list(fh.get((run, inst), (None, None)))}
              for run, inst in sorted(set(fb) | set(fh)) if fb.get((run, inst)) != fh.get((run, inst))]
    ab, ah = _alert_counts(base.entries), _alert_counts(head.entries)
    alerts = {k: (ab.get(k, 0), ah.get(k, 0)) for k in sorted(set(ab) | set(ah))}
    return DrillChange(base.drill or path.name, str(path), (base.verdict, head.verdict), first, states, alerts,
                       (list(base.failures), list(head.failures)))
