"""The universe job: refresh the top-N leaderboard wallets (spec/monitor.md §3.3, §4.1, §5).

It fetches and ranks the leaderboard, measures it (`universe_refresh`: counts, rank and id
integrity, churn against the current universe) and asks the policy, whose `universe_verdict`
effect (status, error, warning) is written as-is to exactly one `wallet_universe_runs` row. A
verdict without an error replaces the current universe, in the same transaction as the run, its
members and the policy's streak state; any other verdict keeps the last good universe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hlcore.adapters.http import VenueError
from hlcore.adapters.hyperliquid.client import HyperliquidClient
from hlcore.adapters.hyperliquid.parse import LeaderboardParse, LeaderboardRow
from hlcore.app import AppContext
from hlcore.engine.clock import Clock
from hlcore.engine.decision import Decision, Effect
from hlcore.jobs.monitor import UNIVERSE, UNIVERSE_VERDICT, report_storage_failure, verdict, with_retries
from hlcore.storage.db import StorageUnavailable
from hlcore.storage.monitor import MonitorKey, MonitorState, Universe, UniverseMember, UniverseRun, heartbeat_key

log = logging.getLogger("hlcore.monitor.universe")

JOB = "universe"
SOURCE = "stats-data"  # wallet_universe_runs.source (§6): the leaderboard host, not policy
CHURN_STREAK_VAR = "churn_streak"  # universe machine vars (machines/universe.yaml)
FAIL_STREAK_VAR = "fail_streak"
HOUR_MS = 3_600_000
MINUTE_MS = 60_000


@dataclass(frozen=True)
class UniverseMeasure:
    """What one refresh attempt measured, before the policy judged it (§4.1)."""

    fetch_ok: bool
    schema_ok: bool
    n_requested: int
    n_received: int
    n_invalid: int
    n_kept: int
    ranks_ok: bool
    ids_ok: bool
    has_prior: bool
    entered: int
    exited: int
    churn_pct: float
    fetch_error: str | None = None

    def fact(self) -> dict[str, Any]:
        """Fields of the `universe_refresh` fact (rules/facts.yaml)."""
        return {"fetch_ok": self.fetch_ok, "schema_ok": self.schema_ok, "n_requested": self.n_requested,
                "n_received": self.n_received, "n_kept": self.n_kept, "ranks_ok": self.ranks_ok,
                "ids_ok": self.ids_ok, "has_prior": self.has_prior, "churn_pct": self.churn_pct}


@dataclass(frozen=True)
class UniverseOutcome:
    """One attempt: the run row written (None if storage failed), whether it replaced the current
    universe, the policy's verdict and decision, and when the next attempt is due."""

    run: UniverseRun | None
    applied: bool
    measure: UniverseMeasure
    verdict: Effect | None
    decision: Decision | None
    next_attempt_ts: int
    storage_error: str | None = None

    @property
    def warning(self) -> str | None:
        return None if self.verdict is None else self.verdict.data.get("warning")


def rank(rows: tuple[LeaderboardRow, ...] | list[LeaderboardRow], size: int) -> list[UniverseMember]:
    """Top `size` by month pnl desc, ties by wallet_id asc, ranks 1..n (§4.1)."""
    ordered = sorted(rows, key=lambda r: (-Decimal(r.pnl), r.wallet_id))
    return [UniverseMember(r.wallet_id, i, r.pnl, r.roi, r.account_value, r.display_name)
            for i, r in enumerate(ordered[:size], start=1)]


def measure(parsed: LeaderboardParse | VenueError | None, prior_ids: list[str], size: int
            ) -> tuple[UniverseMeasure, list[UniverseMember]]:
    """Measure a fetched leaderboard against the current universe: U1–U5 inputs, no judgement.

    `churn_pct` = (entered + exited) / n_requested × 100; the first refresh has no prior and the
    policy skips churn for it (it is still measured against the empty set)."""
    has_prior = bool(prior_ids)
    if parsed is None or isinstance(parsed, VenueError):
        error = None if parsed is None else f"{parsed.code}: {parsed.message}"
        return UniverseMeasure(False, False, size, 0, 0, 0, True, True, has_prior, 0, 0, 0.0, error), []
    if not parsed.schema_ok:
        return UniverseMeasure(True, False, size, 0, parsed.n_invalid, 0, True, True, has_prior, 0, 0, 0.0), []
    members = rank(parsed.rows, size)
    ids = [r.wallet_id for r in parsed.rows]
    ids_ok = all(ids) and len(set(ids)) == len(ids)  # U4: no duplicate among the valid rows
    ranks = [m.rank for m in members]
    ranks_ok = ranks == list(range(1, len(members) + 1))  # U3: unique, contiguous, max = n_kept
    new, old = {m.wallet_id for m in members}, set(prior_ids)
    entered, exited = len(new - old), len(old - new)
    churn = (entered + exited) / size * 100 if size else 0.0
    return UniverseMeasure(True, True, size, parsed.n_received, parsed.n_invalid, min(parsed.n_received, size),
                           ranks_ok, ids_ok, has_prior, entered, exited, churn), members


class UniverseJob:
    """Leaderboard refresh (§4.1). `run()` makes one attempt; `tick(at)` runs it when due and
    returns the wait until the next attempt (6 h after success, 15 min after failure; settings)."""

    def __init__(self, ctx: AppContext, client: HyperliquidClient, clock: Clock):
        self.ctx = ctx
        self.client = client
        self.clock = clock
        self.runtime = ctx.runtime
        self.engine = ctx.runtime.engine
        s = ctx.settings
        self.url = s.get("monitor.universe.leaderboard_url")
        self.window = s.get("monitor.universe.window")
        self.size = int(s.get("monitor.universe.size"))
        self.refresh_ms = int(float(s.get("monitor.universe.refresh_hours")) * HOUR_MS)
        self.retry_ms = int(float(s.get("monitor.universe.retry_minutes")) * MINUTE_MS)
        # The spec's leaderboard retries (0.5/1.5/4 s) equal the snapshot ones; settings have one list.
        self.delays_sec = [float(d) for d in s.get("monitor.snapshots.retry_delays_sec")]
        self.universe = Universe(ctx.db)
        self.state = MonitorState(ctx.db)

    # ------------------------------------------------------------------ cadence
    def next_attempt_after(self, now_ms: int, applied: bool) -> int:
        """6 h after a success, 15 min after a failure (§5, hlcore choice; settings)."""
        return now_ms + (self.refresh_ms if applied else self.retry_ms)

    def due(self, now_ms: int, *, at_start: bool = False) -> bool:
        """Due when the stored next attempt has come; at start also when no refresh ever succeeded
        or the last success is at least `refresh_hours` old (§5)."""
        next_ts = self.state.universe_next_attempt_ts()
        if next_ts is None or now_ms >= next_ts:
            return True
        if at_start:
            last = self.universe.last_applied_run()
            return last is None or now_ms - int(last.as_of_ts or 0) >= self.refresh_ms
        return False

    def tick(self, at_ms: int) -> int:
        """Scheduler entry: run if due; return ms until the next attempt."""
        now = self.clock.now_ms()
        try:
            due = self.due(now)
        except StorageUnavailable:
            report_storage_failure(self.runtime, "read")
            return self.retry_ms
        if due:
            return max(0, self.run().next_attempt_ts - self.clock.now_ms())
        next_ts = self.state.universe_next_attempt_ts() or now
        return max(0, next_ts - now)

    # ------------------------------------------------------------------ one attempt
    def fetch(self) -> LeaderboardParse | VenueError | None:
        http = self.client.http
        attempts = with_retries(lambda: self.client.leaderboard(self.url, self.window), delays_sec=self.delays_sec,
                                jitter_ms=0, clock=self.clock, sleep=http.sleep, rng=http.rng)
        return attempts.result

    def run(self) -> UniverseOutcome:
        started = self.clock.now_ms()
        try:
            prior_ids = self.universe.current_ids()
        except StorageUnavailable as exc:
            report_storage_failure(self.runtime, "read")
            m, _ = measure(None, [], self.size)
            return UniverseOutcome(None, False, m, None, None, self.next_attempt_after(started, False), str(exc))
        parsed = self.fetch()
        m, members = measure(parsed, prior_ids, self.size)
        if m.fetch_error:
            log.warning("leaderboard fetch failed: %s", m.fetch_error)
        now = self.clock.now_ms()
        try:
            with self.ctx.db.transaction() as conn:
                decision = self.runtime.observe("universe_refresh", m.fact(), conn=conn)
                v = verdict(decision, UNIVERSE_VERDICT)
                error = v.data.get("error")
                applied = error is None
                run = UniverseRun(
                    run_id=f"universe-{started}", as_of_ts=started, status=str(v.data["status"]), source=SOURCE,
                    n_requested=m.n_requested, n_received=m.n_received, n_invalid=m.n_invalid,
                    entered_count=m.entered, exited_count=m.exited,
                    churn_warning_count=int(self.engine.var(UNIVERSE, CHURN_STREAK_VAR) or 0),
                    churn_pct=m.churn_pct if m.has_prior and m.fetch_ok and m.schema_ok else None,
                    duration_ms=now - started, error=error, created_at=now,
                )
                self.universe.record_run(run, members if applied else None, now, conn=conn)
                next_ts = self.next_attempt_after(now, applied)
                self.state.set_many({
                    MonitorKey.UNIVERSE_NEXT_ATTEMPT_TS: next_ts,
                    MonitorKey.UNIVERSE_FAIL_STREAK: int(self.engine.var(UNIVERSE, FAIL_STREAK_VAR) or 0),
                    heartbeat_key(JOB): now,
                }, now, conn=conn)
        except StorageUnavailable as exc:
            report_storage_failure(self.runtime, "write")
            return UniverseOutcome(None, False, m, None, None, self.next_attempt_after(now, False), str(exc))
        if not applied:
            log.warning("universe refresh %s: %s (last good universe kept)", run.status, error)
        return UniverseOutcome(run, applied, m, v, decision, next_ts)


__all__ = ["UniverseJob", "UniverseMeasure", "UniverseOutcome", "measure", "rank"]
