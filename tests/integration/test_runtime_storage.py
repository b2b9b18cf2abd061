"""The engine on real SQLite storage: state, audit and tallies survive a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import text

from hlcore.engine.clock import ManualClock
from hlcore.engine.runtime import Runtime
from hlcore.storage.db import open_database, sqlite_url
from hlcore.storage.repos import AuditLog, SystemState

T0 = 1_769_248_800_000


def runtime(path: Path, policy: Any, settings: Any, now: int = T0) -> tuple[Runtime, ManualClock]:
    db = open_database(sqlite_url(path))
    if db.schema_status() == "missing":
        db.create_schema(now)
    clock = ManualClock(now)
    rt = Runtime(db, policy, settings, clock)
    rt.start()
    return rt, clock


def test_fresh_database_seeds_armed_safe_and_audits_it(tmp_path: Path, default_policy: Any,
                                                      default_settings: Any) -> None:
    rt, _ = runtime(tmp_path / "h.db", default_policy, default_settings)
    state = SystemState(rt.db).all()
    assert (state["safety_mode"], state["safety_reason_code"], state["safety_changed_at_ms"]) == \
        ("ARMED_SAFE", "BOOTSTRAP", str(T0))
    assert state["health_state"] == "STALE" and state["health_latch_reason"] == "NO_DATA"
    seeded = [r for r in AuditLog(rt.db).rows() if r["machine"] == "safety"]
    assert [(r["from_state"], r["to_state"], r["reason_code"], r["event"]) for r in seeded] == \
        [(None, "ARMED_SAFE", "BOOTSTRAP", "seeded")]


def test_halt_survives_restart_with_its_reason_and_counter(tmp_path: Path, default_policy: Any,
                                                          default_settings: Any) -> None:
    rt, clock = runtime(tmp_path / "h.db", default_policy, default_settings)
    clock.advance(1_000)
    rt.observe("reconcile_completed", {
        "context": "loop", "fetch_ok": True, "position_mode_ok": True, "snapshot_age_ms": 1000, "max_drift": 0.02,
        "missing_local": [], "missing_exchange": [], "adapter_last_success_ms": clock.now_ms(),
        "adapter_last_error_ms": None, "unparked_unknown": 0})
    clock.advance(60_000)
    rt.observe("reconcile_completed", {
        "context": "loop", "fetch_ok": True, "position_mode_ok": True, "snapshot_age_ms": 1000, "max_drift": 0.0,
        "missing_local": [], "missing_exchange": [], "adapter_last_success_ms": clock.now_ms(),
        "adapter_last_error_ms": None, "unparked_unknown": 0})
    assert rt.engine.state("safety") == "HALT" and rt.engine.var("safety", "recovery_count") == 1
    rt.db.dispose()

    again, _ = runtime(tmp_path / "h.db", default_policy, default_settings, now=T0 + 3_600_000)
    assert (again.engine.state("safety"), again.engine.reason("safety")) == ("HALT", "RECONCILE_CRITICAL")
    assert again.engine.var("safety", "recovery_count") == 1
    moves = [(r["from_state"], r["to_state"], r["reason_code"]) for r in AuditLog(again.db).rows()
             if r["machine"] == "safety"]
    assert moves == [(None, "ARMED_SAFE", "BOOTSTRAP"), ("ARMED_SAFE", "HALT", "RECONCILE_CRITICAL")]


def test_daily_cap_tally_survives_restart(tmp_path: Path, default_policy: Any, default_settings: Any) -> None:
    rt, clock = runtime(tmp_path / "m.db", default_policy, default_settings)
    healthy = {"storage_ok": True, "has_usable_run": True, "latest_status": "success", "age_ms": 30_000,
               "age_ref_ms": 30_000, "coverage_pct": 100, "min_nonnull_pct": 100, "clean_streak": 2}
    rt.observe("health_evaluated", {**healthy, "latest_run_ts": clock.now_ms()})
    assert rt.engine.state("health") == "HEALTHY"
    for hour in range(4):  # four exit-cluster fires, each after the previous cooldown
        clock.advance(61 * 60_000)
        rt.observe("health_evaluated", {**healthy, "latest_run_ts": clock.now_ms()})
        for ec in (30, 10):
            d = rt.observe("signal_committed", {"asset": "BTC", "signal_ts": clock.now_ms(),
                                                "exit_cluster_score": ec, "playbook": "No-trade",
                                                "risk_mode": "Defensive", "is_degraded": False})
            if ec == 30:
                assert d.find("alert_surfaced"), f"fire {hour} should surface"
    rt.db.dispose()
    again, clock2 = runtime(tmp_path / "m.db", default_policy, default_settings, now=clock.now_ms() + 61 * 60_000)
    again.observe("health_evaluated", {**healthy, "latest_run_ts": clock2.now_ms()})
    assert again.engine.state("exit_cluster", asset="BTC") == "INACTIVE"
    d = again.observe("signal_committed", {"asset": "BTC", "signal_ts": clock2.now_ms(), "exit_cluster_score": 30,
                                           "playbook": "No-trade", "risk_mode": "Defensive", "is_degraded": False})
    assert [e.data["suppressed_reason"] for e in d.find("alert_suppressed")] == ["daily_cap"]


def test_old_schema_without_machine_states_restores_from_system_state_mirror(
        tmp_path: Path, default_policy: Any, default_settings: Any) -> None:
    db = open_database(sqlite_url(tmp_path / "old.db"))
    db.create_schema(T0)
    with db.transaction() as conn:
        conn.execute(text("DROP TABLE machine_states"))
        conn.execute(text("DROP TABLE engine_tallies"))
    SystemState(db).set_many({"schema_version": "3", "safety_mode": "HALT",
                              "safety_reason_code": "BACKFILL_WINDOW_EXCEEDED", "safety_changed_at_ms": str(T0)}, T0)
    assert db.schema_status() == "mismatch"
    rt = Runtime(db, default_policy, default_settings, ManualClock(T0 + 1_000))
    rt.start()
    assert (rt.engine.state("safety"), rt.engine.reason("safety")) == ("HALT", "BACKFILL_WINDOW_EXCEEDED")
    rt.observe("boot", {"schema_status": db.schema_status(), "contract_status": "ok",
                        "config_hash_changed": False, "mode": "live"})
    assert (rt.engine.state("safety"), rt.engine.reason("safety")) == ("HALT", "SCHEMA_VERSION_MISMATCH")
    assert SystemState(db).get("safety_reason_code") == "SCHEMA_VERSION_MISMATCH"


def test_a_variable_change_alone_is_persisted(tmp_path: Path, default_policy: Any, default_settings: Any) -> None:
    """A reconcile that only moves the HALT recovery counter still reaches storage."""
    rt, clock = runtime(tmp_path / "v.db", default_policy, default_settings)
    rt.observe("storage_failed", {"app": "copytrader", "operation": "write"})  # HALT, not recoverable
    ok = {"context": "loop", "fetch_ok": True, "position_mode_ok": True, "snapshot_age_ms": 1000, "max_drift": 0.0,
          "missing_local": [], "missing_exchange": [], "adapter_last_error_ms": None, "unparked_unknown": 0}
    rt.observe("reconcile_completed", {**ok, "adapter_last_success_ms": clock.now_ms()})  # NONE -> OK, count 1
    clock.advance(60_000)
    d = rt.observe("reconcile_completed", {**ok, "adapter_last_success_ms": clock.now_ms()})  # only count 2
    assert d.transitions == () and d.vars == (("safety", "recovery_count", 2),)
    rt.db.dispose()
    again, _ = runtime(tmp_path / "v.db", default_policy, default_settings, now=clock.now_ms())
    assert again.engine.var("safety", "recovery_count") == 2


def test_a_failed_write_is_kept_and_persisted_by_the_next_good_one(tmp_path: Path, default_policy: Any,
                                                                   default_settings: Any) -> None:
    """S9: the HALT is effective in memory at once and reaches storage at the first good write."""
    import pytest

    from hlcore.storage.db import StorageUnavailable

    rt, clock = runtime(tmp_path / "f.db", default_policy, default_settings)
    real = rt.db.transaction

    def broken():  # type: ignore[no-untyped-def]
        raise StorageUnavailable("disk I/O error")

    rt.db.transaction = broken  # type: ignore[method-assign]
    with pytest.raises(StorageUnavailable):
        rt.observe("storage_failed", {"app": "copytrader", "operation": "write"})
    assert rt.engine.state("safety") == "HALT"  # effective at once
    rt.db.transaction = real  # type: ignore[method-assign]
    assert SystemState(rt.db).get("safety_mode") == "ARMED_SAFE"  # not yet persisted
    clock.advance(20_000)
    rt.observe("reconcile_completed", {
        "context": "loop", "fetch_ok": True, "position_mode_ok": True, "snapshot_age_ms": 1000, "max_drift": 0.0,
        "missing_local": [], "missing_exchange": [], "adapter_last_success_ms": clock.now_ms(),
        "adapter_last_error_ms": None, "unparked_unknown": 0})
    assert (SystemState(rt.db).get("safety_mode"), SystemState(rt.db).get("safety_reason_code")) == \
        ("HALT", "STORAGE_UNAVAILABLE")
    halts = [r for r in AuditLog(rt.db).rows() if r["machine"] == "safety" and r["to_state"] == "HALT"]
    assert [(r["reason_code"], r["timestamp_ms"]) for r in halts] == [("STORAGE_UNAVAILABLE", T0)]


def test_a_rolled_back_joined_transaction_keeps_its_changes_for_the_next_write(
        tmp_path: Path, default_policy: Any, default_settings: Any) -> None:
    """A job's transaction that joins the policy write and then rolls back loses nothing: the
    state change and its audit row reach storage with the next write, exactly once."""
    rt, clock = runtime(tmp_path / "j.db", default_policy, default_settings)

    class JobFailed(Exception):
        pass

    try:
        with rt.db.transaction() as conn:
            rt.observe("storage_failed", {"app": "copytrader", "operation": "write"}, conn=conn)
            raise JobFailed  # e.g. the job's own insert failed after the policy wrote its part
    except JobFailed:
        pass
    assert SystemState(rt.db).get("safety_mode") == "ARMED_SAFE"  # rolled back
    clock.advance(1_000)
    rt.observe("ingest_tick", {"last_ingest_success_ms": clock.now_ms(), "cursor_ts_ms": clock.now_ms(),
                               "maintenance_skip_applied_ms": None})
    assert SystemState(rt.db).get("safety_mode") == "HALT"
    halts = [r for r in AuditLog(rt.db).rows() if r["machine"] == "safety" and r["to_state"] == "HALT"]
    assert len(halts) == 1

    with rt.db.transaction() as conn:  # and a committed joined write is not written again
        clock.advance(1_000)
        rt.observe("operator_command", {"command": "unhalt", "target_mode": None, "reason_code": None,
                                        "force": False, "allow_non_halt": False, "last_reconcile_result": None,
                                        "last_reconcile_ms": None, "unknown_count": 0, "open_event_count": 0},
                   conn=conn)
    rt.observe("ingest_tick", {"last_ingest_success_ms": clock.now_ms(), "cursor_ts_ms": clock.now_ms(),
                               "maintenance_skip_applied_ms": None})
    unhalts = [r for r in AuditLog(rt.db).rows() if r["reason_code"] == "MANUAL_UNHALT"]
    assert len(unhalts) == 1


def test_a_running_service_adopts_an_operator_write_from_another_process(tmp_path: Path, default_policy: Any,
                                                                        default_settings: Any) -> None:
    """The CLI and the service are two processes on one database: the service adopts what an
    operator command wrote (ops_revision) at its next cycle, and only then."""
    service, clock = runtime(tmp_path / "h.db", default_policy, default_settings)
    assert service.sync() is False  # nothing new: one read, nothing adopted
    operator, _ = runtime(tmp_path / "h.db", default_policy, default_settings)
    decision = operator.observe("operator_command", {
        "command": "reset", "target_mode": "HALT", "reason_code": None, "force": False,
        "allow_non_halt": True, "last_reconcile_result": None, "last_reconcile_ms": None, "unknown_count": 0,
        "open_event_count": 0}, persist=False)
    assert [t.to_state for t in decision.transitions if t.machine == "safety"] == ["HALT"]
    with operator.db.transaction() as conn:
        operator.persist(decision, conn=conn)
        operator.announce(conn)
    assert service.engine.state("safety") == "ARMED_SAFE"  # not yet: the service has not looked
    assert service.sync() is True
    assert (service.engine.state("safety"), service.engine.reason("safety")) == ("HALT", "MANUAL_OVERRIDE")
    assert service.sync() is False
    clock.advance(1_000)
    service.observe("boot", {"schema_status": "ok", "contract_status": "ok", "config_hash_changed": False,
                             "mode": "live"})
    assert SystemState(service.db).all()["safety_mode"] == "HALT"  # the service never writes the old mode back
