"""`health_at(db, policy, settings, now)` is `health(now)` (monitor §3.1, issue 11): the verdict at
the instant asked, from stored runs and state, judged by the policy's own health table, with
nothing written, however long ago the health job last ran."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hlcore.jobs.monitor.health import HealthVerdict, health_at
from hlcore.storage.schema import audit_log, ingest_health, machine_states
from tests.integration.test_monitor_ingest import MIN, SEC, T0, Rig, wallets


@pytest.fixture
def healthy(tmp_path: Path) -> Iterator[Rig]:
    """Two clean adjacent runs (10:00, 10:01) evaluated HEALTHY, then the health job never runs again."""
    rig = Rig(tmp_path)
    rig.seed_universe(wallets(3))
    rig.minute(0)
    rig.minute(1)
    assert rig.health_state == ("HEALTHY", "OK")
    yield rig
    rig.ctx.close()


def _verdict(rig: Rig, now: int) -> HealthVerdict:
    return health_at(rig.ctx.db, rig.ws.policy, rig.ws.settings, now)


def _counts(rig: Rig) -> tuple[int, int, int]:
    with rig.ctx.db.transaction() as conn:
        return tuple(int(conn.execute(select(func.count()).select_from(t)).scalar_one())  # type: ignore[return-value]
                     for t in (ingest_health, audit_log, machine_states))


def test_the_verdict_follows_the_data_age_at_the_instant_asked(healthy: Rig) -> None:
    last_run = T0 + MIN
    before = _counts(healthy)
    v = _verdict(healthy, last_run + 120 * SEC)           # 120 s is still healthy (boundary)
    assert (v.state, v.reason, v.latched, v.age_ms) == ("HEALTHY", "OK", False, 120 * SEC)
    v = _verdict(healthy, last_run + 121 * SEC)
    assert (v.state, v.reason, v.latched) == ("DEGRADED", "AGE_DEGRADED", False)
    v = _verdict(healthy, last_run + 600 * SEC)           # 600 s is not stale yet
    assert (v.state, v.reason) == ("DEGRADED", "AGE_DEGRADED")
    v = _verdict(healthy, last_run + 700 * SEC)
    assert (v.state, v.reason, v.latched) == ("STALE", "AGE_STALE", True)
    assert v.latched_since == last_run + 700 * SEC
    assert (v.stored_state, v.stored_reason) == ("HEALTHY", "OK")   # what the dead health job left
    assert _counts(healthy) == before                               # read-only: nothing written
    assert healthy.health_state == ("HEALTHY", "OK")                # nor the running engine moved


def test_the_latch_is_the_stored_one(healthy: Rig) -> None:
    """A STALE latch the health job stored holds at read time until the release rule says so."""
    healthy.evaluate(T0 + MIN + 700 * SEC)
    assert healthy.health_state == ("STALE", "AGE_STALE")
    v = _verdict(healthy, T0 + MIN + 701 * SEC)
    assert (v.state, v.latched) == ("STALE", True)


def test_storage_unreadable_runs_is_the_policy_outage_verdict(healthy: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    from hlcore.storage.db import StorageUnavailable
    from hlcore.storage.monitor import IngestRuns

    def down(*_a: object, **_k: object) -> None:
        raise StorageUnavailable("database is locked")

    monkeypatch.setattr(IngestRuns, "latest", down)
    v = _verdict(healthy, T0 + MIN + 5 * SEC)
    assert (v.state, v.reason, v.error) == ("STALE", "STORAGE_UNAVAILABLE", "database is locked")
