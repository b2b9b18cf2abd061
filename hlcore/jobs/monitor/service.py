"""The monitor process: its jobs on the shared scheduler at the cadences of monitor §5.

universe (when due) · snapshots every minute at second 0 · health after each run and every
minute at second 30 · signals every 5 minutes once the slot's grace has passed (alert rows are
written by the signal cycle) · dashboard view every 30 s. The same `start()` serves
`hlcore live --app monitor [--job J]` with the system clock and replay with a scripted one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hlcore.adapters.hyperliquid.client import HyperliquidClient
from hlcore.app import AppContext, open_locked
from hlcore.engine.scheduler import Job, Scheduler
from hlcore.errors import BadInput
from hlcore.jobs.copytrade.service import Wiring
from hlcore.jobs.monitor import build_client, observe
from hlcore.jobs.monitor.alerts import AlertWriter
from hlcore.jobs.monitor.health import HealthJob
from hlcore.jobs.monitor.signals import SignalJob
from hlcore.jobs.monitor.snapshots import FanOut, SnapshotJob
from hlcore.jobs.monitor.universe import UniverseJob
from hlcore.storage.db import StorageUnavailable
from hlcore.storage.monitor import MonitorState, heartbeat_key
from hlcore.storage.monitor_signals import SignalStore
from hlcore.workspace import Workspace

log = logging.getLogger("hlcore.monitor")

JOBS = ("universe", "snapshots", "health", "signals", "dashboard")
MINUTE_MS = 60_000


@dataclass
class MonitorJobs:
    ctx: AppContext
    universe: UniverseJob
    snapshots: SnapshotJob
    health: HealthJob
    signals: SignalJob
    alerts: AlertWriter
    runs: dict[str, int] = field(default_factory=dict)

    def _count(self, name: str) -> None:
        self.runs[name] = self.runs.get(name, 0) + 1

    def snapshot_cycle(self, at_ms: int) -> None:
        """One snapshot run for slot `at_ms`, then a health evaluation (monitor §5 "after each run")."""
        self.ctx.runtime.sync()  # adopt an operator halt/resume
        self.snapshots.run(at_ms)
        self._count("snapshots")
        self.health_cycle(at_ms)

    def health_cycle(self, at_ms: int) -> None:
        self.ctx.runtime.sync()  # adopt an operator halt/resume
        outcome = self.health.run()
        if outcome.alerts:
            self.alerts.write([outcome.decision])
        self._count("health")

    def signal_cycle(self, slot_ts: int) -> None:
        self.ctx.runtime.sync()  # adopt an operator halt/resume
        self.signals.run(slot_ts)  # the cycle also delivers its alerts (monitor §5: after each commit)
        try:
            MonitorState(self.ctx.db).heartbeat("alerts", self.ctx.clock.now_ms())
        except StorageUnavailable as exc:  # the cycle reported the outage; the next heartbeat retries
            log.error("alerts heartbeat not written: %s", exc)
        self._count("signals")

    def signals_ran_before(self) -> bool:
        """The signal job has a heartbeat: this start is a restart (§5 restart rule)."""
        try:
            return MonitorState(self.ctx.db).get_int(heartbeat_key("signals")) is not None
        except StorageUnavailable:
            return False

    def dashboard_cycle(self, at_ms: int) -> None:
        """Re-derive the dashboard view (monitor §3.5) from health at this instant (§3.1
        `health(now)`, whichever jobs are alive) and the latest signal's age."""
        self.ctx.runtime.sync()  # adopt an operator halt/resume
        now = self.ctx.clock.now_ms()
        health = self.health.meter.observe_now(self.ctx.runtime, now)
        try:
            with self.ctx.db.transaction() as conn:
                self.ctx.runtime.persist(health, conn=conn)
                self.alerts.write([health], conn=conn)  # System Stale, if this read opened the episode
        except StorageUnavailable as exc:  # the decision stands in memory; the next good write saves it
            log.error("dashboard health evaluation not written: %s", exc)
        store = SignalStore(self.ctx.db)
        try:
            stamps = [t for t in store.latest_signal_ts_by_asset(self.ctx.settings.get("monitor.assets")).values()
                      if t is not None]
        except StorageUnavailable as exc:  # storage unreachable: the policy's halt view (§3.5)
            log.error("dashboard refresh without storage: %s", exc)
            observe(self.ctx.runtime, "dashboard_refresh", {"signal_age_ms": None, "storage_ok": False})
            self._count("dashboard")
            return
        latest = max(stamps) if stamps else None
        observe(self.ctx.runtime, "dashboard_refresh", {"signal_age_ms": None if latest is None else now - latest,
                                                        "storage_ok": True})
        try:
            MonitorState(self.ctx.db).heartbeat("dashboard", now)
        except StorageUnavailable as exc:
            log.error("dashboard heartbeat not written: %s", exc)
        self._count("dashboard")


def build(ctx: AppContext, wiring: Wiring, client: HyperliquidClient | None = None,
          fan_out: FanOut | None = None) -> MonitorJobs:
    """The monitor's jobs on one Hyperliquid client: built from settings over the wiring's session,
    or `client` when given (a backtest feeds recorded observations through the client's methods).
    `fan_out`: how the snapshot job's workers run (default threads; a drill or backtest runs them on
    its own thread, see `replay.runner.SideBySide`)."""
    s = ctx.settings
    client = client or build_client(s.get("monitor.snapshots.info_url"),
                          timeout_sec=float(s.get("monitor.snapshots.request_timeout_sec")), clock=wiring.clock,
                          sleep=wiring.sleep, rng=wiring.rng, session=wiring.session_factory("hyperliquid"),
                          weight_budget_per_min=int(s.get("monitor.snapshots.weight_budget_per_min"))
                          * int(s.get("monitor.snapshots.weight_headroom_pct")) // 100)  # stay inside the headroom
    return MonitorJobs(ctx, UniverseJob(ctx, client, wiring.clock), SnapshotJob(ctx, client, wiring.clock, fan_out),
                       HealthJob(ctx, wiring.clock), SignalJob(ctx, wiring.clock), AlertWriter(ctx))


def _add_signals(scheduler: Scheduler, jobs: MonitorJobs, every_ms: int, grace_ms: int) -> Job:
    """Slot T runs at T + grace (§4.5 start). A restarted job (one that has run before) first
    computes the latest slot whose grace has passed if now < T + interval (§5); the job never
    recomputes a slot that has rows."""

    def tick(at_ms: int) -> int:
        slot = (at_ms - grace_ms) - (at_ms - grace_ms) % every_ms
        jobs.signal_cycle(slot)
        return slot + every_ms + grace_ms - at_ms  # back on the slot cadence after a catch-up run

    job = scheduler.add("signals", every_ms, tick, align_ms=every_ms, offset_ms=grace_ms)
    now = jobs.ctx.clock.now_ms()
    latest = (now - grace_ms) - (now - grace_ms) % every_ms
    if job.next_at > now and now < latest + every_ms and jobs.signals_ran_before():
        job.next_at = now
    return job


def start(ws: Workspace, wiring: Wiring, *, only: str | None = None, db_url: str | None = None,
          allow_create_db: bool = False,
          client: HyperliquidClient | None = None,
          fan_out: FanOut | None = None) -> tuple[AppContext, MonitorJobs, Scheduler]:
    """Open the monitor database under its jobs' single-instance locks (one writer per job, monitor §5:
    every job's when all run here, so a lone `--job` of any of them is refused) and put
    the jobs (or one, `only`) on a scheduler; a database is created only with `allow_create_db`
    (`client`, `fan_out`: see `build`)."""
    if only is not None and only not in JOBS:
        raise BadInput(f"--job: expected one of {', '.join(JOBS)}, got '{only}'")
    ctx = open_locked(ws, wiring.clock, "monitor", command=f"live --app monitor --job {only or 'all'}",
                      allow_create=allow_create_db, url=db_url,
                      scopes=(only,) if only is not None else JOBS)  # each job single-instance (§5)
    jobs = build(ctx, wiring, client, fan_out)
    s = ws.settings
    scheduler = Scheduler(wiring.clock)
    interval = int(s.get("monitor.snapshots.interval_sec")) * 1000
    signal_every = int(s.get("monitor.signals.interval_sec")) * 1000
    grace = int(s.get("monitor.signals.start_grace_sec")) * 1000
    plan: list[tuple[str, Callable[[], Any]]] = [
        ("universe", lambda: scheduler.add("universe", 15 * MINUTE_MS, jobs.universe.tick)),
        ("snapshots", lambda: scheduler.add("snapshots", interval, jobs.snapshot_cycle, align_ms=interval)),
        ("health", lambda: scheduler.add("health", interval, jobs.health_cycle, align_ms=interval,
                                         offset_ms=int(s.get("monitor.health.eval_second")) * 1000)),
        ("signals", lambda: _add_signals(scheduler, jobs, signal_every, grace)),
        ("dashboard", lambda: scheduler.add("dashboard", int(s.get("monitor.dashboard.refresh_sec")) * 1000,
                                            jobs.dashboard_cycle)),
    ]
    for name, add in plan:
        if only is None or only == name:
            add()
    return ctx, jobs, scheduler
