"""The condition language: structured data checked at load time and compiled to closures.

A *predicate* is a mapping:

- `{all: [P, ...]}`, `{any: [P, ...]}`, `{not: P}`, `{always: true}`, `{guard: NAME}`
- `{allowlisted: LIST, machine: M}` — M's current reason is a key of allowlist LIST and that
  key's own condition holds (per-reason recovery conditions);
- a comparison: exactly one *operand* key as the subject plus one or more operators
  (`eq ne lt lte gt gte in not_in is_null`), all of which must hold.

An *operand* is a literal or a mapping with one of the keys in `OPERANDS`: a field of the
fact (`fact`), a config value (`config`, with optional `unit` to turn it into ms), a machine's
current `state` / `reason` / `since`, an instance variable (`var`, optionally `of` another
machine), `now`, a named `list`, a `duration` literal ("10m"), rolling-window aggregates
(`count` / `sum` of a tally `within` a duration), `in_state` (instances of a template in given
states) and arithmetic (`add sub mul div abs min max`).

Comparisons against null are false (except `eq: null` / `is_null`), so a missing value never
satisfies a threshold by accident. Nothing here evaluates Python strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

Path = tuple[str | int, ...]
Value = Any
Fn = Callable[["Context"], Any]

UNITS_MS: dict[str, int] = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|min|m|h|d)$")

OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "is_null")
ARITH = ("add", "sub", "mul", "div", "abs", "min", "max")
OPERANDS = ("fact", "config", "state", "reason", "since", "var", "now", "list", "duration", "count", "sum",
            "in_state", *ARITH)
PREDICATE_KEYS = ("all", "any", "not", "always", "guard", "allowlisted", "band")
BAND_SIDES = ("above_fire", "below_reset")


class Context(Protocol):
    """What a compiled condition reads at run time (the engine provides it)."""

    now: int
    fields: Mapping[str, Any]

    def state_of(self, machine: str) -> str | None: ...
    def reason_of(self, machine: str) -> str | None: ...
    def since_of(self, machine: str) -> int | None: ...
    def var_of(self, machine: str | None, name: str) -> Any: ...
    def tally(self, name: str, key: Any, within_ms: int, agg: str) -> float: ...
    def count_in_state(self, machine: str, states: frozenset[str]) -> int: ...


class Scope(Protocol):
    """What load-time checks need to know about the rest of the policy."""

    def has_config(self, key: str) -> bool: ...
    def config_value(self, key: str) -> Any: ...
    def has_machine(self, name: str) -> bool: ...
    def machine_states(self, name: str) -> list[str]: ...
    def machine_vars(self, name: str) -> list[str]: ...
    def has_list(self, name: str) -> bool: ...
    def list_values(self, name: str) -> list[Any]: ...
    def has_allowlist(self, name: str) -> bool: ...
    def has_guard(self, name: str) -> bool: ...
    def has_tally(self, name: str) -> bool: ...
    def band(self, name: str) -> Mapping[str, Any] | None: ...
    def fact_fields(self) -> set[str] | None: ...
    def self_machine(self) -> str | None: ...


@dataclass
class Issues:
    """Problems found while checking a condition: (path inside the file, message)."""

    items: list[tuple[Path, str]] = field(default_factory=list)

    def add(self, path: Path, message: str) -> None:
        self.items.append((path, message))


def parse_duration(text: str) -> int | None:
    """'10m' / '24h' / '30s' / '500ms' -> milliseconds; None when it is not a duration."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match:
        return None
    unit = "min" if match.group(2) == "m" else match.group(2)
    return int(float(match.group(1)) * UNITS_MS[unit])


def _known(options: list[str]) -> str:
    return ", ".join(sorted(options)) if options else "none"


# --------------------------------------------------------------------------------------------
# load-time checks
# --------------------------------------------------------------------------------------------


def check_predicate(node: Any, path: Path, scope: Scope, issues: Issues) -> None:
    """Report every structural or reference problem in a predicate."""
    if not isinstance(node, Mapping):
        issues.add(path, f"expected a condition mapping (e.g. {{fact: x, lt: 1}}), got {type(node).__name__}")
        return
    keys = set(node)
    if "all" in keys or "any" in keys:
        op = "all" if "all" in keys else "any"
        if keys != {op}:
            issues.add(path, f"'{op}' must stand alone, found also: {', '.join(sorted(keys - {op}))}")
        items = node[op]
        if not isinstance(items, list) or not items:
            issues.add((*path, op), "expected a non-empty list of conditions")
            return
        for i, item in enumerate(items):
            check_predicate(item, (*path, op, i), scope, issues)
        return
    if "not" in keys:
        if keys != {"not"}:
            issues.add(path, "'not' must stand alone")
        check_predicate(node["not"], (*path, "not"), scope, issues)
        return
    if "always" in keys:
        if keys != {"always"} or node["always"] is not True:
            issues.add(path, "expected exactly {always: true}")
        return
    if "guard" in keys:
        if keys != {"guard"}:
            issues.add(path, "'guard' must stand alone")
        elif not scope.has_guard(node["guard"]):
            issues.add((*path, "guard"), f"unknown guard '{node['guard']}'")
        return
    if "allowlisted" in keys:
        if keys != {"allowlisted", "machine"}:
            issues.add(path, "expected {allowlisted: LIST, machine: MACHINE}")
            return
        if not scope.has_allowlist(node["allowlisted"]):
            issues.add((*path, "allowlisted"), f"unknown allowlist '{node['allowlisted']}'")
        if not scope.has_machine(node["machine"]):
            issues.add((*path, "machine"), f"unknown machine '{node['machine']}'")
        return
    if "band" in keys:
        if keys != {"band", "is"} or node["is"] not in BAND_SIDES:
            issues.add(path, f"expected {{band: NAME, is: {' | '.join(BAND_SIDES)}}}")
        elif scope.band(node["band"]) is None:
            issues.add((*path, "band"), f"unknown band '{node['band']}'")
        else:
            fields = scope.fact_fields()
            band_fact = scope.band(node["band"])["fact"]  # type: ignore[index]
            if fields is not None and band_fact not in fields:
                issues.add((*path, "band"), f"band '{node['band']}' reads fact field '{band_fact}', "
                           "which this rule's facts do not carry")
        return
    subjects = [k for k in node if k in OPERANDS]
    ops = [k for k in node if k in OPERATORS]
    extra = [k for k in node if k not in OPERANDS and k not in OPERATORS and k not in _OPERAND_MODIFIERS]
    if extra:
        issues.add((*path, extra[0]), f"unknown key '{extra[0]}' (expected one of: "
                   f"{', '.join(PREDICATE_KEYS)}, an operand ({', '.join(OPERANDS)}) and operators "
                   f"({', '.join(OPERATORS)}))")
        return
    if len(subjects) != 1:
        issues.add(path, f"a comparison needs exactly one subject operand, found {len(subjects)}"
                   + (f" ({', '.join(subjects)})" if subjects else ""))
        return
    if not ops:
        issues.add(path, f"comparison on '{subjects[0]}' has no operator (one of: {', '.join(OPERATORS)})")
        return
    subject = {k: v for k, v in node.items() if k not in OPERATORS}
    check_operand(subject, path, scope, issues)
    for op in ops:
        value = node[op]
        if op == "is_null":
            if not isinstance(value, bool):
                issues.add((*path, op), "expected true or false")
        elif op in ("in", "not_in"):
            if isinstance(value, list):
                for i, item in enumerate(value):
                    check_operand(item, (*path, op, i), scope, issues)
            elif isinstance(value, Mapping):
                check_operand(value, (*path, op), scope, issues)
            else:
                issues.add((*path, op), "expected a list or {list: NAME}")
        else:
            check_operand(value, (*path, op), scope, issues)


_OPERAND_MODIFIERS = ("unit", "of", "within", "key", "states")


def check_operand(node: Any, path: Path, scope: Scope, issues: Issues) -> None:
    """Report problems in an operand (literal or mapping)."""
    if node is None or isinstance(node, bool | int | float | str):
        return
    if isinstance(node, list):
        if not all(x is None or isinstance(x, bool | int | float | str) for x in node):
            issues.add(path, "a literal list may hold only plain values (numbers, strings, booleans)")
        return
    if not isinstance(node, Mapping):
        issues.add(path, f"unsupported value of type {type(node).__name__}")
        return
    kinds = [k for k in node if k in OPERANDS]
    if len(kinds) != 1:
        issues.add(path, f"expected exactly one operand key (one of: {', '.join(OPERANDS)}), got "
                   f"{', '.join(map(str, node)) or 'none'}")
        return
    kind = kinds[0]
    arg = node[kind]
    allowed_mods = {"config": {"unit"}, "var": {"of"}, "count": {"within", "key"}, "sum": {"within", "key"},
                    "in_state": {"states"}}.get(kind, set())
    for mod in node:
        if mod != kind and mod not in allowed_mods:
            issues.add((*path, mod), f"'{mod}' is not valid with '{kind}'")
    if kind == "fact":
        fields = scope.fact_fields()
        if not isinstance(arg, str):
            issues.add((*path, kind), "expected a fact field name")
        elif fields is not None and arg not in fields:
            issues.add((*path, kind), f"unknown fact field '{arg}' (known: {_known(sorted(fields))})")
    elif kind == "config":
        if not isinstance(arg, str) or not scope.has_config(arg):
            issues.add((*path, kind), f"unknown config key '{arg}'")
        unit = node.get("unit")
        if unit is not None and unit not in UNITS_MS:
            issues.add((*path, "unit"), f"unknown unit '{unit}' (known: {', '.join(UNITS_MS)})")
    elif kind in ("state", "reason", "since"):
        if not isinstance(arg, str) or not scope.has_machine(arg):
            issues.add((*path, kind), f"unknown machine '{arg}'")
    elif kind == "var":
        owner = node.get("of") or scope.self_machine()
        if owner is None:
            issues.add(path, "'var' needs 'of: MACHINE' here (no machine in scope)")
        elif not scope.has_machine(owner):
            issues.add((*path, "of"), f"unknown machine '{owner}'")
        elif arg not in scope.machine_vars(owner):
            issues.add((*path, kind), f"unknown variable '{arg}' of machine '{owner}' "
                       f"(known: {_known(scope.machine_vars(owner))})")
    elif kind == "now":
        if arg is not True:
            issues.add((*path, kind), "expected {now: true}")
    elif kind == "list":
        if not scope.has_list(arg):
            issues.add((*path, kind), f"unknown list '{arg}'")
    elif kind == "duration":
        if parse_duration(arg) is None:
            issues.add((*path, kind), f"expected a duration like 500ms, 30s, 10m, 24h, got {arg!r}")
    elif kind in ("count", "sum"):
        if not scope.has_tally(arg):
            issues.add((*path, kind), f"unknown tally '{arg}'")
        if "within" not in node:
            issues.add(path, f"'{kind}' needs 'within' (a duration)")
        else:
            check_duration(node["within"], (*path, "within"), scope, issues)
        if "key" in node:
            check_operand(node["key"], (*path, "key"), scope, issues)
    elif kind == "in_state":
        if not scope.has_machine(arg):
            issues.add((*path, kind), f"unknown machine '{arg}'")
        else:
            states = node.get("states")
            known = scope.machine_states(arg)
            if not isinstance(states, list) or not states:
                issues.add(path, "'in_state' needs 'states: [..]'")
            else:
                for i, s in enumerate(states):
                    if s not in known:
                        issues.add((*path, "states", i), f"unknown state '{s}' (known: {_known(known)})")
    elif kind in ("abs",):
        check_operand(arg, (*path, kind), scope, issues)
    else:  # add sub mul div min max
        if not isinstance(arg, list) or len(arg) < 2 or (kind in ("sub", "div") and len(arg) != 2):
            issues.add((*path, kind), f"'{kind}' expects a list of {'2' if kind in ('sub', 'div') else '2+'} operands")
            return
        for i, item in enumerate(arg):
            check_operand(item, (*path, kind, i), scope, issues)


def check_duration(node: Any, path: Path, scope: Scope, issues: Issues) -> None:
    """A duration is '10m' or any operand that yields milliseconds."""
    if isinstance(node, str):
        if parse_duration(node) is None:
            issues.add(path, f"expected a duration like 500ms, 30s, 10m, 24h, got {node!r}")
        return
    check_operand(node, path, scope, issues)


# --------------------------------------------------------------------------------------------
# walking (for lint, graph, diff)
# --------------------------------------------------------------------------------------------


def walk(node: Any) -> Iterator[Mapping[str, Any]]:
    """Every mapping inside a condition, depth first, in document order."""
    if isinstance(node, Mapping):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def references(node: Any, kind: str) -> list[Any]:
    """All arguments of operands/predicates of one kind (e.g. every `config` key used)."""
    return [m[kind] for m in walk(node) if kind in m]


def is_trivially_true(node: Any) -> bool:
    """True for conditions that match every fact: `{always: true}` or `all` of such."""
    if isinstance(node, Mapping):
        if node.get("always") is True and len(node) == 1:
            return True
        if set(node) == {"all"} and isinstance(node["all"], list):
            return all(is_trivially_true(n) for n in node["all"])
    return False


# --------------------------------------------------------------------------------------------
# compilation
# --------------------------------------------------------------------------------------------


class Compiler:
    """Turns checked conditions into closures; config values are folded in at compile time."""

    def __init__(self, scope: Scope, guards: Mapping[str, Any], allowlists: Mapping[str, Mapping[str, Any]]):
        self._scope = scope
        self._guard_src = guards
        self._guards: dict[str, Fn] = {}
        self._allow_src = allowlists
        self._allowlists: dict[str, dict[str, Fn]] = {}

    def guard(self, name: str) -> Fn:
        if name not in self._guards:
            self._guards[name] = _LAZY  # recursion guard; checked acyclic at load
            self._guards[name] = self.predicate(self._guard_src[name])
        return self._guards[name]

    def allowlist(self, name: str) -> dict[str, Fn]:
        if name not in self._allowlists:
            self._allowlists[name] = {code: self.predicate(cond) for code, cond in self._allow_src[name].items()}
        return self._allowlists[name]

    def predicate(self, node: Mapping[str, Any]) -> Fn:
        if "all" in node:
            parts = tuple(self.predicate(n) for n in node["all"])
            if len(parts) == 1:
                return parts[0]
            return lambda c: all(p(c) for p in parts)
        if "any" in node:
            parts = tuple(self.predicate(n) for n in node["any"])
            return lambda c: any(p(c) for p in parts)
        if "not" in node:
            inner = self.predicate(node["not"])
            return lambda c: not inner(c)
        if "always" in node:
            return lambda c: True
        if "guard" in node:
            name = node["guard"]
            return lambda c: self.guard(name)(c)
        if "allowlisted" in node:
            table = self.allowlist(node["allowlisted"])
            machine = node["machine"]

            def allowlisted(c: Context) -> bool:
                check = table.get(c.reason_of(machine))  # type: ignore[arg-type]
                return check is not None and bool(check(c))

            return allowlisted
        if "band" in node:
            band = self._scope.band(node["band"])
            assert band is not None
            field_name = band["fact"]
            rising = band.get("direction", "rising") == "rising"
            side = node["is"]
            level = self.operand(band["fire"] if side == "above_fire" else band["reset"])
            above = (side == "above_fire") == rising

            def crossed(c: Context) -> bool:
                v, lvl = c.fields.get(field_name), level(c)
                if v is None or lvl is None:
                    return False
                return v > lvl if above else v < lvl

            return crossed
        subject = self.operand({k: v for k, v in node.items() if k not in OPERATORS})
        tests = [self._comparison(op, node[op]) for op in OPERATORS if op in node]
        if len(tests) == 1:
            test = tests[0]
            return lambda c: test(subject(c), c)
        return lambda c: _all_tests(tests, subject(c), c)

    def _comparison(self, op: str, raw: Any) -> Callable[[Any, Context], bool]:
        if op == "is_null":
            want = bool(raw)
            return lambda v, c: (v is None) == want
        if op in ("in", "not_in"):
            if isinstance(raw, list):
                if all(not isinstance(x, Mapping) for x in raw):
                    static = frozenset(raw)
                    members: Fn = lambda c: static  # noqa: E731
                else:
                    parts = [self.operand(x) for x in raw]
                    members = lambda c: {p(c) for p in parts}  # noqa: E731
            else:
                members = self.operand(raw)
            if op == "in":
                return lambda v, c: v is not None and v in members(c)
            return lambda v, c: v is not None and v not in members(c)
        rhs = self.operand(raw)
        if op == "eq":
            return lambda v, c: v == rhs(c)
        if op == "ne":
            return lambda v, c: v != rhs(c)
        compare = _ORDERED[op]

        def ordered(v: Any, c: Context) -> bool:
            r = rhs(c)
            return v is not None and r is not None and compare(v, r)

        return ordered

    def operand(self, node: Any) -> Fn:
        if not isinstance(node, Mapping):
            return lambda c, v=node: v
        kind = next(k for k in node if k in OPERANDS)
        arg = node[kind]
        if kind == "fact":
            return lambda c: c.fields.get(arg)
        if kind == "config":
            value = self._scope.config_value(arg)
            if "unit" in node and value is not None:
                value = value * UNITS_MS[node["unit"]]
            return lambda c: value
        if kind == "state":
            return lambda c: c.state_of(arg)
        if kind == "reason":
            return lambda c: c.reason_of(arg)
        if kind == "since":
            return lambda c: c.since_of(arg)
        if kind == "var":
            owner = node.get("of")
            return lambda c: c.var_of(owner, arg)
        if kind == "now":
            return lambda c: c.now
        if kind == "list":
            values = frozenset(self._scope.list_values(arg))
            return lambda c: values
        if kind == "duration":
            ms = parse_duration(arg)
            return lambda c: ms
        if kind in ("count", "sum"):
            within = self.duration(node["within"])
            key = self.operand(node["key"]) if "key" in node else (lambda c: None)
            return lambda c: c.tally(arg, key(c), within(c), kind)
        if kind == "in_state":
            states = frozenset(node["states"])
            return lambda c: c.count_in_state(arg, states)
        if kind == "abs":
            inner = self.operand(arg)
            return lambda c: _abs(inner(c))
        parts = tuple(self.operand(x) for x in arg)
        return _arith(kind, parts)

    def duration(self, node: Any) -> Fn:
        if isinstance(node, str):
            ms = parse_duration(node)
            return lambda c: ms
        return self.operand(node)


def _LAZY(c: Context) -> bool:  # pragma: no cover - only reachable on a cyclic guard, rejected at load
    raise RuntimeError("guard refers to itself")


def _all_tests(tests: list[Callable[[Any, Context], bool]], value: Any, c: Context) -> bool:
    return all(t(value, c) for t in tests)


def _abs(v: Any) -> Any:
    return None if v is None else abs(v)


def _arith(kind: str, parts: tuple[Fn, ...]) -> Fn:
    def run(c: Context) -> Any:
        values = [p(c) for p in parts]
        if any(v is None for v in values):
            return None
        if kind == "add":
            return sum(values)
        if kind == "sub":
            return values[0] - values[1]
        if kind == "mul":
            out = 1
            for v in values:
                out *= v
            return out
        if kind == "div":
            return None if values[1] == 0 else values[0] / values[1]
        if kind == "min":
            return min(values)
        return max(values)

    return run


_ORDERED: dict[str, Callable[[Any, Any], bool]] = {
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
}
