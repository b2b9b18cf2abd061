"""The wallet monitor's operator commands (spec/monitor.md §8): halt / resume (runbook 8), status,
reports (dirty, alerts, universe), retention and the database check.

halt and resume observe one `monitor_command` fact through the monitor's runtime; the policy
(rules/health.yaml) decides: a refusal comes back as a `refused` effect (exit 1, nothing written),
otherwise the decision is persisted with an `ops_events` row (before/after health) in one
transaction. Everything else is read-only except `retention` (deletes by age, §6), which also
writes an `ops_events` row unless `--dry-run`.

Every function takes a clock (tests pass a ManualClock) and returns an `MonitorOpsResult`: the
key=value lines to print and whether the command refused / the check failed (exit 1).
"""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Table, and_, case, delete, func, inspect, or_, select, text
from sqlalchemy.engine import make_url

from hlcore.app import AppContext, database_url, open_app
from hlcore.config.hashing import redact_url
from hlcore.engine.clock import Clock
from hlcore.errors import BadInput, CheckFailed
from hlcore.storage.monitor import (
    IngestRuns,
    MonitorKey,
    MonitorState,
    Snapshots,
    Universe,
    heartbeat_key,
)
from hlcore.storage.monitor_signals import AlertStore, SignalStore
from hlcore.storage.repos import OpsEvents
from hlcore.storage.schema import (
    alert_state,
    alerts,
    asset_positioning,
    ingest_health,
    ingest_runs,
    machine_states,
    ops_events,
    signal_contributors,
    signals,
    snapshot_anomalies,
    system_state,
    wallet_snapshots,
    wallet_universe_current,
    wallet_universe_members,
    wallet_universe_runs,
)
from hlcore.workspace import Workspace

HEALTH = "health"  # the machine the monitor commands drive (contract name, like a fact kind)
SYSTEM_STALE = "system_stale"
SIGNAL_LOCK = "signal_lock"
LATCH_VAR = "latched_since"
APP = "monitor"
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000

RETENTION_DAYS: dict[str, int] = {
    "wallet_snapshots": 7,
    "signals": 30,
    "signal_contributors": 7,
    "asset_positioning": 7,
    "ingest_runs": 7,
    "ingest_health": 7,
    "alerts": 90,
    "snapshot_anomalies": 30,
    "wallet_universe_members": 30,
}
"""Retention in days per table, fixed by spec/monitor.md §6 (no settings key exists for them):
deletion only by age, dirty rows included; `wallet_universe_runs` and `ops_events` are kept."""

MIN_SNAPSHOT_DAYS = RETENTION_DAYS["wallet_snapshots"]
"""§6/§8: retention never goes below 7 days of snapshots."""

_RETENTION_COLUMNS: dict[str, tuple[Table, str]] = {
    "wallet_snapshots": (wallet_snapshots, "snapshot_ts"),
    "signals": (signals, "signal_ts"),
    "signal_contributors": (signal_contributors, "signal_ts"),
    "asset_positioning": (asset_positioning, "signal_ts"),
    "ingest_runs": (ingest_runs, "snapshot_ts"),
    "ingest_health": (ingest_health, "health_ts"),
    "alerts": (alerts, "alert_ts"),
    "snapshot_anomalies": (snapshot_anomalies, "detected_at"),
    "wallet_universe_members": (wallet_universe_members, "created_at"),
}

MONITOR_TABLES: tuple[Table, ...] = (
    wallet_universe_current, wallet_universe_runs, wallet_universe_members, wallet_snapshots, snapshot_anomalies,
    ingest_runs, ingest_health, signals, signal_contributors, asset_positioning, alerts, alert_state, ops_events,
    system_state, machine_states,
)

MIN_FREE_DISK_PCT = 20.0
"""§8 `db check`: free disk of the database's filesystem below this fails the check."""

NEAR_THRESHOLD_POINTS = 2.0
"""Half-width of the "near a threshold" bands of `report alerts` (§8: EC 18–27 around the alert's
20/25 re-arm/fire settings, CAS 23–27 / 73–77 around the playbook's extreme edges)."""

CAS_EXTREME_EDGES = (25.0, 75.0)
"""The playbook's CAS extreme band edges (rules/playbook.yaml: `cas lt 25`, `cas gt 75`)."""

HEARTBEAT_JOBS: dict[str, tuple[str, int]] = {
    "universe": ("monitor.universe.refresh_hours", 3_600_000),
    "snapshots": ("monitor.snapshots.interval_sec", 1000),
    "health": ("monitor.snapshots.interval_sec", 1000),
    "signals": ("monitor.signals.interval_sec", 1000),
    "alerts": ("monitor.signals.interval_sec", 1000),
    "dashboard": ("monitor.dashboard.refresh_sec", 1000),
}
"""Each job's cadence (§5) as (settings key, ms per unit); STOPPED beyond 2 × cadence."""


@dataclass
class MonitorOpsResult:
    lines: list[str] = field(default_factory=list)
    refused: str | None = None

    @property
    def ok(self) -> bool:
        return self.refused is None

    def add(self, **values: Any) -> None:
        self.lines.append(" ".join(f"{k}={_fmt(v)}" for k, v in values.items()))


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


# --------------------------------------------------------------------------------------------------
# opening
# --------------------------------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).expanduser().resolve()


def open_monitor(ws: Workspace, clock: Clock, *, read_only: bool) -> AppContext:
    """The monitor database, existing only (ops never creates it). Read-only: the engine is
    restored but its start is not persisted."""
    url = database_url(ws.settings, APP)
    path = _sqlite_path(url)
    if path is not None and not path.exists():
        raise CheckFailed(f"db_missing: no monitor database at {path}")
    return open_app(ws, clock, app=APP, persist_start=not read_only, url=url)


def healthy_state(ctx: AppContext) -> str:
    """The health state whose `allows` holds every gate the health machine mentions (derived from
    the policy, not named here)."""
    machine = ctx.workspace.policy.machines[HEALTH]
    gates = machine.gates()
    full = [name for name, s in machine.states.items() if gates <= set(s.allows)]
    if len(full) != 1:
        raise CheckFailed(f"policy: expected one fully-allowed {HEALTH} state, found {full}")
    return full[0]


def health_snapshot(ctx: AppContext) -> dict[str, Any]:
    engine = ctx.runtime.engine
    return {"health_state": engine.state(HEALTH), "health_reason": engine.reason(HEALTH),
            "manual_halt": bool(engine.var(HEALTH, "manual_halt")), LATCH_VAR: engine.var(HEALTH, LATCH_VAR)}


# --------------------------------------------------------------------------------------------------
# halt / resume
# --------------------------------------------------------------------------------------------------


def monitor_command(ctx: AppContext, command: str, *, reason: str | None, operator: str,
                    dry_run: bool = False) -> MonitorOpsResult:
    """Observe `monitor_command` (halt | resume); persist with an `ops_events` row unless refused."""
    result = MonitorOpsResult()
    before = health_snapshot(ctx)
    decision = ctx.runtime.observe("monitor_command", {"command": command, "reason": reason or ""}, persist=False)
    refused = next((e.data.get("code") for e in decision.effects if e.kind == "refused"), None)
    after = health_snapshot(ctx)
    result.add(command=f"monitor-{command}", operator=operator)
    for k, v in sorted(before.items()):
        result.add(**{f"before_{k}": v})
    if refused:
        result.refused = str(refused)
        result.add(refused=refused)
        return result
    for k, v in sorted(after.items()):
        result.add(**{f"after_{k}": v})
    if dry_run:
        result.lines.append("dry_run=true (nothing written)")
        return result
    now = ctx.clock.now_ms()
    halted = bool(after["manual_halt"])
    with ctx.db.transaction() as conn:
        ctx.runtime.persist(decision, conn=conn)
        ctx.runtime.announce(conn)
        MonitorState(ctx.db).set_many({
            MonitorKey.MANUAL_HALT: "true" if halted else "false",
            MonitorKey.MANUAL_HALT_REASON: (reason or "") if halted else "",
            MonitorKey.MANUAL_HALT_SINCE: now if halted else "",
        }, now, conn=conn)
        event_id = OpsEvents(ctx.db).write(now, f"monitor-{command}", operator, reason, before, after, conn=conn)
    result.add(ops_event_id=event_id)
    return result


# --------------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------------


def _cadence_ms(ctx: AppContext, job: str) -> int:
    key, unit = HEARTBEAT_JOBS[job]
    return int(float(ctx.settings.get(key)) * unit)


def status(ctx: AppContext) -> MonitorOpsResult:
    """Read-only §8 `monitor status`; refused (exit 1) unless health is the fully healthy state.
    Health is `health(now)` (monitor §3.1), not the last stored row: a dead health job or ingestion
    process cannot leave it HEALTHY while the data age."""
    from hlcore.jobs.monitor.health import health_at

    result = MonitorOpsResult()
    now = ctx.clock.now_ms()
    engine = ctx.runtime.engine
    verdict = health_at(ctx.db, ctx.workspace.policy, ctx.settings, now)
    state, reason = verdict.state, verdict.reason
    target = healthy_state(ctx)
    result.add(health=state, reason=reason)
    age = verdict.age_ms
    result.add(data_age_sec=None if age is None else age // 1000, stored_health=verdict.stored_state,
               stored_reason=verdict.stored_reason)
    result.add(latched=verdict.latched, latched_since=verdict.latched_since, manual_halt=verdict.manual_halt)
    result.add(system_stale=engine.state(SYSTEM_STALE))
    result.add(signal_lock=engine.state(SIGNAL_LOCK), signal_lock_reason=engine.reason(SIGNAL_LOCK))
    signals_store = SignalStore(ctx.db)
    for asset in ctx.settings.get("monitor.assets"):
        ts = signals_store.latest_signal_ts(asset)
        row = signals_store.signal_row(ts, asset) if ts is not None else None
        result.add(signal_asset=asset, signal_ts=ts,
                   playbook=row["allowed_playbook"] if row else None, risk_mode=row["risk_mode"] if row else None,
                   cas=row["alignment_score"] if row else None, exit_cluster=row["exit_cluster_score"] if row else None,
                   is_degraded=row["is_degraded"] if row else None)
    for (asset, alert_type), st in AlertStore(ctx.db).state().items():
        if st.get("is_active"):
            result.add(active_alert=f"{asset}/{alert_type}", last_triggered_ts=st.get("last_triggered_ts"),
                       cooldown_until=st.get("cooldown_until"))
    db_ok = ctx.db.schema_status()
    result.add(db=db_ok)
    store = MonitorState(ctx.db)
    first = store.first_start_ts()
    result.add(uptime_min=None if first is None else (now - first) // MINUTE_MS)
    runs = IngestRuns(ctx.db).newest_first(limit=5)
    result.add(runs=len(runs))
    for run in runs:
        result.add(run_ts=run.snapshot_ts, status=run.status, coverage_pct=run.coverage_pct,
                   age_min=round((now - run.snapshot_ts) / MINUTE_MS, 1))
    for job in HEARTBEAT_JOBS:
        beat = store.get_int(heartbeat_key(job))
        limit = 2 * _cadence_ms(ctx, job)
        running = beat is not None and now - beat <= limit
        result.add(job=job, heartbeat=beat, age_sec=None if beat is None else (now - beat) // 1000,
                   state="RUNNING" if running else "STOPPED")
    if state != target:
        result.refused = f"health_{state.lower()}"
    result.add(ok=result.refused is None)
    return result


# --------------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------------


def report_dirty(ctx: AppContext, hours: int) -> MonitorOpsResult:
    """Dirty % per asset and per hour over the last `hours`, then the latest anomalies."""
    if hours not in (1, 6):
        raise BadInput(f"--hours: expected 1 or 6, got {hours}")
    result = MonitorOpsResult()
    now = ctx.clock.now_ms()
    since = now - hours * HOUR_MS
    t = wallet_snapshots
    hour = t.c.snapshot_ts // HOUR_MS
    dirty = func.coalesce(func.sum(case((t.c.is_dirty, 1), else_=0)), 0)
    window = and_(t.c.snapshot_ts > since, t.c.snapshot_ts <= now)
    with ctx.db.transaction() as conn:
        per_asset = {a: (int(n), int(d)) for a, n, d in conn.execute(
            select(t.c.asset, func.count(), dirty).where(window).group_by(t.c.asset)).all()}
        per_hour = conn.execute(select(t.c.asset, hour.label("h"), func.count(), dirty).where(window)
                                .group_by(t.c.asset, "h").order_by("h", t.c.asset)).all()
    result.add(report="dirty", hours=hours, since=since, until=now)
    for asset in ctx.settings.get("monitor.assets"):
        total, n_dirty = per_asset.get(asset, (0, 0))
        result.add(asset=asset, rows=total, dirty=n_dirty, dirty_pct=_pct(n_dirty, total))
    for asset, h, total, n_dirty in per_hour:
        result.add(hour_ts=int(h) * HOUR_MS, asset=asset, rows=int(total), dirty=int(n_dirty),
                   dirty_pct=_pct(int(n_dirty), int(total)))
    anomalies = Snapshots(ctx.db).anomalies(since_ms=since)[-10:]
    result.add(anomalies=len(anomalies))
    for a in reversed(anomalies):
        result.add(anomaly_id=a["id"], detected_at=a["detected_at"], snapshot_ts=a["snapshot_ts"],
                   wallet=a["wallet_id"], asset=a["asset"], type=a["anomaly_type"])
    return result


def _pct(part: int, total: int) -> float:
    return 0.0 if total == 0 else part / total * 100


def near_bands(ctx: AppContext) -> dict[str, list[tuple[float, float]]]:
    """The "near a threshold" bands of `report alerts`: EC around the exit-cluster re-arm and fire
    settings, CAS around the playbook's extreme edges (§8: EC 18–27, CAS 23–27 / 73–77)."""
    m = NEAR_THRESHOLD_POINTS
    reset = float(ctx.settings.get("monitor.alerts.exit_reset_pct"))
    fire = float(ctx.settings.get("monitor.alerts.exit_fire_pct"))
    return {"exit_cluster_score": [(reset - m, fire + m)],
            "alignment_score": [(edge - m, edge + m) for edge in CAS_EXTREME_EDGES]}


def report_alerts(ctx: AppContext, hours: int) -> MonitorOpsResult:
    """Alert counts per asset/type (surfaced, suppressed by reason) and per hour, `alert_state`, and
    the signals of the window near a threshold."""
    if hours <= 0:
        raise BadInput(f"--hours: expected a positive number, got {hours}")
    result = MonitorOpsResult()
    now = ctx.clock.now_ms()
    since = now - hours * HOUR_MS
    rows = [r for r in AlertStore(ctx.db).all() if since < int(r["alert_ts"]) <= now]
    result.add(report="alerts", hours=hours, since=since, until=now, alerts=len(rows))
    groups: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    hourly: Counter[tuple[int, str]] = Counter()
    for r in rows:
        key = (r["asset"] or "SYSTEM", r["alert_type"])
        groups[key]["total"] += 1
        groups[key]["surfaced" if not r["suppressed"] else f"suppressed_{r['suppressed_reason']}"] += 1
        hourly[(int(r["alert_ts"]) // HOUR_MS * HOUR_MS, r["asset"] or "SYSTEM")] += 1
    for (asset, kind), counts in sorted(groups.items()):
        suppressed = {k: v for k, v in sorted(counts.items()) if k.startswith("suppressed_")}
        result.add(asset=asset, alert_type=kind, total=counts["total"], surfaced=counts["surfaced"],
                   suppressed=sum(suppressed.values()), **suppressed)
    for (h, asset), n in sorted(hourly.items()):
        result.add(hour_ts=h, asset=asset, alerts=n)
    for (asset, kind), st in sorted(AlertStore(ctx.db).state().items()):
        result.add(state_asset=asset, alert_type=kind, is_active=bool(st.get("is_active")),
                   daily_count=st.get("daily_count"), cooldown_until=st.get("cooldown_until"),
                   last_triggered_ts=st.get("last_triggered_ts"))
    bands = near_bands(ctx)
    for column, spans in bands.items():
        result.add(band=column, ranges=",".join(f"{lo:g}-{hi:g}" for lo, hi in spans))
    s = signals
    cond = [and_(s.c[col] >= lo, s.c[col] <= hi) for col, spans in bands.items() for lo, hi in spans]
    with ctx.db.transaction() as conn:
        near = conn.execute(select(s.c.signal_ts, s.c.asset, s.c.alignment_score, s.c.exit_cluster_score)
                            .where(s.c.signal_ts > since, s.c.signal_ts <= now, or_(*cond))
                            .order_by(s.c.signal_ts.desc(), s.c.asset)).all()
    result.add(near_threshold=len(near))
    for ts, asset, cas, ec in near:
        result.add(signal_ts=ts, asset=asset, cas=_num(cas), ec=_num(ec))
    return result


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def report_universe(ctx: AppContext) -> MonitorOpsResult:
    """The last 10 refresh runs and the current universe size."""
    result = MonitorOpsResult()
    universe = Universe(ctx.db)
    size = len(universe.current_ids())
    runs = universe.runs(limit=10)
    result.add(report="universe", current_size=size, current_run_id=universe.current_run_id(), runs=len(runs))
    for r in runs:
        result.add(run_id=r.run_id, as_of_ts=r.as_of_ts, status=r.status, requested=r.n_requested,
                   received=r.n_received, invalid=r.n_invalid, entered=r.entered_count, exited=r.exited_count,
                   churn_pct=r.churn_pct, churn_warnings=r.churn_warning_count, error=r.error)
    return result


# --------------------------------------------------------------------------------------------------
# retention
# --------------------------------------------------------------------------------------------------


def retention(ctx: AppContext, *, snapshot_days: int = MIN_SNAPSHOT_DAYS, dry_run: bool = False,
              operator: str = "operator", reason: str | None = None) -> MonitorOpsResult:
    """Delete rows older than each table's retention (§6); refused below 7 days of snapshots."""
    result = MonitorOpsResult()
    if snapshot_days < MIN_SNAPSHOT_DAYS:
        result.refused = "snapshot_retention_below_minimum"
        result.add(refused=result.refused, snapshot_days=snapshot_days, minimum_days=MIN_SNAPSHOT_DAYS)
        return result
    days = {**RETENTION_DAYS, "wallet_snapshots": snapshot_days}
    now = ctx.clock.now_ms()
    counts: dict[str, int] = {}
    with ctx.db.transaction() as conn:
        for name, (table, column) in _RETENTION_COLUMNS.items():
            cutoff = now - days[name] * DAY_MS
            where = table.c[column] < cutoff
            counts[name] = int(conn.execute(select(func.count()).select_from(table).where(where)).scalar_one())
            result.add(table=name, days=days[name], cutoff=cutoff, rows=counts[name],
                       action="would_delete" if dry_run else "deleted")
            if not dry_run and counts[name]:
                conn.execute(delete(table).where(where))
        if not dry_run:
            OpsEvents(ctx.db).write(now, "monitor-retention", operator, reason, {"days": days}, {"deleted": counts},
                                    conn=conn)
    result.add(total=sum(counts.values()), dry_run=dry_run)
    if dry_run:
        result.lines.append("dry_run=true (nothing written)")
    return result


# --------------------------------------------------------------------------------------------------
# db check
# --------------------------------------------------------------------------------------------------


def _expected_indexes(table: Table) -> set[str]:
    return {str(ix.name) for ix in table.indexes if ix.name}


def db_check(ws: Workspace, clock: Clock) -> MonitorOpsResult:
    """Connectivity, table row counts, indexes present, free disk of the database's filesystem."""
    result = MonitorOpsResult()
    url = database_url(ws.settings, APP)
    result.add(db=redact_url(url))
    path = _sqlite_path(url)
    if path is not None and not path.exists():
        result.refused = "db_missing"
        result.add(connect=False, error="db_missing")
        return result
    ctx = open_app(ws, clock, app=APP, persist_start=False, url=url)
    problems: list[str] = []
    try:
        with ctx.db.transaction() as conn:
            conn.execute(text("SELECT 1"))
        result.add(connect=True, schema=ctx.db.schema_status())
        inspector = inspect(ctx.db.engine)
        present_tables = set(inspector.get_table_names())
        for table in MONITOR_TABLES:
            if table.name not in present_tables:
                problems.append(f"table_missing:{table.name}")
                result.add(table=table.name, rows=None, indexes="missing_table")
                continue
            with ctx.db.transaction() as conn:
                rows = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            present = {str(ix["name"]) for ix in inspector.get_indexes(table.name)}
            missing = sorted(_expected_indexes(table) - present)
            problems += [f"index_missing:{n}" for n in missing]
            result.add(table=table.name, rows=rows, indexes=len(_expected_indexes(table)) - len(missing),
                       missing_indexes=",".join(missing) or None)
    finally:
        ctx.close()
    if path is not None:
        usage = shutil.disk_usage(path.parent)
        free_pct = usage.free / usage.total * 100 if usage.total else 0.0
        result.add(disk_path=path.parent, disk_free_bytes=usage.free, disk_total_bytes=usage.total,
                   disk_free_pct=free_pct, disk_min_free_pct=MIN_FREE_DISK_PCT)
        if free_pct < MIN_FREE_DISK_PCT:
            problems.append("disk_free_below_minimum")
    else:
        result.add(disk_free_pct=None, note="free disk not measured for a server database")
    if problems:
        result.refused = ",".join(problems)
        result.add(failed=result.refused)
    result.add(ok=not problems)
    return result


__all__ = [
    "MIN_SNAPSHOT_DAYS",
    "RETENTION_DAYS",
    "MonitorOpsResult",
    "db_check",
    "healthy_state",
    "monitor_command",
    "near_bands",
    "open_monitor",
    "report_alerts",
    "report_dirty",
    "report_universe",
    "retention",
    "status",
]
