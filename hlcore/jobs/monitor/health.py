"""Health (spec/monitor.md §3.1, §4.3, §5, S7): one verdict, computed at the instant asked.

`health_at(db, policy, settings, now)` is the read-only `health(now)` of §3.1: it measures the
stored ingest runs at `now` and lets the policy's own health table and machine (restored from
storage: the latch, a manual halt, the dirty machines) judge them, writing nothing. Readers that
are not a job (`ops monitor-status`, `ops status`, a dashboard) call it; a job that gates on health
(signal lock, alert gate, signal rows, dashboard view) calls `HealthMeter.observe_now` first, which
feeds the same measurement to its own engine, so no reader trusts a verdict older than the data,
whichever processes are alive.

The health job itself:

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
from hlcore.engine.clock import Clock, ManualClock
from hlcore.engine.decision import Decision, Effect
from hlcore.engine.runtime import Runtime
from hlcore.jobs.monitor import (
    ALERT_SURFACED,
    HEALTH,
    SIGNALS_GATE,
    RunStatuses,
    observe,
    report_storage_failure,
)
from hlcore.policy.model import Policy
from hlcore.storage.db import Database, StorageUnavailable
from hlcore.storage.monitor import (
    HealthRecord,
    IngestHealth,
    IngestRun,
    IngestRuns,
    MonitorState,
)

log = logging.getLogger("hlcore.monitor.health")

JOB = "health"
EVALUATED = "health_evaluated"  # the fact the policy's health table judges
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


class HealthMeter:
    """Measures the `health_evaluated` fact from stored runs at any instant (one code path for the
    health job, the jobs that gate on health and the read-only `health_at`)."""

    def __init__(self, db: Database, policy: Policy, settings: Any):
        self.db = db
        self.policy = policy
        self.interval_ms = int(float(settings.get("monitor.snapshots.interval_sec")) * 1000)
        self.nonnull_ok_pct = float(settings.get("monitor.health.nonnull_ok_pct"))
        self.statuses = RunStatuses.from_policy(policy)
        self.runs = IngestRuns(db)
        self._streak: tuple[int, int, int] | None = None  # (latest run, clean streak, its oldest run)
        self.state = MonitorState(db)

    def is_clean(self, run: IngestRun) -> bool:
        """§2 clean run: the full status (success) and every asset non-null ≥ `nonnull_ok_pct`."""
        values = list(run.nonnull_pct.values())
        return (run.status == self.statuses.full and bool(values)
                and all(v is not None and v >= self.nonnull_ok_pct for v in values))

    def clean_streak(self, latest: IngestRun | None, conn: Any = None) -> int:
        """Consecutive clean, minute-adjacent runs ending at the latest run; a missing minute (or
        any non-clean run) ends it."""
        if latest is None or not self.is_clean(latest):
            return 0
        if self._streak is not None:  # the last streak counted, extended by the next minute's run
            end_ts, streak, start_ts = self._streak
            if latest.snapshot_ts in (end_ts, end_ts + self.interval_ms) and self.runs.exists(start_ts, conn=conn):
                streak += latest.snapshot_ts != end_ts
                self._streak = (latest.snapshot_ts, streak, start_ts)
                return streak
        streak, newer, cursor = 0, None, latest.snapshot_ts
        while True:
            page = self.runs.newest_first(at_or_before=cursor, limit=_PAGE, conn=conn)
            for run in page:
                if newer is not None and run.snapshot_ts == newer.snapshot_ts:
                    continue  # the page boundary repeats the last run read
                if not self.is_clean(run) or (newer is not None and newer.snapshot_ts - run.snapshot_ts
                                              != self.interval_ms):
                    return self._counted(latest, streak, newer)
                streak, newer = streak + 1, run
            if len(page) < _PAGE or newer is None:
                return self._counted(latest, streak, newer)
            cursor = newer.snapshot_ts

    def _counted(self, latest: IngestRun, streak: int, oldest: IngestRun | None) -> int:
        """Keep the streak for the next evaluation (issue 12: each minute adds one run, so the
        streak is not re-read from its start every time). Runs are written once per slot and
        deleted only oldest first (retention), so the streak stands while its oldest run exists."""
        self._streak = None if oldest is None else (latest.snapshot_ts, streak, oldest.snapshot_ts)
        return streak

    def measure(self, now_ms: int, *, record_first_start: bool = True, conn: Any = None) -> HealthMeasure:
        """The `health_evaluated` fact from stored runs; unreadable storage is `storage_ok=false`.
        A read-only caller (`record_first_start=False`) never writes the first-start stamp; with
        none stored its age reference is 0 (a fresh install is NO_DATA either way)."""
        try:
            if record_first_start:
                first_start = self.state.ensure_first_start(now_ms, conn=conn)
            else:
                first_start = self.state.first_start_ts(conn=conn) or now_ms
            latest = self.runs.latest(at_or_before=now_ms, conn=conn)
            usable = latest if latest is None or latest.status in self.statuses.usable else \
                self.runs.latest(at_or_before=now_ms, statuses=self.statuses.usable, conn=conn)
            streak = self.clean_streak(latest, conn)
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

    def observe_now(self, runtime: Runtime, now_ms: int, *, conn: Any = None) -> Decision:
        """Bring `runtime`'s health machine to the verdict at `now_ms` before a job reads it (the
        decision is not persisted: the caller persists it with its own rows)."""
        return runtime.observe(EVALUATED, dict(self.measure(now_ms, conn=conn).fact), persist=False)


@dataclass(frozen=True)
class HealthVerdict:
    """`health(now)`: the state and reason the policy gives the stored data at `at_ms`.

    Attributes:
        state, reason: the health machine after evaluating the data at `at_ms`.
        latched: the state shuts the signal gate (effective STALE: the latch).
        latched_since, manual_halt: the machine's variables after the evaluation.
        facts: the measured `health_evaluated` fact (age_ms, coverage_pct, clean_streak, ...).
        stored_state, stored_reason: what the last persisted evaluation said (for display only).
        error: storage could not be read (the verdict is then the policy's storage-outage one).
    """

    at_ms: int
    state: str
    reason: str | None
    latched: bool
    latched_since: int | None
    manual_halt: bool
    facts: Mapping[str, Any]
    stored_state: str | None
    stored_reason: str | None
    error: str | None = None

    @property
    def age_ms(self) -> int | None:
        age = self.facts.get("age_ms")
        return None if age is None else int(age)


def gate_shut(policy: Policy, state: str) -> bool:
    """True while `state` shuts the signal gate (the latch)."""
    return SIGNALS_GATE not in policy.machines[HEALTH].states[state].allows


def health_at(db: Database, policy: Policy, settings: Any, now_ms: int) -> HealthVerdict:
    """`health(now)` (monitor §3.1), read-only: evaluate the stored runs at `now_ms` with the policy's
    health table on a scratch engine restored from storage; nothing is written. Raises
    `StorageUnavailable` only if the machine states cannot be restored."""
    runtime = Runtime(db, policy, settings, ManualClock(now_ms))
    runtime.start(persist=False)
    engine = runtime.engine
    stored_state, stored_reason = engine.state(HEALTH), engine.reason(HEALTH)
    m = HealthMeter(db, policy, settings).measure(now_ms, record_first_start=False)
    engine.observe(EVALUATED, dict(m.fact))
    state = engine.state(HEALTH)
    return HealthVerdict(at_ms=now_ms, state=state, reason=engine.reason(HEALTH), latched=gate_shut(policy, state),
                         latched_since=engine.var(HEALTH, "latched_since"),
                         manual_halt=bool(engine.var(HEALTH, "manual_halt")), facts=dict(m.fact),
                         stored_state=stored_state, stored_reason=stored_reason, error=m.error)


class HealthJob:
    """`run(now)` after each snapshot run and every minute at second 30 (§5)."""

    def __init__(self, ctx: AppContext, clock: Clock):
        self.ctx = ctx
        self.clock = clock
        self.runtime = ctx.runtime
        self.engine = ctx.runtime.engine
        self.meter = HealthMeter(ctx.db, ctx.workspace.policy, ctx.settings)
        self.health = IngestHealth(ctx.db)
        self.state = MonitorState(ctx.db)

    def measure(self, now_ms: int) -> HealthMeasure:
        return self.meter.measure(now_ms)

    # ------------------------------------------------------------------ evaluate
    def latched(self) -> bool:
        """True while the `health` state shuts the signal gate (effective STALE: the latch)."""
        return gate_shut(self.ctx.workspace.policy, self.engine.state(HEALTH))

    def run(self, now_ms: int | None = None) -> HealthOutcome:
        now = self.clock.now_ms() if now_ms is None else now_ms
        m = self.measure(now)
        decision, failure = observe(self.runtime, EVALUATED, dict(m.fact))
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


__all__ = ["HealthJob", "HealthMeasure", "HealthMeter", "HealthOutcome", "HealthVerdict", "alert_text", "gate_shut",
           "health_at"]
