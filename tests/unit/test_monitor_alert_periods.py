"""Issue 4 acceptance: the exit-cluster sequence 10, 26, 24, 22, 26, 19, 30 fires at 26 (delivered)
and at 30 (stored suppressed, cooldown) at 5-minute periods; at 20-minute periods both are delivered."""

from __future__ import annotations

from typing import Any

import pytest

T0 = 1_769_248_800_000
SEQUENCE = [10, 26, 24, 22, 26, 19, 30]
HEALTHY = {"storage_ok": True, "has_usable_run": True, "latest_status": "success", "age_ms": 30_000,
           "age_ref_ms": 30_000, "coverage_pct": 100, "min_nonnull_pct": 100, "clean_streak": 2}


@pytest.mark.parametrize(("period_min", "expected"), [
    (5, [(26, "surfaced", None), (30, "suppressed", "cooldown")]),
    (20, [(26, "surfaced", None), (30, "surfaced", None)]),
], ids=["5-minute", "20-minute"])
def test_exit_cluster_sequence(make_engine: Any, period_min: int, expected: list[tuple[int, str, Any]]) -> None:
    engine, clock = make_engine()
    outcomes = []
    for i, score in enumerate(SEQUENCE):
        clock.set(T0 + i * period_min * 60_000)
        engine.observe("health_evaluated", {**HEALTHY, "latest_run_ts": clock.now_ms()})
        engine.observe("health_evaluated", {**HEALTHY, "latest_run_ts": clock.now_ms()})
        decision = engine.observe("signal_committed", {
            "asset": "BTC", "signal_ts": clock.now_ms(), "exit_cluster_score": score, "playbook": "No-trade",
            "risk_mode": "Defensive", "is_degraded": False})
        for effect in decision.effects:
            delivered = effect.kind in ("alert_surfaced", "alert_suppressed")
            if delivered and effect.data.get("alert_type") == "exit_cluster":
                outcomes.append((score, effect.kind.split("_")[1], effect.data.get("suppressed_reason")))
    assert outcomes == expected
