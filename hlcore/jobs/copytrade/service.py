"""The copy-trader process: startup sequence (copytrader §5 Boot) and the loop on the shared scheduler.

`run()` is what `hlcore live --app copytrader` calls with the system clock and real sessions, and
what replay will call with a scripted clock and cassette-backed sessions: nothing below knows
which one it got.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from hlcore.adapters.binance.client import BinanceClient
from hlcore.adapters.binance.sign import TimeSync
from hlcore.adapters.http import RetryPolicy, VenueHttp, WeightLimiter
from hlcore.adapters.hyperliquid.client import HyperliquidClient
from hlcore.app import AppContext, open_locked
from hlcore.config.settings import WALLET_ENV, check_env
from hlcore.engine.clock import Clock
from hlcore.engine.decision import Decision
from hlcore.engine.scheduler import Scheduler
from hlcore.errors import BadInput
from hlcore.jobs.copytrade.jobs import CONTRACT_VERSION, CopytradeJobs, Venues
from hlcore.jobs.copytrade.prefetch import Runner, run_when_taken
from hlcore.logs import iso_utc
from hlcore.storage.copytrade import CopytradeKey, CopytradeState
from hlcore.storage.db import StorageUnavailable
from hlcore.storage.identity import BootIdentity
from hlcore.workspace import Workspace

log = logging.getLogger("hlcore.copytrade")

MODES = ("live", "dry-run", "backfill-only")
APP = "copytrader"  # the `app` of a storage_failed fact (policy contract name)
HL_WEIGHT_PER_MIN = 1200  # Hyperliquid's published IP budget (venue fact, not policy)
BINANCE_WEIGHT_PER_MIN = 2400  # Binance USD-M's published request weight per minute (venue fact)


@dataclass
class Wiring:
    """What differs between live and replay: time, sleep, chance, and the HTTP session."""

    clock: Clock
    sleep: Callable[[float], None]
    rng: random.Random
    session_factory: Callable[[str], requests.Session]
    environ: Mapping[str, str]
    background: Runner = run_when_taken  # how the mark prefetch runs; `background_thread`: see prefetch.py


def contract_status(stored: str | None) -> str:
    """S4: stored major ≠ code major, or stored minor > code minor, is a mismatch."""
    if stored is None:
        return "ok"
    try:
        s_major, s_minor = (int(x) for x in stored.split(".")[:2])
        c_major, c_minor = (int(x) for x in CONTRACT_VERSION.split(".")[:2])
    except ValueError:
        return "mismatch"
    return "ok" if s_major == c_major and s_minor <= c_minor else "mismatch"


def build_venues(ws: Workspace, mode: str, wiring: Wiring) -> Venues:
    s = ws.settings
    retry = RetryPolicy(**{k: int(s.get(f"ingest.hyperliquid.retry.{k}")) for k in
                           ("max_attempts", "base_delay_ms", "max_delay_ms", "jitter_ms")})
    hl_http = VenueHttp("hyperliquid", s.get("ingest.hyperliquid.rest_url"), clock=wiring.clock, sleep=wiring.sleep,
                        rng=wiring.rng, timeout_ms=int(s.get("ingest.hyperliquid.request_timeout_ms")), retry=retry,
                        limiter=WeightLimiter(wiring.clock, HL_WEIGHT_PER_MIN),
                        request_limiter=WeightLimiter(wiring.clock,
                                                      int(s.get("ingest.hyperliquid.rate_limit.max_requests")),
                                                      int(s.get("ingest.hyperliquid.rate_limit.per_seconds")) * 1000),
                        default_cooldown_ms=int(s.get("ingest.hyperliquid.rate_limit.cooldown_seconds")) * 1000,
                        session=wiring.session_factory("hyperliquid"))
    binance = None
    if mode == "live" and s.get("execution.binance.enabled"):
        b_retry = RetryPolicy(**{k: int(s.get(f"execution.binance.retry.{k}")) for k in
                                 ("max_attempts", "base_delay_ms", "max_delay_ms", "jitter_ms")})
        b_http = VenueHttp("binance", s.get("execution.binance.base_url"), clock=wiring.clock, sleep=wiring.sleep,
                           rng=wiring.rng, timeout_ms=int(s.get("execution.binance.request_timeout_ms")),
                           retry=b_retry,
                           default_cooldown_ms=int(s.get("execution.binance.rate_limit.cooldown_seconds")) * 1000,
                           session=wiring.session_factory("binance"),
                           request_limiter=WeightLimiter(wiring.clock,
                                                         int(s.get("execution.binance.rate_limit.max_requests")),
                                                         int(s.get("execution.binance.rate_limit.per_seconds")) * 1000),
                           max_wait_ms=int(s.get("execution.tif_seconds")) * 1000,
                           used_weight_limit=BINANCE_WEIGHT_PER_MIN)
        binance = BinanceClient(b_http, api_key=wiring.environ["BINANCE_API_KEY"],
                                api_secret=wiring.environ["BINANCE_API_SECRET"], clock=wiring.clock,
                                recv_window_ms=int(s.get("execution.binance.recv_window_ms")),
                                exchange_info_ttl_ms=int(s.get("execution.binance.exchange_info_ttl_sec")) * 1000,
                                time_sync=TimeSync(max_age_ms=int(s.get("execution.binance.time_offset_max_age_ms"))))
    return Venues(HyperliquidClient(hl_http, info_path=""), binance, wiring.environ.get(WALLET_ENV, ""),
                  wiring.background)


def boot(ctx: AppContext, mode: str) -> tuple[Decision, bool]:
    """Boot fact (S2-S5) and the boot keys; a fresh database starts its cursor at boot time.
    Returns the decision and whether the stored versions are usable (False => exit 1)."""
    now = ctx.clock.now_ms()
    ctx.db.adopt_identity(now)  # a database made before identities gets one at its first boot
    state = CopytradeState(ctx.db)
    stored_hash = state.get(CopytradeKey.CONFIG_HASH)
    current_hash = ctx.workspace.config_hash
    facts = {
        "schema_status": ctx.db.schema_status(),
        "contract_status": contract_status(state.get(CopytradeKey.CONTRACT_VERSION)),
        "config_hash_changed": stored_hash is not None and stored_hash != current_hash,
        "mode": mode,
    }
    decision = ctx.runtime.observe("boot", facts)
    usable = facts["schema_status"] == "ok" and facts["contract_status"] == "ok"
    keys = {CopytradeKey.CONFIG_HASH: current_hash, CopytradeKey.BOOT_MS: str(now),
            CopytradeKey.CONFIG_VERSION: str(ctx.settings.get("config_version"))}
    if state.get(CopytradeKey.CONTRACT_VERSION) is None:
        keys[CopytradeKey.CONTRACT_VERSION] = CONTRACT_VERSION
    if state.last_ingest_success_ms() is None and state.cursor() is None:
        # fresh DB: no history is traded. `last_ingest_success_ms` is not stamped: it moves only on
        # a complete fetch (issue 11), and the gap rule falls back to this cursor until then
        keys[CopytradeKey.LAST_PROCESSED_TIMESTAMP_MS] = str(now)
    state.set_many(keys, now)
    return decision, usable


class Loop:
    """One copy-trader tick (copytrader §5): reconcile when due, ingest, decide, execute; the
    next wait is 0 after work, else it doubles from the idle sleep up to the max."""

    def __init__(self, ctx: AppContext, jobs: CopytradeJobs, metrics: Callable[[str, Any, dict[str, Any]], None]):
        self.ctx = ctx
        self.jobs = jobs
        self.metrics = metrics
        s = ctx.settings
        self.idle_ms = int(float(s.get("orchestrator.loop_idle_sleep_sec")) * 1000)
        self.max_idle_ms = int(float(s.get("orchestrator.loop_max_idle_sleep_sec")) * 1000)
        self.active_ms = int(float(s.get("orchestrator.loop_active_sleep_sec")) * 1000)
        self.reconcile_every_ms = int(s.get("safety.reconcile_interval_sec")) * 1000
        self.tick_warn_ms = int(float(s.get("orchestrator.loop_tick_warn_sec")) * 1000)
        self.next_reconcile_ms = ctx.clock.now_ms() + self.reconcile_every_ms
        self.max_events = int(s.get("orchestrator.max_events_per_tick"))
        self.should_stop: Callable[[], bool] = lambda: False  # the scheduler's stop flag (SIGTERM), set by start()
        self.wait_ms = self.idle_ms
        self.ticks = 0
        self.identity = BootIdentity.of(ctx.db)
        self.database_lost: dict[str, str] | None = None  # set once: this process never trades again

    def tick(self, at_ms: int) -> int:
        try:
            return self._tick(at_ms)
        except StorageUnavailable as exc:
            return self._storage_failed(exc)

    def _storage_failed(self, exc: StorageUnavailable) -> int:
        """S9: a failed read/write ends the tick (nothing further is sent) and is reported as a fact;
        the policy's HALT is effective in memory at once and persisted at the first good write."""
        log.error("storage unavailable: %s", exc)
        decision = self.ctx.runtime.observe("storage_failed", {"app": APP, "operation": "tick"}, persist=False)
        with contextlib.suppress(StorageUnavailable):  # kept unsaved by the runtime; the next good write saves it
            self.ctx.runtime.persist(decision)
        wait, self.wait_ms = self.wait_ms, min(self.wait_ms * 2, self.max_idle_ms)
        return wait

    def database_ok(self) -> bool:
        """Before anything else in a tick: is this still our database (issue 10)? If not, the
        policy's HALT is taken in memory at once and the loop does no more work until a restart
        (which refuses a missing database without --allow-create-db). Only a re-versioned database
        that is still ours gets the HALT written into it."""
        if self.database_lost is None:
            facts = self.identity.check(self.ctx.db)
            if facts["identity"] == "ok" and facts["schema_status"] == "ok":
                return True
            self.database_lost = facts
            decision = self.ctx.runtime.observe("storage_checked", {"app": APP, **facts}, persist=False)
            if facts["identity"] == "ok":
                with contextlib.suppress(StorageUnavailable):
                    self.ctx.runtime.persist(decision)
        log.error("database is not the one this process booted on (%s at %s): no further work until a "
                  "restart", ", ".join(f"{k}={v}" for k, v in sorted(self.database_lost.items())),
                  self.identity.path or "the configured URL")
        return False

    def _tick(self, at_ms: int) -> int:
        now = self.ctx.clock.now_ms()
        self.ticks += 1
        if not self.database_ok():
            return self.max_idle_ms
        self.ctx.runtime.sync()  # an operator command may have changed the safety mode
        if self.jobs.venues.binance is not None and now >= self.next_reconcile_ms:
            self.jobs.reconcile("loop")
            self.next_reconcile_ms = now + self.reconcile_every_ms
        work = self.jobs.ingest()
        if not self.should_stop():
            work += self.jobs.decide(self.max_events, self.should_stop)  # each event decided, then sent
        if not self.should_stop():
            work += self.jobs.execute(self.should_stop)
        done = self.ctx.clock.now_ms()
        if self.metrics is not no_metrics:  # no metrics file: nothing to read them for (the cursor)
            self._report(now, done)
        if done - now >= self.tick_warn_ms:
            log.warning("slow tick: %d ms", done - now)
        self._end_tick(now, done)
        if work:
            self.wait_ms = self.idle_ms
            return max(self.active_ms, 1)
        wait, self.wait_ms = self.wait_ms, min(self.wait_ms * 2, self.max_idle_ms)
        if self.jobs.next_query_ms is not None:  # wake up when a paced UNKNOWN query is due (§4.6)
            wait = max(1, min(wait, self.jobs.next_query_ms - at_ms))
        return wait

    def _report(self, now: int, done: int) -> None:
        """The tick's `[METRICS]` lines (copytrader §5 step 6)."""
        engine = self.ctx.runtime.engine
        counters = self.jobs.counters
        cursor = self.jobs.state.cursor()
        self.metrics("heartbeat", 1, {"safety_mode": engine.state("safety"), "tick": self.ticks})
        self.metrics("loop_tick_duration_ms", done - now, {})
        self.metrics("cursor_lag_ms", done - cursor.timestamp_ms if cursor else None, {})
        self.metrics("loop_alive", 1, {})
        self.metrics("dedup_drop_count", counters.dedup_drop_count, {})
        self.metrics("backfill_count", counters.backfill_count, {})
        for reason, count in sorted(Counter(counters.skipped).items()):  # since start, per skip reason
            self.metrics("ingest_skip_count", count, {"reason": reason})
        if counters.orders_sent:
            self.metrics("order_success_rate", round(counters.orders_ok / counters.orders_sent, 4), {})
        if done - now >= self.tick_warn_ms:
            self.metrics("loop_tick_slow", done - now, {})

    def _end_tick(self, now: int, done: int) -> None:
        keys = {CopytradeKey.LOOP_LAST_TICK_STARTED_MS: str(now), CopytradeKey.LOOP_LAST_TICK_MS: str(done)}
        client = self.jobs.venues.binance
        if client is not None:
            keys[CopytradeKey.BINANCE_COOLDOWN_UNTIL_MS] = str(client.http.cooldown_until_ms)
            for key, value in ((CopytradeKey.ADAPTER_LAST_SUCCESS_MS, client.http.last_success_ms),
                               (CopytradeKey.ADAPTER_LAST_ERROR_MS, client.http.last_error_ms)):
                if value is not None:
                    keys[key] = str(value)
        CopytradeState(self.ctx.db).set_many(keys, done)


def no_metrics(name: str, value: Any, tags: dict[str, Any]) -> None:
    """The writer when no metrics file is configured: the loop then skips gathering the figures."""


def metrics_writer(path: Path | None, clock: Clock) -> Callable[[str, Any, dict[str, Any]], None]:
    """`[METRICS] {ts,time,name,value,tags}` lines (copytrader §5; `time` is ISO-8601 UTC for a
    reader, `ts` epoch ms for tools); never carries a secret."""
    if path is None:
        return no_metrics

    def write(name: str, value: Any, tags: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        now = clock.now_ms()
        line = json.dumps({"ts": now, "time": iso_utc(now), "name": name, "value": value, "tags": tags},
                          sort_keys=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"[METRICS] {line}\n")

    return write


def start(ws: Workspace, mode: str, wiring: Wiring, *, db_url: str | None = None,
          metrics_path: Path | None = None,
          allow_create_db: bool = False) -> tuple[AppContext, CopytradeJobs, Scheduler, Loop, int]:
    """Everything up to the loop; returns the exit code boot implies (1 on a version mismatch).
    Takes the copy-trader's writer lock for the context's life; creates a database only with
    `allow_create_db` (`hlcore live --allow-create-db`, first start)."""
    if mode not in MODES:
        raise BadInput(f"--mode: expected one of {', '.join(MODES)}, got '{mode}'")
    problems = check_env(mode, ws.settings, wiring.environ)
    if problems:
        raise BadInput(problems)  # before the database is touched: no state change, no rows, no HTTP
    ctx = open_locked(ws, wiring.clock, APP, command=f"live --mode {mode}", allow_create=allow_create_db,
                      url=db_url)
    _, usable = boot(ctx, mode)
    code = 0 if usable else 1
    venues = build_venues(ws, mode, wiring)
    jobs = CopytradeJobs(ctx, venues, mode)
    if code == 0 and venues.binance is not None:
        venues.binance.sync_time()
        jobs.reconcile("startup")
        jobs.sweep_parked()
    scheduler = Scheduler(wiring.clock)
    loop = Loop(ctx, jobs, metrics_writer(metrics_path, wiring.clock))
    loop.should_stop = lambda: scheduler.stopped
    jobs.database_ok = loop.database_ok
    scheduler.add("copytrade_tick", loop.idle_ms, loop.tick)
    scheduler.add("retention", HOUR_MS, lambda at: retention(ctx, jobs), first_at=wiring.clock.now_ms() + HOUR_MS)
    return ctx, jobs, scheduler, loop, code


HOUR_MS = 3_600_000


def settle_heap() -> None:
    """After boot, before the loop: what boot built (policy, compiled engine, SQLAlchemy metadata,
    modules) lives as long as the process, so it is collected once and then moved out of the cyclic
    collector's sight (`gc.freeze`). A full collection then scans only what the loop made since, not
    ~90k long-lived objects (issue 12: 70-170 ms pauses in the fill -> order path). Long-running
    processes only: replay boots many apps in one process and must not freeze each one's heap."""
    gc.collect()
    gc.freeze()


def retention(ctx: AppContext, jobs: CopytradeJobs) -> None:
    """Hourly (copytrader §6): prune DONE events and their fills older than
    max(dedup_ttl_seconds, window + overlap), never the cursor's row; and have the next loop
    reconcile check the running sum of local positions against the full recomputation."""
    jobs.full_check_due = True
    s = ctx.settings
    keep_ms = max(int(s.get("ingest.dedup_ttl_seconds")) * 1000,
                  int(s.get("ingest.backfill_window_ms")) + int(s.get("ingest.cursor_overlap_ms")))
    cursor = jobs.state.cursor()
    done = [name for name, d in ctx.workspace.policy.machines["event"].states.items() if d.final]
    for state in done:
        jobs.events.prune_done(ctx.clock.now_ms() - keep_ms, state, cursor.event_key if cursor else None)
