"""The copy-trader's exact path over history: its own boot, ingest, decide, execute and reconcile.

`run_copytrade(task)` boots the copy-trader with `service.start` exactly as `hlcore live --app
copytrader` does (mode live), on the drill's scripted clock and chance, with its HTTP sessions
served by `replay.transport.DrillTransport` over `KlineVenue` (the recorded fills, bars and filters).
It plays the scheduler through the window and reads the outcome back from the copy-trader's own
tables and from the venue's executions. Every verdict is the policy's; nothing here decides.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from backtest.copytrade.faults import arm, load_faults
from backtest.copytrade.metrics import copy_metrics, time_in_state
from backtest.copytrade.venue import KlineVenue
from backtest.exact import _SCRATCH, Task, quiet_logs, workspace
from backtest.history.dataset import DAY_MS, KLINES, open_history
from hlcore.errors import BadInput, Problem
from hlcore.jobs.copytrade.service import Wiring, start
from hlcore.storage.db import sqlite_url
from hlcore.storage.schema import audit_log, ingested_fills, order_results, processed_txs
from replay.cassettes import CassetteDeck
from replay.runner import DrillClock, ScriptedChance
from replay.transport import DrillTransport
from replay.worlds.copytrade import ENV, WALLET

# What the backtest itself assumes (run settings, stated in the report's assumptions, not policy):
# the copy starts armed (as after an operator's promote) and its loop wakes once a minute, the bars'
# resolution, so a month is ~43 k ticks rather than ~1.3 M.
RUN_SETTINGS: tuple[tuple[str, Any], ...] = (
    ("safety.startup_policy", "auto"),
    ("orchestrator.loop_idle_sleep_sec", 60),
    ("orchestrator.loop_max_idle_sleep_sec", 60),
)
SLIPPAGE_BPS = 2.0  # default of --slippage-bps
# Quiet stretches (no target fill due, last tick idle, safety mode as armed at boot) are slept
# through on the loop's own tick grid, up to this share of the backfill window (so the gap rule
# still sees every stretch as the live loop would: shorter than the window).
QUIET_CAP = 0.9


def coalesce_quiet_ticks(scheduler: Any, loop: Any, venue: KlineVenue, engine: Any, cap_ms: int,
                         transport: Any = None, episodes: list[tuple[int, dict[str, Any]]] | None = None) -> None:
    """Wrap the loop's tick: after an idle tick, wake at the first tick of the grid that can see the
    next target fill (as the live loop would), at most `cap_ms` later. Busy ticks are untouched."""
    job = next(j for j in scheduler.jobs if j.name == "copytrade_tick")
    inner, armed = job.run, engine.state("safety")

    episodes = episodes if episodes is not None else []

    def tick(at_ms: int) -> int:
        if transport is not None:
            arm(transport, episodes, at_ms)
        wait = inner(at_ms)
        faulting = transport is not None and any(f.times is None or f.times > 0 for f in transport.faults
                                                 if f.until_ms is None or f.until_ms > at_ms)
        if wait != loop.idle_ms or engine.state("safety") != armed or wait <= 0 or faulting:
            return wait
        now = venue.clock.now_ms()
        nxt = venue.next_fill_after(now)
        if episodes:
            nxt = episodes[0][0] if nxt is None else min(nxt, episodes[0][0])
        horizon = max(wait, cap_ms - cap_ms % wait)
        if nxt is None:
            return horizon
        k = max(1, -(-(nxt - now) // wait))
        return min(k * wait, horizon)

    job.run = tick


@dataclass
class CopyOutcome:
    """What one side did: the copy-trader's rows, the venue's executions, the target's fills."""

    label: str
    since_ms: int
    until_ms: int
    policy_hash: str
    history_hash: str
    ratio: float
    warn_threshold: float
    slippage_bps: float
    symbol_map: dict[str, str]
    transitions: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)        # "state reason" -> processed events
    orders: dict[str, int] = field(default_factory=dict)        # order_results.status -> count
    rejections: dict[str, int] = field(default_factory=dict)    # venue error code -> count
    fills_seen: int = 0
    fills_ingested: int = 0
    executions: list[dict[str, Any]] = field(default_factory=list)
    target_fills: list[dict[str, Any]] = field(default_factory=list)
    initial_safety: str = ""
    logs: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    safety_minutes: dict[str, int] = field(default_factory=dict)
    safety_entries: dict[str, int] = field(default_factory=dict)
    safety_states: list[str] = field(default_factory=list)
    unmapped_fills: int = 0
    ticks: int = 0  # the copy-trader's loop ticks the run took (quiet stretches coalesced)


def run_copytrade(task: Task, slippage_bps: float = SLIPPAGE_BPS,
                  progress: Any = None) -> CopyOutcome:
    """Play the copy-trader over the task's window of history; return its outcome."""
    history = open_history(Path(task.history))
    if not history.manifest.get("rows", {}).get(KLINES):
        note = history.manifest.get("missing_note") or "import Binance 1m klines with `hlcore history import`"
        raise BadInput(Problem(str(Path(task.history) / "manifest.json"), "rows.klines_1m",
                               f"no minute bars, so no prices to fill orders at: {note}"))
    since = task.since_ms if task.since_ms is not None else history.since_ms
    until = task.until_ms if task.until_ms is not None else history.until_ms + 60_000
    run_task = replace(task, overrides=(*RUN_SETTINGS, *task.overrides))
    with tempfile.TemporaryDirectory(prefix="hlcore-backtest-copy-", dir=_SCRATCH) as tmp, quiet_logs() as tap:
        ws = workspace(run_task, Path(tmp))
        clock = DrillClock(since)
        venue = KlineVenue(clock, history, since, until, slippage_bps, WALLET)
        transport = DrillTransport(clock, venue, CassetteDeck([]))
        wiring = Wiring(clock, clock.sleep, ScriptedChance(), lambda _venue: transport.drill_session(),  # type: ignore[arg-type,return-value]
                        dict(ENV))
        ctx, _jobs, scheduler, loop, _code = start(ws, "live", wiring, db_url=sqlite_url(Path(tmp) / "copy.db"),
                                                     allow_create_db=True)
        s = ws.settings
        coalesce_quiet_ticks(scheduler, loop, venue, ctx.runtime.engine,
                             int(QUIET_CAP * int(s.get("ingest.backfill_window_ms"))), transport,
                             load_faults(Path(task.faults)) if task.faults else [])
        outcome = CopyOutcome(task.label, since, until, ws.policy.hash, history.content_hash,
                              float(s.get("decision.sizing.proportional_ratio")),
                              float(s.get("safety.warn_threshold")), slippage_bps,
                              dict(s.get("ingest.hyperliquid.symbol_map") or {}),
                              initial_safety=str(ws.policy.machines["safety"].initial),
                              safety_states=sorted(ws.policy.machines["safety"].states))
        try:
            chunk = DAY_MS // 4  # read rows back well before hourly retention prunes them (24 h floor)
            total = max(1, (until - since + chunk - 1) // chunk)
            seen = Seen()
            for step in range(total):
                scheduler.run_until(min(until - 1, since + (step + 1) * chunk),
                                    lambda ts: clock.set(max(ts, clock.now_ms())))
                seen.read(ctx.db)
                if progress is not None:
                    progress(step + 1, total)
            seen.into(outcome)
            outcome.ticks = int(loop.ticks)
        finally:
            ctx.close()
        outcome.executions = venue.executions
        outcome.rejections = dict(sorted(venue.rejections.items()))
        outcome.target_fills = [{"time": r["time"], "coin": r["coin"], "side": r["side"], "sz": float(r["sz"]),
                                 "px": float(r["px"]), "start": float(r["start_position"] or 0)}
                                for r in venue.fill_rows]
        outcome.fills_seen = len(venue.fill_rows)
        outcome.unmapped_fills = sum(1 for r in venue.fill_rows if r["coin"] not in outcome.symbol_map)
        outcome.metrics = copy_metrics(outcome, venue.bars)
        outcome.safety_minutes, outcome.safety_entries = time_in_state(outcome.transitions, "safety",
                                                                       outcome.initial_safety, since, until)
        outcome.safety_minutes = {st: outcome.safety_minutes.get(st, 0) for st in
                                  sorted({*outcome.safety_states, *outcome.safety_minutes})}
    outcome.logs = dict(sorted(tap.counts.items()))
    return outcome


@dataclass
class Seen:
    """The copy-trader's rows, gathered as the run goes (retention prunes them after a day)."""

    audit_id: int = 0
    transitions: list[dict[str, Any]] = field(default_factory=list)
    events: dict[tuple[str, int, str], tuple[str, str]] = field(default_factory=dict)
    orders: dict[str, str] = field(default_factory=dict)
    fills: set[int] = field(default_factory=set)

    def read(self, db: Any) -> None:
        with db.transaction() as conn:
            for row in conn.execute(select(audit_log).where(audit_log.c.id > self.audit_id)
                                    .order_by(audit_log.c.id)).mappings():
                self.audit_id = int(row["id"])
                if row["from_state"] != row["to_state"]:
                    self.transitions.append({"ts_ms": int(row["timestamp_ms"]), "machine": row["machine"],
                                             "instance": row["instance"], "from": row["from_state"],
                                             "to": row["to_state"], "reason": row["reason_code"]})
            for r in conn.execute(select(processed_txs.c.tx_hash, processed_txs.c.event_index, processed_txs.c.symbol,
                                         processed_txs.c.state, processed_txs.c.decision_reason)):
                self.events[(r[0], int(r[1]), r[2])] = (str(r[3]), str(r[4] or "-"))
            for cid, status in conn.execute(select(order_results.c.correlation_id, order_results.c.status)):
                self.orders[str(cid)] = str(status)
            self.fills.update(int(t) for (t,) in conn.execute(select(ingested_fills.c.tid)))

    def into(self, outcome: CopyOutcome) -> None:
        outcome.transitions = self.transitions
        outcome.events = dict(sorted(Counter(f"{s} {r}" for s, r in self.events.values()).items()))
        outcome.orders = dict(sorted(Counter(self.orders.values()).items()))
        outcome.fills_ingested = len(self.fills)
