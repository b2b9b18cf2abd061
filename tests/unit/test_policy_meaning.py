"""Condition reasoning behind the invariants: it says "implies" / "contradicts" / "requires the
allowlist" only when that is certain, so no rule is reported dead and no exit guarded on a guess."""

from __future__ import annotations

from typing import Any

import pytest

from hlcore.policy.meaning import Meaning
from hlcore.policy.model import Policy


class Config:
    def __init__(self, values: dict[str, Any]):
        self.values = values

    def get(self, key: str) -> Any:
        return self.values[key]


def meaning(guards: dict[str, Any] | None = None, lists: dict[str, tuple[Any, ...]] | None = None) -> Meaning:
    policy = Policy(machines={}, tables=(), facts={}, reasons={}, lists=lists or {}, allowlists={},
                    guards=guards or {}, tallies={}, bands={}, severities=(), documents={}, sources={})
    return Meaning(policy, Config({"warn": 0.001, "crit": 0.01, "window": 60}))


DRIFT = "max_drift"


@pytest.mark.parametrize(("a", "b", "expected"), [
    ({"fact": DRIFT, "gte": {"config": "crit"}}, {"fact": DRIFT, "gte": {"config": "warn"}}, True),
    ({"fact": DRIFT, "gte": {"config": "warn"}}, {"fact": DRIFT, "gte": {"config": "crit"}}, False),
    ({"fact": DRIFT, "gt": 5}, {"fact": DRIFT, "gte": 5}, True),
    ({"fact": DRIFT, "gte": 5}, {"fact": DRIFT, "gt": 5}, False),
    ({"fact": "age", "gt": {"config": "window", "unit": "s"}}, {"fact": "age", "gt": 59_000}, True),
    ({"fact": "age", "gt": {"config": "window", "unit": "s"}}, {"fact": "age", "gt": 61_000}, False),
    ({"state": "safety", "eq": "HALT"}, {"state": "safety", "in": ["HALT", "ARMED_SAFE"]}, True),
    ({"state": "safety", "eq": "HALT"}, {"state": "safety", "ne": "ARMED_LIVE"}, True),
    ({"state": "safety", "ne": "HALT"}, {"state": "safety", "eq": "ARMED_LIVE"}, False),
    ({"all": [{"fact": "c", "eq": "unhalt"}, {"state": "s", "ne": "HALT"}]}, {"fact": "c", "eq": "unhalt"}, True),
    ({"fact": "c", "eq": "unhalt"}, {"all": [{"fact": "c", "eq": "unhalt"}, {"state": "s", "ne": "HALT"}]}, False),
    ({"any": [{"fact": "x", "eq": 1}, {"fact": "x", "eq": 2}]}, {"fact": "x", "in": [1, 2, 3]}, True),
    ({"fact": "x", "eq": 1}, {"always": True}, True),
    ({"fact": "x", "eq": 1}, {"fact": "y", "eq": 1}, False),
])
def test_implies(a: Any, b: Any, expected: bool) -> None:
    assert meaning().implies(a, b) is expected


@pytest.mark.parametrize(("when", "dead"), [
    ({"all": [{"state": "safety", "ne": "HALT"}, {"state": "safety", "eq": "HALT"}]}, True),
    ({"all": [{"fact": DRIFT, "gte": 5}, {"fact": DRIFT, "lt": 5}]}, True),
    ({"all": [{"fact": DRIFT, "gte": 5}, {"fact": DRIFT, "lte": 5}]}, False),
    ({"all": [{"state": "r", "in": ["OK", "WARN"]}, {"state": "r", "not_in": ["OK", "WARN"]}]}, True),
    ({"all": [{"state": "r", "in": {"list": "good"}}, {"state": "r", "eq": "CRIT"}]}, True),
    ({"all": [{"fact": "x", "eq": 1}, {"not": {"fact": "x", "eq": 1}}]}, True),
    ({"all": [{"fact": "x", "eq": 1}, {"fact": "y", "eq": 2}]}, False),
])
def test_unsatisfiable(when: Any, dead: bool) -> None:
    assert (meaning(lists={"good": ("OK", "WARN")}).unsatisfiable(when) is not None) is dead


ALLOW = {"allowlisted": "halt_recovery", "machine": "safety"}


@pytest.mark.parametrize(("guard", "required"), [
    (ALLOW, True),
    ({"all": [ALLOW, {"fact": "x", "eq": 0}]}, True),
    ({"any": [ALLOW, {"fact": "x", "eq": 0}]}, False),  # hidden in an any: one branch skips it
    ({"any": [ALLOW, {"all": [ALLOW, {"fact": "y", "eq": 1}]}]}, True),
    ({"not": ALLOW}, False),
    ({"guard": "named"}, True),
    ({"fact": "x", "eq": 0}, False),
])
def test_requires_allowlist(guard: Any, required: bool) -> None:
    assert meaning(guards={"named": {"all": [ALLOW]}}).requires_allowlist(guard) is required
