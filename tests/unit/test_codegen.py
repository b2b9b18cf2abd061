"""The compiled rule functions agree with the closure semantics of the condition language.

Every row condition of the default policy is evaluated both ways over random, well-typed facts
and random machine states, reasons and variables.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from hlcore.engine.clock import ManualClock
from hlcore.engine.codegen import compile_predicate
from hlcore.engine.core import Engine

T0 = 1_769_248_800_000
STRINGS = ["ok", "mismatch", "failed", "success", "startup", "loop", "BTC", "ETH", "No-trade", "Long-only",
           "UNKNOWN", "FILLED", "REJECTED", "TIMEOUT", "SAFETY_REJECTED", "halt", "resume", "promote", "reset",
           "unhalt", "maintenance_skip", "ARMED_SAFE", "ARMED_LIVE", "HALT", "MANUAL_OVERRIDE", "rising", "falling",
           "flat", "decided", "settled", "copytrader", "monitor", "exit_cluster", "regime_change"]


def typed(rng: random.Random, kind: str) -> Any:
    if rng.random() < 0.1:
        return None
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "string":
        return rng.choice(STRINGS)
    if kind == "list":
        return rng.choice([[], ["ETHUSDT"]])
    if kind in ("timestamp_ms", "duration_ms", "integer"):
        return rng.choice([0, 1, 2, 3, 4, 5, 60_000, 120_000, 600_000, 600_001, T0, T0 + 3_600_000])
    return rng.choice([0, 0.0009, 0.001, 0.01, 10, 16, 20, 25, 25.01, 40, 59, 60, 75, 79.9, 80, 89.9, 90, 100])


@pytest.mark.parametrize("seed", range(6))
def test_compiled_conditions_match_closures(default_policy: Any, default_settings: Any, seed: int) -> None:
    rng = random.Random(seed)
    engine = Engine(default_policy, default_settings, ManualClock(T0))
    engine.start()
    singletons = {name: insts[()] for name, insts in engine._instances.items() if () in insts}
    compiled = {}
    checked = 0
    for _ in range(60):
        for name, inst in singletons.items():
            machine = default_policy.machines[name]
            inst.state = rng.choice(sorted(machine.states))
            inst.reason = rng.choice([None, *sorted(default_policy.reasons)])
            for var in machine.vars:
                inst.vars[var] = rng.choice([None, 0, 1, 3, T0, T0 + 600_000, True, False])
        now = T0 + rng.choice([0, 60_000, 600_000, 600_001, 3_600_000])
        for table in default_policy.tables:
            for row in table.rows:
                fact = default_policy.facts[row.on[0]]
                fields = {f: (rng.choice(["BTC", "ETH"]) if f in fact.key else typed(rng, t))
                          for f, t in sorted(fact.fields.items())}
                ctx = engine._ctx
                ctx.kind, ctx.fields, ctx.now, ctx.self_inst = fact.name, fields, now, None
                target = row.then.get("machine") or table.machine
                me = engine._resolve(target, ctx) if target else None
                ctx.self_inst = me
                try:
                    expected = bool(engine._compiler.predicate(row.when)(ctx))
                except TypeError:
                    continue  # ill-typed by chance (e.g. a bool var compared with a string)
                key = (table.name, row.id)
                if key not in compiled:
                    compiled[key] = compile_predicate(row.when, target, default_policy, engine._compiler,
                                                      default_settings, singletons)
                assert compiled[key](engine, ctx, fields, now, me) == expected, f"{key} on {fields}"
                checked += 1
    assert checked > 5000
