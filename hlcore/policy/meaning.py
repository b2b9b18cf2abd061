"""What a condition means, as far as the invariants need it: its conjuncts, whether it can ever
hold, whether one condition implies another, and whether it requires an allowlist.

Sound in one direction only: `implies` and `contradicts` answer True only when they can show it
(literal values and config values, same subject); anything they cannot decide is False. So a
rule is reported shadowed or unreachable only when that is certain under the loaded settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hlcore.policy.conditions import UNITS_MS
from hlcore.policy.model import Policy

_OPS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "is_null")
_MISSING = object()


class Meaning:
    """Condition reasoning over one policy and its settings (for `config:` values)."""

    def __init__(self, policy: Policy, config: Any):
        self.policy = policy
        self.config = config

    # -- structure -----------------------------------------------------------------------------
    def expand(self, node: Any, seen: frozenset[str] = frozenset()) -> Any:
        """Follow `{guard: NAME}` to its definition (a guard cycle is a load error already)."""
        while isinstance(node, Mapping) and set(node) == {"guard"} and node["guard"] not in seen:
            seen = seen | {node["guard"]}
            node = self.policy.guards.get(node["guard"], {})
        return node

    def conjuncts(self, node: Any) -> list[Any]:
        """Top-level conjuncts: what must all hold for `node` to hold."""
        node = self.expand(node)
        if isinstance(node, Mapping) and set(node) == {"all"}:
            return [c for child in node["all"] for c in self.conjuncts(child)]
        return [node]

    def requires_allowlist(self, node: Any, seen: frozenset[str] = frozenset()) -> bool:
        """True when `node` cannot hold unless an `allowlisted:` predicate holds (a necessary
        condition, not just mentioned: inside `any:` it counts only if every branch has it)."""
        if not isinstance(node, Mapping):
            return False
        if set(node) == {"guard"}:
            name = node["guard"]
            return name not in seen and self.requires_allowlist(self.policy.guards.get(name), seen | {name})
        if "allowlisted" in node:
            return True
        if set(node) == {"all"}:
            return any(self.requires_allowlist(c, seen) for c in node["all"])
        if set(node) == {"any"}:
            return bool(node["any"]) and all(self.requires_allowlist(c, seen) for c in node["any"])
        return False

    # -- satisfiability and implication --------------------------------------------------------
    def unsatisfiable(self, node: Any) -> tuple[Any, Any] | None:
        """Two conjuncts that cannot both hold, or None."""
        parts = self.conjuncts(node)
        for i, a in enumerate(parts):
            for b in parts[i + 1:]:
                if self.contradicts(a, b):
                    return a, b
        return None

    def contradicts(self, a: Any, b: Any) -> bool:
        a, b = self.expand(a), self.expand(b)
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            return False
        if a.get("not") == b or b.get("not") == a:
            return True
        sa, sb = _subject(a), _subject(b)
        if sa is None or sa != sb:
            return False
        va, vb = self.values(a), self.values(b)
        if va is not None and vb is not None and not (va & vb):
            return True
        for x, y in ((a, b), (b, a)):
            vx = self.values(x)
            if vx is not None and (self.excluded(y) & vx) == vx and vx:
                return True
        lo_a, hi_a = self.bounds(a)
        lo_b, hi_b = self.bounds(b)
        return _empty(_tighter_lo(lo_a, lo_b), _tighter_hi(hi_a, hi_b))

    def implies(self, a: Any, b: Any) -> bool:
        """True when every situation satisfying `a` satisfies `b` (decided where certain)."""
        a, b = self.expand(a), self.expand(b)
        if isinstance(b, Mapping) and b.get("always") is True:
            return True
        if a == b:
            return True
        if isinstance(a, Mapping) and set(a) == {"any"}:
            return bool(a["any"]) and all(self.implies(x, b) for x in a["any"])
        if isinstance(b, Mapping) and set(b) == {"all"}:
            return all(self.implies(a, x) for x in b["all"])
        if isinstance(b, Mapping) and set(b) == {"any"}:
            return any(self.implies(a, x) for x in b["any"])
        if isinstance(a, Mapping) and set(a) == {"all"}:
            return any(self.implies(x, b) for x in a["all"])
        return self._atom_implies(a, b)

    def _atom_implies(self, a: Any, b: Any) -> bool:
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            return False
        s = _subject(a)
        if s is None or s != _subject(b):
            return False
        return all(self._implies_op(a, op, b[op]) for op in b if op in _OPS)

    def _implies_op(self, a: Mapping[str, Any], op: str, want: Any) -> bool:
        if op == "is_null":
            return a.get("is_null") == want
        if op in ("eq", "in"):
            allowed = self.values({op: want})
            got = self.values(a)
            return allowed is not None and got is not None and got <= allowed
        if op in ("ne", "not_in"):
            banned = self.values({"in" if op == "not_in" else "eq": want})
            got = self.values(a)
            if banned is None:
                return False
            if got is not None:
                return not (got & banned)
            return banned <= self.excluded(a)
        lo, hi = self.bounds(a)
        bound = self.number(want)
        if bound is None:
            return False
        if op in ("gt", "gte"):
            return lo is not None and (lo[0] > bound or (lo[0] == bound and (op == "gte" or lo[1])))
        return hi is not None and (hi[0] < bound or (hi[0] == bound and (op == "lte" or hi[1])))

    # -- values --------------------------------------------------------------------------------
    def values(self, atom: Mapping[str, Any]) -> set[Any] | None:
        """The literal values an `eq` / `in` comparison allows, or None."""
        if "eq" in atom:
            v = atom["eq"]
            return None if isinstance(v, Mapping | list) else {v}
        if "in" in atom:
            return self.literal_list(atom["in"])
        return None

    def excluded(self, atom: Mapping[str, Any]) -> set[Any]:
        out: set[Any] = set()
        if "ne" in atom and not isinstance(atom["ne"], Mapping | list):
            out.add(atom["ne"])
        if "not_in" in atom:
            out |= self.literal_list(atom["not_in"]) or set()
        return out

    def literal_list(self, node: Any) -> set[Any] | None:
        if isinstance(node, Mapping) and set(node) == {"list"}:
            node = list(self.policy.lists.get(node["list"], ()))
        if isinstance(node, list) and all(not isinstance(v, Mapping | list) for v in node):
            return set(node)
        return None

    def number(self, node: Any) -> float | None:
        if isinstance(node, bool):
            return None
        if isinstance(node, int | float):
            return float(node)
        if isinstance(node, Mapping) and "config" in node and set(node) <= {"config", "unit"}:
            try:
                value = self.config.get(node["config"])
            except (KeyError, AttributeError):
                return None
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            return float(value) * UNITS_MS.get(node.get("unit", "ms"), 1) if "unit" in node else float(value)
        return None

    def bounds(self, atom: Mapping[str, Any]) -> tuple[tuple[float, bool] | None, tuple[float, bool] | None]:
        """(lower, upper) bounds as (value, strict) from gt/gte/lt/lte/eq, where known."""
        lo: tuple[float, bool] | None = None
        hi: tuple[float, bool] | None = None
        for op, strict, low in (("gt", True, True), ("gte", False, True), ("lt", True, False), ("lte", False, False)):
            if op in atom and (n := self.number(atom[op])) is not None:
                if low:
                    lo = _tighter_lo(lo, (n, strict))
                else:
                    hi = _tighter_hi(hi, (n, strict))
        if "eq" in atom and (n := self.number(atom["eq"])) is not None:
            lo, hi = _tighter_lo(lo, (n, False)), _tighter_hi(hi, (n, False))
        return lo, hi


def _subject(atom: Mapping[str, Any]) -> tuple[tuple[str, str], ...] | None:
    """What a comparison compares (its operand keys), or None for a non-comparison."""
    if any(k in atom for k in ("all", "any", "not", "always", "guard", "allowlisted", "band")):
        return None
    rest = tuple(sorted((k, repr(v)) for k, v in atom.items() if k not in _OPS))
    return rest or None


def _tighter_lo(a: tuple[float, bool] | None, b: tuple[float, bool] | None) -> tuple[float, bool] | None:
    if a is None or b is None:
        return a or b
    if a[0] != b[0]:
        return a if a[0] > b[0] else b
    return (a[0], a[1] or b[1])


def _tighter_hi(a: tuple[float, bool] | None, b: tuple[float, bool] | None) -> tuple[float, bool] | None:
    if a is None or b is None:
        return a or b
    if a[0] != b[0]:
        return a if a[0] < b[0] else b
    return (a[0], a[1] or b[1])


def _empty(lo: tuple[float, bool] | None, hi: tuple[float, bool] | None) -> bool:
    if lo is None or hi is None:
        return False
    return lo[0] > hi[0] or (lo[0] == hi[0] and (lo[1] or hi[1]))
