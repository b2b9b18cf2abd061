"""What the dashboard reads: one read-only snapshot of storage as of `now` (monitor §4.7 D5).

`load_state` is the only place the dashboard touches the database. It reads the D5 tables only
(`signals`, `signal_contributors`, `asset_positioning`, `alerts`, `ingest_runs`, `ingest_health`,
`system_state`, and the policy's stored machine states), every row at or before `now`, in one
transaction, and never writes. An unreachable database or a schema mismatch is not an error here:
it comes back as `storage_ok=False`, which the policy turns into the halt view (§3.5, §6).

`current_health` is the ONE place the dashboard's health verdict comes from: `load_state` asks the
shared `health(now)` (`hlcore.jobs.monitor.health.health_at`, monitor §3.1) at the instant read, so a
dead health job's last HEALTHY row is never what the page shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from hlcore.jobs.monitor import RunStatuses
from hlcore.jobs.monitor.health import health_at
from hlcore.policy.model import Policy
from hlcore.storage.db import Database, StorageUnavailable
from hlcore.storage.repos import MachineStateStore
from hlcore.storage.schema import (
    alerts,
    asset_positioning,
    ingest_health,
    ingest_runs,
    machine_states,
    signal_contributors,
    signals,
)

HEALTH = "health"  # the machine whose state is the system health (contract name, like ops/monitor.py)
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Health:
    """A health verdict: the `health` machine's state and reason, and since when it is known."""

    state: str | None
    reason: str | None
    at_ms: int | None = None


@dataclass(frozen=True)
class StoredState:
    """Everything the view model may use, read at `now` (rows newer than `now` are not seen)."""

    now_ms: int
    storage_ok: bool
    storage_error: str | None = None
    machines: tuple[Mapping[str, Any], ...] = ()            # stored machine instances
    health_row: Mapping[str, Any] | None = None            # the latest `ingest_health` row
    latest_run: Mapping[str, Any] | None = None            # the latest `ingest_runs` row
    latest_usable_ts: int | None = None                    # snapshot_ts of the latest usable run
    signal_ts: int | None = None                           # the latest signal slot
    slot: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)          # asset -> signals row
    contributors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # asset -> row
    positioning: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)   # asset -> row
    history: Sequence[Mapping[str, Any]] = ()               # signals rows of the longest chart window
    recent_alerts: Sequence[Mapping[str, Any]] = ()         # surfaced alerts of the last 24 h
    system_alert: Mapping[str, Any] | None = None           # the latest surfaced system alert, however old
    health: Health | None = None                            # health(now), evaluated when the state was read

    def machine(self, name: str) -> Mapping[str, Any] | None:
        """The stored singleton instance of machine `name`, if any."""
        return next((m for m in self.machines if m["instance"] == name), None)


def _dicts(rows: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in rows.mappings()]


def load_state(db: Database, policy: Policy, settings: Any, now_ms: int) -> StoredState:
    """Read the dashboard's snapshot as of `now_ms`; storage trouble gives `storage_ok=False`."""
    try:
        status = db.schema_status()
        if status != "ok":
            return StoredState(now_ms, False, f"schema {status}: this database is not hlcore's current layout")
        usable = sorted(RunStatuses.from_policy(policy).usable)
        hours = max(int(h) for h in settings.get("monitor.dashboard.history_hours"))
        with db.transaction() as conn:
            machines = tuple(r for r in MachineStateStore(db).load(conn=conn) if int(r["since_ms"] or 0) <= now_ms)
            health_row = conn.execute(select(ingest_health).where(ingest_health.c.health_ts <= now_ms)
                                      .order_by(ingest_health.c.health_ts.desc()).limit(1)).mappings().first()
            run_q = select(ingest_runs).where(ingest_runs.c.snapshot_ts <= now_ms) \
                .order_by(ingest_runs.c.snapshot_ts.desc()).limit(1)
            latest_run = conn.execute(run_q).mappings().first()
            usable_ts = conn.execute(select(ingest_runs.c.snapshot_ts).where(
                ingest_runs.c.snapshot_ts <= now_ms, ingest_runs.c.status.in_(usable))
                .order_by(ingest_runs.c.snapshot_ts.desc()).limit(1)).scalar()
            sig_ts = conn.execute(select(signals.c.signal_ts).where(signals.c.signal_ts <= now_ms)
                                  .order_by(signals.c.signal_ts.desc()).limit(1)).scalar()
            slot, contributors, positioning = {}, {}, {}
            if sig_ts is not None:
                slot = {r["asset"]: r for r in _dicts(conn.execute(
                    select(signals).where(signals.c.signal_ts == sig_ts)))}
                contributors = {r["asset"]: r for r in _dicts(conn.execute(
                    select(signal_contributors).where(signal_contributors.c.signal_ts == sig_ts)))}
                positioning = {r["asset"]: r for r in _dicts(conn.execute(
                    select(asset_positioning).where(asset_positioning.c.signal_ts == sig_ts)))}
            history = _dicts(conn.execute(
                select(signals.c.signal_ts, signals.c.asset, signals.c.alignment_score, signals.c.dispersion_index,
                       signals.c.exit_cluster_score)
                .where(signals.c.signal_ts > now_ms - hours * HOUR_MS, signals.c.signal_ts <= now_ms)
                .order_by(signals.c.signal_ts, signals.c.asset)))
            recent = _dicts(conn.execute(
                select(alerts.c.id, alerts.c.alert_ts, alerts.c.asset, alerts.c.alert_type, alerts.c.severity,
                       alerts.c.message)
                .where(alerts.c.alert_ts > now_ms - DAY_MS, alerts.c.alert_ts <= now_ms,
                       alerts.c.suppressed.is_(False))
                .order_by(alerts.c.alert_ts.desc(), alerts.c.id.desc())))
            system_alert = conn.execute(
                select(alerts.c.id, alerts.c.alert_ts, alerts.c.asset, alerts.c.alert_type, alerts.c.severity,
                       alerts.c.message)
                .where(alerts.c.asset.is_(None), alerts.c.alert_ts <= now_ms, alerts.c.suppressed.is_(False))
                .order_by(alerts.c.alert_ts.desc(), alerts.c.id.desc()).limit(1)).mappings().first()
            # health(now) restores the stored machines: only meaningful when none is from after `now`
            # (a page asked for an earlier instant falls back to the rows as of then, current_health)
            written = func.coalesce(machine_states.c.updated_at_ms, machine_states.c.since_ms)
            from_future = conn.execute(select(func.count()).select_from(machine_states)
                                       .where(written > now_ms)).scalar()
        verdict = None if from_future else health_at(db, policy, settings, now_ms)
    except StorageUnavailable as exc:
        return StoredState(now_ms, False, str(exc))
    return StoredState(now_ms, True, None, machines, None if health_row is None else dict(health_row),
                       None if latest_run is None else dict(latest_run), usable_ts, sig_ts, slot, contributors,
                       positioning, history, recent, None if system_alert is None else dict(system_alert),
                       None if verdict is None else Health(verdict.state, verdict.reason, now_ms))


def current_health(stored: StoredState, policy: Policy) -> Health:
    """The health verdict the dashboard shows (§3.1: one health for every layer).

    A state read from storage carries `health(now)` and that is the answer. A StoredState built by
    hand (view-model tests) carries none: then whichever is newer of the latest `ingest_health` row
    and the stored `health` machine; nothing stored: the machine's initial state (H0).
    """
    if stored.health is not None:
        return stored.health
    machine = policy.machines[HEALTH]
    row, inst = stored.health_row, stored.machine(HEALTH)
    row_at = None if row is None else int(row["health_ts"])
    inst_at = None if inst is None else int(inst["since_ms"] or 0)
    if inst is not None and (row_at is None or (inst_at is not None and inst_at > row_at)):
        return Health(inst["state"], inst["reason"], inst_at)
    if row is not None:
        return Health(row["health_state"], row["health_reason"], row_at)
    return Health(machine.initial, machine.initial_reason, None)


__all__ = ["Health", "StoredState", "current_health", "load_state"]
