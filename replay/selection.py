"""Which drills a policy change can affect: each drill's recorded coverage against the change set.

`hlcore drill --write-golden` writes `fixtures/<name>/coverage.json` beside the golden journal:
what the drill's runs consulted (fact kinds evaluated, hence the rule tables listening to them;
machines; reasons, lists, allowlists, guards, tallies, bands; settings keys), noted at run time by
`hlcore.consulted` and closed statically over the policy (a table that ran consults every machine,
band, list and `config:` setting its rows name, whether or not a row matched, since an edited row
can start matching), with the code, policy, settings and fixture hashes it was recorded under.

`hlcore diff` replays a drill unless its coverage is present, recorded under the base side's exact
hashes and this code, and disjoint from the change set. Why: a run that never read anything the
change touched behaves the same under both sides until it reads something changed, which it never
does. Anything it cannot vouch for (no or stale coverage, a change it cannot classify) is replayed,
and the report says why. The file also records the sha256 of the recorded run's journal: a golden
journal that still hashes the same is that run's journal, so `hlcore diff` can take it as the base
side when the base side's hashes are the recorded ones (`vouched_golden`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hlcore.consulted import ALL
from hlcore.policy.model import Policy
from replay.drill import COVERAGE_FILE, GOLDEN_FILE

VERSION = 1
CATALOGS = Policy.NOTED  # machines, facts, reasons, lists, allowlists, guards, tallies, bands
DERIVED = "derived"  # `hlcore.consulted.derived` functions of the policy whose answer the run used
SEED = "machine_seed"  # what starting an engine reads of every machine (key, initial state, states, vars…)
_SEED_FIELDS_EXEMPT = ("transitions", "events", "description")  # what seeding does not read
JOURNAL_KEY = "journal_sha256"  # the recorded run's journal: a golden journal with this hash is that run's


# --------------------------------------------------------------------------- recording


def _atoms(node: Any) -> Iterator[str]:
    """Every string in a definition (keys and values): the names it refers to are among them."""
    if isinstance(node, str):
        yield node
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            yield from _atoms(getattr(node, f.name))
    elif isinstance(node, Mapping):
        for k, v in dict.items(node) if isinstance(node, dict) else node.items():
            yield from _atoms(k)
            yield from _atoms(v)
    elif isinstance(node, list | tuple | set | frozenset):
        for v in node:
            yield from _atoms(v)


def _definitions(policy: Policy) -> dict[tuple[str, str], Any]:
    defs: dict[tuple[str, str], Any] = {}
    for kind in CATALOGS:
        for name, value in dict.items(getattr(policy, kind)):
            defs[(kind, str(name))] = value
    for table in policy.tables:
        defs[("tables", table.name)] = table
    return defs


def tables_listening(policy: Policy, facts: Iterable[str]) -> set[str]:
    """Tables with a row evaluated on one of these fact kinds (a row with no `on` listens to all)."""
    facts = set(facts)
    return {t.name for t in policy.tables for r in t.rows if not r.on or facts & set(r.on)}


def _setting_names(settings: Mapping[str, Any]) -> set[str]:
    """Dotted leaves and dotted sections (a `config:` reference names one); undotted only as leaves,
    since a top-level section shares its name with a machine (`safety`)."""
    out: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                if prefix:
                    out.add(path)
                walk(v, path)
            else:
                out.add(path)

    walk(settings, "")
    return out


def close(policy: Policy, settings: Mapping[str, Any], noted: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """What a run consulted: the names noted at run time, the tables listening to the facts it
    evaluated, and everything those definitions name, transitively; settings read plus the
    settings the consulted definitions reference."""
    defs = _definitions(policy)
    by_atom: dict[str, list[tuple[str, str]]] = {}
    for kind, name in defs:
        if kind != "tables":  # nothing names a table: a table runs when a fact it listens to is evaluated
            by_atom.setdefault(name, []).append((kind, name))
    facts = set(noted.get("facts", ()))
    start = {(k, n) for k in CATALOGS for n in noted.get(k, ()) if (k, n) in defs}
    start |= {("tables", t) for t in tables_listening(policy, facts)}
    start |= {("facts", f) for f in facts if ("facts", f) in defs}
    seen, frontier, atoms = set(start), list(start), set()
    while frontier:
        item = frontier.pop()
        for atom in set(_atoms(defs[item])):
            atoms.add(atom)
            for ref in by_atom.get(atom, ()):
                if ref not in seen:
                    seen.add(ref)
                    frontier.append(ref)
    out: dict[str, set[str]] = {k: set() for k in (*CATALOGS, "tables", SEED, DERIVED, "settings")}
    for kind, name in seen:
        out[kind].add(name)
    for kind in CATALOGS:  # names looked up that the policy does not define (a later one could)
        out[kind] |= set(noted.get(kind, ()))
    out["facts"] |= facts
    out[SEED] |= set(noted.get(SEED, ()))
    out[DERIVED] |= set(noted.get(DERIVED, ()))
    out["settings"] = set(noted.get("settings", ())) | (atoms & _setting_names(settings))
    return {k: sorted(v) for k, v in sorted(out.items())}


@dataclass(frozen=True)
class Recorded:
    """The hashes a coverage file was recorded under: it vouches for these, nothing else."""

    code: str
    policy_hash: str
    config_hash: str
    fixture_hash: str


def coverage_doc(recorded: Recorded, consulted: Mapping[str, list[str]], journal: str | None = None) -> str:
    """The coverage file's text; `journal` (the run's whole journal) is recorded by its sha256, so
    `hlcore diff` can tell a golden journal that IS this run's from one that is not (`vouched_golden`)."""
    doc: dict[str, Any] = {"version": VERSION, "recorded_under": dataclasses.asdict(recorded),
                           "consulted": dict(consulted)}
    if journal is not None:
        doc[JOURNAL_KEY] = hashlib.sha256(journal.encode()).hexdigest()
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def write_coverage(directory: Path, text: str) -> bool:
    """Write the drill's coverage file; True when its content changed."""
    path = directory / COVERAGE_FILE
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def record_coverage(done: Iterable[tuple[Path, Any]], policy: Path | None, config: Path | None) -> tuple[int, int]:
    """Write each (drill folder, Outcome)'s coverage file, under the workspace the drills ran in;
    (written, changed)."""
    from hlcore.workspace import open_workspace
    from replay.behaviour import code_hash

    ws = open_workspace(policy, config)
    code, written, changed = code_hash(), 0, 0
    for directory, outcome in done:
        recorded = Recorded(code, ws.policy.hash, ws.config_hash, outcome.fixture_hash)
        text = coverage_doc(recorded, close(ws.policy, ws.settings.data, outcome.consulted), outcome.journal())
        written += 1
        changed += write_coverage(directory, text)
    return written, changed


def vouched_golden(drill: Path, expected: Recorded) -> str | None:
    """The drill's golden journal text when its coverage file vouches that it is the journal of a run
    under exactly `expected` (this code, this fixture, the side's policy and settings hashes): the
    file was recorded under those hashes, together with the sha256 of that run's journal, and the
    golden file hashes the same. Anything else (no or stale coverage, no hash recorded, a golden
    edited or rewritten since): None, and the drill is replayed."""
    try:
        doc = json.loads((drill / COVERAGE_FILE).read_text(encoding="utf-8"))
        recorded = Recorded(**doc["recorded_under"])
        want = doc.get(JOURNAL_KEY)
        if doc.get("version") != VERSION or recorded != expected or not isinstance(want, str):
            return None
        data = (drill / GOLDEN_FILE).read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if hashlib.sha256(data).hexdigest() != want:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# --------------------------------------------------------------------------- the change set


@dataclass
class ChangeSet:
    """What differs between two sides, by (kind, name); `unknown` holds what could not be classified
    (then every drill is replayed)."""

    base: Policy | None = None
    head: Policy | None = None
    items: set[tuple[str, str]] = field(default_factory=set)
    changed_tables: list[tuple[str, set[str]]] = field(default_factory=list)  # (table, facts it listens to)
    settings: set[str] = field(default_factory=set)
    unknown: list[str] = field(default_factory=list)
    _derived: dict[str, str | None] = field(default_factory=dict)

    def derived_change(self, key: str) -> str | None:
        """Why the derived value `module:function` differs between the sides (None: it does not)."""
        if key not in self._derived:
            self._derived[key] = _derived_change(key, self.base, self.head)
        return self._derived[key]

    def describe(self) -> str:
        parts = [f"{k} {n}" for k, n in sorted(self.items)] + [f"table {t}" for t, _ in self.changed_tables]
        parts += [f"setting {s}" for s in sorted(self.settings)]
        return ", ".join(parts) or "nothing"


def _derived_change(key: str, base: Policy | None, head: Policy | None) -> str | None:
    module, _, name = key.partition(":")
    try:
        fn: Any = importlib.import_module(module)
        for part in name.split("."):
            fn = getattr(fn, part)
        fn = getattr(fn, "__wrapped__", fn)
        if base is None or head is None or fn(base) != fn(head):
            return f"{name} (derived)"
    except Exception as exc:  # a function this code no longer has: cannot vouch
        return f"{name} (derived, not comparable: {type(exc).__name__})"
    return None


def _setting_leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict) or (prefix and not node):
        return {prefix: node}
    out: dict[str, Any] = {}
    for k, v in node.items():
        out.update(_setting_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def change_set(base_policy: Policy, base_settings: Mapping[str, Any], head_policy: Policy,
               head_settings: Mapping[str, Any]) -> ChangeSet:
    cs = ChangeSet(base_policy, head_policy)
    for kind in CATALOGS:
        a, b = dict(dict.items(getattr(base_policy, kind))), dict(dict.items(getattr(head_policy, kind)))
        for name in sorted(set(a) | set(b)):
            if a.get(name) == b.get(name):
                continue
            cs.items.add((kind, str(name)))
            if kind == "machines":
                old, new = a.get(name), b.get(name)
                if old is None or new is None:
                    cs.items.add((SEED, ALL))  # seeding walks every machine: an added one is seeded
                elif any(getattr(old, f.name) != getattr(new, f.name) for f in dataclasses.fields(old)
                         if f.name not in _SEED_FIELDS_EXEMPT):
                    cs.items.add((SEED, str(name)))
    ta, tb = {t.name: t for t in base_policy.tables}, {t.name: t for t in head_policy.tables}
    for name in sorted(set(ta) | set(tb)):
        if ta.get(name) != tb.get(name):
            listens: set[str] = set()
            for t in (ta.get(name), tb.get(name)):
                for r in t.rows if t is not None else ():
                    listens |= set(r.on) if r.on else {ALL}
            cs.changed_tables.append((name, listens))
    if base_policy.severities != head_policy.severities:
        cs.unknown.append("the severity order changed")
    if base_policy.hash != head_policy.hash and not (cs.items or cs.changed_tables or cs.unknown):
        cs.unknown.append("the policy changed outside its machines, tables and catalogs")
    la, lb = _setting_leaves(dict(base_settings)), _setting_leaves(dict(head_settings))
    cs.settings = {k for k in set(la) | set(lb) if la.get(k, cs) != lb.get(k, cs)}
    return cs


def _overlaps(changed: str, read: str) -> bool:
    return read == ALL or changed == read or changed.startswith(read + ".") or read.startswith(changed + ".")


def touches(cs: ChangeSet, consulted: Mapping[str, list[str]]) -> list[str]:
    """The changes this drill consulted (empty: the change cannot reach it)."""
    hit: list[str] = []
    for kind, name in sorted(cs.items):
        names = set(consulted.get(kind, ()))
        if name in names or (name == ALL and names):
            hit.append(f"{'machine (seed)' if kind == SEED else kind} {name}")
    facts = set(consulted.get("facts", ()))
    for table, listens in cs.changed_tables:
        if ALL in listens or listens & facts:
            hit.append(f"table {table}")
    for key in consulted.get(DERIVED, ()):
        why = cs.derived_change(key)
        if why:
            hit.append(why)
    reads = consulted.get("settings", ())
    hit += [f"setting {k}" for k in sorted(cs.settings) if any(_overlaps(k, r) for r in reads)]
    return hit


@dataclass(frozen=True)
class Verdict:
    drill: str
    replay: bool
    why: str


def select(drill: Path, cs: ChangeSet, expected: Recorded) -> Verdict:
    """Replay unless this drill's coverage vouches that the change cannot reach it."""
    if cs.unknown:
        return Verdict(drill.name, True, "; ".join(cs.unknown))
    path = drill / COVERAGE_FILE
    if not path.is_file():
        return Verdict(drill.name, True, f"no {COVERAGE_FILE} (hlcore drill --write-golden records it)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        recorded = Recorded(**doc["recorded_under"])
        consulted = doc["consulted"]
        if doc.get("version") != VERSION or not isinstance(consulted, dict):
            raise ValueError("unknown version")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Verdict(drill.name, True, f"{COVERAGE_FILE} unreadable ({type(exc).__name__})")
    stale = [label for label, a, b in (("code", recorded.code, expected.code),
                                       ("fixture", recorded.fixture_hash, expected.fixture_hash),
                                       ("base policy", recorded.policy_hash, expected.policy_hash),
                                       ("base settings", recorded.config_hash, expected.config_hash)) if a != b]
    if stale:
        return Verdict(drill.name, True, f"coverage recorded under another {', '.join(stale)}")
    hit = touches(cs, consulted)
    if hit:
        more = f" (+{len(hit) - 3} more)" if len(hit) > 3 else ""
        return Verdict(drill.name, True, "consults " + ", ".join(hit[:3]) + more)
    return Verdict(drill.name, False, "coverage disjoint from the change")
