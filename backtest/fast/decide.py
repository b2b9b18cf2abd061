"""The deciding half: cached features through the monitor's own deciding code, one settings variant.

`run_fast(task)` boots the monitor exactly as the exact path does (`service.start`, the same
scheduler, clock and policy engine, a scratch SQLite database) and swaps only the measuring parts:

- the snapshot job becomes `FeatureSnapshots`: it stores the recorded `ingest_runs` row of the
  minute and moves the clock to where the real run left it (retries and latency take simulated time);
- the signal job becomes `FeatureSignalJob`, the real `SignalJob` (lock checks, `dirty_check`,
  `signal_qa` / `signal_scored` / `signal_candidate`, the commit, the alert machines and `AlertWriter`
  with its cooldown and daily-cap reads) whose `measure` takes the recorded counts and recomputes
  only CAS (capped by this variant's `exit_fire_pct`) and the trend (from this run's committed rows)
  with `formulas.py`, and whose dirty counts come from the features.

Health (after each run, every minute at :30, inside every lock check), the dashboard's health reads
and the universe job run unchanged. Nothing here judges anything.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backtest.exact import _SCRATCH, Outcome, Task, boot, outcome_of, play, quiet_logs, window, workspace
from backtest.fast.features import Features, ensure, load
from backtest.history.dataset import DAY_MS, open_history
from hlcore.errors import BadInput, Problem
from hlcore.jobs.monitor import formulas as f
from hlcore.jobs.monitor.signals import Measured, SignalJob
from hlcore.jobs.monitor.universe import log as universe_log
from hlcore.storage.db import Database
from hlcore.storage.monitor import IngestRuns, MonitorState
from hlcore.storage.monitor_signals import SignalStore
from replay.runner import DrillClock


class FeatureSnapshots:
    """The snapshot job's effect on what the deciding half reads: the minute's `ingest_runs` row."""

    def __init__(self, db: Database, clock: DrillClock, features: Features):
        self.runs, self.state, self.clock, self.features = IngestRuns(db), MonitorState(db), clock, features

    def run(self, slot_ts: int) -> None:
        rec = self.features.runs.get(slot_ts)
        if rec is None:
            raise BadInput(Problem(str(self.features.path), str(slot_ts), "no snapshot run in the features "
                                   "(the cache entry does not cover this window; delete it to rebuild)"))
        self.state.ensure_first_start(self.clock.now_ms())  # as the real run does before fetching
        self.clock.set(max(rec.end_ms, self.clock.now_ms()))
        self.runs.insert(rec.run, rec.run.created_at if rec.run.created_at is not None else rec.end_ms)


class FeatureStore(SignalStore):
    """The signal store with the measured dirty counts read from the features (no snapshot rows here)."""

    def __init__(self, db: Database, features: Features):
        super().__init__(db)
        self.features = features

    def dirty_counts(self, asset: str, after_ms: int, up_to_ms: int, *, conn: Any = None) -> tuple[int, int]:
        x = self.features.slots[(up_to_ms, asset)]
        return x.dirty, x.dirty_total


class FeatureSignalJob(SignalJob):
    """The real signal job; only `measure` reads the features (CAS and trend recomputed per variant)."""

    def __init__(self, ctx: Any, clock: Any, features: Features):
        super().__init__(ctx, clock)
        self.features = features
        self.store = FeatureStore(ctx.db, features)

    def measure(self, asset: str, slot_ts: int) -> Measured:
        cfg = self.cfg
        x = self.features.slots.get((slot_ts, asset))
        if x is None:
            raise BadInput(Problem(str(self.features.path), f"{slot_ts} {asset}", "no signal slot in the features"))
        counts = f.Counts(x.add_long, x.add_short, x.reducers, x.flat)
        cas = f.alignment(counts, x.ec, exit_fire_pct=cfg.exit_fire_pct, cas_cap=cfg.cas_cap)
        past = [slot_ts - k * cfg.interval_ms for k in range(1, cfg.trend_periods + 1)]
        stored = self.store.stored_scores(asset, past)
        trend = f.trend(cas, [stored.get(ts, (None, None))[0] for ts in past], band=cfg.trend_band,
                        periods=cfg.trend_periods)
        return Measured(
            asset=asset, expected=x.expected, total=x.total, missing_pct=x.missing_pct, usable_runs=x.usable_runs,
            dirty_count=x.dirty_count, dirty_rate_pct=x.dirty_rate_pct, counts=counts, ec=x.ec, cas=cas, trend=trend,
            previous_trend=stored.get(past[0], (None, None))[1], di=x.di,
            positioning=f.Positioning(x.net_szi, x.long_count, x.short_count, x.flat_count, x.long_pct, x.short_pct,
                                      x.flat_pct, x.top10_share_pct))


def run_fast(task: Task, progress: Callable[[int, int], None] | None = None, cache: Path | None = None,
             features: Features | None = None) -> Outcome:
    """The task's outcome tables from cached features (built first if missing) and the deciding code."""
    history = open_history(Path(task.history))
    since, until = window(task, history)
    with tempfile.TemporaryDirectory(prefix="hlcore-fast-", dir=_SCRATCH) as tmp:
        ws = workspace(task, Path(tmp))
        if features is None:
            folder, _ = ensure(task, ws.settings, progress, cache)
            features = load(folder)
        with quiet_logs() as tap:
            outcome = _decide(task, ws, history, since, until, features, progress)
    # the measuring half's log lines, but not the universe job's: it runs again here
    logs = {k: n for k, n in features.logs.items() if not k.startswith(universe_log.name + " ")}
    for name, n in tap.counts.items():
        logs[name] = logs.get(name, 0) + n
    outcome.logs = dict(sorted(logs.items()))
    return outcome


def _decide(task: Task, ws: Any, history: Any, since: int, until: int, features: Features,
            progress: Callable[[int, int], None] | None) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="hlcore-fast-db-", dir=_SCRATCH) as tmp:
        clock = DrillClock(since)
        ctx, jobs, scheduler, _feed = boot(ws, history, clock, Path(tmp) / "monitor.db")  # the universe job reads it
        jobs.snapshots = FeatureSnapshots(ctx.db, clock, features)  # type: ignore[assignment]
        jobs.signals = FeatureSignalJob(ctx, clock, features)
        try:
            play(scheduler, clock, since, until, DAY_MS // 4, progress)
            outcome = outcome_of(task, ws, history, ctx.db, since, until, features.feed)
            outcome.path = "fast"
        finally:
            ctx.close()
    return outcome
