"""Declared ranges of numeric settings (config/schema.yaml), and the settings that switch a check off.

Every `integer` / `number` setting declares a finite `min` and `max`: a huge value that would
quietly disable a check (a critical threshold of 1e300, a retry budget of 1e9) is out of range.
Where the schema says a value turns a check off (`meta: {off: V}`, also read by `hlcore diff`),
that value is allowed but reported, so `hlcore validate --strict` fails on it. YAML booleans are
not numbers here (`backfill_window_ms: true` is not 1 ms) and NaN/inf are never a value.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cerberus import TypeDefinition, Validator

from hlcore.errors import Problem
from hlcore.yamlsource import PathKey, Source

NUMERIC = ("integer", "number")


class StrictNumbers(Validator):  # type: ignore[misc]
    """Cerberus with `integer` that excludes bool (cerberus 1.3 counts True as an integer)."""

    types_mapping: ClassVar[dict[str, TypeDefinition]] = {**Validator.types_mapping,
                     "integer": TypeDefinition("integer", (int,), (bool,)),
                     "number": TypeDefinition("number", (int, float), (bool,))}


@dataclass(frozen=True)
class NumericRule:
    dotted: str
    path: PathKey  # inside the schema document, for its line
    rule: Mapping[str, Any]


def numeric_rules(schema: Mapping[str, Any], prefix: str = "", path: PathKey = ("schema",)) -> Iterator[NumericRule]:
    """Every numeric rule of the settings schema, list items (`name[]`) and map values included."""
    for key, rule in schema.items():
        if not isinstance(rule, Mapping):
            continue
        dotted = f"{prefix}.{key}" if prefix else str(key)
        yield from _rules_of(rule, dotted, (*path, key))


def _rules_of(rule: Mapping[str, Any], dotted: str, path: PathKey) -> Iterator[NumericRule]:
    kind = rule.get("type")
    if kind in NUMERIC:
        yield NumericRule(dotted, path, rule)
    elif kind == "dict":
        if isinstance(rule.get("schema"), Mapping):
            yield from numeric_rules(rule["schema"], dotted, (*path, "schema"))
        if isinstance(rule.get("valuesrules"), Mapping):
            yield from _rules_of(rule["valuesrules"], f"{dotted}.*", (*path, "valuesrules"))
    elif kind == "list" and isinstance(rule.get("schema"), Mapping):
        yield from _rules_of(rule["schema"], f"{dotted}[]", (*path, "schema"))


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def schema_problems(schema: Mapping[str, Any], src: Source) -> list[Problem]:
    """A numeric setting without a finite range, or an `off:` outside it, is a broken schema."""
    problems: list[Problem] = []
    for r in numeric_rules(schema):
        lo, hi = r.rule.get("min"), r.rule.get("max")
        if not (_finite(lo) and _finite(hi) and lo <= hi):
            problems.append(src.problem(r.path, f"numeric setting '{r.dotted}' needs a finite range "
                                        f"(min and max), got min={lo!r} max={hi!r}"))
            continue
        meta = r.rule.get("meta")
        off = meta.get("off") if isinstance(meta, Mapping) else None
        if off is not None and not (_finite(off) and lo <= off <= hi):
            problems.append(src.problem((*r.path, "meta", "off"), f"off value {off!r} of '{r.dotted}' is not "
                                        f"within its range [{lo}, {hi}]"))
    return problems


def non_finite(data: Any, path: PathKey = ()) -> Iterator[PathKey]:
    """Paths of NaN/inf floats (the YAML reader refuses them; this guards any other way in)."""
    if isinstance(data, float) and not math.isfinite(data):
        yield path
    elif isinstance(data, Mapping):
        for k, v in data.items():
            yield from non_finite(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from non_finite(v, (*path, i))


@dataclass(frozen=True)
class CheckOff:
    """A setting at the value its schema says turns a check off."""

    dotted: str
    value: Any
    default: Any

    def message(self) -> str:
        return (f"{self.value!r} turns this check off (schema meta.off; the packaged default is "
                f"{self.default!r}); --strict fails on this")


def checks_off(schema: Mapping[str, Any], data: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[CheckOff]:
    """Settings whose value switches a check off where the packaged default keeps it on (a default
    that ships off, such as the spec's `max_stale_ms: 0`, is the reviewed baseline, not a change)."""
    out: list[CheckOff] = []
    for r in numeric_rules(schema):
        meta = r.rule.get("meta")
        if not isinstance(meta, Mapping) or "off" not in meta or "[]" in r.dotted or "*" in r.dotted:
            continue
        value, default = _get(data, r.dotted), _get(defaults, r.dotted)
        if value == meta["off"] and default != meta["off"]:
            out.append(CheckOff(r.dotted, value, default))
    return out


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
