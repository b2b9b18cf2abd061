"""The copy-trader's default safety policy, read like the runbook (spec/copytrader.md).

Every case feeds the engine the facts a job or an operator command would observe and checks the
resulting safety mode + reason code, the audit rows, the effects and the gates, at the spec's
boundaries: boot (§3.1 S1-S9), gap and backfill (§4.1), reconcile (§4.7), HALT auto-recovery
(§4.8), operator commands (§8), order lifecycle and retry budget (§3.3, §4.5, §4.6) and the event
lifecycle (§3.2). Drill numbers refer to §9.
"""

from __future__ import annotations

from typing import Any

import pytest

from hlcore.engine.clock import ManualClock
from hlcore.engine.core import Engine

T0 = 1_769_248_800_000  # 2026-01-24T10:00:00Z
SEC = 1000
WINDOW_MS = 600_000  # ingest.backfill_window_ms

LIVE, SAFE, HALT = "ARMED_LIVE", "ARMED_SAFE", "HALT"
ERBE = "EXECUTION_RETRY_BUDGET_EXCEEDED"


# --------------------------------------------------------------------------------------------
# fact builders and readers
# --------------------------------------------------------------------------------------------


def safety_row(state: str, reason: str | None, since: int = T0, **variables: Any) -> dict[str, Any]:
    return {"machine": "safety", "instance": "safety", "key": [], "state": state, "reason": reason,
            "since_ms": since, "vars": {"recovery_count": 0, **variables}}


def order_row(cid: str, state: str, reason: str | None = None) -> dict[str, Any]:
    return {"machine": "order", "instance": f"order/{cid}", "key": [cid], "state": state, "reason": reason,
            "since_ms": T0, "vars": {}}


def boot(schema: str = "ok", contract: str = "ok", hash_changed: bool = False, mode: str = "live") -> dict[str, Any]:
    return {"schema_status": schema, "contract_status": contract, "config_hash_changed": hash_changed, "mode": mode}


def reconcile(now: int, *, context: str = "loop", fetch_ok: bool = True, position_mode_ok: bool = True,
              age: int | None = 1_000, drift: float | None = 0.0, missing_local: tuple[str, ...] = (),
              missing_exchange: tuple[str, ...] = (), success_age: int | None = 1_000,
              error_at: int | None = None, unparked: int = 0) -> dict[str, Any]:
    """One reconcile run as the job measures it; the adapter answered `success_age` ms ago."""
    return {"context": context, "fetch_ok": fetch_ok, "position_mode_ok": position_mode_ok,
            "snapshot_age_ms": age, "max_drift": drift, "missing_local": list(missing_local),
            "missing_exchange": list(missing_exchange),
            "adapter_last_success_ms": None if success_age is None else now - success_age,
            "adapter_last_error_ms": error_at, "unparked_unknown": unparked}


RAW = {  # measurements that classify as each raw result (§4.7)
    "OK": {"drift": 0.0},
    "WARN": {"drift": 0.005},
    "STALE": {"age": 30_001},
    "CRIT": {"drift": 0.02},
}


def ingest_tick(last_success: int, cursor_ts: int | None = None, skip_applied: int | None = None) -> dict[str, Any]:
    return {"last_ingest_success_ms": last_success,
            "cursor_ts_ms": last_success if cursor_ts is None else cursor_ts,
            "maintenance_skip_applied_ms": skip_applied}


def operator(command: str, **fields: Any) -> dict[str, Any]:
    base = {"command": command, "target_mode": None, "reason_code": None, "force": None, "allow_non_halt": None,
            "last_reconcile_result": None, "last_reconcile_ms": None, "unknown_count": 0, "open_event_count": 0}
    base.update(fields)
    return base


def answer(cid: str, status: str, error_code: str | None = None, attempts: int = 0,
           first_unknown: int | None = None) -> dict[str, Any]:
    return {"correlation_id": cid, "answer": status, "error_code": error_code, "query_attempts": attempts,
            "first_unknown_ms": first_unknown}


def progress(key: str, step: str, intents: int = 0, decision_reason: str | None = None) -> dict[str, Any]:
    return {"event_key": key, "step": step, "intents": intents, "decision_reason": decision_reason}


def mode(engine: Engine) -> tuple[str, str | None]:
    return engine.state("safety"), engine.reason("safety")


def moves(decision: Any, machine: str = "safety") -> list[tuple[str | None, str, str | None]]:
    return [(t.from_state, t.to_state, t.reason) for t in decision.transitions if t.machine == machine]


def audit_rows(decision: Any, machine: str = "safety") -> list[tuple[str | None, str, str | None]]:
    return [(a.from_state, a.to_state, a.reason_code) for a in decision.audit if a.machine == machine]


def refusals(decision: Any) -> list[str]:
    return [e.data["code"] for e in decision.find("refused")]


def counter(engine: Engine) -> int:
    return engine.var("safety", "recovery_count")


def assert_audit(decision: Any, engine: Engine, expected: list[tuple[str | None, str, str | None]],
                 fact: str) -> None:
    """The safety audit rows of one decision: category safety, stamped now, on this fact and policy."""
    rows = [a for a in decision.audit if a.machine == "safety"]
    assert [(a.from_state, a.to_state, a.reason_code) for a in rows] == expected
    for a in rows:
        assert a.category == "safety"
        assert a.instance == "safety"
        assert a.at_ms == decision.at_ms
        assert a.fact == fact
        assert a.policy_hash == engine.policy.hash


# --------------------------------------------------------------------------------------------
# boot (S1-S5)
# --------------------------------------------------------------------------------------------


def test_s1_fresh_start_is_seeded_armed_safe_bootstrap(default_policy, default_settings):
    engine = Engine(default_policy, default_settings, ManualClock(T0))
    seeded = engine.start([])

    assert mode(engine) == (SAFE, "BOOTSTRAP")
    assert audit_rows(seeded) == [(None, SAFE, "BOOTSTRAP")]
    row = next(a for a in seeded.audit if a.machine == "safety")
    assert (row.category, row.event, row.at_ms, row.severity) == ("safety", "seeded", T0, "info")
    assert counter(engine) == 0
    assert engine.may("ingest") and engine.may("decide") and engine.may("order.reduce")
    assert not engine.may("order.open")  # reduce-only until verified


GATES = {
    LIVE: {"ingest": True, "decide": True, "order.open": True, "order.reduce": True, "reconcile": True},
    SAFE: {"ingest": True, "decide": True, "order.open": False, "order.reduce": True, "reconcile": True},
    HALT: {"ingest": False, "decide": False, "order.open": False, "order.reduce": False, "reconcile": True},
}


def assert_gates(engine: Engine) -> None:
    state = engine.state("safety")
    assert {g: engine.may(g) for g in GATES[state]} == GATES[state], state
    assert engine.may("heartbeat")


BOOT_CASES = [
    # persisted (state, reason) or None=fresh DB, boot fact, expected mode, expected audit rows
    pytest.param(None, boot(), (SAFE, "BOOTSTRAP"), [], id="S1-fresh-ok-boot-changes-nothing"),
    pytest.param((LIVE, "OK"), boot(), (SAFE, "BOOTSTRAP"), [(LIVE, SAFE, "BOOTSTRAP")],
                 id="S2-persisted-live-never-starts-live"),
    pytest.param((LIVE, "MANUAL_PROMOTE"), boot(), (SAFE, "BOOTSTRAP"), [(LIVE, SAFE, "BOOTSTRAP")],
                 id="S2-persisted-promoted-live-never-starts-live"),
    pytest.param((SAFE, "RECONCILE_WARN"), boot(), (SAFE, "RECONCILE_WARN"), [], id="safe-reason-survives-boot"),
    pytest.param((SAFE, ERBE), boot(), (SAFE, ERBE), [], id="safe-fault-reason-survives-boot"),
    pytest.param((HALT, "RECONCILE_CRITICAL"), boot(), (HALT, "RECONCILE_CRITICAL"), [],
                 id="halt-survives-restart"),
    pytest.param((HALT, "POSITION_MODE_INVALID"), boot(), (HALT, "POSITION_MODE_INVALID"), [],
                 id="halt-position-mode-survives-restart"),
    # S3 from every mode
    pytest.param(None, boot(schema="mismatch"), (HALT, "SCHEMA_VERSION_MISMATCH"),
                 [(SAFE, HALT, "SCHEMA_VERSION_MISMATCH")], id="S3-schema-mismatch-from-fresh"),
    pytest.param((LIVE, "OK"), boot(schema="mismatch"), (HALT, "SCHEMA_VERSION_MISMATCH"),
                 [(LIVE, HALT, "SCHEMA_VERSION_MISMATCH")], id="S3-schema-mismatch-from-live"),
    pytest.param((SAFE, "CONFIG_HASH_CHANGED"), boot(schema="mismatch"), (HALT, "SCHEMA_VERSION_MISMATCH"),
                 [(SAFE, HALT, "SCHEMA_VERSION_MISMATCH")], id="S3-schema-mismatch-from-safe"),
    pytest.param((HALT, "RECONCILE_CRITICAL"), boot(schema="mismatch"), (HALT, "SCHEMA_VERSION_MISMATCH"),
                 [(HALT, HALT, "SCHEMA_VERSION_MISMATCH")], id="S3-schema-mismatch-from-recoverable-halt"),
    pytest.param((HALT, "POSITION_MODE_INVALID"), boot(schema="mismatch"), (HALT, "SCHEMA_VERSION_MISMATCH"),
                 [(HALT, HALT, "SCHEMA_VERSION_MISMATCH")], id="S3-schema-mismatch-from-operator-halt"),
    pytest.param((HALT, "SCHEMA_VERSION_MISMATCH"), boot(schema="mismatch"), (HALT, "SCHEMA_VERSION_MISMATCH"),
                 [], id="S3-schema-mismatch-again-is-a-hold"),
    # S4
    pytest.param(None, boot(contract="mismatch"), (HALT, "CONTRACT_VERSION_MISMATCH"),
                 [(SAFE, HALT, "CONTRACT_VERSION_MISMATCH")], id="S4-contract-mismatch-from-fresh"),
    pytest.param((LIVE, "OK"), boot(contract="mismatch"), (HALT, "CONTRACT_VERSION_MISMATCH"),
                 [(LIVE, HALT, "CONTRACT_VERSION_MISMATCH")], id="S4-contract-mismatch-from-live"),
    pytest.param((HALT, "BACKFILL_WINDOW_EXCEEDED"), boot(contract="mismatch"), (HALT, "CONTRACT_VERSION_MISMATCH"),
                 [(HALT, HALT, "CONTRACT_VERSION_MISMATCH")], id="S4-contract-mismatch-from-halt"),
    # S5
    pytest.param((SAFE, "BOOTSTRAP"), boot(hash_changed=True), (SAFE, "CONFIG_HASH_CHANGED"),
                 [(SAFE, SAFE, "CONFIG_HASH_CHANGED")], id="S5-config-hash-changed-in-safe"),
    pytest.param(None, boot(hash_changed=True), (SAFE, "CONFIG_HASH_CHANGED"),
                 [(SAFE, SAFE, "CONFIG_HASH_CHANGED")], id="S5-config-hash-changed-fresh"),
    pytest.param((LIVE, "OK"), boot(hash_changed=True), (SAFE, "CONFIG_HASH_CHANGED"),
                 [(LIVE, SAFE, "BOOTSTRAP"), (SAFE, SAFE, "CONFIG_HASH_CHANGED")],
                 id="S2-then-S5-live-with-changed-hash"),
]


@pytest.mark.parametrize("persisted, fact, expected, audit", BOOT_CASES)
def test_boot(make_engine, persisted, fact, expected, audit):
    rows = [safety_row(*persisted, recovery_count=2 if persisted and persisted[0] == HALT else 0)] if persisted else []
    engine, _ = make_engine(persisted=rows)
    decision = engine.observe("boot", fact)

    assert mode(engine) == expected
    assert_audit(decision, engine, audit, "boot")
    assert moves(decision) == audit
    assert_gates(engine)
    if expected[0] == HALT and audit:
        assert counter(engine) == 0  # entering HALT / a HALT-reason change resets the counter
    if persisted == (LIVE, "OK") and fact == boot():
        assert [e.data["gate"] for e in decision.find("gate_closed")] == ["order.open"]


@pytest.mark.parametrize("reason", ["RECONCILE_CRITICAL", "POSITION_MODE_INVALID", "BACKFILL_WINDOW_EXCEEDED"])
def test_s5_config_hash_changed_in_halt_is_audit_only(make_engine, reason):
    engine, _ = make_engine(persisted=[safety_row(HALT, reason, recovery_count=2)])
    decision = engine.observe("boot", boot(hash_changed=True))

    assert mode(engine) == (HALT, reason)
    assert counter(engine) == 2
    assert decision.transitions == ()
    assert [e.data for e in decision.find("audit")] == [{"reason_code": "CONFIG_HASH_CHANGED"}]


def test_s5_config_hash_changed_in_safe_has_no_extra_audit_effect(make_engine):
    engine, _ = make_engine()
    decision = engine.observe("boot", boot(hash_changed=True))
    assert decision.find("audit") == []  # the transition's own audit row records it


# S15: startup_policy=auto promotes only a fresh BOOTSTRAP on an OK startup reconcile (drills 1, 4).
AUTO_CASES = [
    pytest.param("auto", None, boot(), {"context": "startup"}, (LIVE, "OK"), id="auto-fresh-startup-ok-goes-live"),
    pytest.param("manual", None, boot(), {"context": "startup"}, (SAFE, "BOOTSTRAP"), id="manual-stays-safe"),
    pytest.param("auto", (LIVE, "OK"), boot(), {"context": "startup"}, (LIVE, "OK"),
                 id="auto-restart-from-live-via-bootstrap"),
    pytest.param("auto", (SAFE, ERBE), boot(), {"context": "startup"}, (SAFE, ERBE),
                 id="auto-not-after-retry-budget-fault"),
    pytest.param("auto", (SAFE, "BOOTSTRAP"), boot(hash_changed=True), {"context": "startup"},
                 (SAFE, "CONFIG_HASH_CHANGED"), id="auto-not-after-config-change-drill-4"),
    pytest.param("auto", (SAFE, "HALT_RECOVERY_AUTO"), boot(), {"context": "startup"}, (SAFE, "HALT_RECOVERY_AUTO"),
                 id="auto-not-after-halt-recovery"),
    pytest.param("auto", (SAFE, "MANUAL_UNHALT"), boot(), {"context": "startup"}, (SAFE, "MANUAL_UNHALT"),
                 id="auto-not-after-unhalt"),
    pytest.param("auto", (HALT, "RECONCILE_CRITICAL"), boot(), {"context": "startup"}, (HALT, "RECONCILE_CRITICAL"),
                 id="auto-never-leaves-halt"),
    pytest.param("auto", None, boot(), {"context": "loop"}, (SAFE, "BOOTSTRAP"), id="auto-only-on-startup-reconcile"),
    pytest.param("auto", None, boot(), {"context": "startup", "drift": 0.001}, (SAFE, "RECONCILE_WARN"),
                 id="auto-startup-warn-stays-safe"),
    pytest.param("auto", None, boot(), {"context": "startup", "age": 30_001}, (SAFE, "SNAPSHOT_STALE"),
                 id="auto-startup-stale-stays-safe"),
    pytest.param("auto", None, boot(), {"context": "startup", "drift": 0.01}, (HALT, "RECONCILE_CRITICAL"),
                 id="auto-startup-crit-halts"),
    pytest.param("auto", None, boot(), {"context": "startup", "fetch_ok": False, "age": None, "drift": None},
                 (HALT, "RECONCILE_FAILED"), id="auto-startup-fetch-failure-halts"),
]


@pytest.mark.parametrize("policy, persisted, boot_fact, recon, expected", AUTO_CASES)
def test_s15_startup_auto_promotion(make_engine, policy, persisted, boot_fact, recon, expected):
    engine, clock = make_engine(config={"safety": {"startup_policy": policy}},
                                persisted=[safety_row(*persisted)] if persisted else [])
    engine.observe("boot", boot_fact)
    decision = engine.observe("reconcile_completed", reconcile(clock.now_ms(), **recon))

    assert mode(engine) == expected
    assert_gates(engine)
    if expected == (LIVE, "OK"):
        assert_audit(decision, engine, [(SAFE, LIVE, "OK")], "reconcile_completed")
        assert [a.event for a in decision.audit if a.machine == "safety"] == ["started_live"]
        assert engine.may("order.open")


FAULT_CASES = [
    pytest.param("adapter_checked", {"implemented": False, "mode": "live"}, (LIVE, "OK"),
                 (HALT, "EXECUTION_ADAPTER_NOT_IMPLEMENTED"), id="S6-adapter-missing-from-live"),
    pytest.param("adapter_checked", {"implemented": False, "mode": "live"}, (SAFE, "BOOTSTRAP"),
                 (HALT, "EXECUTION_ADAPTER_NOT_IMPLEMENTED"), id="S6-adapter-missing-from-safe"),
    pytest.param("adapter_checked", {"implemented": True, "mode": "live"}, (SAFE, "BOOTSTRAP"),
                 (SAFE, "BOOTSTRAP"), id="S6-adapter-present-no-change"),
    pytest.param("adapter_checked", {"implemented": False, "mode": "live"}, (HALT, "RECONCILE_CRITICAL"),
                 (HALT, "RECONCILE_CRITICAL"), id="S6-in-halt-reason-kept"),
    pytest.param("storage_failed", {"app": "copytrader", "operation": "write"}, (LIVE, "OK"),
                 (HALT, "STORAGE_UNAVAILABLE"), id="S9-storage-from-live"),
    pytest.param("storage_failed", {"app": "copytrader", "operation": "read"}, (SAFE, "RECONCILE_WARN"),
                 (HALT, "STORAGE_UNAVAILABLE"), id="S9-storage-from-safe"),
    pytest.param("storage_failed", {"app": "copytrader", "operation": "write"}, (HALT, "BACKFILL_WINDOW_EXCEEDED"),
                 (HALT, "BACKFILL_WINDOW_EXCEEDED"), id="S9-in-halt-reason-kept"),
    pytest.param("storage_failed", {"app": "monitor", "operation": "write"}, (LIVE, "OK"),
                 (LIVE, "OK"), id="S9-monitor-storage-is-not-the-copytrader"),
]


@pytest.mark.parametrize("kind, fields, start, expected", FAULT_CASES)
def test_s6_s9_faults(make_engine, kind, fields, start, expected):
    engine, _ = make_engine(persisted=[safety_row(*start, recovery_count=2)])
    decision = engine.observe(kind, fields)

    assert mode(engine) == expected
    assert_gates(engine)
    if expected != start:
        assert_audit(decision, engine, [(start[0], *expected)], kind)
        assert counter(engine) == 0
    else:
        assert moves(decision) == []
        assert counter(engine) == 2


# --------------------------------------------------------------------------------------------
# gap and backfill (§4.1, S10, S11)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("start", [(SAFE, "BOOTSTRAP"), (LIVE, "OK"), (SAFE, "MANUAL_UNHALT")],
                         ids=["safe", "live", "safe-after-unhalt"])
@pytest.mark.parametrize("elapsed, halts", [(WINDOW_MS - 1, False), (WINDOW_MS, False), (WINDOW_MS + 1, True)],
                         ids=["599999", "600000-not-strictly-over", "600001-over"])
def test_s10_gap_rule_is_strict(make_engine, start, elapsed, halts):
    engine, clock = make_engine(persisted=[safety_row(*start)])
    decision = engine.observe("ingest_tick", ingest_tick(clock.now_ms() - elapsed))

    if halts:
        assert mode(engine) == (HALT, "BACKFILL_WINDOW_EXCEEDED")
        assert_audit(decision, engine, [(start[0], HALT, "BACKFILL_WINDOW_EXCEEDED")], "ingest_tick")
        assert not engine.may("ingest")  # no fetch on this tick
        assert not engine.may("decide")
        assert "ingest" in [e.data["gate"] for e in decision.find("gate_closed")]
        assert decision.find("maintenance_skip") == []
    else:
        assert mode(engine) == start
        assert decision.transitions == ()
        assert engine.may("ingest")


@pytest.mark.parametrize("reason", ["SNAPSHOT_STALE", "RECONCILE_CRITICAL"])
def test_s10_long_recoverable_halt_turns_into_gap_halt(make_engine, reason):
    engine, clock = make_engine(persisted=[safety_row(HALT, reason, since=T0 - 5 * SEC, recovery_count=2)])
    decision = engine.observe("ingest_tick", ingest_tick(clock.now_ms() - WINDOW_MS - 1))

    assert mode(engine) == (HALT, "BACKFILL_WINDOW_EXCEEDED")
    assert_audit(decision, engine, [(HALT, HALT, "BACKFILL_WINDOW_EXCEEDED")], "ingest_tick")
    assert counter(engine) == 0  # counter reset on the HALT-reason change
    assert next(r for r in engine.instances() if r["machine"] == "safety")["since_ms"] == T0  # HALT re-stamped


@pytest.mark.parametrize("reason", ["SNAPSHOT_STALE", "RECONCILE_CRITICAL"])
def test_s10_recoverable_halt_within_window_is_kept(make_engine, reason):
    engine, clock = make_engine(persisted=[safety_row(HALT, reason, recovery_count=2)])
    decision = engine.observe("ingest_tick", ingest_tick(clock.now_ms() - WINDOW_MS))
    assert mode(engine) == (HALT, reason)
    assert counter(engine) == 2
    assert decision.transitions == ()


@pytest.mark.parametrize("reason", ["POSITION_MODE_INVALID", "STORAGE_UNAVAILABLE", ERBE, "SCHEMA_VERSION_MISMATCH",
                                    "RECONCILE_FAILED", "BACKFILL_WINDOW_EXCEEDED", "MANUAL_OVERRIDE"])
def test_s10_other_halt_reasons_are_kept_through_a_gap(make_engine, reason):
    engine, clock = make_engine(persisted=[safety_row(HALT, reason, since=T0 - SEC, recovery_count=2)])
    decision = engine.observe("ingest_tick", ingest_tick(clock.now_ms() - 3 * WINDOW_MS))

    assert mode(engine) == (HALT, reason)
    assert counter(engine) == 2
    assert moves(decision) == []
    assert audit_rows(decision) == []


SKIP = {"ingest": {"maintenance_skip_gap": True}}


@pytest.mark.parametrize("start", [(LIVE, "OK"), (SAFE, "BOOTSTRAP"), (SAFE, ERBE)], ids=["live", "safe", "safe-fault"])
def test_s11_maintenance_skip_gap_abandons_the_gap_into_safe(make_engine, start):
    engine, clock = make_engine(config=SKIP, persisted=[safety_row(*start)])
    now = clock.now_ms()
    gap_start = now - WINDOW_MS - 1
    decision = engine.observe("ingest_tick", ingest_tick(gap_start))

    assert mode(engine) == (SAFE, "MAINTENANCE_SKIP_APPLIED")
    assert_audit(decision, engine, [(start[0], SAFE, "MAINTENANCE_SKIP_APPLIED")], "ingest_tick")
    assert [e.data for e in decision.find("maintenance_skip")] == [{"from_ms": gap_start, "to_ms": now}]
    assert engine.var("safety", "skip_applied_ms") == now
    assert engine.may("ingest") and not engine.may("order.open")


def test_s11_maintenance_skip_not_below_the_window(make_engine):
    engine, clock = make_engine(config=SKIP, persisted=[safety_row(LIVE, "OK")])
    decision = engine.observe("ingest_tick", ingest_tick(clock.now_ms() - WINDOW_MS))
    assert mode(engine) == (LIVE, "OK")
    assert decision.find("maintenance_skip") == []


def test_s11_maintenance_skip_once_per_gap(make_engine):
    """After a skip the job stamps last_ingest_success_ms = maintenance_skip_applied_ms = now. If no
    ingest succeeds after it, the next gap is the same gap: no second skip, S10 halts."""
    engine, clock = make_engine(config=SKIP, persisted=[safety_row(LIVE, "OK")])
    engine.observe("ingest_tick", ingest_tick(clock.now_ms() - WINDOW_MS - 1))
    skipped_at = clock.now_ms()
    assert mode(engine) == (SAFE, "MAINTENANCE_SKIP_APPLIED")

    clock.advance(WINDOW_MS + 1)
    decision = engine.observe("ingest_tick", ingest_tick(skipped_at, skip_applied=skipped_at))
    assert decision.find("maintenance_skip") == []
    assert mode(engine) == (HALT, "BACKFILL_WINDOW_EXCEEDED")


def test_s11_a_later_gap_after_a_good_ingest_is_skipped_again(make_engine):
    engine, clock = make_engine(config=SKIP, persisted=[safety_row(LIVE, "OK")])
    engine.observe("ingest_tick", ingest_tick(clock.now_ms() - WINDOW_MS - 1))
    first_skip = clock.now_ms()
    clock.advance(10 * SEC)
    good_ingest = clock.now_ms()
    clock.advance(WINDOW_MS + 1)
    decision = engine.observe("ingest_tick", ingest_tick(good_ingest, skip_applied=first_skip))

    assert [e.data for e in decision.find("maintenance_skip")] == [{"from_ms": good_ingest, "to_ms": clock.now_ms()}]
    assert mode(engine) == (SAFE, "MAINTENANCE_SKIP_APPLIED")
    assert engine.var("safety", "skip_applied_ms") == clock.now_ms()  # maintenance_skip_applied_ms = now


@pytest.mark.parametrize("reason, expected", [
    ("SNAPSHOT_STALE", "BACKFILL_WINDOW_EXCEEDED"),
    ("RECONCILE_CRITICAL", "BACKFILL_WINDOW_EXCEEDED"),
    ("BACKFILL_WINDOW_EXCEEDED", "BACKFILL_WINDOW_EXCEEDED"),
    ("POSITION_MODE_INVALID", "POSITION_MODE_INVALID"),
])
def test_s11_flag_never_leaves_halt(make_engine, reason, expected):
    engine, clock = make_engine(config=SKIP, persisted=[safety_row(HALT, reason, since=T0 - SEC)])
    decision = engine.observe("ingest_tick", ingest_tick(clock.now_ms() - WINDOW_MS - 1))
    assert mode(engine) == (HALT, expected)
    assert decision.find("maintenance_skip") == []
    assert engine.var("safety", "skip_applied_ms") is None


@pytest.mark.parametrize("start, reached, expected", [
    ((LIVE, "OK"), True, (HALT, "BACKFILL_WINDOW_EXCEEDED")),
    ((SAFE, "BOOTSTRAP"), True, (HALT, "BACKFILL_WINDOW_EXCEEDED")),
    ((HALT, "RECONCILE_CRITICAL"), True, (HALT, "BACKFILL_WINDOW_EXCEEDED")),
    ((HALT, "POSITION_MODE_INVALID"), True, (HALT, "POSITION_MODE_INVALID")),
    ((LIVE, "OK"), False, (LIVE, "OK")),
], ids=["live", "safe", "halt-recoverable-converts", "halt-other-kept", "limit-not-reached"])
def test_history_limit_reached_is_a_gap(make_engine, start, reached, expected):
    engine, _ = make_engine(persisted=[safety_row(*start, since=T0 - SEC)])
    decision = engine.observe("backfill_result", {"complete": not reached, "history_limit_reached": reached,
                                                  "fills": 10_000})
    assert mode(engine) == expected
    if expected != start:
        assert_audit(decision, engine, [(start[0], *expected)], "backfill_result")


def test_event_time_gap_warns_at_most_once_per_five_minutes_and_never_halts(make_engine):
    engine, clock = make_engine(persisted=[safety_row(LIVE, "OK")])
    cursor = clock.now_ms() - WINDOW_MS - 1

    def tick() -> list[dict[str, Any]]:
        d = engine.observe("ingest_tick", ingest_tick(clock.now_ms() - SEC, cursor_ts=cursor))
        return [e.data for e in d.find("warning")]

    assert tick() == [{"code": "ingest_event_gap_exceeded"}]
    assert engine.var("safety", "gap_warned_ms") == T0
    clock.advance(10 * SEC)
    assert tick() == []
    clock.set(T0 + 299_999)
    assert tick() == []
    clock.set(T0 + 300_000)
    assert tick() == [{"code": "ingest_event_gap_exceeded"}]
    clock.set(T0 + 300_001)
    assert tick() == []
    assert mode(engine) == (LIVE, "OK")


def test_event_time_gap_is_strict(make_engine):
    engine, clock = make_engine(persisted=[safety_row(LIVE, "OK")])
    d = engine.observe("ingest_tick", ingest_tick(clock.now_ms() - SEC, cursor_ts=clock.now_ms() - WINDOW_MS))
    assert d.find("warning") == []


# --------------------------------------------------------------------------------------------
# reconcile (§4.7)
# --------------------------------------------------------------------------------------------


CLASSIFY_CASES = [
    pytest.param({"drift": 0.0}, "OK", id="no-drift-ok"),
    pytest.param({"drift": 0.000999}, "OK", id="drift-0.000999-ok"),
    pytest.param({"drift": 0.001}, "WARN", id="drift-0.001-warn-inclusive"),
    pytest.param({"drift": 0.005}, "WARN", id="drift-0.005-warn"),
    pytest.param({"drift": 0.009999}, "WARN", id="drift-0.009999-warn"),
    pytest.param({"drift": 0.01}, "CRIT", id="drift-0.01-crit-inclusive"),
    pytest.param({"drift": 0.02}, "CRIT", id="drift-0.02-crit"),
    pytest.param({"missing_local": ("ETHUSDT",)}, "CRIT", id="missing-local-crit"),
    pytest.param({"missing_exchange": ("ETHUSDT",)}, "CRIT", id="missing-exchange-crit"),
    pytest.param({"age": 30_000}, "OK", id="age-30000-fresh"),
    pytest.param({"age": 30_001}, "STALE", id="age-30001-stale"),
    pytest.param({"age": None}, "STALE", id="no-snapshot-stale"),
]


@pytest.mark.parametrize("measured, raw", CLASSIFY_CASES)
def test_reconcile_classification(make_engine, measured, raw):
    engine, clock = make_engine()
    decision = engine.observe("reconcile_completed", reconcile(clock.now_ms(), **measured))
    assert engine.state("reconcile") == raw
    assert engine.reason("reconcile") == {"OK": "OK", "WARN": "RECONCILE_WARN", "STALE": "SNAPSHOT_STALE",
                                          "CRIT": "RECONCILE_CRITICAL"}[raw]
    assert moves(decision, "reconcile") == [("NONE", raw, engine.reason("reconcile"))]


# The §4.7 matrix: current mode x raw result -> mode, reason, recovery counter.
MATRIX = [
    # HALT: kept; OK/WARN count, STALE/CRIT reset. A non-recoverable reason so S17 cannot interfere.
    pytest.param((HALT, ERBE), "OK", (HALT, ERBE), 2, id="halt-ok-kept-counter+1"),
    pytest.param((HALT, ERBE), "WARN", (HALT, ERBE), 2, id="halt-warn-kept-counter+1"),
    pytest.param((HALT, ERBE), "STALE", (HALT, ERBE), 0, id="halt-stale-kept-counter-0"),
    pytest.param((HALT, ERBE), "CRIT", (HALT, ERBE), 0, id="halt-crit-kept-counter-0"),
    pytest.param((HALT, "BACKFILL_WINDOW_EXCEEDED"), "CRIT", (HALT, "BACKFILL_WINDOW_EXCEEDED"), 0,
                 id="halt-backfill-crit-kept"),
    # ARMED_SAFE
    pytest.param((SAFE, "BOOTSTRAP"), "OK", (SAFE, "BOOTSTRAP"), 0, id="safe-ok-kept"),
    pytest.param((SAFE, "RECONCILE_WARN"), "OK", (SAFE, "RECONCILE_WARN"), 0, id="safe-warn-then-ok-stays-safe"),
    pytest.param((SAFE, "BOOTSTRAP"), "WARN", (SAFE, "RECONCILE_WARN"), 0, id="S13-safe-warn"),
    pytest.param((SAFE, "BOOTSTRAP"), "STALE", (SAFE, "SNAPSHOT_STALE"), 0, id="S13-safe-stale"),
    pytest.param((SAFE, "BOOTSTRAP"), "CRIT", (HALT, "RECONCILE_CRITICAL"), 0, id="S14-safe-crit"),
    # ARMED_LIVE
    pytest.param((LIVE, "OK"), "OK", (LIVE, "OK"), 0, id="live-ok"),
    pytest.param((LIVE, "MANUAL_PROMOTE"), "OK", (LIVE, "OK"), 0, id="live-promoted-then-ok"),
    pytest.param((LIVE, "OK"), "WARN", (SAFE, "RECONCILE_WARN"), 0, id="S12-live-warn"),
    pytest.param((LIVE, "OK"), "STALE", (SAFE, "SNAPSHOT_STALE"), 0, id="S12-live-stale"),
    pytest.param((LIVE, "OK"), "CRIT", (HALT, "RECONCILE_CRITICAL"), 0, id="S14-live-crit"),
]


@pytest.mark.parametrize("start, raw, expected, count", MATRIX)
def test_reconcile_matrix(make_engine, start, raw, expected, count):
    engine, clock = make_engine(persisted=[safety_row(*start, recovery_count=1 if start[0] == HALT else 0)])
    decision = engine.observe("reconcile_completed", reconcile(clock.now_ms(), **RAW[raw]))

    assert mode(engine) == expected
    assert counter(engine) == count
    assert_gates(engine)
    expected_audit = [] if expected == start else [(start[0], *expected)]
    assert_audit(decision, engine, expected_audit, "reconcile_completed")
    if start[0] == HALT:
        assert moves(decision) == []  # reconcile in HALT only feeds the recovery counter


@pytest.mark.parametrize("reason", ["BOOTSTRAP", "RECONCILE_WARN", "SNAPSHOT_STALE", "CONFIG_HASH_CHANGED",
                                    "MAINTENANCE_SKIP_APPLIED", ERBE, "HALT_RECOVERY_AUTO", "MANUAL_UNHALT",
                                    "MAINTENANCE_SKIP"])
@pytest.mark.parametrize("raw, new_reason", [("WARN", "RECONCILE_WARN"), ("STALE", "SNAPSHOT_STALE")])
def test_s13_only_replaceable_safe_reasons_are_replaced(make_engine, reason, raw, new_reason):
    engine, clock = make_engine(persisted=[safety_row(SAFE, reason)])
    decision = engine.observe("reconcile_completed", reconcile(clock.now_ms(), **RAW[raw]))

    replaceable = reason in ("BOOTSTRAP", "RECONCILE_WARN", "SNAPSHOT_STALE")
    assert mode(engine) == (SAFE, new_reason if replaceable else reason)
    changed = replaceable and reason != new_reason
    assert audit_rows(decision) == ([(SAFE, SAFE, new_reason)] if changed else [])


@pytest.mark.parametrize("start", [(LIVE, "OK"), (SAFE, "BOOTSTRAP"), (SAFE, "RECONCILE_WARN")])
@pytest.mark.parametrize("raw", ["OK", "CRIT"])
def test_s8_position_mode_invalid_halts_and_starts_counter_at_zero(make_engine, start, raw):
    engine, clock = make_engine(persisted=[safety_row(*start)])
    decision = engine.observe("reconcile_completed", reconcile(clock.now_ms(), position_mode_ok=False, **RAW[raw]))

    assert mode(engine) == (HALT, "POSITION_MODE_INVALID")  # never the recoverable RECONCILE_CRITICAL
    assert_audit(decision, engine, [(start[0], HALT, "POSITION_MODE_INVALID")], "reconcile_completed")
    assert counter(engine) == 0  # entering HALT: the reconcile that halted does not count toward recovery


@pytest.mark.parametrize("start", [(LIVE, "OK"), (SAFE, "BOOTSTRAP")])
@pytest.mark.parametrize("raw", ["OK", "CRIT"])
def test_entering_halt_on_a_reconcile_leaves_the_counter_at_zero(make_engine, start, raw):
    engine, clock = make_engine(persisted=[safety_row(*start)])
    engine.observe("reconcile_completed", reconcile(clock.now_ms(), context="startup", fetch_ok=False, **RAW[raw]))
    assert mode(engine) == (HALT, "RECONCILE_FAILED")
    assert counter(engine) == 0


def test_s7_startup_fetch_failure_halts_reconcile_failed(make_engine):
    engine, clock = make_engine()
    engine.observe("boot", boot())
    decision = engine.observe("reconcile_completed",
                              reconcile(clock.now_ms(), context="startup", fetch_ok=False, age=None, drift=None))
    assert mode(engine) == (HALT, "RECONCILE_FAILED")
    assert_audit(decision, engine, [(SAFE, HALT, "RECONCILE_FAILED")], "reconcile_completed")


def test_s7_loop_fetch_failure_is_not_reconcile_failed(make_engine):
    """Outside startup a failing positionRisk falls back to the last snapshot; once too old it is
    STALE (drill 17 variant), never RECONCILE_FAILED."""
    engine, clock = make_engine(persisted=[safety_row(LIVE, "OK")])
    engine.observe("reconcile_completed", reconcile(clock.now_ms(), fetch_ok=False, age=40_000))
    assert mode(engine) == (SAFE, "SNAPSHOT_STALE")


def test_drill_17_warn_then_ok_stays_safe(make_engine):
    engine, clock = make_engine(persisted=[safety_row(LIVE, "OK")])
    engine.observe("reconcile_completed", reconcile(clock.now_ms(), drift=0.005))
    assert mode(engine) == (SAFE, "RECONCILE_WARN")
    assert not engine.may("order.open")
    clock.advance(60 * SEC)
    decision = engine.observe("reconcile_completed", reconcile(clock.now_ms(), drift=0.001))
    assert mode(engine) == (SAFE, "RECONCILE_WARN")
    assert moves(decision) == []
    clock.advance(60 * SEC)
    engine.observe("reconcile_completed", reconcile(clock.now_ms(), drift=0.0))
    assert mode(engine) == (SAFE, "RECONCILE_WARN")  # only S15/S19 reach ARMED_LIVE


# --------------------------------------------------------------------------------------------
# HALT auto-recovery (§4.8, S17)
# --------------------------------------------------------------------------------------------


def run_drill_19(engine: Engine, clock: ManualClock, *, crit_at: int | None = None, error_at: int | None = None,
                 until: int = 400) -> int | None:
    """HALT/RECONCILE_CRITICAL at T0; ingest ticks every 10 s, an OK reconcile every 60 s.

    Returns the second at which the mode left HALT (or None). Checks on the way that ticks without
    a reconcile never touch the counter and that the mode never reaches ARMED_LIVE."""
    error_ms = None
    for t in range(10, until + 1, 10):
        clock.set(T0 + t * SEC)
        if error_at is not None and t >= error_at:
            error_ms = T0 + error_at * SEC
        if t % 60 == 0:
            raw = "CRIT" if t == crit_at else "OK"
            engine.observe("reconcile_completed", reconcile(clock.now_ms(), error_at=error_ms, **RAW[raw]))
        else:
            before = counter(engine)
            engine.observe("ingest_tick", ingest_tick(T0))  # ingest paused in HALT: no fresh success
            assert counter(engine) == before
        assert engine.state("safety") != LIVE
        if engine.state("safety") != HALT:
            return t
    return None


@pytest.mark.parametrize("variant, recovered_at", [
    ({}, 180),
    ({"crit_at": 120}, 300),
    ({"error_at": 170}, 240),
], ids=["ok-60-120-180", "A-crit-at-120-resets", "B-adapter-error-at-170-R4"])
def test_drill_19_reconcile_critical_auto_recovery(make_engine, variant, recovered_at):
    engine, clock = make_engine(persisted=[safety_row(HALT, "RECONCILE_CRITICAL")])
    assert run_drill_19(engine, clock, **variant) == recovered_at
    assert mode(engine) == (SAFE, "HALT_RECOVERY_AUTO")
    assert counter(engine) == 0
    assert engine.may("ingest") and not engine.may("order.open")


def test_s17_recovery_transition_and_audit_row(make_engine):
    engine, clock = make_engine(persisted=[safety_row(HALT, "RECONCILE_CRITICAL", recovery_count=2)])
    decision = engine.observe("reconcile_completed", reconcile(clock.now_ms()))

    assert mode(engine) == (SAFE, "HALT_RECOVERY_AUTO")
    assert_audit(decision, engine, [(HALT, SAFE, "HALT_RECOVERY_AUTO")], "reconcile_completed")
    row = next(a for a in decision.audit if a.machine == "safety")
    assert row.event == "recovered"
    assert row.facts["max_drift"] == 0.0
    opened = sorted(e.data["gate"] for e in decision.find("gate_opened"))
    assert opened == ["decide", "ingest", "order.reduce"]  # never order.open


@pytest.mark.parametrize("count, recon, recovers", [
    pytest.param(2, {}, True, id="R2-third-ok-recovers"),
    pytest.param(1, {}, False, id="R2-second-ok-not-enough"),
    pytest.param(2, {"drift": 0.005}, True, id="R2-warn-counts"),
    pytest.param(2, {"age": 30_001}, False, id="stale-resets"),
    pytest.param(5, {"drift": 0.02}, False, id="crit-resets"),
    pytest.param(2, {"fetch_ok": False}, False, id="fetch-failure-resets"),
    pytest.param(2, {"success_age": 60_000}, True, id="R3-adapter-answer-60000-ago-ok"),
    pytest.param(2, {"success_age": 60_001}, False, id="R3-adapter-answer-60001-ago-blocks"),
    pytest.param(2, {"success_age": None}, False, id="R3-adapter-never-answered-blocks"),
    pytest.param(2, {"error_at": -60_000}, False, id="R4-adapter-error-60000-ago-blocks"),
    pytest.param(2, {"error_at": -60_001}, True, id="R4-adapter-error-60001-ago-ok"),
    pytest.param(2, {"error_at": 0}, False, id="R4-adapter-error-now-blocks"),
    pytest.param(2, {"unparked": 1}, False, id="R6-unparked-unknown-blocks"),
])
def test_s17_recovery_conditions(make_engine, count, recon, recovers):
    engine, clock = make_engine(persisted=[safety_row(HALT, "RECONCILE_CRITICAL", recovery_count=count)])
    now = clock.now_ms()
    recon = dict(recon)
    if "error_at" in recon:
        recon["error_at"] = now + recon["error_at"]
    engine.observe("reconcile_completed", reconcile(now, **recon))
    if recovers:
        assert mode(engine) == (SAFE, "HALT_RECOVERY_AUTO")
    else:
        assert mode(engine) == (HALT, "RECONCILE_CRITICAL")


def test_s17_blocked_recovery_keeps_counting(make_engine):
    engine, clock = make_engine(persisted=[safety_row(HALT, "RECONCILE_CRITICAL", recovery_count=2)])
    engine.observe("reconcile_completed", reconcile(clock.now_ms(), unparked=1))
    assert (mode(engine), counter(engine)) == ((HALT, "RECONCILE_CRITICAL"), 3)
    clock.advance(60 * SEC)
    engine.observe("reconcile_completed", reconcile(clock.now_ms()))
    assert (mode(engine), counter(engine)) == ((SAFE, "HALT_RECOVERY_AUTO"), 0)


def test_invalid_position_mode_in_halt_never_counts_toward_recovery(make_engine):
    """hlcore choice: a reconcile that sees a hedge-mode entry resets the counter, even in HALT."""
    engine, clock = make_engine(persisted=[safety_row(HALT, "RECONCILE_CRITICAL", recovery_count=2)])
    engine.observe("reconcile_completed", reconcile(clock.now_ms(), position_mode_ok=False))
    assert (mode(engine), counter(engine)) == ((HALT, "RECONCILE_CRITICAL"), 0)


def test_s17_snapshot_stale_halt_recovers(make_engine):
    engine, clock = make_engine(persisted=[safety_row(HALT, "SNAPSHOT_STALE", recovery_count=2)])
    engine.observe("reconcile_completed", reconcile(clock.now_ms()))
    assert mode(engine) == (SAFE, "HALT_RECOVERY_AUTO")


@pytest.mark.parametrize("reason", ["POSITION_MODE_INVALID", "STORAGE_UNAVAILABLE", ERBE, "RECONCILE_FAILED",
                                    "SCHEMA_VERSION_MISMATCH", "CONTRACT_VERSION_MISMATCH",
                                    "EXECUTION_ADAPTER_NOT_IMPLEMENTED", "STATE_UNREADABLE", "MANUAL_OVERRIDE"])
def test_s17_non_allowlisted_halt_never_auto_recovers(make_engine, reason):
    engine, clock = make_engine(persisted=[safety_row(HALT, reason)])
    for i in range(1, 6):
        clock.advance(60 * SEC)
        decision = engine.observe("reconcile_completed", reconcile(clock.now_ms()))
        assert mode(engine) == (HALT, reason)
        assert counter(engine) == i
        assert audit_rows(decision) == []


def test_drills_5_6_gap_halt_recovers_only_after_a_maintenance_skip(make_engine):
    engine, clock = make_engine()
    engine.observe("ingest_tick", ingest_tick(T0 - WINDOW_MS - 1))  # drill 5: boot t0+600001
    assert mode(engine) == (HALT, "BACKFILL_WINDOW_EXCEEDED")

    for i in range(1, 5):  # OK reconciles +60..+240 s: R5 blocks
        clock.set(T0 + 60 * i * SEC)
        engine.observe("reconcile_completed", reconcile(clock.now_ms()))
        assert mode(engine) == (HALT, "BACKFILL_WINDOW_EXCEEDED")
    assert counter(engine) == 4

    clock.set(T0 + 250 * SEC)  # drill 6: maintenance-skip
    skip = engine.observe("operator_command", operator("maintenance_skip"))
    assert refusals(skip) == []
    assert mode(engine) == (HALT, "BACKFILL_WINDOW_EXCEEDED")  # stays HALT until §4.8
    assert counter(engine) == 0  # a skip being applied resets the counter
    assert engine.var("safety", "skip_applied_ms") == T0 + 250 * SEC
    assert [e.data for e in skip.find("maintenance_skip")] == [{"to_ms": T0 + 250 * SEC}]
    assert [e.data for e in skip.find("audit")] == [{"reason_code": "MAINTENANCE_SKIP_APPLIED"}]

    again = engine.observe("operator_command", operator("maintenance_skip"))
    assert refusals(again) == ["maintenance_skip_already_applied"]

    for i, t in enumerate((300, 360), start=1):
        clock.set(T0 + t * SEC)
        engine.observe("reconcile_completed", reconcile(clock.now_ms()))
        assert (mode(engine), counter(engine)) == ((HALT, "BACKFILL_WINDOW_EXCEEDED"), i)
    clock.set(T0 + 420 * SEC)
    decision = engine.observe("reconcile_completed", reconcile(clock.now_ms()))
    assert mode(engine) == (SAFE, "HALT_RECOVERY_AUTO")  # never LIVE
    assert_audit(decision, engine, [(HALT, SAFE, "HALT_RECOVERY_AUTO")], "reconcile_completed")


@pytest.mark.parametrize("skip_offset, recovers", [(-1, False), (0, True), (5 * SEC, True)],
                         ids=["R5-skip-before-this-halt", "R5-skip-as-halt-began", "R5-skip-during-halt"])
def test_s17_r5_backfill_needs_a_skip_during_this_halt(make_engine, skip_offset, recovers):
    since = T0 - 60 * SEC
    engine, clock = make_engine(persisted=[safety_row(HALT, "BACKFILL_WINDOW_EXCEEDED", since=since, recovery_count=2,
                                                      skip_applied_ms=since + skip_offset)])
    engine.observe("reconcile_completed", reconcile(clock.now_ms()))
    assert mode(engine) == ((SAFE, "HALT_RECOVERY_AUTO") if recovers else (HALT, "BACKFILL_WINDOW_EXCEEDED"))


# --------------------------------------------------------------------------------------------
# operator commands (§8, S18-S20)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("start, expected, refused", [
    ((SAFE, "BOOTSTRAP"), (SAFE, "BOOTSTRAP"), ["safety_mode_not_halt"]),
    ((LIVE, "OK"), (LIVE, "OK"), ["safety_mode_not_halt"]),
    ((HALT, ERBE), (SAFE, "MANUAL_UNHALT"), []),
    ((HALT, "POSITION_MODE_INVALID"), (SAFE, "MANUAL_UNHALT"), []),
    ((HALT, "STORAGE_UNAVAILABLE"), (SAFE, "MANUAL_UNHALT"), []),
], ids=["safe-refused", "live-refused", "halt-retry-budget", "halt-position-mode", "halt-storage"])
def test_s18_unhalt(make_engine, start, expected, refused):
    engine, _ = make_engine(persisted=[safety_row(*start, recovery_count=4 if start[0] == HALT else 0)])
    decision = engine.observe("operator_command", operator("unhalt"))

    assert refusals(decision) == refused
    assert mode(engine) == expected
    if refused:
        assert moves(decision) == []
    else:
        assert_audit(decision, engine, [(HALT, SAFE, "MANUAL_UNHALT")], "operator_command")
        assert counter(engine) == 0


GOOD_PROMOTE = {"last_reconcile_result": "OK", "last_reconcile_ms": T0 - 60 * SEC, "unknown_count": 0,
                "open_event_count": 0}

PROMOTE_CASES = [
    pytest.param((SAFE, "HALT_RECOVERY_AUTO"), {}, None, id="gate-passes"),
    pytest.param((SAFE, ERBE), {}, None, id="gate-passes-after-retry-budget-fault"),
    pytest.param((HALT, "RECONCILE_CRITICAL"), {}, "safety_mode_halt", id="from-halt"),
    pytest.param((HALT, "RECONCILE_CRITICAL"), {"force": True}, "safety_mode_halt", id="from-halt-even-forced"),
    pytest.param((SAFE, "HALT_RECOVERY_AUTO"), {"unknown_count": 1}, "unknown_orders_exist", id="unknown-order"),
    pytest.param((SAFE, "HALT_RECOVERY_AUTO"), {"unknown_count": 1, "force": True}, None, id="unknown-order-forced"),
    pytest.param((SAFE, "HALT_RECOVERY_AUTO"), {"open_event_count": 2}, "open_events_exist", id="open-events"),
    pytest.param((SAFE, "HALT_RECOVERY_AUTO"), {"open_event_count": 2, "force": True}, None, id="open-events-forced"),
    pytest.param((SAFE, "HALT_RECOVERY_AUTO"), {"last_reconcile_result": "WARN"}, "last_reconcile_not_ok",
                 id="last-reconcile-warn"),
    pytest.param((SAFE, "HALT_RECOVERY_AUTO"), {"last_reconcile_result": "CRIT", "force": True}, None,
                 id="last-reconcile-crit-forced"),
    pytest.param((SAFE, "HALT_RECOVERY_AUTO"), {"last_reconcile_ms": T0 - 120_000}, None,
                 id="last-reconcile-exactly-2x-interval"),
    pytest.param((SAFE, "HALT_RECOVERY_AUTO"), {"last_reconcile_ms": T0 - 120_001}, "last_reconcile_not_ok",
                 id="last-reconcile-older-than-2x-interval"),
    pytest.param((SAFE, "HALT_RECOVERY_AUTO"), {"last_reconcile_ms": None, "last_reconcile_result": None},
                 "last_reconcile_not_ok", id="never-reconciled"),
]


@pytest.mark.parametrize("start, fields, refused", PROMOTE_CASES)
def test_s19_promote_gate(make_engine, start, fields, refused):
    engine, _ = make_engine(persisted=[safety_row(*start)])
    decision = engine.observe("operator_command", operator("promote", **{**GOOD_PROMOTE, **fields}))

    if refused:
        assert refusals(decision) == [refused]
        assert mode(engine) == start
        assert moves(decision) == []
        assert not engine.may("order.open")
    else:
        assert refusals(decision) == []
        assert mode(engine) == (LIVE, "MANUAL_PROMOTE")
        assert_audit(decision, engine, [(SAFE, LIVE, "MANUAL_PROMOTE")], "operator_command")
        assert engine.may("order.open")


def test_s19_promote_when_already_live_changes_nothing(make_engine):
    engine, _ = make_engine(persisted=[safety_row(LIVE, "OK")])
    decision = engine.observe("operator_command", operator("promote", **GOOD_PROMOTE))
    assert refusals(decision) != []
    assert mode(engine) == (LIVE, "OK")
    assert moves(decision) == []


RESET_CASES = [
    pytest.param((HALT, "BACKFILL_WINDOW_EXCEEDED"), {"target_mode": SAFE, "reason_code": "MAINTENANCE_SKIP"},
                 (SAFE, "MAINTENANCE_SKIP"), None, id="drill-7-halt-to-safe-maintenance-skip"),
    pytest.param((HALT, "POSITION_MODE_INVALID"), {"target_mode": SAFE, "reason_code": "MANUAL_OVERRIDE"},
                 (SAFE, "MANUAL_OVERRIDE"), None, id="halt-to-safe-override"),
    pytest.param((HALT, "POSITION_MODE_INVALID"), {"target_mode": SAFE}, (SAFE, "MANUAL_OVERRIDE"), None,
                 id="default-reason-is-manual-override"),
    pytest.param((HALT, "RECONCILE_CRITICAL"), {"target_mode": LIVE, "reason_code": "MANUAL_PROMOTE"},
                 (HALT, "RECONCILE_CRITICAL"), "halt_to_live_refused", id="halt-to-live-refused"),
    pytest.param((HALT, "RECONCILE_CRITICAL"),
                 {"target_mode": LIVE, "reason_code": "MANUAL_PROMOTE", "allow_non_halt": True},
                 (HALT, "RECONCILE_CRITICAL"), "halt_to_live_refused", id="halt-to-live-refused-even-allowed"),
    pytest.param((HALT, "RECONCILE_CRITICAL"), {"target_mode": HALT, "reason_code": "MANUAL_OVERRIDE"},
                 (HALT, "RECONCILE_CRITICAL"), "target_is_current", id="target-is-current"),
    pytest.param((HALT, "RECONCILE_CRITICAL"), {"target_mode": SAFE, "reason_code": "BOGUS"},
                 (HALT, "RECONCILE_CRITICAL"), "unknown_reason_code", id="unknown-reason-code"),
    pytest.param((HALT, "RECONCILE_CRITICAL"), {"target_mode": SAFE, "reason_code": "HALT_RECOVERY_AUTO"},
                 (HALT, "RECONCILE_CRITICAL"), "unknown_reason_code", id="policy-reason-not-operator-code"),
    pytest.param((SAFE, "BOOTSTRAP"), {"target_mode": LIVE, "reason_code": "MANUAL_PROMOTE"},
                 (SAFE, "BOOTSTRAP"), "safety_mode_not_halt", id="non-halt-needs-allow-flag"),
    pytest.param((SAFE, "BOOTSTRAP"), {"target_mode": LIVE, "reason_code": "MANUAL_PROMOTE", "allow_non_halt": True},
                 (LIVE, "MANUAL_PROMOTE"), None, id="safe-to-live-allowed"),
    pytest.param((LIVE, "OK"), {"target_mode": SAFE, "reason_code": "MANUAL_OVERRIDE", "allow_non_halt": True},
                 (SAFE, "MANUAL_OVERRIDE"), None, id="live-to-safe-allowed"),
    pytest.param((LIVE, "OK"), {"target_mode": HALT, "reason_code": "MANUAL_OVERRIDE", "allow_non_halt": True},
                 (HALT, "MANUAL_OVERRIDE"), None, id="live-to-halt-allowed"),
    pytest.param((SAFE, "BOOTSTRAP"), {"target_mode": SAFE, "reason_code": "MANUAL_OVERRIDE", "allow_non_halt": True},
                 (SAFE, "BOOTSTRAP"), "target_is_current", id="safe-to-safe-is-current"),
    pytest.param((HALT, "RECONCILE_CRITICAL"), {"target_mode": "LIVE", "reason_code": "MANUAL_OVERRIDE"},
                 (HALT, "RECONCILE_CRITICAL"), "unknown_target_mode", id="bad-target-mode"),
]


@pytest.mark.parametrize("start, fields, expected, refused", RESET_CASES)
def test_s20_reset_safety(make_engine, start, fields, expected, refused):
    engine, _ = make_engine(persisted=[safety_row(*start, recovery_count=2)])
    decision = engine.observe("operator_command", operator("reset", **fields))

    assert mode(engine) == expected
    if refused:
        assert refusals(decision) == [refused]
        assert moves(decision) == []
        assert counter(engine) == 2
    else:
        assert refusals(decision) == []
        assert_audit(decision, engine, [(start[0], *expected)], "operator_command")
        assert_gates(engine)


SKIP_REFUSALS = [
    pytest.param(safety_row(SAFE, "BOOTSTRAP"), "safety_mode_not_halt", id="safe"),
    pytest.param(safety_row(LIVE, "OK"), "safety_mode_not_halt", id="live"),
    pytest.param(safety_row(SAFE, "MAINTENANCE_SKIP_APPLIED", skip_applied_ms=T0 - SEC), "safety_mode_not_halt",
                 id="safe-after-skip"),
    pytest.param(safety_row(HALT, "RECONCILE_CRITICAL"), "safety_reason_not_backfill", id="halt-reconcile-critical"),
    pytest.param(safety_row(HALT, "POSITION_MODE_INVALID"), "safety_reason_not_backfill", id="halt-position-mode"),
    pytest.param(safety_row(HALT, "BACKFILL_WINDOW_EXCEEDED", since=T0 - 60 * SEC, skip_applied_ms=T0 - 30 * SEC),
                 "maintenance_skip_already_applied", id="already-applied-this-halt"),
    pytest.param(safety_row(HALT, "BACKFILL_WINDOW_EXCEEDED", since=T0 - 60 * SEC, skip_applied_ms=T0 - 60 * SEC),
                 "maintenance_skip_already_applied", id="already-applied-as-halt-began"),
]


@pytest.mark.parametrize("row, code", SKIP_REFUSALS)
def test_maintenance_skip_refusals(make_engine, row, code):
    engine, _ = make_engine(persisted=[row])
    before = engine.instances()
    decision = engine.observe("operator_command", operator("maintenance_skip"))

    assert refusals(decision) == [code]
    assert decision.find("maintenance_skip") == []
    assert decision.transitions == ()
    assert engine.instances() == before  # no writes


@pytest.mark.parametrize("previous", [None, T0 - 61 * SEC], ids=["never-skipped", "skipped-before-this-halt"])
def test_maintenance_skip_applied_in_backfill_halt(make_engine, previous):
    engine, clock = make_engine(persisted=[safety_row(HALT, "BACKFILL_WINDOW_EXCEEDED", since=T0 - 60 * SEC,
                                                      recovery_count=3, skip_applied_ms=previous)])
    clock.advance(SEC)
    decision = engine.observe("operator_command", operator("maintenance_skip"))

    assert refusals(decision) == []
    assert mode(engine) == (HALT, "BACKFILL_WINDOW_EXCEEDED")
    assert engine.var("safety", "skip_applied_ms") == T0 + SEC
    assert counter(engine) == 0
    assert decision.find("maintenance_skip")[0].data == {"to_ms": T0 + SEC}


def test_unknown_operator_command_is_refused(make_engine):
    engine, _ = make_engine(persisted=[safety_row(HALT, "RECONCILE_CRITICAL")])
    decision = engine.observe("operator_command", operator("unhalt-please"))
    assert refusals(decision) == ["unknown_command"]
    assert mode(engine) == (HALT, "RECONCILE_CRITICAL")


# --------------------------------------------------------------------------------------------
# order lifecycle and retry budget (§3.3, §4.5, §4.6, drills 14/15)
# --------------------------------------------------------------------------------------------


ANSWER_CASES = [
    pytest.param("NEW", None, "SUBMITTED", None, id="NEW-is-SUBMITTED"),
    pytest.param("PARTIALLY_FILLED", None, "PARTIALLY_FILLED", None, id="PARTIALLY_FILLED"),
    pytest.param("FILLED", None, "FILLED", None, id="FILLED"),
    pytest.param("CANCELED", None, "CANCELED", None, id="CANCELED"),
    pytest.param("EXPIRED", None, "EXPIRED", None, id="EXPIRED"),
    pytest.param("REJECTED", None, "REJECTED", None, id="status-REJECTED"),
    pytest.param("REJECTED", "SAFETY_REJECTED", "REJECTED", "SAFETY_REJECTED", id="pre-hook-SAFETY_REJECTED"),
    pytest.param("REJECTED", "FILTER_REJECTED", "REJECTED", "FILTER_REJECTED", id="FILTER_REJECTED"),
    pytest.param("REJECTED", "INSUFFICIENT_BALANCE", "REJECTED", "INSUFFICIENT_BALANCE", id="-2019"),
    pytest.param("REJECTED", "REDUCE_ONLY_REJECTED", "REJECTED", "REDUCE_ONLY_REJECTED", id="-2022"),
    pytest.param("REJECTED", "TIMESTAMP_REJECTED", "REJECTED", "TIMESTAMP_REJECTED", id="second--1021"),
    pytest.param("REJECTED", "EXCHANGE_REJECTED", "REJECTED", "EXCHANGE_REJECTED", id="other-api-error"),
    pytest.param("REJECTED", "RATE_LIMITED_LOCAL", "REJECTED", "RATE_LIMITED_LOCAL", id="local-limiter"),
    pytest.param("SIMULATED", None, "SIMULATED", "ADAPTER_DISABLED", id="no-adapter-SIMULATED"),
    pytest.param("UNKNOWN", "TIMEOUT", "UNKNOWN", "TIMEOUT", id="timeout-UNKNOWN"),
    pytest.param("UNKNOWN", "NETWORK_ERROR", "UNKNOWN", "NETWORK_ERROR", id="network-UNKNOWN"),
    pytest.param("UNKNOWN", "EXCHANGE_ERROR", "UNKNOWN", "EXCHANGE_ERROR", id="5xx-UNKNOWN"),
    pytest.param("UNKNOWN", "RATE_LIMITED", "UNKNOWN", "RATE_LIMITED", id="429-UNKNOWN"),
    pytest.param("UNKNOWN", "QUERY_ERROR", "UNKNOWN", "QUERY_ERROR", id="duplicate-query-failed-UNKNOWN"),
    pytest.param("PENDING_CANCEL", None, "UNKNOWN", "EXCHANGE_STATUS_UNMAPPED", id="unmapped-PENDING_CANCEL"),
    pytest.param("NEW_INSURANCE", None, "UNKNOWN", "EXCHANGE_STATUS_UNMAPPED", id="unmapped-NEW_INSURANCE"),
]


@pytest.mark.parametrize("status, code, state, reason", ANSWER_CASES)
def test_order_answer_mapping(make_engine, status, code, state, reason):
    engine, _ = make_engine(persisted=[safety_row(LIVE, "OK")])
    assert engine.may("order.submit", correlation_id="c1")  # NONE: query first, then submit
    decision = engine.observe("order_answered", answer("c1", status, code))

    assert (engine.state("order", correlation_id="c1"), engine.reason("order", correlation_id="c1")) == (state, reason)
    rows = [a for a in decision.audit if a.machine == "order"]
    assert [(a.category, a.instance, a.from_state, a.to_state, a.reason_code) for a in rows] == [
        ("execution", "order/c1", "NONE", state, reason)]
    assert not engine.may("order.submit", correlation_id="c1")  # never a re-send
    assert engine.may("order.query", correlation_id="c1") == (state == "UNKNOWN")
    assert mode(engine) == (LIVE, "OK")


def test_drill_14_retry_budget_exhausted_goes_safe(make_engine):
    engine, clock = make_engine(persisted=[safety_row(LIVE, "OK")])
    cid = "hl-0xabc-7-BTCUSDT"
    engine.observe("order_answered", answer(cid, "UNKNOWN", "TIMEOUT"))  # POST timed out
    assert (engine.state("order", correlation_id=cid), engine.reason("order", correlation_id=cid)) == (
        "UNKNOWN", "TIMEOUT")

    for attempt in (1, 2):
        clock.set(T0 + 2 * attempt * SEC)
        d = engine.observe("order_answered", answer(cid, "UNKNOWN", "TIMEOUT", attempt, T0))
        assert [e.data for e in d.find("keep_polling")] == [{"correlation_id": cid}]
        assert engine.state("order", correlation_id=cid) == "UNKNOWN"
        assert mode(engine) == (LIVE, "OK")

    clock.set(T0 + 6 * SEC)
    decision = engine.observe("order_answered", answer(cid, "UNKNOWN", "TIMEOUT", 3, T0))
    assert (engine.state("order", correlation_id=cid), engine.reason("order", correlation_id=cid)) == (
        "PARKED", "RETRY_BUDGET_EXCEEDED")
    assert mode(engine) == (SAFE, ERBE)
    # S16 is audited on the fact the order machine emits when it parks
    assert_audit(decision, engine, [(LIVE, SAFE, ERBE)], "retry_budget_exhausted")
    assert [(a.category, a.to_state, a.reason_code) for a in decision.audit if a.machine == "order"] == [
        ("execution", "PARKED", "RETRY_BUDGET_EXCEEDED")]
    assert not engine.may("order.open")  # next INCREASE blocked
    assert engine.may("order.reduce")
    assert "order.open" in [e.data["gate"] for e in decision.find("gate_closed")]
    assert engine.may("order.sweep", correlation_id=cid)


def test_drill_14_variant_filled_on_second_query_changes_no_mode(make_engine):
    engine, clock = make_engine(persisted=[safety_row(LIVE, "OK")])
    engine.observe("order_answered", answer("c1", "UNKNOWN", "TIMEOUT"))
    clock.set(T0 + 2 * SEC)
    engine.observe("order_answered", answer("c1", "UNKNOWN", "TIMEOUT", 1, T0))
    clock.set(T0 + 4 * SEC)
    decision = engine.observe("order_answered", answer("c1", "FILLED", None, 2, T0))

    assert engine.state("order", correlation_id="c1") == "FILLED"
    assert mode(engine) == (LIVE, "OK")
    assert moves(decision) == []


@pytest.mark.parametrize("elapsed, attempts, parked", [
    (29_999, 1, False), (30_000, 1, True), (29_999, 2, False), (29_999, 3, True),
], ids=["window-29999ms", "window-30000ms-exhausted", "attempt-2-within-window", "attempt-3-first-wins"])
@pytest.mark.parametrize("status", ["UNKNOWN", "SUBMITTED", "PARTIALLY_FILLED", "NOT_FOUND"])
def test_retry_budget_attempts_or_window(make_engine, elapsed, attempts, parked, status):
    engine, clock = make_engine(persisted=[safety_row(LIVE, "OK"), order_row("c1", "UNKNOWN", "RATE_LIMITED")])
    clock.set(T0 + elapsed)
    decision = engine.observe("order_answered", answer("c1", status, None, attempts, T0))

    if parked:
        assert engine.state("order", correlation_id="c1") == "PARKED"
        assert mode(engine) == (SAFE, ERBE)
        assert decision.find("keep_polling") == []
    else:
        assert (engine.state("order", correlation_id="c1"), engine.reason("order", correlation_id="c1")) == (
            "UNKNOWN", "RATE_LIMITED")
        assert mode(engine) == (LIVE, "OK")
        assert len(decision.find("keep_polling")) == 1


S16_CASES = [
    pytest.param("ARMED_SAFE", (LIVE, "OK"), (SAFE, ERBE), id="safe-mode-from-live"),
    pytest.param("ARMED_SAFE", (SAFE, "BOOTSTRAP"), (SAFE, ERBE), id="safe-mode-from-safe"),
    pytest.param("ARMED_SAFE", (HALT, "RECONCILE_CRITICAL"), (HALT, "RECONCILE_CRITICAL"),
                 id="safe-mode-never-upgrades-halt"),
    pytest.param("HALT", (LIVE, "OK"), (HALT, ERBE), id="halt-mode-from-live"),
    pytest.param("HALT", (SAFE, "RECONCILE_WARN"), (HALT, ERBE), id="halt-mode-from-safe"),
    pytest.param("HALT", (HALT, "POSITION_MODE_INVALID"), (HALT, "POSITION_MODE_INVALID"),
                 id="halt-mode-keeps-halt-reason"),
]


@pytest.mark.parametrize("budget_mode, start, expected", S16_CASES)
def test_s16_retry_budget_mode_never_upgrades(make_engine, budget_mode, start, expected):
    engine, clock = make_engine(config={"execution": {"retry_budget_mode": budget_mode}},
                                persisted=[safety_row(*start, recovery_count=2), order_row("c1", "UNKNOWN", "TIMEOUT")])
    clock.set(T0 + 6 * SEC)
    decision = engine.observe("order_answered", answer("c1", "UNKNOWN", "TIMEOUT", 3, T0))

    assert engine.state("order", correlation_id="c1") == "PARKED"
    assert mode(engine) == expected
    if expected == start:
        assert moves(decision) == []
        assert counter(engine) == 2
    else:
        assert_audit(decision, engine, [(start[0], *expected)], "retry_budget_exhausted")
        if expected[0] == HALT:
            assert counter(engine) == 0


def test_drill_15_retry_budget_halt_needs_an_operator(make_engine):
    engine, clock = make_engine(config={"execution": {"retry_budget_mode": "HALT"}},
                                persisted=[safety_row(LIVE, "OK")])
    engine.observe("order_answered", answer("c1", "UNKNOWN", "TIMEOUT"))
    for attempt in (1, 2, 3):
        clock.set(T0 + 2 * attempt * SEC)
        engine.observe("order_answered", answer("c1", "UNKNOWN", "TIMEOUT", attempt, T0))
    assert mode(engine) == (HALT, ERBE)

    for i in range(1, 6):  # 5 OK reconciles: no auto-recovery
        clock.set(T0 + 60 * i * SEC)
        engine.observe("reconcile_completed", reconcile(clock.now_ms()))
        assert mode(engine) == (HALT, ERBE)
    clock.set(T0 + 360 * SEC)
    engine.observe("reconcile_completed", reconcile(clock.now_ms(), drift=0.02))
    assert mode(engine) == (HALT, ERBE)  # CRIT keeps the reason

    decision = engine.observe("operator_command", operator("unhalt"))
    assert mode(engine) == (SAFE, "MANUAL_UNHALT")
    assert_audit(decision, engine, [(HALT, SAFE, "MANUAL_UNHALT")], "operator_command")


@pytest.mark.parametrize("final", ["FILLED", "CANCELED", "EXPIRED", "REJECTED", "SIMULATED"])
@pytest.mark.parametrize("status, code", [("NEW", None), ("FILLED", None), ("CANCELED", None),
                                          ("UNKNOWN", "TIMEOUT"), ("PENDING_CANCEL", None), ("SIMULATED", None)])
def test_terminal_order_states_are_final(make_engine, final, status, code):
    engine, _ = make_engine(persisted=[safety_row(LIVE, "OK"), order_row("c1", final)])
    decision = engine.observe("order_answered", answer("c1", status, code, 3, T0 - 60 * SEC))
    assert engine.state("order", correlation_id="c1") == final
    assert moves(decision, "order") == []
    assert mode(engine) == (LIVE, "OK")


def test_parked_order_stays_parked_until_a_terminal_answer(make_engine):
    engine, clock = make_engine(persisted=[safety_row(SAFE, ERBE), order_row("c1", "PARKED", "RETRY_BUDGET_EXCEEDED")])
    d = engine.observe("order_answered", answer("c1", "UNKNOWN", "TIMEOUT", 4, T0 - 60 * SEC))  # startup sweep
    assert engine.state("order", correlation_id="c1") == "PARKED"
    assert moves(d) == [] and moves(d, "order") == []  # no second S16
    clock.advance(10 * SEC)
    engine.observe("order_answered", answer("c1", "FILLED", None, 5, T0 - 60 * SEC))
    assert engine.state("order", correlation_id="c1") == "FILLED"
    assert mode(engine) == (SAFE, ERBE)  # resolving an order never promotes


def test_poll_timeout_makes_an_open_order_unknown(make_engine):
    engine, _ = make_engine(persisted=[safety_row(LIVE, "OK")])
    engine.observe("order_answered", answer("c1", "NEW"))
    assert engine.may("order.poll", correlation_id="c1")
    engine.observe("order_answered", answer("c1", "UNKNOWN", "POLL_TIMEOUT"))
    assert (engine.state("order", correlation_id="c1"), engine.reason("order", correlation_id="c1")) == (
        "UNKNOWN", "POLL_TIMEOUT")


# --------------------------------------------------------------------------------------------
# event lifecycle (§3.2)
# --------------------------------------------------------------------------------------------


EVENT_CASES = [
    pytest.param((LIVE, "OK"), [progress("e1", "decided", 2)], "DECIDED", id="decided-with-intents"),
    pytest.param((SAFE, "BOOTSTRAP"), [progress("e1", "decided", 1)], "DECIDED", id="decided-in-safe"),
    pytest.param((LIVE, "OK"), [progress("e1", "decided", 0, "blacklisted_symbol")], "DONE", id="no-intent-done"),
    pytest.param((SAFE, "BOOTSTRAP"), [progress("e1", "rejected", 0, "safety_mode_reduce_only")], "DONE",
                 id="rejected-done"),
    pytest.param((LIVE, "OK"), [progress("e1", "decided", 1), progress("e1", "settled")], "DONE", id="settled"),
    pytest.param((LIVE, "OK"), [progress("e1", "settled")], "PENDING", id="settled-before-decided-ignored"),
    pytest.param((LIVE, "OK"), [progress("e1", "decided", 0, "noop"), progress("e1", "decided", 2)], "DONE",
                 id="done-is-final"),
    pytest.param((HALT, "RECONCILE_CRITICAL"), [progress("e1", "decided", 1)], "PENDING",
                 id="halt-keeps-event-pending"),
    pytest.param((HALT, "RECONCILE_CRITICAL"), [progress("e1", "rejected", 0, "replay_policy_blocked")], "PENDING",
                 id="halt-keeps-event-pending-on-later-check"),
    pytest.param((HALT, "RECONCILE_CRITICAL"), [progress("e1", "rejected", 0, "future_event")], "DONE",
                 id="halt-timestamp-check-runs-before-halt-check"),
]


@pytest.mark.parametrize("start, steps, expected", EVENT_CASES)
def test_event_lifecycle(make_engine, start, steps, expected):
    engine, _ = make_engine(persisted=[safety_row(*start)])
    for fields in steps:
        decision = engine.observe("event_progress", fields)
    assert engine.state("event", event_key="e1") == expected
    assert mode(engine) == start
    if start[0] == HALT and expected == "PENDING":
        assert [e.data for e in decision.find("kept_pending")] == [{"event_key": "e1"}]
        assert decision.audit == ()
    if expected == "DONE" and steps[-1]["step"] != "settled" and len(steps) == 1:
        assert [e.data for e in decision.find("event_done")] == [{"decision_reason": steps[-1]["decision_reason"]}]
        assert [(a.category, a.to_state) for a in decision.audit if a.machine == "event"] == [("execution", "DONE")]


# --------------------------------------------------------------------------------------------
# engine: a self-loop transition's own actions
# --------------------------------------------------------------------------------------------


def test_engine_applies_the_set_of_a_same_reason_self_loop(default_settings, tmp_path):
    """ENGINE BUG (hlcore/engine/core.py, Engine._after_cb): a transition whose source equals its
    dest and whose reason does not change returns as a "hold" before `_apply(action, ...)`, so the
    transition's own `set` / `effects` / `emit` are dropped, although `_trivial` deliberately sends
    such transitions (they have a `set`) through the machinery. For S11 this means a second gap's
    skip from ARMED_SAFE/MAINTENANCE_SKIP_APPLIED would not stamp skip_applied_ms (§4.1 Skip effect)
    if the stamp lived on machines/safety.yaml `skip_applied`, as it originally did. rules/gap.yaml
    now stamps it in the rule as a workaround; this test puts it back on the transition."""
    import shutil
    from pathlib import Path

    from hlcore.policy.loader import load_policy

    src = Path(__file__).resolve().parents[2]
    root = tmp_path / "policy"
    for sub in ("machines", "rules"):
        shutil.copytree(src / sub, root / sub)
    gap = root / "rules" / "gap.yaml"
    text = gap.read_text(encoding="utf-8")
    workaround = "      set: {skip_applied_ms: {now: true}}\n"
    assert text.count(workaround) == 1
    gap.write_text(text.replace(workaround, ""), encoding="utf-8")
    machine = root / "machines" / "safety.yaml"
    text = machine.read_text(encoding="utf-8")
    anchor = "  - event: skip_applied\n    source: [ARMED_LIVE, ARMED_SAFE]\n    dest: ARMED_SAFE\n"
    assert text.count(anchor) == 1
    machine.write_text(text.replace(anchor, anchor + "    set: {skip_applied_ms: {now: true}}\n"), encoding="utf-8")

    # The skip only applies with maintenance_skip_gap=true, which is folded in at load time.
    settings = default_settings.__class__(data={**default_settings.to_dict(),
                                                "ingest": {**default_settings.get("ingest"),
                                                           "maintenance_skip_gap": True}},
                                          maps=default_settings.maps)
    clock = ManualClock(T0)
    engine = Engine(load_policy(root, settings), settings, clock)
    engine.start([safety_row(SAFE, "MAINTENANCE_SKIP_APPLIED", skip_applied_ms=T0 - 700 * SEC)])
    decision = engine.observe("ingest_tick", ingest_tick(T0 - WINDOW_MS - 1, skip_applied=T0 - 700 * SEC))

    assert len(decision.find("maintenance_skip")) == 1  # the rule fired and the skip was applied
    assert engine.var("safety", "skip_applied_ms") == T0
