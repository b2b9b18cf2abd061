"""The health job: measure ingestion from the stored runs and let the policy judge it
(spec/monitor.md §3.1, §4.3, §5, S7).

It computes the `health_evaluated` fact (storage reachable, latest and latest usable run, age and
the System Stale age reference, coverage, lowest per-asset non-null rate, clean adjacent streak),
observes it, and appends one `ingest_health` row with the state and reason the policy's `health`
machine is in afterwards. The latch, H1–H6 and the System Stale episode are the policy's; the
`alert_surfaced` effects it returns are handed to the alert job, which writes the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from hlcore.app import AppContext
from hlcore.engine.clock import Clock
from hlcore.engine.decision import Decision, Effect
from hlcore.jobs.monitor import (
    ALERT_SURFACED,
    HEALTH,
    SIGNALS_GATE,
    RunStatuses,
    observe,
    report_storage_failure,
)
from hlcore.storage.db import StorageUnavailable
from hlcore.storage.monitor import (
    HealthRecord,
    IngestHealth,
    IngestRun,
    IngestRuns,
    MonitorState,
)

log = logging.getLogger("hlcore.monitor.health")

JOB = "health"
_PAGE = 120  # runs read per page while counting the clean streak


@dataclass(frozen=True)
class HealthMeasure:
    """The `health_evaluated` fields plus what the `ingest_health` row needs besides them."""

    fact: Mapping[str, Any]
    latest: IngestRun | None = None
    latest_usable: IngestRun | None = None
    error: str | None = None


@dataclass(frozen=True)
class HealthOutcome:
    """One evaluation: the policy's decision, the `health` state and reason after it, whether the
    signal gate is shut (latched), the row written (None if storage refused it), and the alert
    effects (System Stale) for the alert job."""

    decision: Decision
    state: str
    reason: str | None
    latched: bool
    facts: Mapping[str, Any]
    record: HealthRecord | None
    alerts: tuple[Effect, ...]
    storage_error: str | None = None


def alert_text(effect: Effect) -> str:
    """The System Stale message: the effect's template with M = floor(age reference / 60 s) (§4.6)."""
    template = str(effect.data.get("template") or "")
    age_ref = effect.data.get("age_ref_ms")
    minutes = int(age_ref // 60_000) if isinstance(age_ref, int | float) else 0
    return template.replace("{minutes}", str(minutes))


class HealthJob:
    """`run(now)` after each snapshot run and every minute at second 30 (§5)."""

    def __init__(self, ctx: AppContext, clock: Clock):
        self.ctx = ctx
        self.clock = clock
        self.runtime = ctx.runtime
        self.engine = ctx.runtime.engine
        s = ctx.settings
        self.interval_ms = int(float(s.get("monitor.snapshots.interval_sec")) * 1000)
        self.nonnull_ok_pct = float(s.get("monitor.health.nonnull_ok_pct"))
        self.statuses = RunStatuses.from_policy(ctx.workspace.policy)
        self.runs = IngestRuns(ctx.db)
        self.health = IngestHealth(ctx.db)
        self.state = MonitorState(ctx.db)

    # ------------------------------------------------------------------ measure
    def is_clean(self, run: IngestRun) -> bool:
        """§2 clean run: the full status (success) and every asset non-null ≥ `nonnull_ok_pct`."""
        values = list(run.nonnull_pct.values())
        return (run.status == self.statuses.full and bool(values)
                and all(v is not None and v >= self.nonnull_ok_pct for v in values))

    def clean_streak(self, latest: IngestRun | None) -> int:
        """Consecutive clean, minute-adjacent runs ending at the latest run; a missing minute (or
        any non-clean run) ends it."""
        if latest is None:
            return 0
        streak, newer, cursor = 0, None, latest.snapshot_ts
        while True:
            page = self.runs.newest_first(at_or_before=cursor, limit=_PAGE)
            for run in page:
                if newer is not None and run.snapshot_ts == newer.snapshot_ts:
                    continue  # the page boundary repeats the last run read
                if not self.is_clean(run) or (newer is not None and newer.snapshot_ts - run.snapshot_ts
                                              != self.interval_ms):
                    return streak
                streak, newer = streak + 1, run
            if len(page) < _PAGE or newer is None:
                return streak
            cursor = newer.snapshot_ts

    def measure(self, now_ms: int) -> HealthMeasure:
        """The `health_evaluated` fact from stored runs; unreadable storage is `storage_ok=false`."""
        try:
            first_start = self.state.ensure_first_start(now_ms)
            latest = self.runs.latest(at_or_before=now_ms)
            usable = self.runs.latest(at_or_before=now_ms, statuses=self.statuses.usable)
            streak = self.clean_streak(latest)
        except StorageUnavailable as exc:
            fact = {"storage_ok": False, "has_usable_run": None, "latest_status": None, "age_ms": None,
                    "age_ref_ms": None, "coverage_pct": None, "min_nonnull_pct": None, "clean_streak": 0,
                    "latest_run_ts": None}
            return HealthMeasure(fact, error=str(exc))
        age = None if usable is None else now_ms - usable.snapshot_ts
        fact = {
            "storage_ok": True,
            "has_usable_run": usable is not None,
            "latest_status": None if latest is None else latest.status,
            "age_ms": age,
            "age_ref_ms": age if age is not None else now_ms - first_start,
            "coverage_pct": None if latest is None else latest.coverage_pct,
            "min_nonnull_pct": None if latest is None else latest.min_nonnull_pct,
            "clean_streak": streak,
            "latest_run_ts": None if latest is None else latest.snapshot_ts,
        }
        return HealthMeasure(fact, latest, usable)

    # ------------------------------------------------------------------ evaluate
    def latched(self) -> bool:
        """True while the `health` state shuts the signal gate (effective STALE: the latch)."""
        machine = self.ctx.workspace.policy.machines[HEALTH]
        return SIGNALS_GATE not in machine.states[self.engine.state(HEALTH)].allows

    def run(self, now_ms: int | None = None) -> HealthOutcome:
        now = self.clock.now_ms() if now_ms is None else now_ms
        m = self.measure(now)
        decision, failure = observe(self.runtime, "health_evaluated", dict(m.fact))
        state, reason, latched = self.engine.state(HEALTH), self.engine.reason(HEALTH), self.latched()
        error = m.error or (None if failure is None else str(failure))
        record = HealthRecord(
            health_ts=now,
            last_success_snapshot_ts=None if m.latest_usable is None else m.latest_usable.snapshot_ts,
            snapshot_status=None if m.latest is None else m.latest.status,
            coverage_pct=None if m.latest is None else m.latest.coverage_pct,
            health_state=state, health_reason=reason, latched=latched,
            clean_streak=int(m.fact["clean_streak"] or 0), error=error,
        )
        stored: HealthRecord | None = None
        if m.error is None:
            try:
                with self.ctx.db.transaction() as conn:
                    if self.health.append(record, now, conn=conn):
                        stored = replace(record, created_at=now)
                    self.state.heartbeat(JOB, now, conn=conn)
            except StorageUnavailable as exc:
                error = error or str(exc)
                report_storage_failure(self.runtime, "write")
                state, reason, latched = self.engine.state(HEALTH), self.engine.reason(HEALTH), self.latched()
        else:
            log.error("health evaluation without storage: %s", m.error)
        alerts = tuple(decision.find(ALERT_SURFACED))
        for alert in alerts:
            log.critical("%s", alert_text(alert))
        return HealthOutcome(decision, state, reason, latched, m.fact, stored, alerts, error)


__all__ = ["HealthJob", "HealthMeasure", "HealthOutcome", "alert_text"]
