"""Static checks of a loaded policy: the mistakes that load fine but would bite in production.

Errors (exit 2): unreachable states, trap states, nondeterministic transitions, hysteresis bands
upside down, HALT exits that bypass both operator and recovery allowlist, rules shadowed by an
earlier always-matching row. Violations (exit 1): the safety invariants of rules/invariants.yaml,
proved on meaning in invariants.py. Warnings: reason codes declared but never raised.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hlcore.policy.conditions import references, walk
from hlcore.policy.model import ANY_STATE, MachineDef, Policy, TransitionDef
from hlcore.yamlsource import format_path


@dataclass(frozen=True, order=True)
class Finding:
    level: str  # "error" (bad input, exit 2) | "violation" (a safety invariant broken, exit 1) | "warning"
    file: str
    line: int | None
    path: str
    check: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message} [{self.check}]" if self.path else \
            f"{where}: {self.message} [{self.check}]"


def lint(policy: Policy, config: Any) -> list[Finding]:
    findings: list[Finding] = []
    for m in policy.machines.values():
        findings.extend(_reachability(policy, m))
        findings.extend(_traps(policy, m))
        findings.extend(_nondeterminism(policy, m))
        findings.extend(_halt_exits(policy, m))
    findings.extend(_bands(policy, config))
    findings.extend(_shadowed(policy))
    findings.extend(_unused_reasons(policy))
    from hlcore.policy.invariants import check_invariants  # it builds on Finding: imported here, not at the top

    findings.extend(check_invariants(policy, config))
    rank = {"error": 0, "violation": 1}
    return sorted(findings, key=lambda f: (rank.get(f.level, 2), f.file, f.line or 0, f.check, f.message))


def _finding(policy: Policy, level: str, file: str, path: tuple[str | int, ...], check: str, message: str) -> Finding:
    _, line = policy.where(file, path)
    return Finding(level, file, line, format_path(path), check, message)


def _reachability(policy: Policy, m: MachineDef) -> Iterator[Finding]:
    reached = {m.initial}
    if m.fallback:
        reached.add(m.fallback["state"])
    changed = True
    while changed:
        changed = False
        for t in m.transitions:
            if t.dest not in reached and (ANY_STATE in t.sources or reached & set(t.sources)):
                reached.add(t.dest)
                changed = True
    for name in m.states:
        if name not in reached:
            yield _finding(policy, "error", m.file, ("states", name), "unreachable-state",
                           f"state '{name}' is unreachable from the initial state '{m.initial}'")


def _exits(m: MachineDef, state: str) -> list[TransitionDef]:
    return [t for t in m.transitions if t.leaves(state) and t.dest != state]


def _traps(policy: Policy, m: MachineDef) -> Iterator[Finding]:
    for name, s in m.states.items():
        if s.final:
            if _exits(m, name):
                yield _finding(policy, "error", m.file, ("states", name, "final"), "final-with-exit",
                               f"state '{name}' is declared final but has transitions out of it")
            continue
        if not _exits(m, name):
            yield _finding(policy, "error", m.file, ("states", name), "trap-state",
                           f"state '{name}' has no way out and is not declared final: true")


def _atoms(policy: Policy, guards: tuple[str, ...]) -> list[Mapping[str, Any]]:
    """Top-level conjuncts of a transition's guards (what must all hold for it to fire)."""
    out: list[Mapping[str, Any]] = []
    stack = [policy.guards[g] for g in guards]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping) and set(node) == {"all"}:
            stack.extend(node["all"])
        elif isinstance(node, Mapping) and set(node) == {"guard"}:
            stack.append(policy.guards[node["guard"]])
        else:
            out.append(node)
    return out


def _subject(atom: Mapping[str, Any]) -> str:
    return repr(sorted((k, repr(v)) for k, v in atom.items() if k not in ("eq", "ne", "in", "not_in")))


def _contradict(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if a.get("not") == b or b.get("not") == a:
        return True
    if _subject(a) != _subject(b):
        return False

    def values(x: Mapping[str, Any]) -> set[Any] | None:
        if "eq" in x and not isinstance(x["eq"], Mapping):
            return {x["eq"]}
        if "in" in x and isinstance(x["in"], list):
            return set(x["in"])
        return None

    va, vb = values(a), values(b)
    if va is not None and vb is not None:
        return not (va & vb)
    for x, y in ((a, b), (b, a)):
        vx = values(x)
        if vx is not None and "not_in" in y and isinstance(y["not_in"], list) and vx <= set(y["not_in"]):
            return True
        if vx is not None and "ne" in y and vx == {y["ne"]}:
            return True
    return False


def _disjoint(policy: Policy, t1: TransitionDef, t2: TransitionDef) -> bool:
    a1, a2 = _atoms(policy, t1.guards), _atoms(policy, t2.guards)
    return any(_contradict(x, y) for x in a1 for y in a2)


def _nondeterminism(policy: Policy, m: MachineDef) -> Iterator[Finding]:
    seen: set[tuple[int, int]] = set()
    for state in m.states:
        cands = [t for t in m.transitions if t.leaves(state)]
        for i, t1 in enumerate(cands):
            for t2 in cands[i + 1:]:
                if t1.event != t2.event or (t1.index, t2.index) in seen:
                    continue
                if t1.priority is not None and t2.priority is not None and t1.priority != t2.priority:
                    continue
                if _disjoint(policy, t1, t2):
                    continue
                seen.add((t1.index, t2.index))
                yield _finding(policy, "error", m.file, ("transitions", t2.index), "nondeterminism",
                               f"transitions[{t1.index}] and transitions[{t2.index}] both take '{t1.event}' "
                               f"from '{state}' with overlapping guards and no priority")


def _uses_allowlist(policy: Policy, node: Any, seen: set[str] | None = None) -> bool:
    seen = seen or set()
    for m in walk(node):
        if "allowlisted" in m:
            return True
        if "guard" in m and m["guard"] not in seen:
            seen.add(m["guard"])
            if _uses_allowlist(policy, policy.guards.get(m["guard"]), seen):
                return True
    return False


def _halt_exits(policy: Policy, m: MachineDef) -> Iterator[Finding]:
    halts = {n for n, s in m.states.items() if s.halt}
    for t in m.transitions:
        if m.states[t.dest].halt:
            continue
        leaving = [s for s in m.sources_of(t) if s in halts]
        if not leaving:
            continue
        if m.events[t.event].operator:
            continue
        if any(_uses_allowlist(policy, policy.guards[g]) for g in t.guards):
            continue
        yield _finding(policy, "error", m.file, ("transitions", t.index), "halt-exit",
                       f"'{t.event}' leaves {', '.join(leaving)} for '{t.dest}' but is neither an operator "
                       "event (events.<name>.operator: true) nor guarded by a recovery allowlist")


def _bands(policy: Policy, config: Any) -> Iterator[Finding]:
    for name, band in policy.bands.items():
        fire, reset = _fold(band["fire"], config), _fold(band["reset"], config)
        if fire is None or reset is None:
            continue
        rising = band.get("direction", "rising") == "rising"
        ok = fire > reset if rising else fire < reset
        if not ok:
            file = next(t.file for t in policy.tables if name in (policy.sources[t.file].data or {}).get("bands", {}))
            word = "above" if rising else "below"
            yield _finding(policy, "error", file, ("bands", name), "hysteresis",
                           f"band '{name}' is upside down: it fires {word} {fire} but resets at {reset}; a "
                           f"{band.get('direction', 'rising')} band needs fire {'>' if rising else '<'} reset")


def _fold(node: Any, config: Any) -> Any:
    if isinstance(node, Mapping) and "config" in node and set(node) <= {"config", "unit"}:
        return config.get(node["config"])
    if isinstance(node, int | float) and not isinstance(node, bool):
        return node
    return None


def _shadowed(policy: Policy) -> Iterator[Finding]:
    for table in policy.tables:
        if table.match != "first":
            continue
        for j, row in enumerate(table.rows):
            for earlier in table.rows[:j]:
                covers = set(row.on) <= set(earlier.on)
                always = _always(policy, earlier.when)
                same = earlier.when == row.when
                if covers and (always or same):
                    yield _finding(policy, "error", table.file, ("rules", row.index), "shadowed-rule",
                                   f"rule '{row.id}' can never match: the earlier rule '{earlier.id}' "
                                   f"{'always matches' if always else 'has the same condition'} on the same facts")
                    break


def _always(policy: Policy, node: Any) -> bool:
    if isinstance(node, Mapping):
        if node.get("always") is True:
            return True
        if set(node) == {"all"}:
            return all(_always(policy, n) for n in node["all"])
        if set(node) == {"any"}:
            return any(_always(policy, n) for n in node["any"])
        if set(node) == {"guard"}:
            return _always(policy, policy.guards.get(node["guard"]))
    return False


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for k, v in node.items():
            if isinstance(k, str):
                yield k
            yield from _strings(v)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _unused_reasons(policy: Policy) -> Iterator[Finding]:
    used: set[str] = set()
    for doc in policy.documents.values():
        if not isinstance(doc, Mapping) or "invariants" in doc:  # naming a code in an invariant raises nothing
            continue
        for key, value in doc.items():
            if key != "reason_codes":
                used.update(_strings(value))
    for code, r in policy.reasons.items():
        if code not in used:
            yield _finding(policy, "warning", r.file, ("reason_codes", code), "unused-reason",
                           f"reason code '{code}' is declared but nothing raises it")


__all__ = ["Finding", "lint", "references"]
