"""The snapshot job: one cycle per UTC minute over the current universe (spec/monitor.md §4.2, §4.4, §5).

Per slot `T` it asks `clearinghouseState` once per universe wallet (bounded concurrency, retries
only before the cycle deadline on the injected clock), measures the cycle (`snapshot_run`: coverage,
alignment, storage and integrity outcome) and stores the policy's `run_verdict` (status, error)
with the run's counts in one `ingest_runs` row, next to three rows per wallet. It then flags
transient collapses (S6) without altering any raw value. A storage failure is reported as
`storage_failed{app: monitor}`; nothing is backfilled.

`check_dirty_rates(slot)` reports each asset's dirty rate (`dirty_check`); `run()` does not call
it, because the signal job reports that fact every slot, locked or not, and a second reporter
would count every cycle twice in the sustained-dirty streak.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError

from hlcore.adapters.http import VenueError
from hlcore.adapters.hyperliquid.client import HyperliquidClient
from hlcore.adapters.hyperliquid.parse import PositionRow
from hlcore.app import AppContext
from hlcore.engine.clock import Clock
from hlcore.engine.decision import Decision, Effect
from hlcore.jobs.monitor import (
    MINUTE_MS,
    RUN_VERDICT,
    RunStatuses,
    observe,
    report_storage_failure,
    verdict,
    with_retries,
)
from hlcore.storage.db import StorageUnavailable
from hlcore.storage.monitor import (
    IngestRun,
    IngestRuns,
    MonitorKey,
    MonitorState,
    SnapshotRow,
    Snapshots,
    Universe,
    heartbeat_key,
)

log = logging.getLogger("hlcore.monitor.snapshots")

JOB = "snapshots"
TRANSIENT_COLLAPSE = "transient_collapse"  # dirty_reason and anomaly_type of S6 (§4.4, §6)


# --------------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WalletResult:
    """One wallet's outcome in a cycle: its positions, or why it failed."""

    wallet_id: str
    positions: Mapping[str, PositionRow] | None
    error: str | None = None
    attempts: int = 0
    rate_limited: int = 0

    @property
    def ok(self) -> bool:
        return self.positions is not None


@dataclass(frozen=True)
class DirtyMark:
    """A t1 row flagged by S6, with the three sizes that convicted it."""

    snapshot_ts: int
    wallet_id: str
    asset: str
    szi_t0: float | None
    szi_t1: float | None
    szi_t2: float | None


@dataclass(frozen=True)
class SnapshotOutcome:
    """One cycle. `run` is the stored `ingest_runs` row (None if storage refused it); `skipped` means
    the slot already had a run and nothing was done (runs are once per slot, never backfilled)."""

    snapshot_ts: int
    run: IngestRun | None
    verdict: Effect | None
    decision: Decision | None
    facts: Mapping[str, Any]
    wallets: tuple[WalletResult, ...] = ()
    dirty: tuple[DirtyMark, ...] = ()
    storage_error: str | None = None
    skipped: bool = False
    next_concurrency: int | None = None

    @property
    def status(self) -> str | None:
        return None if self.verdict is None else self.verdict.data.get("status")

    @property
    def error(self) -> str | None:
        return None if self.verdict is None else self.verdict.data.get("error")


def is_transient_collapse(szi_t0: float | None, szi_t1: float | None, szi_t2: float | None, *,
                          epsilon_abs: float, collapse_ratio: float, recovery_ratio: float) -> bool:
    """S6 (§4.4): a collapse at t1 (from a real position at t0 to NULL or < collapse_ratio of it)
    followed by a recovery at t2 (> recovery_ratio of t0). A collapse without recovery is a real
    close or liquidation, never dirty."""
    if szi_t0 is None or abs(szi_t0) <= epsilon_abs:
        return False
    collapsed = szi_t1 is None or abs(szi_t1) < collapse_ratio * abs(szi_t0)
    recovered = szi_t2 is not None and abs(szi_t2) > recovery_ratio * abs(szi_t0)
    return collapsed and recovered


def wallet_rows(result: WalletResult, assets: Sequence[str]) -> list[SnapshotRow]:
    """Three rows per wallet (§4.2 Rows): a failed wallet gets explicit NULL sizes; an absent
    position is an explicit zero (the parser's flat row); an unreadable one a NULL size."""
    if result.positions is None:
        return [SnapshotRow(result.wallet_id, asset, None) for asset in assets]
    rows = []
    for asset in assets:
        p = result.positions.get(asset)
        if p is None:
            rows.append(SnapshotRow(result.wallet_id, asset, None))
            continue
        rows.append(SnapshotRow(result.wallet_id, asset, p.szi, p.entry_px, p.liquidation_px, p.leverage,
                                p.margin_used))
    return rows


# --------------------------------------------------------------------------------------------------
# fetching side by side (wiring, like the clock and the transport)
# --------------------------------------------------------------------------------------------------


class FanOut(Protocol):
    """How one cycle's wallets are fetched side by side by up to `workers` workers; results in the
    order of `wallets`. Wiring, like the clock: live fetches on threads; a drill or backtest, whose
    client answers in-process, runs the same fetches on its own thread (`replay.runner.SideBySide`)."""

    def __call__(self, fetch: Callable[[str], WalletResult], wallets: Sequence[str],
                 workers: int) -> list[WalletResult]: ...


class ThreadFanOut:
    """Worker threads, kept across cycles (a pool per worker count: starting threads every cycle cost
    more than the cycle). On an error it still waits for the cycle's running fetches, as a pool's
    shutdown did: nothing of this cycle runs on after it ends."""

    def __init__(self) -> None:
        self._pools: dict[int, ThreadPoolExecutor] = {}  # their threads end with the process

    def __call__(self, fetch: Callable[[str], WalletResult], wallets: Sequence[str],
                 workers: int) -> list[WalletResult]:
        pool = self._pools.get(workers)
        if pool is None:
            pool = self._pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hlcore-snapshot")
        futures = [pool.submit(fetch, w) for w in wallets]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()
            wait(futures)


# --------------------------------------------------------------------------------------------------
# the job
# --------------------------------------------------------------------------------------------------


class SnapshotJob:
    """Snapshot cycles (§4.2). `run(slot_ts)` is the scheduler entry (every minute at second 0).

    Wallets are fetched by up to `snapshot_concurrency` worker threads (stored in `system_state`;
    starts at `max_concurrency`, halves on a 429, +1 per clean run). With concurrency 1 the
    wallets are fetched in order on the calling thread, which replay and tests use for
    deterministic fault scripts; with more, `fan_out` (wiring: threads unless told otherwise) runs
    them side by side. An attempt never starts at or after the deadline and a retry is
    only made if its wait ends before it; a response arriving after the deadline counts as failed.
    """

    def __init__(self, ctx: AppContext, client: HyperliquidClient, clock: Clock, fan_out: FanOut | None = None):
        self.ctx = ctx
        self.client = client
        self.clock = clock
        self.runtime = ctx.runtime
        s = ctx.settings
        self.assets: list[str] = list(s.get("monitor.assets"))
        self.interval_ms = int(float(s.get("monitor.snapshots.interval_sec")) * 1000)
        self.max_concurrency = max(1, int(s.get("monitor.snapshots.max_concurrency")))
        self.delays_sec = [float(d) for d in s.get("monitor.snapshots.retry_delays_sec")]
        self.jitter_ms = float(s.get("monitor.snapshots.jitter_ms"))
        self.deadline_ms = int(float(s.get("monitor.snapshots.cycle_deadline_sec")) * 1000)
        self.collapse_ratio = float(s.get("monitor.dirty.collapse_ratio"))
        self.recovery_ratio = float(s.get("monitor.dirty.recovery_ratio"))
        self.epsilon_abs = {k: float(v) for k, v in s.get("monitor.signals.epsilon_abs").items()}
        self.signal_interval_ms = int(float(s.get("monitor.signals.interval_sec")) * 1000)
        self.nonnull_ok_pct = float(s.get("monitor.health.nonnull_ok_pct"))
        self.statuses = RunStatuses.from_policy(ctx.workspace.policy)
        self.universe = Universe(ctx.db)
        self.snapshots = Snapshots(ctx.db)
        self.runs = IngestRuns(ctx.db)
        self.state = MonitorState(ctx.db)
        self.fan_out: FanOut = fan_out or ThreadFanOut()

    # ------------------------------------------------------------------ fetch
    def fetch_one(self, wallet_id: str, deadline_ms: int) -> WalletResult:
        http = self.client.http
        attempts = with_retries(lambda: self.client.clearinghouse_state(wallet_id, self.assets),
                                delays_sec=self.delays_sec, jitter_ms=self.jitter_ms, clock=self.clock,
                                sleep=http.sleep, rng=http.rng, deadline_ms=deadline_ms)
        result = attempts.result
        if result is None:
            return WalletResult(wallet_id, None, "not started before the cycle deadline", 0, 0)
        if isinstance(result, VenueError):
            return WalletResult(wallet_id, None, f"{result.code}: {result.message}", attempts.attempts,
                                attempts.rate_limited)
        if self.clock.now_ms() > deadline_ms:
            return WalletResult(wallet_id, None, "unfinished at the cycle deadline", attempts.attempts,
                                attempts.rate_limited)
        return WalletResult(wallet_id, result, None, attempts.attempts, attempts.rate_limited)

    def fetch_all(self, wallets: Sequence[str], deadline_ms: int, concurrency: int) -> list[WalletResult]:
        """Every wallet once, results in universe order whatever the completion order."""
        if concurrency <= 1 or len(wallets) <= 1:
            return [self.fetch_one(w, deadline_ms) for w in wallets]
        return self.fan_out(lambda w: self.fetch_one(w, deadline_ms), wallets, concurrency)

    # ------------------------------------------------------------------ cycle
    def current_concurrency(self) -> int:
        stored = self.state.snapshot_concurrency()
        return self.max_concurrency if stored is None else min(self.max_concurrency, max(1, stored))

    def next_concurrency(self, used: int, rate_limited: int, clean: bool) -> int:
        """Halve on a 429 (min 1); +1 after a clean run, up to the maximum (§4.2 Transport)."""
        if rate_limited > 0:
            return max(1, used // 2)
        if clean:
            return min(self.max_concurrency, used + 1)
        return used

    def nonnull_pct(self, rows: Sequence[SnapshotRow], expected: int) -> dict[str, float | None]:
        """Per asset: rows with a non-NULL size ÷ wallets expected × 100 (§2); no rows → 0."""
        if not expected:
            return {asset: None for asset in self.assets}
        return {asset: sum(1 for r in rows if r.asset == asset and r.position_szi is not None) / expected * 100
                for asset in self.assets}

    def _decide(self, facts: dict[str, Any]) -> tuple[Decision, Effect]:
        # The snapshots table is a verdict with no machine: nothing to persist but the effect,
        # so a verdict is reached even while storage is down.
        decision, _ = observe(self.runtime, "snapshot_run", facts)
        return decision, verdict(decision, RUN_VERDICT)

    def run(self, slot_ts: int) -> SnapshotOutcome:
        started = self.clock.now_ms()
        try:
            if self.runs.exists(slot_ts):
                log.warning("snapshot slot %s already has a run; not run again", slot_ts)
                return SnapshotOutcome(slot_ts, self.runs.get(slot_ts), None, None, {}, skipped=True)
            self.state.ensure_first_start(started)
            wallets = self.universe.stalest_first()
            universe_run_id = self.universe.current_run_id()
            concurrency = self.current_concurrency()
        except StorageUnavailable as exc:
            return self._storage_down(slot_ts, exc, "read")

        aligned = slot_ts % MINUTE_MS == 0
        deadline = slot_ts + self.deadline_ms
        http = self.client.http
        http.deadline_ms = deadline  # no request waits for weight budget past the deadline
        try:
            results = self.fetch_all(wallets, deadline, concurrency) if aligned else []
        finally:
            http.deadline_ms = None
        succeeded = [r for r in results if r.ok]
        expected = len(wallets)
        rate_limited = sum(r.rate_limited for r in results)
        coverage = len(succeeded) / expected * 100 if expected else 0.0
        facts = {"aligned": aligned, "integrity_ok": True, "db_ok": True, "wallets_expected": expected,
                 "wallets_succeeded": len(succeeded), "coverage_pct": coverage, "rate_limited": rate_limited}
        decision, v = self._decide(facts)
        write_rows = v.data.get("error") is None  # a usable verdict: 0 successes never get here
        rows = [row for r in results for row in wallet_rows(r, self.assets)] if write_rows else []
        nonnull = self.nonnull_pct(rows, expected)
        status = str(v.data["status"])
        clean = status == self.statuses.full and all(p is not None and p >= self.nonnull_ok_pct
                                                     for p in nonnull.values())
        new_concurrency = self.next_concurrency(concurrency, rate_limited, clean)

        def record(verdict_effect: Effect, rows_to_write: list[SnapshotRow]) -> IngestRun:
            now = self.clock.now_ms()
            return IngestRun(
                run_id=f"ingest-{slot_ts}", snapshot_ts=slot_ts, status=str(verdict_effect.data["status"]),
                wallets_expected=expected, wallets_succeeded=len(succeeded), wallets_failed=expected - len(succeeded),
                rows_expected=expected * len(self.assets), rows_written=len(rows_to_write),
                coverage_pct=coverage, nonnull_pct=self.nonnull_pct(rows_to_write, expected), dirty_marked=0,
                concurrency=concurrency, rate_limited_count=rate_limited, universe_run_id=universe_run_id,
                duration_ms=now - started, error=verdict_effect.data.get("error"),
            )

        run = record(v, rows)
        marks: list[DirtyMark] = []
        try:
            with self.ctx.db.transaction() as conn:
                now = self.clock.now_ms()
                run = replace(run, created_at=now)
                self.runs.insert(run, now, conn=conn)
                if rows:
                    self.snapshots.upsert(slot_ts, rows, run.run_id, now, conn=conn)
                    marks = self.detect_dirty(slot_ts, now, conn=conn, current=rows)
                    if marks:
                        self.runs.set_dirty_marked(run.run_id, len(marks), conn=conn)
                        run = replace(run, dirty_marked=len(marks))
                self.state.set_many({MonitorKey.SNAPSHOT_CONCURRENCY: new_concurrency, heartbeat_key(JOB): now},
                                    now, conn=conn)
        except IntegrityError as exc:
            # S4: an unexpected key/constraint violation fails the run, rolled back (critical log).
            log.critical("snapshot run %s: integrity violation, rolled back: %s", slot_ts, exc.orig)
            facts = {**facts, "integrity_ok": False}
            decision, v = self._decide(facts)
            run = record(v, [])
            marks = []
            try:
                with self.ctx.db.transaction() as conn:
                    now = self.clock.now_ms()
                    run = replace(run, created_at=now)
                    self.runs.insert(run, now, conn=conn)
                    self.state.set_many({heartbeat_key(JOB): now}, now, conn=conn)
            except (IntegrityError, StorageUnavailable) as again:
                log.critical("snapshot run %s: the failed run could not be recorded: %s", slot_ts, again)
                return SnapshotOutcome(slot_ts, None, v, decision, facts, tuple(results), storage_error=str(again))
            return SnapshotOutcome(slot_ts, run, v, decision, facts, tuple(results))
        except StorageUnavailable as exc:
            return self._storage_down(slot_ts, exc, "write", facts=facts, results=results, record=record)

        return SnapshotOutcome(slot_ts, run, v, decision, facts, tuple(results), tuple(marks),
                               next_concurrency=new_concurrency)

    def _storage_down(self, slot_ts: int, exc: StorageUnavailable, operation: str, *,
                      facts: dict[str, Any] | None = None, results: Sequence[WalletResult] = (),
                      record: Callable[[Effect, list[SnapshotRow]], IngestRun] | None = None) -> SnapshotOutcome:
        """H6 and S3: report the outage, judge the run `db_ok=false`, and try to keep its failed row."""
        log.error("snapshot run %s: storage unavailable (%s): %s", slot_ts, operation, exc)
        report_storage_failure(self.runtime, operation)
        base = facts or {"aligned": slot_ts % MINUTE_MS == 0, "integrity_ok": True, "wallets_expected": 0,
                         "wallets_succeeded": 0, "coverage_pct": 0.0, "rate_limited": 0}
        facts = {**base, "db_ok": False}
        decision, v = self._decide(facts)
        stored: IngestRun | None = None
        if record is not None:
            run = record(v, [])
            try:
                now = self.clock.now_ms()
                self.runs.insert(run, now)
                stored = replace(run, created_at=now)
            except (StorageUnavailable, IntegrityError):
                pass  # still down: no partial writes, and the minute is never backfilled
        return SnapshotOutcome(slot_ts, stored, v, decision, facts, tuple(results), storage_error=str(exc))

    # ------------------------------------------------------------------ S6
    def detect_dirty(self, slot_ts: int, now_ms: int, *, conn: Any = None,
                     current: Sequence[SnapshotRow] | None = None) -> list[DirtyMark]:
        """Flag t1 = T−60 s rows that collapsed from t0 = T−120 s and recovered at t2 = T (§4.4).

        Only wallet/assets with rows at all three slots are judged. Each flagged row gets
        `is_dirty`, `dirty_reason` and one anomaly row; its raw values are never touched.
        `current` is the cycle's own rows at T, just written: then only the two neighbouring
        slots are read (issue 12), and of them only the pairs that shrank from a non-zero size
        (a superset of S6's collapse when the collapse ratio is at most 1 and ε is not negative)."""
        t0, t1, t2 = slot_ts - 2 * self.interval_ms, slot_ts - self.interval_ms, slot_ts
        if current is None:
            series = self.snapshots.szi_at((t0, t1, t2), conn=conn)
        else:
            narrow = self.collapse_ratio <= 1 and all(e >= 0 for e in self.epsilon_abs.values())
            series = (self.snapshots.collapse_candidates(t0, t1, conn=conn) if narrow
                      else self.snapshots.szi_at((t0, t1), conn=conn))
            for row in current:
                key = (row.wallet_id, row.asset)
                if key in series:  # a pair without rows before T is never judged
                    series[key][t2] = None if row.position_szi is None else float(row.position_szi)
        marks: list[DirtyMark] = []
        for (wallet_id, asset), by_ts in sorted(series.items()):
            if not all(t in by_ts for t in (t0, t1, t2)):
                continue
            s0, s1, s2 = by_ts[t0], by_ts[t1], by_ts[t2]
            eps = self.epsilon_abs.get(asset)
            if eps is None:
                continue
            if not is_transient_collapse(s0, s1, s2, epsilon_abs=eps, collapse_ratio=self.collapse_ratio,
                                         recovery_ratio=self.recovery_ratio):
                continue
            if self.snapshots.mark_dirty(t1, wallet_id, asset, TRANSIENT_COLLAPSE, conn=conn):
                self.snapshots.add_anomaly(now_ms, t1, wallet_id, asset, TRANSIENT_COLLAPSE,
                                           {"szi_t0": s0, "szi_t1": s1, "szi_t2": s2, "t0": t0, "t2": t2},
                                           conn=conn)
                marks.append(DirtyMark(t1, wallet_id, asset, s0, s1, s2))
        if marks:
            log.info("snapshot run %s: %d transient collapse(s) flagged dirty at %s", slot_ts, len(marks), t1)
        return marks

    def check_dirty_rates(self, slot_ts: int) -> list[Decision]:
        """At a signal slot, report each asset's dirty rate over (T−10 min, T] (`dirty_check`, §4.4).

        For a process without the signal job's reporting (see the module docstring): the rate must
        keep being measured while signals are locked, or sustained dirt could never clear."""
        if slot_ts % self.signal_interval_ms != 0:
            return []
        decisions = []
        for asset in self.assets:
            try:
                rate = self.snapshots.dirty_rate(asset, slot_ts)
            except StorageUnavailable:
                report_storage_failure(self.runtime, "read")
                return decisions
            decision, failure = observe(self.runtime, "dirty_check", {"asset": asset, "dirty_rate_pct": rate.pct})
            if failure is not None:
                report_storage_failure(self.runtime, "write")
            decisions.append(decision)
        return decisions


__all__ = ["TRANSIENT_COLLAPSE", "DirtyMark", "FanOut", "SnapshotJob", "SnapshotOutcome", "ThreadFanOut",
           "WalletResult",
           "is_transient_collapse", "wallet_rows"]
