"""The copy-trader safety mode against real SQLite storage (spec/copytrader.md §3.1, §6).

"HALT survives restart", "a missing/unreadable mode reads as HALT", "each change writes one
audit_log row" and the boot schema check (S3), with `machine_states`, `audit_log` and
`system_state` in a real database file and a fresh engine for every restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from hlcore.engine.clock import ManualClock
from hlcore.engine.core import Engine
from hlcore.engine.decision import AuditRecord
from hlcore.storage.db import Database, open_database, sqlite_url
from hlcore.storage.repos import AuditLog, MachineStateStore, SystemState
from hlcore.storage.schema import machine_states

T0 = 1_769_248_800_000  # 2026-01-24T10:00:00Z
SEC = 1000
HALT = "HALT"


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_database(sqlite_url(tmp_path / "x.db"))
    database.create_schema(now_ms=T0)
    yield database
    database.dispose()


def boot(schema: str = "ok") -> dict[str, Any]:
    return {"schema_status": schema, "contract_status": "ok", "config_hash_changed": False, "mode": "live"}


def reconcile(now: int, drift: float = 0.0) -> dict[str, Any]:
    return {"context": "loop", "fetch_ok": True, "position_mode_ok": True, "snapshot_age_ms": 1_000,
            "max_drift": drift, "missing_local": [], "missing_exchange": [], "adapter_last_success_ms": now - SEC,
            "adapter_last_error_ms": None, "unparked_unknown": 0}


def audit_row(record: AuditRecord) -> dict[str, Any]:
    return {"timestamp_ms": record.at_ms, "category": record.category, "entity_id": record.instance,
            "machine": record.machine, "instance": record.instance, "from_state": record.from_state,
            "to_state": record.to_state, "event": record.event, "reason_code": record.reason_code,
            "facts": record.facts, "policy_hash": record.policy_hash}


def mode(engine: Engine) -> tuple[str, str | None]:
    return engine.state("safety"), engine.reason("safety")


def halt_on_reconcile_critical(engine: Engine, clock: ManualClock) -> None:
    engine.observe("reconcile_completed", reconcile(clock.now_ms(), drift=0.02))


def halt_on_gap(engine: Engine, clock: ManualClock) -> None:
    engine.observe("ingest_tick", {"last_ingest_success_ms": clock.now_ms() - 600_001,
                                   "cursor_ts_ms": clock.now_ms() - 600_001, "maintenance_skip_applied_ms": None})


def halt_on_storage(engine: Engine, clock: ManualClock) -> None:
    engine.observe("storage_failed", {"app": "copytrader", "operation": "write"})


def halt_on_retry_budget(engine: Engine, clock: ManualClock) -> None:
    engine.observe("order_answered", {"correlation_id": "c1", "answer": "UNKNOWN", "error_code": "TIMEOUT",
                                      "query_attempts": 0, "first_unknown_ms": None})
    engine.observe("order_answered", {"correlation_id": "c1", "answer": "UNKNOWN", "error_code": "TIMEOUT",
                                      "query_attempts": 3, "first_unknown_ms": clock.now_ms()})


HALTS = [
    pytest.param(halt_on_reconcile_critical, "RECONCILE_CRITICAL", {}, id="reconcile-critical"),
    pytest.param(halt_on_gap, "BACKFILL_WINDOW_EXCEEDED", {}, id="backfill-window"),
    pytest.param(halt_on_storage, "STORAGE_UNAVAILABLE", {}, id="storage-unavailable"),
    pytest.param(halt_on_retry_budget, "EXECUTION_RETRY_BUDGET_EXCEEDED", {"execution": {"retry_budget_mode": "HALT"}},
                 id="retry-budget-halt"),
]


@pytest.mark.parametrize("drive, reason, config", HALTS)
def test_halt_survives_restart(make_engine, db, drive, reason, config):
    engine, clock = make_engine(config=config)
    engine.observe("boot", boot())
    drive(engine, clock)
    assert mode(engine) == (HALT, reason)
    halted_at = clock.now_ms()
    clock.advance(60 * SEC)
    engine.observe("reconcile_completed", reconcile(clock.now_ms()))  # one OK reconcile in HALT
    assert engine.var("safety", "recovery_count") == 1
    store = MachineStateStore(db)
    store.save(engine.instances(), clock.now_ms())

    restarted, _ = make_engine(config=config, start_ms=clock.now_ms() + 300 * SEC,
                                    persisted=MachineStateStore(db).load())
    assert mode(restarted) == (HALT, reason)
    assert restarted.var("safety", "recovery_count") == 1
    safety = next(r for r in restarted.instances() if r["machine"] == "safety")
    assert safety["since_ms"] == halted_at  # safety_changed_at_ms moves only on a change
    assert not restarted.may("ingest") and not restarted.may("order.reduce")

    decision = restarted.observe("boot", boot())  # boot never leaves HALT
    assert mode(restarted) == (HALT, reason)
    assert decision.transitions == ()
    if reason == "EXECUTION_RETRY_BUDGET_EXCEEDED":
        assert restarted.state("order", correlation_id="c1") == "PARKED"


def test_recovery_counter_survives_restart(make_engine, db):
    """Drill 19 across a restart: OK at 60 s, restart, OK at 120/180 s -> recovered at 180 s."""
    engine, clock = make_engine(persisted=[{"machine": "safety", "instance": "safety", "key": [], "state": "HALT",
                                            "reason": "RECONCILE_CRITICAL", "since_ms": T0,
                                            "vars": {"recovery_count": 0}}])
    clock.set(T0 + 60 * SEC)
    engine.observe("reconcile_completed", reconcile(clock.now_ms()))
    MachineStateStore(db).save(engine.instances(), clock.now_ms())

    restarted, clock = make_engine(start_ms=T0 + 100 * SEC, persisted=MachineStateStore(db).load())
    restarted.observe("boot", boot())
    clock.set(T0 + 120 * SEC)
    restarted.observe("reconcile_completed", reconcile(clock.now_ms()))
    assert mode(restarted) == ("HALT", "RECONCILE_CRITICAL")
    clock.set(T0 + 180 * SEC)
    restarted.observe("reconcile_completed", reconcile(clock.now_ms()))
    assert mode(restarted) == ("ARMED_SAFE", "HALT_RECOVERY_AUTO")


def test_live_does_not_survive_restart(make_engine, db):
    engine, clock = make_engine(config={"safety": {"startup_policy": "auto"}})
    engine.observe("reconcile_completed", {**reconcile(clock.now_ms()), "context": "startup"})
    assert mode(engine) == ("ARMED_LIVE", "OK")
    MachineStateStore(db).save(engine.instances(), clock.now_ms())

    restarted, _ = make_engine(start_ms=T0 + 60 * SEC, persisted=MachineStateStore(db).load())
    assert mode(restarted) == ("ARMED_LIVE", "OK")  # restored as stored ...
    restarted.observe("boot", boot())
    assert mode(restarted) == ("ARMED_SAFE", "BOOTSTRAP")  # ... and S2 drops it at boot
    assert not restarted.may("order.open")


@pytest.mark.parametrize("stored", ["HALTED", "armed_live", ""])
def test_unknown_persisted_state_reads_as_halt(default_policy, default_settings, make_engine, db, stored):
    engine, clock = make_engine(persisted=[{"machine": "safety", "instance": "safety", "key": [], "state": "ARMED_LIVE",
                                            "reason": "OK", "since_ms": T0, "vars": {"recovery_count": 0}}])
    store = MachineStateStore(db)
    store.save(engine.instances(), clock.now_ms())
    with db.transaction() as conn:  # someone (or a bad migration) wrote a mode the policy does not know
        conn.execute(update(machine_states).where(machine_states.c.machine == "safety").values(state=stored))

    later = T0 + 60 * SEC
    restarted = Engine(default_policy, default_settings, ManualClock(later))
    started = restarted.start(store.load())

    assert mode(restarted) == ("HALT", "STATE_UNREADABLE")
    assert not restarted.may("ingest") and not restarted.may("order.reduce") and restarted.may("reconcile")
    rows = [a for a in started.audit if a.machine == "safety"]
    assert [(a.category, a.event, a.from_state, a.to_state, a.reason_code, a.at_ms) for a in rows] == [
        ("safety", "restored_unknown_state", stored, "HALT", "STATE_UNREADABLE", later)]
    assert rows[0].facts == {"persisted_state": stored, "persisted_reason": "OK"}
    assert [(t.from_state, t.to_state, t.reason) for t in started.transitions if t.machine == "safety"] == [
        (stored, "HALT", "STATE_UNREADABLE")]

    log = AuditLog(db)
    for record in started.audit:
        log.write(audit_row(record))
    written = log.rows(category="safety")
    assert [(r["from_state"], r["to_state"], r["reason_code"], r["event"]) for r in written] == [
        (stored, "HALT", "STATE_UNREADABLE", "restored_unknown_state")]

    # STATE_UNREADABLE is not on the recovery allowlist: it needs an operator.
    clock2 = restarted.clock
    for i in range(1, 5):
        clock2.set(later + 60 * i * SEC)
        restarted.observe("reconcile_completed", reconcile(clock2.now_ms()))
    assert mode(restarted) == ("HALT", "STATE_UNREADABLE")


def test_unknown_persisted_order_state_reads_as_unknown(default_policy, default_settings, make_engine, db):
    engine, clock = make_engine()
    engine.observe("order_answered", {"correlation_id": "c1", "answer": "UNKNOWN", "error_code": "TIMEOUT",
                                      "query_attempts": 0, "first_unknown_ms": None})
    store = MachineStateStore(db)
    store.save(engine.instances(), clock.now_ms())
    with db.transaction() as conn:
        conn.execute(update(machine_states).where(machine_states.c.machine == "order").values(state="LOST"))

    restarted = Engine(default_policy, default_settings, ManualClock(T0 + SEC))
    started = restarted.start(store.load())
    assert (restarted.state("order", correlation_id="c1"), restarted.reason("order", correlation_id="c1")) == (
        "UNKNOWN", "STATE_UNREADABLE")
    assert not restarted.may("order.submit", correlation_id="c1")  # never re-sent
    assert [(a.category, a.from_state, a.to_state) for a in started.audit if a.machine == "order"] == [
        ("execution", "LOST", "UNKNOWN")]


def test_audit_records_round_trip_through_audit_log(make_engine, db):
    engine, clock = make_engine(persisted=[{"machine": "safety", "instance": "safety", "key": [], "state": "ARMED_LIVE",
                                            "reason": "OK", "since_ms": T0, "vars": {"recovery_count": 0}}])
    log = AuditLog(db)
    decisions = []
    decisions.append(engine.observe("reconcile_completed", reconcile(clock.now_ms(), drift=0.005)))  # S12
    clock.advance(60 * SEC)
    decisions.append(engine.observe("reconcile_completed", {**reconcile(clock.now_ms()),
                                                            "missing_local": ["ETHUSDT"]}))      # S14
    clock.advance(60 * SEC)
    decisions.append(engine.observe("operator_command", {
        "command": "unhalt", "target_mode": None, "reason_code": None, "force": None, "allow_non_halt": None,
        "last_reconcile_result": None, "last_reconcile_ms": None, "unknown_count": 0, "open_event_count": 0}))
    records = [a for d in decisions for a in d.audit]
    for record in records:
        log.write(audit_row(record))

    safety = [r for r in log.rows(category="safety") if r["machine"] == "safety"]
    assert [(r["from_state"], r["to_state"], r["reason_code"]) for r in safety] == [
        ("ARMED_LIVE", "ARMED_SAFE", "RECONCILE_WARN"),
        ("ARMED_SAFE", "HALT", "RECONCILE_CRITICAL"),
        ("HALT", "ARMED_SAFE", "MANUAL_UNHALT"),
    ]
    assert [r["timestamp_ms"] for r in safety] == [T0, T0 + 60 * SEC, T0 + 120 * SEC]

    stored = log.rows()
    assert len(stored) == len(records) == log.count()
    for row, record in zip(stored, records, strict=True):
        assert row["timestamp_ms"] == record.at_ms
        assert row["category"] == record.category
        assert row["entity_id"] == row["instance"] == record.instance
        assert row["machine"] == record.machine
        assert (row["from_state"], row["to_state"]) == (record.from_state, record.to_state)
        assert row["event"] == record.event
        assert row["reason_code"] == record.reason_code
        assert row["facts"] == record.facts
        assert row["policy_hash"] == record.policy_hash == engine.policy.hash
    crit = next(r for r in safety if r["reason_code"] == "RECONCILE_CRITICAL")
    assert crit["facts"]["missing_local"] == ["ETHUSDT"]


def test_schema_version_3_halts_at_boot(make_engine, db):
    """Drill 3: a DB whose stored schema_version is '3' -> HALT/SCHEMA_VERSION_MISMATCH, from any mode."""
    assert db.schema_status() == "ok"
    SystemState(db).set("schema_version", "3", T0)
    status = db.schema_status()
    assert status == "mismatch"

    engine, clock = make_engine(persisted=[{"machine": "safety", "instance": "safety", "key": [], "state": "ARMED_LIVE",
                                            "reason": "OK", "since_ms": T0, "vars": {"recovery_count": 0}}])
    decision = engine.observe("boot", boot(schema=status))
    assert mode(engine) == ("HALT", "SCHEMA_VERSION_MISMATCH")
    assert [(a.from_state, a.to_state, a.reason_code) for a in decision.audit if a.machine == "safety"] == [
        ("ARMED_LIVE", "HALT", "SCHEMA_VERSION_MISMATCH")]
    assert not engine.may("ingest") and not engine.may("decide")

    MachineStateStore(db).save(engine.instances(), clock.now_ms())
    restarted, _ = make_engine(start_ms=T0 + 60 * SEC, persisted=MachineStateStore(db).load())
    restarted.observe("boot", boot(schema=db.schema_status()))
    assert mode(restarted) == ("HALT", "SCHEMA_VERSION_MISMATCH")


def test_current_schema_version_boots_without_halt(make_engine, db):
    engine, _ = make_engine()
    decision = engine.observe("boot", boot(schema=db.schema_status()))
    assert mode(engine) == ("ARMED_SAFE", "BOOTSTRAP")
    assert decision.transitions == ()
