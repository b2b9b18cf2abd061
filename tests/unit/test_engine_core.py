"""Interpreter properties: determinism, gates, unknown facts, the no-policy-literals rule."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlcore.engine.clock import ManualClock
from hlcore.engine.core import Engine
from hlcore.errors import BadInput

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_769_248_800_000
ASSETS = ["HYPE", "BTC", "ETH"]
PLAYBOOKS = ["Long-only", "Short-only", "No-trade"]

pct = st.floats(min_value=0, max_value=100, allow_nan=False)
facts = st.one_of(
    st.builds(lambda age, cov, nn, streak, ok: ("health_evaluated", {
        "storage_ok": ok, "has_usable_run": True, "latest_status": "success", "age_ms": age, "age_ref_ms": age,
        "coverage_pct": cov, "min_nonnull_pct": nn, "clean_streak": streak, "latest_run_ts": T0}),
        st.integers(0, 900_000), pct, pct, st.integers(0, 3), st.booleans()),
    st.builds(lambda a, ec, pb, deg, slot: ("signal_committed", {
        "asset": a, "signal_ts": T0 + slot * 300_000, "exit_cluster_score": ec, "playbook": pb,
        "risk_mode": "Reduced", "is_degraded": deg}),
        st.sampled_from(ASSETS), pct, st.sampled_from(PLAYBOOKS), st.booleans(), st.integers(0, 50)),
    st.builds(lambda drift, age, ctx: ("reconcile_completed", {
        "context": ctx, "fetch_ok": True, "position_mode_ok": True, "snapshot_age_ms": age, "max_drift": drift,
        "missing_local": [], "missing_exchange": [], "adapter_last_success_ms": T0, "adapter_last_error_ms": None,
        "unparked_unknown": 0}),
        st.floats(0, 0.05, allow_nan=False), st.integers(0, 60_000), st.sampled_from(["startup", "loop"])),
    st.builds(lambda cid, ans, n: ("order_answered", {
        "correlation_id": cid, "answer": ans, "error_code": "TIMEOUT" if ans == "UNKNOWN" else None,
        "query_attempts": n, "first_unknown_ms": T0}),
        st.sampled_from(["a", "b"]), st.sampled_from(["UNKNOWN", "NEW", "FILLED", "REJECTED", "WEIRD"]),
        st.integers(0, 4)),
    st.builds(lambda cmd: ("operator_command", {
        "command": cmd, "target_mode": "ARMED_SAFE", "reason_code": "MANUAL_OVERRIDE", "force": False,
        "allow_non_halt": False, "last_reconcile_result": "OK", "last_reconcile_ms": T0, "unknown_count": 0,
        "open_event_count": 0}), st.sampled_from(["unhalt", "promote", "reset", "maintenance_skip"])),
    st.builds(lambda a, r: ("dirty_check", {"asset": a, "dirty_rate_pct": r}), st.sampled_from(ASSETS), pct),
    st.builds(lambda ms: ("ingest_tick", {"last_ingest_success_ms": T0, "cursor_ts_ms": T0,
                                          "maintenance_skip_applied_ms": None}), st.just(0)),
)
steps = st.lists(st.tuples(st.integers(0, 400_000), facts), min_size=1, max_size=40)


def run(policy: Any, settings_: Any, sequence: list[tuple[int, tuple[str, dict[str, Any]]]]) -> list[str]:
    clock = ManualClock(T0)
    engine = Engine(policy, settings_, clock)
    out = [engine.start().to_json()]
    for advance, (kind, fields) in sequence:
        clock.advance(advance)
        out.append(engine.observe(kind, dict(fields)).to_json())
    out.append(repr(engine.instances()))
    out.append(repr(engine.tally_rows()))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=steps)
def test_observe_is_deterministic(default_policy: Any, default_settings: Any,
                                  sequence: list[tuple[int, tuple[str, dict[str, Any]]]]) -> None:
    """Same policy, same state, same facts => the same decisions, byte for byte."""
    first = run(default_policy, default_settings, sequence)
    second = run(default_policy, default_settings, sequence)
    assert first == second


def test_gates_come_from_the_states_allows(make_engine: Any) -> None:
    engine, clock = make_engine()
    assert engine.state("safety") == "ARMED_SAFE"
    assert engine.may("order.reduce") and not engine.may("order.open")
    assert not engine.may("no.such.gate")  # unknown gate: closed
    clock.advance(600_001)
    decision = engine.observe("ingest_tick", {"last_ingest_success_ms": 1_769_248_800_000 - 0,
                                              "cursor_ts_ms": 1_769_248_800_000, "maintenance_skip_applied_ms": None})
    assert engine.state("safety") == "HALT"
    closed = sorted(e.data["gate"] for e in decision.find("gate_closed"))
    assert closed == ["decide", "ingest", "order.reduce"]
    assert not engine.may("order.reduce") and engine.may("reconcile")


def test_unknown_fact_is_bad_input(make_engine: Any) -> None:
    engine, _ = make_engine()
    with pytest.raises(BadInput, match="unknown fact 'coverage'"):
        engine.observe("coverage", {})


def test_a_fact_that_changes_nothing_returns_an_empty_decision(make_engine: Any) -> None:
    engine, _ = make_engine()
    decision = engine.observe("signal_scored", {"asset": "BTC", "cas": 50, "trend": "flat", "dispersion": 10,
                                                "exit_cluster": 5})
    assert decision.transitions == () and decision.audit == ()
    assert [e.data for e in decision.find("playbook")] == [{"playbook": "No-trade", "risk_mode": "Defensive"}]


def test_audit_records_carry_time_facts_and_policy_hash(make_engine: Any, default_policy: Any) -> None:
    engine, clock = make_engine()
    clock.advance(1_000)
    d = engine.observe("storage_failed", {"app": "copytrader", "operation": "write"})
    (record,) = d.audit
    assert (record.machine, record.from_state, record.to_state, record.reason_code) == \
        ("safety", "ARMED_SAFE", "HALT", "STORAGE_UNAVAILABLE")
    assert record.at_ms == T0 + 1_000 and record.category == "safety" and record.severity == "critical"
    assert record.facts == {"app": "copytrader", "operation": "write"}
    assert record.policy_hash == default_policy.hash


def test_unknown_persisted_state_falls_back_to_the_safe_state(make_engine: Any) -> None:
    engine, _ = make_engine(persisted=[{"machine": "safety", "instance": "safety", "key": [], "state": "HALTED",
                                        "reason": None, "since_ms": T0, "vars": {}}])
    assert (engine.state("safety"), engine.reason("safety")) == ("HALT", "STATE_UNREADABLE")


POLICY_NAMES = re.compile(
    r"""['"](ARMED_LIVE|ARMED_SAFE|HALT|HEALTHY|DEGRADED|STALE|BACKFILL_WINDOW_EXCEEDED|RECONCILE_CRITICAL|"""
    r"""EXECUTION_RETRY_BUDGET_EXCEEDED|SCHEMA_VERSION_MISMATCH|BOOTSTRAP|INACTIVE|ACTIVE|PENDING|DONE|"""
    r"""No-trade|Long-only|Short-only)['"]""")  # machine names (safety, health, …) are contract names, allowed


def test_no_policy_names_in_hlcore_code() -> None:
    """Policy lives in machines/ and rules/; hlcore/ only interprets (STYLE.md rule 4)."""
    hits = []
    for path in sorted((ROOT / "hlcore").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if POLICY_NAMES.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert hits == []


def test_no_mode_branches_in_hlcore_code() -> None:
    """One code path: no `if replay` in domain code."""
    pattern = re.compile(r"\bif\s+.*\b(replay|REPLAY)\b")
    hits = [f"{p}:{n}" for p in sorted((ROOT / "hlcore").rglob("*.py"))
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert hits == []
