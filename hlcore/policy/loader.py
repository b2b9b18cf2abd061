"""Load machines/ and rules/ into a checked `Policy`, or fail with every problem located.

Order of work: parse YAML (syntax, duplicate keys) → cerberus shape → build objects →
cross-reference checks (states, events, guards, facts, config keys, reason codes, names).
Lint (reachability, traps, nondeterminism …) runs on the result, in `lint.py`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from hlcore import consulted
from hlcore.errors import BadInput, Problem
from hlcore.policy.conditions import Issues, check_duration, check_operand, check_predicate, references
from hlcore.policy.model import (
    ANY_STATE,
    EventDef,
    FactDef,
    MachineDef,
    Policy,
    ReasonDef,
    RowDef,
    StateDef,
    TableDef,
    TransitionDef,
)
from hlcore.policy.schema import FACTS_SCHEMA, INVARIANTS_SCHEMA, MACHINE_SCHEMA, RULES_SCHEMA, validate_shape
from hlcore.yamlsource import Source, load_yaml


class ConfigView(Protocol):
    def has(self, key: str) -> bool: ...
    def get(self, key: str) -> Any: ...


def _as_tuple(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def policy_hash(documents: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of every policy document: key order and layout don't count."""
    try:
        text = json.dumps(documents, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    except TypeError:  # keys of mixed types (`1:` beside `a:`) cannot be sorted: hash them as text
        text = json.dumps(_str_keys(documents), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _str_keys(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _str_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_str_keys(v) for v in obj]
    return obj


def read_sources(policy_dir: Path) -> dict[str, Source]:
    """Every YAML file under machines/ and rules/, keyed by its path relative to the policy dir."""
    sources: dict[str, Source] = {}
    missing = [sub for sub in ("machines", "rules") if not (policy_dir / sub).is_dir()]
    if missing:
        needed = ", ".join(f"{m}/" for m in missing)
        raise BadInput(Problem(str(policy_dir), "", f"not a policy directory: missing {needed}"))
    problems: list[Problem] = []
    for sub in ("machines", "rules"):
        for path in sorted((policy_dir / sub).glob("*.y*ml")):
            name = f"{sub}/{path.name}"
            try:
                sources[name] = load_yaml(path, name)
            except BadInput as exc:
                problems.extend(exc.problems)
    if problems:
        raise BadInput(problems)
    return sources


_LOADED: dict[tuple[str, str, str], Policy] = {}


def _stamp(policy_dir: Path) -> str:
    """Names, sizes and mtimes of the policy files: an edited file is loaded afresh."""
    return "|".join(f"{p.relative_to(policy_dir)}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                    for sub in ("machines", "rules") for p in sorted((policy_dir / sub).glob("*.y*ml")))


def load_policy(policy_dir: Path, config: ConfigView) -> Policy:
    """Load and check a policy directory against a config (for `config:` references).

    A process keeps the last few loaded policies (they are immutable): a drill boots the app and
    runs operator commands many times over the same files, and parsing is most of their cost.
    Checking reads every `config:` reference: not a use of them (`hlcore.consulted`)."""
    with consulted.paused():
        return _load_policy(policy_dir, config)


def _load_policy(policy_dir: Path, config: ConfigView) -> Policy:
    data = getattr(config, "data", None)
    if data is None:
        return build_policy(read_sources(policy_dir), config)
    stamp = _stamp(policy_dir)
    key = (str(policy_dir.resolve()), stamp, json.dumps(data, sort_keys=True, default=str))
    policy = _LOADED.get(key)
    if policy is None:
        sources, shapes = _shaped(policy_dir, stamp)
        policy = _LOADED[key] = _Builder(sources, config, copy.deepcopy(shapes)).build()
        while len(_LOADED) > 8:
            _LOADED.pop(next(iter(_LOADED)))
    return policy


_SHAPED: dict[tuple[str, str], tuple[dict[str, Source], dict[str, tuple[dict[str, Any] | None, list[Problem]]]]] = {}


def _shaped(policy_dir: Path, stamp: str) -> tuple[dict[str, Source],
                                                   dict[str, tuple[dict[str, Any] | None, list[Problem]]]]:
    """The policy files parsed and shape-validated once per stamp: neither depends on settings,
    and cerberus is most of a load (a drill variant with other settings rebuilds only the rest)."""
    key = (str(policy_dir.resolve()), stamp)
    found = _SHAPED.get(key)
    if found is None:
        sources = read_sources(policy_dir)
        found = _SHAPED[key] = (sources, {name: validate_shape(src, _schema_of(name, src))
                                          for name, src in sources.items()})
        while len(_SHAPED) > 4:
            _SHAPED.pop(next(iter(_SHAPED)))
    return found


def _schema_of(name: str, src: Source) -> dict[str, Any]:
    if name.startswith("machines/"):
        return MACHINE_SCHEMA
    if isinstance(src.data, dict) and "facts" in src.data:
        return FACTS_SCHEMA
    if isinstance(src.data, dict) and "invariants" in src.data:
        return INVARIANTS_SCHEMA  # checked by policy/invariants.py, on the built policy
    return RULES_SCHEMA


def build_policy(sources: Mapping[str, Source], config: ConfigView) -> Policy:
    builder = _Builder(sources, config)
    return builder.build()


class _Builder:
    def __init__(self, sources: Mapping[str, Source], config: ConfigView,
                 shapes: Mapping[str, tuple[dict[str, Any] | None, list[Problem]]] | None = None):
        self.sources = dict(sources)
        self.shapes = shapes  # validate_shape's answer per file, when already known
        self.config = config
        self.problems: list[Problem] = []
        self.machines: dict[str, MachineDef] = {}
        self.tables: list[TableDef] = []
        self.facts: dict[str, FactDef] = {}
        self.reasons: dict[str, ReasonDef] = {}
        self.lists: dict[str, tuple[Any, ...]] = {}
        self.allowlists: dict[str, Mapping[str, Any]] = {}
        self.guards: dict[str, Any] = {}
        self.tallies: dict[str, Mapping[str, Any]] = {}
        self.bands: dict[str, Mapping[str, Any]] = {}
        self.severities: list[str] = []
        self.owner: dict[tuple[str, str], tuple[str, tuple[str | int, ...]]] = {}
        self.docs: dict[str, dict[str, Any]] = {}

    # -- helpers ---------------------------------------------------------------------------
    def problem(self, file: str, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(self.sources[file].problem(path, message))

    def claim(self, kind: str, name: str, file: str, path: tuple[str | int, ...]) -> bool:
        """Register a globally unique name; a second declaration is an error naming the first."""
        key = (kind, name)
        if key in self.owner:
            first_file, first_path = self.owner[key]
            line = self.sources[first_file].line(first_path)
            self.problem(file, path, f"duplicate {kind} '{name}' (first declared at {first_file}:{line})")
            return False
        self.owner[key] = (file, path)
        return True

    # -- build -----------------------------------------------------------------------------
    def build(self) -> Policy:
        for name, src in sorted(self.sources.items()):
            shaped = self.shapes.get(name) if self.shapes is not None else None
            doc, problems = shaped if shaped is not None else validate_shape(src, _schema_of(name, src))
            self.problems.extend(problems)
            if doc is not None:
                self.docs[name] = doc
        if self.problems:
            raise BadInput(self.problems)
        for name, doc in sorted(self.docs.items()):
            if name.startswith("machines/"):
                self.add_machine(name, doc)
            elif "facts" in doc:
                self.add_facts(name, doc)
            elif "invariants" in doc:
                continue
            else:
                self.add_rules_shared(name, doc)
        if not self.severities:
            self.severities = []
        for name, doc in sorted(self.docs.items()):
            if name.startswith("rules/") and "facts" not in doc and "table" in doc:
                self.add_table(name, doc)
            elif name.startswith("rules/") and "facts" not in doc and doc.get("rules"):
                self.problem(name, ("rules",), "rules need a table name: add 'table: NAME' at the top")
        if self.problems:
            raise BadInput(self.problems)
        self.check_all()
        if self.problems:
            raise BadInput(self.problems)
        raw = {name: src.data for name, src in self.sources.items()}
        return Policy(
            machines=self.machines,
            tables=tuple(sorted(self.tables, key=lambda t: (t.order, t.name))),
            facts=self.facts,
            reasons=self.reasons,
            lists=self.lists,
            allowlists=self.allowlists,
            guards=self.guards,
            tallies=self.tallies,
            bands=self.bands,
            severities=tuple(self.severities),
            documents=raw,
            sources=self.sources,
            hash=policy_hash(raw),
        )

    def add_machine(self, file: str, doc: dict[str, Any]) -> None:
        name = doc["machine"]
        if not self.claim("machine", name, file, ("machine",)):
            return
        states = {s: StateDef(name=s, **{k: (tuple(v) if k == "allows" else v) for k, v in (body or {}).items()})
                  for s, body in doc["states"].items()}
        events = {e: EventDef(name=e, **(body or {})) for e, body in (doc.get("events") or {}).items()}
        transitions = []
        for i, t in enumerate(doc["transitions"]):
            transitions.append(TransitionDef(
                index=i, event=t["event"], sources=_as_tuple(t["source"]), dest=t["dest"],
                guards=tuple(t.get("guards", ())), reason=t.get("reason"), priority=t.get("priority"),
                set=t.get("set", {}), effects=tuple(t.get("effects", ())), emit=tuple(t.get("emit", ())),
                description=t.get("description", ""),
            ))
            if t["event"] not in events:
                events[t["event"]] = EventDef(name=t["event"])
        self.machines[name] = MachineDef(
            name=name, file=file, initial=doc["initial"], states=states, events=events,
            transitions=tuple(transitions), initial_reason=doc.get("initial_reason"),
            fallback=doc.get("fallback", {}), key=tuple(doc.get("key", ())), vars=doc.get("vars", {}),
            audit_category=doc.get("audit_category", name), mirror=doc.get("mirror", {}),
            description=doc.get("description", ""),
        )

    def add_facts(self, file: str, doc: dict[str, Any]) -> None:
        for name, body in doc["facts"].items():
            if self.claim("fact", name, file, ("facts", name)):
                self.facts[name] = FactDef(name=name, fields=body["fields"], key=tuple(body.get("key", ())),
                                           internal=body.get("internal", False),
                                           operator=body.get("operator", False),
                                           description=body.get("description", ""))
                if body.get("internal") and body.get("operator"):
                    self.problem(file, ("facts", name, "operator"), "a fact the policy emits (internal: true) "
                                 "cannot be operator-only")
                for i, k in enumerate(body.get("key", ())):
                    if k not in body["fields"]:
                        self.problem(file, ("facts", name, "key", i), f"key field '{k}' is not among the fields")

    def add_rules_shared(self, file: str, doc: dict[str, Any]) -> None:
        if doc.get("severities"):
            if self.severities:
                self.problem(file, ("severities",), "severities are declared twice")
            self.severities = list(doc["severities"])
        for code, body in (doc.get("reason_codes") or {}).items():
            if self.claim("reason code", code, file, ("reason_codes", code)):
                self.reasons[code] = ReasonDef(code=code, severity=body["severity"], file=file,
                                               text=body.get("text", ""))
        for kind, store in (("lists", self.lists), ("allowlists", self.allowlists), ("guards", self.guards),
                            ("tallies", self.tallies), ("bands", self.bands)):
            for name, body in (doc.get(kind) or {}).items():
                if self.claim(kind[:-1] if kind != "tallies" else "tally", name, file, (kind, name)):
                    store[name] = tuple(body) if kind == "lists" else (body or {})

    def add_table(self, file: str, doc: dict[str, Any]) -> None:
        name = doc["table"]
        if not self.claim("table", name, file, ("table",)):
            return
        default_on = _as_tuple(doc.get("on"))
        rows = []
        seen: dict[str, int] = {}
        for i, row in enumerate(doc.get("rules") or []):
            if row["id"] in seen:
                self.problem(file, ("rules", i, "id"),
                             f"duplicate rule id '{row['id']}' (also rules[{seen[row['id']]}])")
            seen[row["id"]] = i
            on = _as_tuple(row.get("on")) or default_on
            if not on:
                self.problem(file, ("rules", i), "no 'on' (the facts this rule reads) here or on the table")
            rows.append(RowDef(index=i, id=row["id"], on=on, when=row["when"], then=row["then"],
                               description=row.get("description", "")))
        self.tables.append(TableDef(name=name, file=file, machine=doc.get("machine"), order=doc["order"],
                                    match=doc["match"], rows=tuple(rows), description=doc.get("description", "")))

    # -- cross references ------------------------------------------------------------------
    def check_all(self) -> None:
        if not self.severities:
            self.problems.append(Problem("rules/", "severities", "no file declares 'severities' (ordered list)"))
        for code, r in self.reasons.items():
            if self.severities and r.severity not in self.severities:
                self.problem(r.file, ("reason_codes", code, "severity"),
                             f"unknown severity '{r.severity}' (known: {', '.join(self.severities)})")
        for name in self.guards:
            file, path = self.owner[("guard", name)]
            self.check_condition(file, path, self.guards[name], None, None)
            self.check_guard_cycle(name, file, path)
        for name, entries in self.allowlists.items():
            file, path = self.owner[("allowlist", name)]
            for code, cond in entries.items():
                self.check_reason_literal(file, (*path, code), code)
                self.check_condition(file, (*path, code), cond, None, None)
        for name, band in self.bands.items():
            file, path = self.owner[("band", name)]
            for side in ("fire", "reset"):
                self.check_operand(file, (*path, side), band[side], None, None)
        for m in self.machines.values():
            self.check_machine(m)
        for t in self.tables:
            self.check_table(t)
        self.check_directions()

    def check_directions(self) -> None:
        """`safety_order` and `safer:` are metadata for `hlcore diff`: they must name what exists."""
        for m in self.machines.values():
            order = self.docs.get(m.file, {}).get("safety_order") or []
            for i, s in enumerate(order):
                if s not in m.states:
                    self.problem(m.file, ("safety_order", i), f"unknown state '{s}' (known: {', '.join(m.states)})")
                elif s in order[:i]:
                    self.problem(m.file, ("safety_order", i), f"state '{s}' is listed twice")
        seen: dict[tuple[str, str], str] = {}
        for file, doc in sorted(self.docs.items()):
            for kind, known in (("allowlists", self.allowlists), ("lists", self.lists)):
                for name in (doc.get("safer") or {}).get(kind) or {}:
                    path = ("safer", kind, name)
                    if name not in known:
                        self.problem(file, path, f"unknown {kind[:-1]} '{name}'")
                    elif (kind, name) in seen:
                        self.problem(file, path,
                                     f"direction of '{name}' is declared twice (also in {seen[kind, name]})")
                    seen[kind, name] = file
            if "severity" in (doc.get("safer") or {}):
                if ("severity", "") in seen:
                    self.problem(file, ("safer", "severity"), f"declared twice (also in {seen['severity', '']})")
                seen["severity", ""] = file

    def scope(self, fields: set[str] | None, self_machine: str | None) -> _Scope:
        return _Scope(self, fields, self_machine)

    def check_condition(self, file: str, path: tuple[str | int, ...], node: Any,
                        fields: set[str] | None, machine: str | None) -> None:
        issues = Issues()
        check_predicate(node, path, self.scope(fields, machine), issues)
        for p, message in issues.items:
            self.problem(file, p, message)

    def check_operand(self, file: str, path: tuple[str | int, ...], node: Any,
                      fields: set[str] | None, machine: str | None) -> None:
        issues = Issues()
        check_operand(node, path, self.scope(fields, machine), issues)
        for p, message in issues.items:
            self.problem(file, p, message)

    def check_guard_cycle(self, name: str, file: str, path: tuple[str | int, ...]) -> None:
        seen: set[str] = set()
        stack = [name]
        while stack:
            current = stack.pop()
            for ref in references(self.guards.get(current), "guard"):
                if ref == name:
                    self.problem(file, path, f"guard '{name}' refers to itself (via '{current}')")
                    return
                if ref not in seen:
                    seen.add(ref)
                    stack.append(ref)

    def check_reason_literal(self, file: str, path: tuple[str | int, ...], code: Any) -> None:
        if isinstance(code, str) and code not in self.reasons:
            self.problem(file, path, f"undeclared reason code '{code}' (declare it under reason_codes:)")

    def check_reason(self, file: str, path: tuple[str | int, ...], node: Any, fields: set[str] | None,
                     machine: str | None) -> None:
        if node is None:
            return
        if isinstance(node, str):
            self.check_reason_literal(file, path, node)
        else:
            self.check_operand(file, path, node, fields, machine)

    def check_actions(self, file: str, path: tuple[str | int, ...], body: Mapping[str, Any],
                      machine: MachineDef | None, fields: set[str] | None) -> None:
        for var, expr in (body.get("set") or {}).items():
            if machine is None:
                self.problem(file, (*path, "set", var), "'set' needs a target machine")
            elif var not in machine.vars:
                self.problem(file, (*path, "set", var), f"unknown variable '{var}' of machine '{machine.name}' "
                             f"(declare it under vars: in {machine.file})")
            self.check_operand(file, (*path, "set", var), expr, fields, machine.name if machine else None)
        for i, effect in enumerate(body.get("effects") or []):
            if not isinstance(effect.get("kind"), str):
                self.problem(file, (*path, "effects", i), "an effect needs 'kind: NAME' (e.g. alert_suppressed)")
            for k, v in effect.items():
                self.check_operand(file, (*path, "effects", i, k), v, fields, machine.name if machine else None)
        for i, emit in enumerate(body.get("emit") or []):
            fact = self.facts.get(emit["fact"])
            if fact is None:
                self.problem(file, (*path, "emit", i, "fact"), f"unknown fact '{emit['fact']}'")
                continue
            if not fact.internal:
                self.problem(file, (*path, "emit", i, "fact"), f"fact '{fact.name}' is observed from jobs; "
                             "only facts declared internal: true may be emitted by the policy")
            for k, v in (emit.get("with") or {}).items():
                if k not in fact.fields:
                    self.problem(file, (*path, "emit", i, "with", k), f"fact '{fact.name}' has no field '{k}'")
                self.check_operand(file, (*path, "emit", i, "with", k), v, fields, machine.name if machine else None)

    def event_fields(self, machine: str, event: str) -> set[str] | None:
        """Fields of every fact whose rows send `event` to `machine` (what its guards may read)."""
        kinds: set[str] = set()
        for t in self.tables:
            for row in t.rows:
                target = row.then.get("machine") or t.machine
                if target == machine and row.then.get("event") == event:
                    kinds.update(row.on)
        if not kinds:
            return None
        return set.intersection(*(set(self.facts[k].fields) for k in kinds if k in self.facts)) if all(
            k in self.facts for k in kinds) else None

    def check_machine(self, m: MachineDef) -> None:
        f = m.file
        known = list(m.states)

        def state_ok(path: tuple[str | int, ...], s: str) -> None:
            if s not in m.states:
                self.problem(f, path, f"unknown state '{s}' (known: {', '.join(known)})")

        state_ok(("initial",), m.initial)
        if m.initial_reason:
            self.check_reason_literal(f, ("initial_reason",), m.initial_reason)
        if m.fallback:
            state_ok(("fallback", "state"), m.fallback["state"])
            self.check_reason_literal(f, ("fallback", "reason"), m.fallback["reason"])
        for s in m.states.values():
            for i, gate in enumerate(s.allows):
                if not gate.replace(".", "").replace("_", "").isalnum():
                    self.problem(f, ("states", s.name, "allows", i), f"bad gate name '{gate}'")
        used_events = {t.event for t in m.transitions}
        for e in m.events:
            if e not in used_events:
                self.problem(f, ("events", e), f"event '{e}' is declared but no transition uses it")
        for t in m.transitions:
            base = ("transitions", t.index)
            for j, s in enumerate(t.sources):
                if s != ANY_STATE:
                    state_ok((*base, "source", j) if len(t.sources) > 1 else (*base, "source"), s)
            state_ok((*base, "dest"), t.dest)
            for j, g in enumerate(t.guards):
                if g not in self.guards:
                    known_guards = ", ".join(sorted(self.guards)) or "none"
                    self.problem(f, (*base, "guards", j), f"unknown guard '{g}' (known: {known_guards})")
            fields = self.event_fields(m.name, t.event)
            self.check_reason(f, (*base, "reason"), t.reason, fields, m.name)
            self.check_actions(f, base, {"set": t.set, "effects": t.effects, "emit": t.emit}, m, fields)
        if m.mirror and m.key:
            self.problem(f, ("mirror",), "only a singleton machine (no key:) can be mirrored into system_state")
        for s in m.states.values():
            if s.stored_as is not None:
                self.check_stored_as(m, s.name, s.stored_as)

    def check_stored_as(self, m: MachineDef, state: str, stored_as: str) -> None:
        """A state stored under another state's name is told apart by the reason its transitions record."""
        path = ("states", state, "stored_as")
        if stored_as not in m.states:
            self.problem(m.file, path, f"unknown state '{stored_as}' (known: {', '.join(m.states)})")
        elif stored_as == state or m.states[stored_as].stored_as is not None:
            self.problem(m.file, path, f"'{stored_as}' must be another state, itself stored under its own name")
        for t in m.transitions:
            if t.dest == state and not isinstance(t.reason, str):
                self.problem(m.file, ("transitions", t.index, "reason"),
                             f"a transition into '{state}' (stored as '{stored_as}') needs a literal reason: "
                             "the stored reason tells its rows apart")
        if not m.entry_reasons(state):
            self.problem(m.file, path, f"no transition into '{state}' records a reason to tell its rows apart")

    def check_table(self, t: TableDef) -> None:
        f = t.file
        if t.machine is not None and t.machine not in self.machines:
            self.problem(f, ("machine",), f"unknown machine '{t.machine}' (known: {', '.join(sorted(self.machines))})")
            return
        for row in t.rows:
            base = ("rules", row.index)
            for kind in row.on:
                if kind not in self.facts:
                    self.problem(f, (*base, "on") if "on" in self.sources[f].data["rules"][row.index] else ("on",),
                                 f"unknown fact '{kind}' (known: {', '.join(sorted(self.facts))})")
            facts = [self.facts[k] for k in row.on if k in self.facts]
            fields = set.intersection(*(set(x.fields) for x in facts)) if facts else None
            target_name = row.then.get("machine") or t.machine
            target = self.machines.get(target_name) if target_name else None
            if target_name and target is None:
                self.problem(f, (*base, "then", "machine"), f"unknown machine '{target_name}'")
                continue
            self.check_condition(f, (*base, "when"), row.when, fields, target_name)
            event = row.then.get("event")
            if event is not None:
                if target is None:
                    self.problem(f, (*base, "then", "event"),
                                 "an event needs a machine (then.machine or table machine)")
                elif event not in target.events:
                    self.problem(f, (*base, "then", "event"), f"unknown event '{event}' of machine '{target.name}' "
                                 f"(known: {', '.join(sorted(target.events))})")
            if target is not None and target.is_template and fields is not None:
                missing = [k for k in target.key if k not in fields]
                if missing:
                    self.problem(f, (*base, "on"), f"machine '{target.name}' is keyed by {', '.join(target.key)}; "
                                 f"fact(s) {', '.join(row.on)} lack {', '.join(missing)}")
            self.check_reason(f, (*base, "then", "reason"), row.then.get("reason"), fields, target_name)
            if target is not None and event is not None and "reason" in row.then:
                for tr in target.transitions:
                    if (tr.event == event and target.states.get(tr.dest) is not None
                            and target.states[tr.dest].stored_as and row.then["reason"] != tr.reason):
                        self.problem(f, (*base, "then", "reason"),
                                     f"'{tr.dest}' is stored as '{target.states[tr.dest].stored_as}' and told "
                                     f"apart by its reason '{tr.reason}': a rule may not record another")
            sev = row.then.get("severity")
            if sev is not None and self.severities and sev not in self.severities:
                self.problem(f, (*base, "then", "severity"),
                             f"unknown severity '{sev}' (known: {', '.join(self.severities)})")
            for j, rec in enumerate(row.then.get("record") or []):
                if rec["tally"] not in self.tallies:
                    self.problem(f, (*base, "then", "record", j, "tally"), f"unknown tally '{rec['tally']}'")
                for k in ("key", "value"):
                    if k in rec:
                        self.check_operand(f, (*base, "then", "record", j, k), rec[k], fields, target_name)
            self.check_actions(f, (*base, "then"), row.then, target, fields)


class _Scope:
    """Name resolution for condition checks, for one place in the policy."""

    def __init__(self, b: _Builder, fields: set[str] | None, machine: str | None):
        self._b = b
        self._fields = fields
        self._machine = machine

    def has_config(self, key: str) -> bool:
        return self._b.config.has(key)

    def config_value(self, key: str) -> Any:
        return self._b.config.get(key)

    def has_machine(self, name: str) -> bool:
        return name in self._b.machines

    def machine_states(self, name: str) -> list[str]:
        return list(self._b.machines[name].states)

    def machine_vars(self, name: str) -> list[str]:
        return list(self._b.machines[name].vars)

    def has_list(self, name: str) -> bool:
        return name in self._b.lists

    def list_values(self, name: str) -> list[Any]:
        return list(self._b.lists[name])

    def has_allowlist(self, name: str) -> bool:
        return name in self._b.allowlists

    def has_guard(self, name: str) -> bool:
        return name in self._b.guards

    def has_tally(self, name: str) -> bool:
        return name in self._b.tallies

    def band(self, name: str) -> Mapping[str, Any] | None:
        return self._b.bands.get(name)

    def fact_fields(self) -> set[str] | None:
        return self._fields

    def self_machine(self) -> str | None:
        return self._machine


def duration_problems(value: Any) -> list[str]:  # used by lint for tallies' keep
    issues = Issues()
    check_duration(value, (), _NullScope(), issues)
    return [m for _, m in issues.items]


class _NullScope:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: True


def iter_rows(policy: Policy) -> Iterable[tuple[TableDef, RowDef]]:
    for t in policy.tables:
        for r in t.rows:
            yield t, r
