"""The semantic diff: two loaded sides compared as data, each change labelled for safety.

Nothing here knows a state, reason, list or setting by name. Directions come from data:
- settings: `meta: {safer: ...}` in config/schema.yaml (lower / higher / true / false / an
  ordered list of values / more / fewer / neutral; `off: V` marks the value that disables a check);
- states: a machine's `safety_order` (safest first), else gate inclusion (a state allowing a
  strict subset of another's gates is the safer one);
- lists and allowlists: `safer: {allowlists: {NAME: fewer}, lists: {NAME: more}}` in rules/;
- severities: the ordered `severities` list plus `safer: {severity: higher}`.
A change with no declared direction is labelled neutral and says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from hlcore.config.settings import SCHEMA_FILE, _split_schema_file
from hlcore.diff.sides import Side
from hlcore.policy.model import ANY_STATE, MachineDef, Policy, TransitionDef
from hlcore.resources import default_dir
from hlcore.yamlsource import Source, load_yaml

STRICTER, LOOSER, NEUTRAL = "stricter", "looser", "neutral"
LABELS = (LOOSER, STRICTER, NEUTRAL)
UNDECLARED = "no direction declared"
_DOC_KEYS = ("description",)  # documentation, not policy: never reported


@dataclass(frozen=True)
class Change:
    """One semantic change: what, on which side it lives (file:line), and its safety label."""

    area: str  # setting, machine, state, gate, transition, rule, table, reason, allowlist, list, guard, ...
    subject: str
    action: str  # added, removed, changed
    label: str
    why: str
    before: Any = None
    after: Any = None
    where: str = ""
    refs: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"area": self.area, "subject": self.subject, "action": self.action, "label": self.label,
                "why": self.why, "before": self.before, "after": self.after, "where": self.where,
                "refs": list(self.refs)}


def flip(label: str) -> str:
    return {LOOSER: STRICTER, STRICTER: LOOSER}.get(label, label)


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def strip_docs(node: Any) -> Any:
    """The document without `description`s: prose is not policy."""
    if isinstance(node, dict):
        return {k: strip_docs(v) for k, v in node.items() if k not in _DOC_KEYS}
    if isinstance(node, list):
        return [strip_docs(x) for x in node]
    return node


# =========================================================================== settings


@cache
def settings_schema() -> dict[str, Any]:
    """The installed hlcore's settings schema (directions live in its `meta:` keys)."""
    path = default_dir("config") / SCHEMA_FILE
    schema, _checks = _split_schema_file(load_yaml(path, str(path)))
    return schema


def setting_leaves(schema: Mapping[str, Any], data: Mapping[str, Any], prefix: str = "") -> Iterator[
        tuple[str, Any, Mapping[str, Any]]]:
    """(dotted key, value, meta) of every setting; sections and fixed-key maps are walked into."""
    for key, rule in schema.items():
        if key not in data or not isinstance(rule, Mapping):
            continue
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if rule.get("type") == "dict" and isinstance(rule.get("schema"), Mapping) and isinstance(data[key], dict):
            yield from setting_leaves(rule["schema"], data[key], dotted)
        else:
            meta = rule.get("meta") if isinstance(rule.get("meta"), Mapping) else {}
            yield dotted, data[key], meta


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def setting_label(before: Any, after: Any, meta: Mapping[str, Any]) -> tuple[str, str]:
    """(label, why) for one setting whose value changed, from its `meta.safer`."""
    safer = meta.get("safer")
    if safer is None:
        return NEUTRAL, UNDECLARED
    if safer == NEUTRAL:
        return NEUTRAL, "declared neutral (safer: neutral)"
    if _is_number(before) and _is_number(after) and safer in ("lower", "higher"):
        if "off" in meta and before == meta["off"]:
            return STRICTER, f"check turned on ({meta['off']} = off)"
        if "off" in meta and after == meta["off"]:
            return LOOSER, f"check turned off ({meta['off']} = off)"
        larger = after > before
        looser = larger if safer == "lower" else not larger
        return (LOOSER if looser else STRICTER), f"{'larger' if larger else 'smaller'} is " \
               f"{'looser' if looser else 'stricter'} (safer: {safer})"
    if isinstance(safer, bool) and isinstance(after, bool):
        return (STRICTER if after == safer else LOOSER), f"safer: {str(safer).lower()}"
    if isinstance(safer, list) and before in safer and after in safer:
        tighter = safer.index(after) < safer.index(before)
        return (STRICTER if tighter else LOOSER), f"safest first: {', '.join(map(str, safer))}"
    return NEUTRAL, f"{UNDECLARED} for this value (safer: {safer})"


def _entries_label(added: list[Any], removed: list[Any], safer: Any, what: str) -> tuple[str, str]:
    if safer not in ("more", "fewer"):
        return NEUTRAL, (UNDECLARED if safer is None else "declared neutral") + f" for {what}"
    if added and removed:
        return NEUTRAL, f"entries both added and removed (safer: {safer})"
    more = bool(added)
    looser = more if safer == "fewer" else not more
    return (LOOSER if looser else STRICTER), f"{'more' if more else 'fewer'} {what} is " \
           f"{'looser' if looser else 'stricter'} (safer: {safer})"


def config_refs(policy: Policy) -> dict[str, list[str]]:
    """Setting key -> where the policy reads it (`{config: key}`), as `file:line`."""
    refs: dict[str, list[str]] = {}

    def walk(node: Any, file: str, path: tuple[str | int, ...]) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("config"), str):
                f, line = policy.where(file, path)
                refs.setdefault(node["config"], []).append(f"{f}:{line}")
            for k, v in node.items():
                walk(v, file, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, file, (*path, i))

    for file, doc in policy.documents.items():
        walk(doc, file, ())
    return {k: sorted(set(v), key=lambda s: (s.split(":")[0], int(s.split(":")[1] or 0))) for k, v in refs.items()}


def _settings_lines(side: Side) -> Source | None:
    return load_yaml(side.settings_file, "config/settings.yaml") if side.settings_file else None


def diff_settings(base: Side, head: Side) -> list[Change]:
    """Every setting whose merged value differs, labelled from the schema's `meta.safer`."""
    schema = settings_schema()
    before = {k: (v, m) for k, v, m in setting_leaves(schema, base.settings.data)}
    after = {k: (v, m) for k, v, m in setting_leaves(schema, head.settings.data)}
    refs = config_refs(head.policy)
    src_head, src_base = _settings_lines(head), _settings_lines(base)
    changes: list[Change] = []
    for key in sorted(set(before) | set(after)):
        (b, meta), (a, _) = before.get(key, (None, {})), after.get(key, (None, {}))
        if canonical(a) == canonical(b):
            continue
        src = src_head if src_head is not None and tuple(key.split(".")) in src_head.lines else src_base
        where = f"{src.file}:{src.lines[tuple(key.split('.'))]}" if src is not None and tuple(
            key.split(".")) in src.lines else "packaged defaults"
        used = tuple(refs.get(key, ()))
        if isinstance(a, dict) and isinstance(b, dict):  # a free map: entry by entry
            for entry in sorted(set(a) | set(b), key=str):
                if entry in a and entry in b and canonical(a[entry]) == canonical(b[entry]):
                    continue
                action = "added" if entry not in b else "removed" if entry not in a else "changed"
                if action == "changed":
                    label, why = NEUTRAL, "map value changed"
                else:
                    label, why = _entries_label([entry] if action == "added" else [],
                                                [entry] if action == "removed" else [], meta.get("safer"), "entries")
                changes.append(Change("setting", f"{key}.{entry}", action, label, why, b.get(entry), a.get(entry),
                                      where, used))
            continue
        if isinstance(a, list) and isinstance(b, list) and meta.get("safer") in ("more", "fewer"):
            added = [x for x in a if x not in b]
            removed = [x for x in b if x not in a]
            label, why = _entries_label(added, removed, meta.get("safer"), "entries") if (added or removed) else (
                NEUTRAL, "order changed")
        else:
            label, why = setting_label(b, a, meta)
        changes.append(Change("setting", key, "changed", label, why, b, a, where, used))
    return changes


# =========================================================================== policy directions


def safety_order(policy: Policy, machine: str) -> list[str]:
    m = policy.machines[machine]
    return list(policy.documents.get(m.file, {}).get("safety_order") or [])


def safer_declarations(policy: Policy) -> dict[str, Any]:
    """The policy's `safer:` blocks merged: {allowlists: {...}, lists: {...}, severity: ...}."""
    out: dict[str, Any] = {"allowlists": {}, "lists": {}, "severity": None}
    for _file, doc in sorted(policy.documents.items()):
        block = doc.get("safer") if isinstance(doc, dict) else None
        if not isinstance(block, dict):
            continue
        out["allowlists"].update(block.get("allowlists") or {})
        out["lists"].update(block.get("lists") or {})
        if block.get("severity"):
            out["severity"] = block["severity"]
    return out


def compare_states(policy: Policy, machine: str, a: str, b: str) -> int | None:
    """< 0: `a` is safer than `b`; > 0: less safe; 0: as safe; None: no declared or derivable order."""
    return order_basis(policy, machine, a, b)[0]


def order_basis(policy: Policy, machine: str, a: str, b: str) -> tuple[int | None, str]:
    """The comparison and what it rests on: the machine's `safety_order`, else gate inclusion."""
    if a == b:
        return 0, "same state"
    m = policy.machines.get(machine)
    if m is None or a not in m.states or b not in m.states:
        return None, UNDECLARED
    order = safety_order(policy, machine)
    if a in order and b in order:
        return order.index(a) - order.index(b), "safety_order"
    ga, gb = set(m.states[a].allows), set(m.states[b].allows)
    if ga < gb:
        return -1, "allowed gates"
    if gb < ga:
        return 1, "allowed gates"
    return None, UNDECLARED


def edge_direction(policy: Policy, machine: str, src: str, dest: str) -> str:
    """LOOSER when the edge leads to a less safe state, STRICTER to a safer one, else NEUTRAL."""
    c = compare_states(policy, machine, dest, src)
    if c is None or c == 0:
        return NEUTRAL
    return LOOSER if c > 0 else STRICTER


# =========================================================================== policy diff


class _PolicyDiff:
    def __init__(self, base: Policy, head: Policy):
        self.base, self.head = base, head
        self.changes: list[Change] = []

    def add(self, area: str, subject: str, action: str, label: str, why: str, before: Any = None,
            after: Any = None, where: tuple[Policy, str, tuple[str | int, ...]] | None = None) -> None:
        loc = ""
        if where is not None:
            policy, file, path = where
            f, line = policy.where(file, path)
            loc = f"{f}:{line}" if line else f
        self.changes.append(Change(area, subject, action, label, why, before, after, loc))

    def run(self) -> list[Change]:
        self.machines()
        self.reasons()
        self.named("allowlist", "allowlists")
        self.named("list", "lists")
        self.named("guard", "guards")
        self.named("tally", "tallies")
        self.named("band", "bands")
        self.facts()
        self.tables()
        self.invariants()
        self.metadata()
        if not self.changes:
            self.safety_net()
        return self.changes

    # ------------------------------------------------------------------ machines
    def machines(self) -> None:
        b, h = self.base.machines, self.head.machines
        for name in sorted(set(b) | set(h)):
            if name not in h:
                self.add("machine", name, "removed", NEUTRAL, "machine removed", where=(self.base, b[name].file, ()))
            elif name not in b:
                self.add("machine", name, "added", NEUTRAL, "machine added", where=(self.head, h[name].file, ()))
            else:
                self.machine(b[name], h[name])

    def machine(self, mb: MachineDef, mh: MachineDef) -> None:
        name = mh.name
        for what, old, new in (("initial", mb.initial, mh.initial),
                               ("fallback", (mb.fallback or {}).get("state"), (mh.fallback or {}).get("state"))):
            if old == new:
                continue
            c, basis = order_basis(self.head, name, new, old) if old and new else (None, UNDECLARED)
            label = NEUTRAL if not c else (LOOSER if c > 0 else STRICTER)
            why = (f"{new} is {'less safe' if c > 0 else 'safer'} than {old} ({basis})"
                   if c else f"{UNDECLARED} between {old} and {new}")
            self.add("machine", f"{name}.{what}", "changed", label, why, old, new, (self.head, mh.file, (what,)))
        for what, old, new in (("initial_reason", mb.initial_reason, mh.initial_reason),
                               ("fallback.reason", (mb.fallback or {}).get("reason"),
                                (mh.fallback or {}).get("reason")),
                               ("key", list(mb.key), list(mh.key)), ("vars", dict(mb.vars), dict(mh.vars)),
                               ("mirror", dict(mb.mirror), dict(mh.mirror)),
                               ("audit_category", mb.audit_category, mh.audit_category)):
            if canonical(old) != canonical(new):
                self.add("machine", f"{name}.{what}", "changed", NEUTRAL, UNDECLARED, old, new,
                         (self.head, mh.file, (what.split(".")[0],)))
        for s in sorted(set(mb.states) | set(mh.states)):
            if s not in mh.states:
                self.add("state", f"{name}.{s}", "removed", NEUTRAL, "its transitions are listed separately",
                         list(mb.states[s].allows), None, (self.base, mb.file, ("states", s)))
            elif s not in mb.states:
                self.add("state", f"{name}.{s}", "added", NEUTRAL, "its transitions are listed separately",
                         None, list(mh.states[s].allows), (self.head, mh.file, ("states", s)))
            else:
                self.state(mb, mh, s)
        for e in sorted(set(mb.events) & set(mh.events)):
            if mb.events[e].operator != mh.events[e].operator:
                self.add("event", f"{name}.{e}", "changed", NEUTRAL, "operator flag changed",
                         mb.events[e].operator, mh.events[e].operator, (self.head, mh.file, ("events", e)))
        self.transitions(mb, mh)

    def state(self, mb: MachineDef, mh: MachineDef, s: str) -> None:
        name, sb, sh = mh.name, mb.states[s], mh.states[s]
        where = (self.head, mh.file, ("states", s, "allows"))
        gates_before, gates_after = mb.gates(), mh.gates()
        for g in sorted(set(sh.allows) - set(sb.allows)):
            if g in gates_before:
                self.add("gate", f"{name}.{s} allows {g}", "added", LOOSER, f"{g} is now open in {s}", where=where)
            else:
                self.add("gate", f"{name}.{s} allows {g}", "added", STRICTER,
                         f"{name} now constrains {g}: closed in its other states", where=where)
        for g in sorted(set(sb.allows) - set(sh.allows)):
            if g in gates_after:
                self.add("gate", f"{name}.{s} allows {g}", "removed", STRICTER, f"{g} is now closed in {s}",
                         where=where)
            else:
                self.add("gate", f"{name}.{s} allows {g}", "removed", LOOSER,
                         f"{name} no longer constrains {g} in any state", where=(self.head, mh.file, ("states", s)))
        if sb.halt != sh.halt:
            self.add("state", f"{name}.{s}.halt", "changed", STRICTER if sh.halt else LOOSER,
                     "leaving a halt state needs an operator or the allowlist", sb.halt, sh.halt,
                     (self.head, mh.file, ("states", s)))
        if sb.final != sh.final:
            self.add("state", f"{name}.{s}.final", "changed", NEUTRAL, UNDECLARED, sb.final, sh.final,
                     (self.head, mh.file, ("states", s)))

    # ------------------------------------------------------------------ transitions
    @staticmethod
    def edges(m: MachineDef) -> dict[tuple[str, str, str], dict[str, TransitionDef]]:
        """(event, source, dest) -> {canonical body: transition}; `*` expanded to the machine's states."""
        out: dict[tuple[str, str, str], dict[str, TransitionDef]] = {}
        for t in m.transitions:
            body = canonical({"guards": sorted(t.guards), "reason": t.reason, "priority": t.priority, "set": t.set,
                              "effects": list(t.effects), "emit": list(t.emit)})
            sources = list(m.states) if ANY_STATE in t.sources else list(t.sources)
            for src in sources:
                out.setdefault((t.event, src, t.dest), {})[body] = t
        return out

    def edge_label(self, policy: Policy, m: MachineDef, src: str, dest: str) -> tuple[str, str]:
        c, basis = order_basis(policy, m.name, dest, src)
        if not c:
            return NEUTRAL, "same state" if src == dest else f"{UNDECLARED} between {src} and {dest}"
        return (LOOSER if c > 0 else STRICTER), f"{dest} is {'less safe' if c > 0 else 'safer'} than {src} ({basis})"

    def transitions(self, mb: MachineDef, mh: MachineDef) -> None:
        eb, eh = self.edges(mb), self.edges(mh)
        for key in sorted(set(eb) | set(eh)):
            event, src, dest = key
            subject = f"{mh.name}: {src} --{event}--> {dest}"
            before, after = eb.get(key, {}), eh.get(key, {})
            if set(before) == set(after):
                continue
            if len(before) == 1 and len(after) == 1:
                (tb,), (th,) = before.values(), after.values()
                self.transition_changed(mh, subject, src, dest, tb, th)
                continue
            for body in sorted(set(after) - set(before)):
                t = after[body]
                label, why = self.edge_label(self.head, mh, src, dest)
                why = f"new way: {why}" + (f"; guarded by {', '.join(t.guards)}" if t.guards else "")
                self.add("transition", subject, "added", label, why, None, _show_transition(t),
                         (self.head, mh.file, ("transitions", t.index)))
            for body in sorted(set(before) - set(after)):
                t = before[body]
                label, why = self.edge_label(self.base, mb, src, dest)
                self.add("transition", subject, "removed", flip(label), f"way removed: {why}",
                         _show_transition(t), None, (self.base, mb.file, ("transitions", t.index)))

    def transition_changed(self, mh: MachineDef, subject: str, src: str, dest: str, tb: TransitionDef,
                           th: TransitionDef) -> None:
        where = (self.head, mh.file, ("transitions", th.index))
        direction, basis = self.edge_label(self.head, mh, src, dest)
        added, removed = sorted(set(th.guards) - set(tb.guards)), sorted(set(tb.guards) - set(th.guards))
        if added or removed:
            if direction == NEUTRAL or (added and removed):
                label = NEUTRAL
                why = f"guards changed ({basis})" if direction == NEUTRAL else "guards replaced"
            else:
                label = flip(direction) if added else direction
                why = (f"guard {'added to' if added else 'removed from'} a move where {basis}")
            self.add("transition", subject, "changed", label, why, list(tb.guards), list(th.guards), where)
        rest_b = {k: v for k, v in _show_transition(tb).items() if k != "guards"}
        rest_h = {k: v for k, v in _show_transition(th).items() if k != "guards"}
        if canonical(rest_b) != canonical(rest_h):
            keys = sorted(k for k in set(rest_b) | set(rest_h) if canonical(rest_b.get(k)) != canonical(rest_h.get(k)))
            self.add("transition", subject, "changed", NEUTRAL, f"{', '.join(keys)} changed ({UNDECLARED})",
                     {k: rest_b.get(k) for k in keys}, {k: rest_h.get(k) for k in keys}, where)

    # ------------------------------------------------------------------ reasons and named things
    def reasons(self) -> None:
        b, h = self.base.reasons, self.head.reasons
        direction = safer_declarations(self.head)["severity"]
        order = list(self.head.severities)
        for code in sorted(set(b) | set(h)):
            if code not in h:
                self.add("reason", code, "removed", NEUTRAL, "reason code removed", b[code].severity, None,
                         (self.base, b[code].file, ("reason_codes", code)))
            elif code not in b:
                self.add("reason", code, "added", NEUTRAL, "reason code added", None, h[code].severity,
                         (self.head, h[code].file, ("reason_codes", code)))
            elif b[code].severity != h[code].severity:
                label, why = severity_label(b[code].severity, h[code].severity, order, direction)
                self.add("severity", code, "changed", label, why, b[code].severity, h[code].severity,
                         (self.head, h[code].file, ("reason_codes", code, "severity")))
        if list(self.base.severities) != order:
            self.add("severity", "severities", "changed", NEUTRAL, "severity scale changed",
                     list(self.base.severities), order, _decl(self.head, "severities", None))

    def named(self, area: str, kind: str) -> None:
        b, h = getattr(self.base, kind), getattr(self.head, kind)
        for name in sorted(set(b) | set(h)):
            if name not in h:
                self.add(area, name, "removed", NEUTRAL, f"{area} removed", where=_decl(self.base, kind, name))
            elif name not in b:
                self.add(area, name, "added", NEUTRAL, f"{area} added", where=_decl(self.head, kind, name))
            elif canonical(strip_docs(b[name])) != canonical(strip_docs(h[name])):
                if kind in ("allowlists", "lists"):
                    self.entries(area, kind, name, b[name], h[name])
                else:
                    self.add(area, name, "changed", NEUTRAL, f"definition changed ({UNDECLARED})",
                             strip_docs(b[name]), strip_docs(h[name]), _decl(self.head, kind, name))

    def entries(self, area: str, kind: str, name: str, old: Any, new: Any) -> None:
        safer = safer_declarations(self.head)[kind].get(name)
        where = _decl(self.head, kind, name)
        if kind == "allowlists":
            added = sorted(set(new) - set(old))
            removed = sorted(set(old) - set(new))
            for code in added:
                label, why = _entries_label([code], [], safer, "entries")
                self.add(area, f"{name}.{code}", "added", label, why, None, new[code],
                         (self.head, where[1], (kind, name, code)) if where else None)
            for code in removed:
                label, why = _entries_label([], [code], safer, "entries")
                self.add(area, f"{name}.{code}", "removed", label, why, old[code], None, where)
            for code in sorted(set(old) & set(new)):
                if canonical(old[code]) != canonical(new[code]):
                    self.add(area, f"{name}.{code}", "changed", NEUTRAL, f"condition changed ({UNDECLARED})",
                             old[code], new[code], (self.head, where[1], (kind, name, code)) if where else None)
            return
        added = [x for x in new if x not in old]
        removed = [x for x in old if x not in new]
        if not added and not removed:
            self.add(area, name, "changed", NEUTRAL, "order changed", list(old), list(new), where)
            return
        label, why = _entries_label(added, removed, safer, "entries")
        self.add(area, name, "changed", label, why, list(old), list(new), where)

    def facts(self) -> None:
        b, h = self.base.facts, self.head.facts
        for name in sorted(set(b) | set(h)):
            old = None if name not in b else {"fields": dict(b[name].fields), "key": list(b[name].key),
                                              "internal": b[name].internal}
            new = None if name not in h else {"fields": dict(h[name].fields), "key": list(h[name].key),
                                              "internal": h[name].internal}
            if canonical(old) != canonical(new):
                action = "added" if old is None else "removed" if new is None else "changed"
                self.add("fact", name, action, NEUTRAL, f"fact catalog {action}", old, new,
                         _decl(self.head if new is not None else self.base, "facts", name))

    # ------------------------------------------------------------------ rule tables
    def tables(self) -> None:
        b = {t.name: t for t in self.base.tables}
        h = {t.name: t for t in self.head.tables}
        for name in sorted(set(b) | set(h)):
            tb, th = b.get(name), h.get(name)
            if th is None:
                self.add("table", name, "removed", NEUTRAL, "table removed", where=(self.base, tb.file, ("table",)))
            elif tb is None:
                self.add("table", name, "added", NEUTRAL, "table added", where=(self.head, th.file, ("table",)))
            else:
                for attr in ("machine", "order", "match"):
                    if getattr(tb, attr) != getattr(th, attr):
                        self.add("table", f"{name}.{attr}", "changed", NEUTRAL, UNDECLARED, getattr(tb, attr),
                                 getattr(th, attr), (self.head, th.file, (attr,)))
                ids_b = [r.id for r in tb.rows]
                ids_h = [r.id for r in th.rows]
                common = [i for i in ids_h if i in ids_b]
                if th.match == "first" and common != [i for i in ids_b if i in ids_h]:
                    self.add("table", f"{name} rows", "changed", NEUTRAL, "first-match order changed",
                             ids_b, ids_h, (self.head, th.file, ("rules",)))
            rows_b = {r.id: r for r in tb.rows} if tb else {}
            rows_h = {r.id: r for r in th.rows} if th else {}
            for rid in sorted(set(rows_b) | set(rows_h)):
                self.row(name, tb, th, rows_b.get(rid), rows_h.get(rid))

    def row_direction(self, policy: Policy, table: Any, row: Any) -> tuple[str, str]:
        """A row's direction is the direction of the moves its event can make."""
        machine = row.then.get("machine") or table.machine
        event = row.then.get("event")
        if not machine or not event or machine not in policy.machines:
            return NEUTRAL, f"fires no event ({UNDECLARED})"
        m = policy.machines[machine]
        labels = {edge_direction(policy, machine, src, t.dest) for t in m.transitions if t.event == event
                  for src in m.sources_of(t) if src != t.dest}  # a hold does not change the safety level
        if len(labels) == 1 and NEUTRAL not in labels:
            (label,) = labels
            return label, f"fires {machine}.{event}, whose moves are all {label}"
        return NEUTRAL, f"fires {machine}.{event} ({UNDECLARED} for all its moves)"

    def row(self, table: str, tb: Any, th: Any, rb: Any, rh: Any) -> None:
        subject = f"{table}.{(rh or rb).id}"
        if rh is None:
            label, why = self.row_direction(self.base, tb, rb)
            self.add("rule", subject, "removed", flip(label), f"rule removed; {why}", _show_row(rb), None,
                     (self.base, tb.file, ("rules", rb.index)))
            return
        if rb is None:
            label, why = self.row_direction(self.head, th, rh)
            self.add("rule", subject, "added", label, f"rule added; {why}", None, _show_row(rh),
                     (self.head, th.file, ("rules", rh.index)))
            return
        old, new = _show_row(rb), _show_row(rh)
        if canonical(old) == canonical(new):
            return
        where = (self.head, th.file, ("rules", rh.index))
        sev_b, sev_h = rb.then.get("severity"), rh.then.get("severity")
        if sev_b != sev_h and sev_b and sev_h:
            label, why = severity_label(sev_b, sev_h, list(self.head.severities),
                                        safer_declarations(self.head)["severity"])
            self.add("severity", f"{subject}.then.severity", "changed", label, why, sev_b, sev_h, where)
            old = {**old, "then": {k: v for k, v in old["then"].items() if k != "severity"}}
            new = {**new, "then": {k: v for k, v in new["then"].items() if k != "severity"}}
        if canonical(old) != canonical(new):
            keys = sorted(k for k in set(old) | set(new) if canonical(old.get(k)) != canonical(new.get(k)))
            self.add("rule", subject, "changed", NEUTRAL, f"{', '.join(keys)} changed ({UNDECLARED})",
                     {k: old.get(k) for k in keys}, {k: new.get(k) for k in keys}, where)

    # ------------------------------------------------------------------ invariants (rules/invariants.yaml)
    def invariants(self) -> None:
        """An invariant removed is looser (no longer proved), one added stricter; changed data is
        neutral here: what it allows is judged by validate, not by its spelling."""
        b, h = _invariants(self.base), _invariants(self.head)
        for name in sorted(set(b) | set(h)):
            if name not in h:
                self.add("invariant", name, "removed", LOOSER, "safety invariant no longer proved",
                         where=(self.base, b[name][0], b[name][1]))
            elif name not in b:
                self.add("invariant", name, "added", STRICTER, "safety invariant now proved",
                         where=(self.head, h[name][0], h[name][1]))
            elif canonical(strip_docs(b[name][2])) != canonical(strip_docs(h[name][2])):
                self.add("invariant", name, "changed", NEUTRAL, "invariant data changed", b[name][2], h[name][2],
                         (self.head, h[name][0], h[name][1]))

    # ------------------------------------------------------------------ metadata and the safety net
    def metadata(self) -> None:
        for name in sorted(set(self.base.machines) & set(self.head.machines)):
            old, new = safety_order(self.base, name), safety_order(self.head, name)
            if old != new:
                self.add("direction", f"{name}.safety_order", "changed", NEUTRAL,
                         "direction metadata (labels above use the head's)", old, new,
                         (self.head, self.head.machines[name].file, ("safety_order",)))
        old_d, new_d = safer_declarations(self.base), safer_declarations(self.head)
        if canonical(old_d) != canonical(new_d):
            self.add("direction", "safer", "changed", NEUTRAL, "direction metadata (labels above use the head's)",
                     old_d, new_d)

    def safety_net(self) -> None:
        """Any difference the comparisons above do not model is still reported, never hidden."""
        old = {k: strip_docs(v) for k, v in self.base.documents.items()}
        new = {k: strip_docs(v) for k, v in self.head.documents.items()}
        for file in sorted(set(old) | set(new)):
            if canonical(old.get(file)) != canonical(new.get(file)) and file in old and file in new:
                self.add("other", file, "changed", NEUTRAL, f"changed ({UNDECLARED})", where=(self.head, file, ()))


def _invariants(policy: Policy) -> dict[str, tuple[str, tuple[str | int, ...], Any]]:
    """Declared invariants by id: (file, path, body)."""
    out: dict[str, tuple[str, tuple[str | int, ...], Any]] = {}
    for file, doc in sorted(policy.documents.items()):
        if isinstance(doc, Mapping) and isinstance(doc.get("invariants"), list):
            for i, body in enumerate(doc["invariants"]):
                if isinstance(body, Mapping) and "id" in body:
                    out.setdefault(str(body["id"]), (file, ("invariants", i), body))
    return out


def severity_label(old: str, new: str, order: list[str], direction: str | None) -> tuple[str, str]:
    if direction not in ("higher", "lower") or old not in order or new not in order:
        return NEUTRAL, UNDECLARED if direction is None else f"declared {direction}"
    raised = order.index(new) > order.index(old)
    looser = raised if direction == "lower" else not raised
    return (LOOSER if looser else STRICTER), f"severity {'raised' if raised else 'lowered'} (safer: {direction})"


def _decl(policy: Policy, kind: str, name: str | None) -> tuple[Policy, str, tuple[str | int, ...]] | None:
    """Where a named thing (`lists.NAME`, `severities`, …) is declared, for file:line."""
    for file, doc in sorted(policy.documents.items()):
        if not isinstance(doc, dict) or kind not in doc:
            continue
        if name is None:
            return policy, file, (kind,)
        if isinstance(doc[kind], dict) and name in doc[kind]:
            return policy, file, (kind, name)
    return None


def _show_transition(t: TransitionDef) -> dict[str, Any]:
    out: dict[str, Any] = {"guards": list(t.guards)}
    for k in ("reason", "priority"):
        if getattr(t, k) is not None:
            out[k] = getattr(t, k)
    for k in ("set", "effects", "emit"):
        if getattr(t, k):
            out[k] = getattr(t, k) if k == "set" else list(getattr(t, k))
    return strip_docs(out)


def _show_row(r: Any) -> dict[str, Any]:
    return strip_docs({"on": list(r.on), "when": r.when, "then": dict(r.then)})


def diff_policies(base: Policy, head: Policy) -> list[Change]:
    return _PolicyDiff(base, head).run()


def semantic_diff(base: Side, head: Side) -> list[Change]:
    """Settings first (thresholds are what most pull requests change), then the policy."""
    return diff_settings(base, head) + diff_policies(base.policy, head.policy)


def counts(changes: list[Change]) -> dict[str, int]:
    return {label: sum(1 for c in changes if c.label == label) for label in LABELS}


__all__ = ["LABELS", "LOOSER", "NEUTRAL", "STRICTER", "Change", "counts", "semantic_diff"]
