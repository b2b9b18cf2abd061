"""Safety invariants, proved over the compiled machines and rule tables (rules/invariants.yaml).

The policy declares which invariants hold and with what data (gates, states, reason codes); this
module implements each `check:` kind once. A broken invariant is a `violation` finding (exit 1
from `hlcore validate`) located at the offending line, naming the invariant and, where a path
exists, a counter-example trace: fact -> rule -> transition. A malformed invariant (unknown
machine, state or reason) is an `error` (exit 2, bad input).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hlcore.policy.lint import Finding
from hlcore.policy.meaning import Meaning
from hlcore.policy.model import MachineDef, Policy, RowDef, TableDef, TransitionDef
from hlcore.yamlsource import format_path

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class _Inv:
    """One declared invariant and where it is declared."""

    id: str
    file: str
    index: int
    body: Mapping[str, Any]
    policy: Policy
    meaning: Meaning

    @property
    def declared(self) -> str:
        _, line = self.policy.where(self.file, ("invariants", self.index))
        return f"{self.file}:{line}" if line else self.file

    def finding(self, level: str, file: str, path: PathKey, message: str) -> Finding:
        _, line = self.policy.where(file, path)
        where = f" (invariant declared at {self.declared})" if level == "violation" else ""
        return Finding(level, file, line, format_path(path), f"invariant {self.id}", message + where)

    def error(self, key: str, message: str) -> Finding:
        return self.finding("error", self.file, ("invariants", self.index, key), message)

    def machines(self) -> list[MachineDef]:
        """The machine named by `machine:`, else every machine that declares a safety order or halt."""
        name = self.body.get("machine")
        if name:
            return [self.policy.machines[name]] if name in self.policy.machines else []
        return [m for m in self.policy.machines.values() if _order(self.policy, m) or _halts(self.policy, m)]


def check_invariants(policy: Policy, config: Any) -> list[Finding]:
    """Every declared invariant, checked; violations and declaration errors as findings."""
    meaning = Meaning(policy, config)
    findings: list[Finding] = []
    for file, doc in sorted(policy.documents.items()):
        if not isinstance(doc, Mapping) or "invariants" not in doc:
            continue
        seen: set[str] = set()
        for i, body in enumerate(doc["invariants"]):
            inv = _Inv(body["id"], file, i, body, policy, meaning)
            if inv.id in seen:
                findings.append(inv.error("id", f"duplicate invariant id '{inv.id}'"))
                continue
            seen.add(inv.id)
            name = body.get("machine")
            if name and name not in policy.machines:
                findings.append(inv.error("machine", f"unknown machine '{name}' "
                                          f"(known: {', '.join(sorted(policy.machines))})"))
                continue
            findings.extend(CHECKS[body["check"]](inv))
    return findings


# --------------------------------------------------------------------------- shared analysis


def _order(policy: Policy, m: MachineDef) -> list[str]:
    return list(policy.documents.get(m.file, {}).get("safety_order") or [])


def _declared_halts(policy: Policy, m: MachineDef) -> set[str]:
    """States some `halt_declared` invariant says are halt states of `m` (even if the flag is gone)."""
    out: set[str] = set()
    for doc in policy.documents.values():
        if isinstance(doc, Mapping) and "invariants" in doc:
            for body in doc["invariants"]:
                if body.get("check") == "halt_declared" and body.get("machine") == m.name:
                    out.update(s for s in body.get("states") or () if s in m.states)
    return out


def _halts(policy: Policy, m: MachineDef) -> set[str]:
    return {n for n, s in m.states.items() if s.halt} | _declared_halts(policy, m)


def _row_machine(table: TableDef, row: RowDef) -> str | None:
    return row.then.get("machine") or table.machine


def _raisers(policy: Policy, machine: str, event: str) -> list[tuple[TableDef, RowDef]]:
    """The rule rows that fire `event` on `machine` (rules are the only way an event fires)."""
    return [(t, r) for t in policy.tables for r in t.rows
            if r.then.get("event") == event and _row_machine(t, r) == machine]


def _row_where(policy: Policy, table: TableDef, row: RowDef) -> str:
    _, line = policy.where(table.file, ("rules", row.index))
    return f"{table.file}:{line}" if line else table.file


def _t_where(policy: Policy, m: MachineDef, t: TransitionDef) -> str:
    _, line = policy.where(m.file, ("transitions", t.index))
    return f"{m.file}:{line}" if line else m.file


def _trace(policy: Policy, m: MachineDef, t: TransitionDef, source: str, table: TableDef | None,
           row: RowDef | None) -> str:
    """`fact F -> rule T.R (file:line) -> transition M.transitions[i] E: S -> D (file:line)`."""
    step = f"transition {m.name}.transitions[{t.index}] '{t.event}': {source} -> {t.dest} ({_t_where(policy, m, t)})"
    if table is None or row is None:
        return step
    return f"fact {'/'.join(row.on)} -> rule {table.name}.{row.id} ({_row_where(policy, table, row)}) -> {step}"


def _operator_only(policy: Policy, row: RowDef) -> bool:
    return bool(row.on) and all(k in policy.facts and policy.facts[k].operator for k in row.on)


def _state_allows(meaning: Meaning, row: RowDef, machine: str, state: str) -> bool:
    """False when one of the row's top-level conjuncts rules out `machine` being in `state`."""
    for atom in meaning.conjuncts(row.when):
        if not isinstance(atom, Mapping) or atom.get("state") != machine:
            continue
        if "eq" in atom and isinstance(atom["eq"], str) and atom["eq"] != state:
            return False
        if "ne" in atom and isinstance(atom["ne"], str) and atom["ne"] == state:
            return False
        allowed = meaning.literal_list(atom["in"]) if "in" in atom else None
        if allowed is not None and state not in allowed:
            return False
        banned = meaning.literal_list(atom["not_in"]) if "not_in" in atom else None
        if banned is not None and state in banned:
            return False
    return True


def dead_rows(policy: Policy, meaning: Meaning) -> dict[tuple[str, str], str]:
    """Rows that can never match, keyed (table, row id), with why: unsatisfiable conditions, or
    (first-match tables) an earlier row on the same facts whose condition this one implies."""
    dead: dict[tuple[str, str], str] = {}
    for table in policy.tables:
        for j, row in enumerate(table.rows):
            clash = meaning.unsatisfiable(row.when)
            if clash is not None:
                dead[(table.name, row.id)] = f"its conditions {_show(clash[0])} and {_show(clash[1])} contradict"
                continue
            if table.match != "first":
                continue
            for earlier in table.rows[:j]:
                if set(row.on) <= set(earlier.on) and meaning.implies(row.when, earlier.when):
                    dead[(table.name, row.id)] = (f"the earlier rule '{earlier.id}' "
                                                  f"({_row_where(policy, table, earlier)}) matches whenever it would")
                    break
    return dead


def _show(node: Any) -> str:
    if isinstance(node, Mapping):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in node.items()) + "}"
    if isinstance(node, list):
        return "[" + ", ".join(_show(v) for v in node) + "]"
    return str(node)


# --------------------------------------------------------------------------- checks


def _gates_declared(inv: _Inv) -> Iterator[Finding]:
    catalog = inv.body.get("gates")
    if not isinstance(catalog, Mapping):
        yield inv.error("gates", "expected a mapping machine -> [gate, ...]")
        return
    for name in catalog:
        if name not in inv.policy.machines:
            yield inv.error("gates", f"unknown machine '{name}'")
    for m in inv.policy.machines.values():
        known = catalog.get(m.name) or []
        for s in m.states.values():
            for i, gate in enumerate(s.allows):
                if gate not in known:
                    yield inv.finding("violation", m.file, ("states", s.name, "allows", i),
                                      f"state '{s.name}' allows '{gate}', which is not a gate of machine "
                                      f"'{m.name}' (known: {', '.join(known) or 'none'}); no job asks for it, "
                                      "so the gate it was meant to be stays closed or open by accident")


def _halt_declared(inv: _Inv) -> Iterator[Finding]:
    m = inv.machines()[0] if inv.body.get("machine") else None
    if m is None:
        yield inv.error("machine", "halt_declared needs `machine:`")
        return
    for s in inv.body.get("states") or []:
        if s not in m.states:
            yield inv.error("states", f"unknown state '{s}' of machine '{m.name}'")
        elif not m.states[s].halt:
            yield inv.finding("violation", m.file, ("states", s),
                              f"state '{s}' must be declared `halt: true`: without it the engine and the "
                              "operator tools treat it as an ordinary state")


def _halt_closes_gates(inv: _Inv) -> Iterator[Finding]:
    gates = inv.body.get("gates")
    if not isinstance(gates, list):
        yield inv.error("gates", "expected a list of gates a halt state must keep closed")
        return
    for m in inv.machines():
        for h in sorted(_halts(inv.policy, m)):
            for i, gate in enumerate(m.states[h].allows):
                if gate in gates:
                    yield inv.finding("violation", m.file, ("states", h, "allows", i),
                                      f"halt state '{h}' allows '{gate}': a halt state opens no order gate")


def _halt_exits_guarded(inv: _Inv) -> Iterator[Finding]:
    policy, meaning = inv.policy, inv.meaning
    for m in inv.machines():
        halts = _halts(policy, m)
        for t in m.transitions:
            if t.dest in halts:
                continue
            leaving = [s for s in m.sources_of(t) if s in halts]
            if not leaving or any(meaning.requires_allowlist(policy.guards.get(g)) for g in t.guards):
                continue
            found = next(((table, row, s) for table, row in _raisers(policy, m.name, t.event) for s in leaving
                          if not _operator_only(policy, row) and _state_allows(meaning, row, m.name, s)), None)
            if found is None:
                continue
            table, row, source = found
            yield inv.finding(
                "violation", m.file, ("transitions", t.index),
                f"'{t.event}' leaves halt state {source} for '{t.dest}' without requiring a recovery "
                "allowlist (an `allowlisted:` every path of its guards needs) or an operator-only fact; "
                f"counter-example: {_trace(policy, m, t, source, table, row)}")


def _halt_exit_one_step(inv: _Inv) -> Iterator[Finding]:
    policy = inv.policy
    for m in inv.machines():
        halts, order = _halts(policy, m), _order(policy, m)
        landing = next((s for s in order if s not in halts), None)
        if landing is None:
            continue
        for t in m.transitions:
            leaving = [s for s in m.sources_of(t) if s in halts]
            if leaving and t.dest not in halts and t.dest != landing:
                raisers = _raisers(policy, m.name, t.event)
                table, row = raisers[0] if raisers else (None, None)
                yield inv.finding(
                    "violation", m.file, ("transitions", t.index, "dest"),
                    f"'{t.event}' leaves halt state {leaving[0]} straight for '{t.dest}'; a halt is left only "
                    f"for '{landing}', the safest state that is not a halt; counter-example: "
                    f"{_trace(policy, m, t, leaving[0], table, row)}")


def _operator_events(inv: _Inv) -> Iterator[Finding]:
    policy = inv.policy
    for m in policy.machines.values():
        for e in m.events.values():
            if not e.operator:
                continue
            for table, row in _raisers(policy, m.name, e.name):
                if _operator_only(policy, row):
                    continue
                t = next((t for t in m.transitions if t.event == e.name), None)
                trace = _trace(policy, m, t, "|".join(m.sources_of(t)), table, row) if t else \
                    f"fact {'/'.join(row.on)} -> rule {table.name}.{row.id}"
                yield inv.finding(
                    "violation", m.file, ("events", e.name, "operator"),
                    f"event '{e.name}' is marked operator: true but a job's fact raises it "
                    f"('{'/'.join(row.on)}' is not declared operator: true in the fact catalog); "
                    f"counter-example: {trace}")
                break


def _initial_is_safest(inv: _Inv) -> Iterator[Finding]:
    for m in inv.machines():
        order, halts = _order(inv.policy, m), _halts(inv.policy, m)
        safest = next((s for s in order if s not in halts), None)
        if safest is None or m.initial in halts or m.initial == safest:
            continue
        yield inv.finding("violation", m.file, ("initial",),
                          f"initial state '{m.initial}' is less safe than '{safest}' (safety_order "
                          f"{', '.join(order)}): after a restart the machine must start at the safest "
                          "state that is not a halt")


def _fallback_is_safest(inv: _Inv) -> Iterator[Finding]:
    for m in inv.machines():
        order = _order(inv.policy, m)
        state = m.fallback.get("state") if m.fallback else None
        if not order or state is None or state == order[0]:
            continue
        yield inv.finding("violation", m.file, ("fallback", "state"),
                          f"fallback state '{state}' (used when the stored state cannot be read) is not the "
                          f"safest state '{order[0]}' (safety_order {', '.join(order)})")


def _reasons_reach_halt(inv: _Inv) -> Iterator[Finding]:
    policy, meaning = inv.policy, inv.meaning
    machines = inv.machines() if inv.body.get("machine") else []
    if not machines:
        yield inv.error("machine", "reasons_reach_halt needs `machine:`")
        return
    m = machines[0]
    halts = _halts(policy, m)
    dead = dead_rows(policy, meaning)
    facts = set(inv.body.get("facts") or ())  # when given: only rows on these facts count
    for k, code in enumerate(inv.body.get("reasons") or []):
        if code not in policy.reasons:
            yield inv.error("reasons", f"undeclared reason code '{code}'")
            continue
        rows = [(t, r) for t in policy.tables for r in t.rows
                if _row_machine(t, r) == m.name and r.then.get("event") and (not facts or facts & set(r.on)) and (
                    r.then.get("reason") == code or any(
                        tr.reason == code for tr in m.transitions if tr.event == r.then.get("event")))]
        for state in (s for s in m.states if s not in halts):
            if any((t.name, r.id) not in dead and _state_allows(meaning, r, m.name, state) and any(
                    tr.event == r.then["event"] and tr.leaves(state) and tr.dest in halts for tr in m.transitions)
                   for t, r in rows):
                continue
            why = "; ".join(f"rule {t.name}.{r.id} ({_row_where(policy, t, r)}) "
                            + (f"never matches: {dead[(t.name, r.id)]}" if (t.name, r.id) in dead else
                               f"fires '{r.then['event']}', which takes {state} to no halt state"
                               if _state_allows(meaning, r, m.name, state) else f"does not fire in {state}")
                            for t, r in rows) or ("no rule raises it" + (f" on {', '.join(sorted(facts))}"
                                                                          if facts else ""))
            yield inv.finding("violation", inv.file, ("invariants", inv.index, "reasons", k),
                              f"rollback reason {code} does not take {m.name} from {state} to a halt state "
                              f"({', '.join(sorted(halts)) or 'none declared'}): {why}")


def _rules_live(inv: _Inv) -> Iterator[Finding]:
    policy = inv.policy
    tables = {t.name: t for t in policy.tables}
    for (table_name, row_id), why in sorted(dead_rows(policy, inv.meaning).items()):
        table = tables[table_name]
        row = next(r for r in table.rows if r.id == row_id)
        if table.match == "first" and _structurally_shadowed(inv.meaning, table, row):
            continue  # lint's shadowed-rule already reports it (exit 2)
        yield inv.finding("violation", table.file, ("rules", row.index),
                          f"rule '{row.id}' can never match: {why}")


def _structurally_shadowed(meaning: Meaning, table: TableDef, row: RowDef) -> bool:
    for earlier in table.rows[:row.index]:
        if set(row.on) <= set(earlier.on) and (earlier.when == row.when or _always(meaning, earlier.when)):
            return True
    return False


def _always(meaning: Meaning, node: Any) -> bool:
    node = meaning.expand(node)
    if isinstance(node, Mapping):
        if node.get("always") is True:
            return True
        if set(node) == {"all"}:
            return all(_always(meaning, n) for n in node["all"])
        if set(node) == {"any"}:
            return any(_always(meaning, n) for n in node["any"])
    return False


CHECKS: dict[str, Callable[[_Inv], Iterator[Finding]]] = {
    "gates_declared": _gates_declared,
    "halt_declared": _halt_declared,
    "halt_closes_gates": _halt_closes_gates,
    "halt_exits_guarded": _halt_exits_guarded,
    "halt_exit_one_step": _halt_exit_one_step,
    "operator_events": _operator_events,
    "initial_is_safest": _initial_is_safest,
    "fallback_is_safest": _fallback_is_safest,
    "reasons_reach_halt": _reasons_reach_halt,
    "rules_live": _rules_live,
}
