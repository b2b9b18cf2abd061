"""The copy-trader's four jobs (copytrader §5): ingest, decide, execute, reconcile.

Each measures, reports facts to the policy and asks its gates; none decides a mode change. Their
writes share a transaction with the policy state they depend on, so a crash at any point neither
loses an event nor double-submits: fills + events + cursor commit together; an event's intents
and its new state commit together, before any submit; an intent with no result is queried
before it is ever sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from hlcore.adapters.binance.client import BinanceClient, OrderOutcome, query_outcome
from hlcore.adapters.binance.client_order_id import client_order_id, correlation_id
from hlcore.adapters.binance.parse import SymbolFilters
from hlcore.adapters.http import IMPOSSIBLE_ANSWER, VenueError
from hlcore.adapters.hyperliquid.aggregate import Skipped, TargetEvent, aggregate_fills
from hlcore.adapters.hyperliquid.client import HyperliquidClient
from hlcore.app import AppContext
from hlcore.jobs.copytrade.order_status import OrderStatuses
from hlcore.jobs.copytrade.prefetch import MarkPrefetch, Runner, run_when_taken
from hlcore.jobs.copytrade.sizing import floor_to_step, legs_for
from hlcore.redact import scrub
from hlcore.storage.copytrade import (
    POSITION_DUST as DUST,
)
from hlcore.storage.copytrade import (
    Baselines,
    CopytradeKey,
    CopytradeState,
    Cursor,
    Events,
    OrderIntent,
    Orders,
    ReconcileRuns,
    parse_event_key,
)
from hlcore.storage.copytrade import normalise_symbol as norm
from hlcore.storage.db import StorageUnavailable, storage_errors
from hlcore.storage.ingest_skips import IngestSkips
from hlcore.storage.local_book import LocalBook
from hlcore.storage.repos import dump_json, load_json
from hlcore.storage.schema import order_intents

log = logging.getLogger("hlcore.copytrade")

CONTRACT_VERSION = "1.0"  # the intent/result contract this code writes (copytrader §3.1 S4)
SAFETY, EVENT, ORDER, RECONCILE = "safety", "event", "order", "reconcile"  # machine contract names
GATE_CLOSED = "GATE_CLOSED"  # order_answered.answer when the pre-hook's gate is shut (no request sent)
NO_ADAPTER = "NO_ADAPTER"  # order_answered.answer in dry-run / backfill-only (no request sent)
POLL_GATE = "order.poll"  # order states allowing it are open on the venue: polled, paced (§3.3)
PRIME_TX, PRIME_SYMBOL = "0xprime", "PRIMEUSDT"  # the warm-up's rows (always rolled back) and prepared requests


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _skip_rows(skipped: Iterable[Skipped]) -> list[dict[str, Any]]:
    """`ingest_skips` rows: one per skipped item (issue 11 §2)."""
    return [{"skip_key": key, "reason": s.reason, "detail": s.detail, "tx_hash": s.tx_hash, "coin": s.coin}
            for s in skipped for key in s.keys]


def _qty(payload: dict[str, Any]) -> Decimal | None:
    """The ordered quantity of an intent payload: a venue answer filled beyond it is impossible."""
    return None if payload.get("qty") in (None, "None") else Decimal(str(payload["qty"]))


@dataclass
class Venues:
    """What the jobs talk to. `binance` is None in dry-run and backfill-only: nothing is ever sent."""

    hyperliquid: HyperliquidClient
    binance: BinanceClient | None
    target_wallet: str
    background: Runner = run_when_taken  # how the mark prefetch runs (live: a thread; replay: inline)


@dataclass
class Counters:
    """Per-run metrics the heartbeat reports (copytrader §5 step 6)."""

    dedup_drop_count: int = 0
    backfill_count: int = 0
    orders_sent: int = 0
    orders_ok: int = 0
    skipped: list[str] = field(default_factory=list)


class CopytradeJobs:
    def __init__(self, ctx: AppContext, venues: Venues, mode: str):
        self.ctx = ctx
        self.venues = venues
        self.mode = mode
        self.policy = ctx.workspace.policy
        self.settings = ctx.settings
        self.engine = ctx.runtime.engine
        self.state = CopytradeState(ctx.db)
        self.events = Events(ctx.db)
        self.orders = Orders(ctx.db)
        self.book = LocalBook(ctx.db)  # local positions, kept incrementally (decisions read it per event)
        self.counters = Counters()
        self.tick_cursor: Cursor | None = None
        # is storage still the database this process booted on? The loop installs its identity
        # check (service.Loop.database_ok); asked again right before each order is sent (issue 10)
        self.database_ok: Callable[[], bool] = lambda: True
        event_machine = self.policy.machines[EVENT]
        self.pending_state = event_machine.initial
        self.open_event_states = [s for s, d in event_machine.states.items() if not d.final]
        self.statuses = OrderStatuses.of(self.policy, ORDER)  # machine state <-> order_results (§3.3)
        self._filters: dict[str, SymbolFilters] | None = None
        self.prefetch = MarkPrefetch(venues.background)  # the next decision's mark, asked while ingest commits
        # Intents this process decided: they cannot have been sent before a crash, so their first
        # submit needs no query. Intents found at startup are queried first (copytrader §3.3 NONE).
        self._fresh: set[str] = set()
        self.next_query_ms: int | None = None  # when the earliest paced UNKNOWN query is due (§4.6)
        self.failed_fetches = 0  # consecutive failed ingest fetches (reported, then the recovery)
        # the next loop reconcile re-checks the running sum in full (set at start and by the hourly
        # maintenance job, copytrader §6; every other reconcile checks in full anyway)
        self.full_check_due = True

    # ------------------------------------------------------------------ warm-up (issue 12 item 6)
    def prime(self) -> None:
        """Before the loop of a long-running process (`hlcore live`, after boot): walk the fill ->
        order path's storage and request-building code once, so the first real fill does not pay
        for compiling its SQL statements, normalising the venue URLs and first-call code paths
        (the first orders were 2-4x slower than the steady ones).

        Nothing leaves the process and nothing is kept: the reads are the path's own reads; the
        writes (event, fill, cursor, intent, event state, result) run in one transaction that is
        always rolled back, so no reader ever sees them, and the tables they touch have no
        sequence a rollback would consume; the requests are prepared, never sent. The policy
        engine is not called (it would record transitions). Replay and the drills never call it.
        A storage failure here is logged and left to the loop, which reports it as the policy's fact."""
        try:
            with storage_errors("warming up the copy-trader"):
                self._prime_storage(self.ctx.clock.now_ms())
        except StorageUnavailable as exc:
            log.warning("warm-up skipped: %s", exc)
        if self.venues.binance is not None:
            self.venues.binance.prime(PRIME_SYMBOL)

    def _prime_storage(self, now: int) -> None:
        self.state.ingest_keys()
        self.events.unsettled([self.pending_state])
        self.book.positions(now)
        final = self.statuses.final
        self.orders.unsettled_intents(final)
        if not final:
            return
        key = f"{now}|0|{PRIME_TX}|{PRIME_SYMBOL}"
        ev = {"tx_hash": PRIME_TX, "event_index": 0, "symbol": PRIME_SYMBOL, "timestamp_ms": now, "is_replay": True,
              "action_type": None, "prev_target": Decimal(0), "next_target": Decimal(1), "expected_price": Decimal(1)}
        fill = {"tid": -1, "tx_hash": PRIME_TX, "coin": PRIME_SYMBOL, "side": "B", "sz": Decimal(1), "px": Decimal(1),
                "start_position": Decimal(0), "time_ms": now, "event_key": key}
        cid = f"prime-{now}"
        with self.ctx.db.engine.connect() as conn:
            tx = conn.begin()
            try:
                self.events.seen_tids([-1], conn=conn)
                self.events.seen_content([PRIME_TX], conn=conn)
                self.events.insert_ingested([ev], [fill], Cursor(now, key), now, pending_state=self.pending_state,
                                            conn=conn)
                self.state.stamp_ingest_success(now, conn=conn)
                self.orders.record_decision(key, [OrderIntent(cid, cid, {"symbol": PRIME_SYMBOL, "side": "BUY"}, key,
                                                              now)], self.pending_state, now, conn=conn)
                self.orders.upsert_result(cid, final[0], now, filled_qty=Decimal(1), contract_version=CONTRACT_VERSION,
                                          conn=conn)
            finally:
                tx.rollback()  # always: nothing of this is ever kept

    # ------------------------------------------------------------------ ingest (§4.1, §4.2)
    def ingest(self) -> int:
        """Gap rule, then (if the `ingest` gate is open) one fetch from the cursor; returns new events."""
        self.prefetch.drop()  # a fetch left by a tick that ended early is never used
        now = self.ctx.clock.now_ms()
        keys = self.state.ingest_keys()
        boot = keys.boot_ms or now
        cursor = keys.cursor
        # no complete fetch yet (fresh DB): the gap is measured from the cursor the first boot set
        last_success = keys.last_ingest_success_ms or (cursor.timestamp_ms if cursor else boot)
        self.tick_cursor = cursor
        decision = self.ctx.runtime.observe("ingest_tick", {
            "last_ingest_success_ms": last_success,
            "cursor_ts_ms": cursor.timestamp_ms if cursor else boot,
            "maintenance_skip_applied_ms": keys.maintenance_skip_applied_ms,
        })
        for effect in decision.find("maintenance_skip"):
            self.state.maintenance_skip(now, from_ms=effect.data.get("from_ms"))
            return 0
        if not self.engine.may("ingest"):
            return 0  # no fetch on this tick (HALT pauses ingest; the gap rule still ran)
        start = (cursor.timestamp_ms if cursor else boot) - int(self.settings.get("ingest.cursor_overlap_ms"))
        fetched = self.venues.hyperliquid.user_fills_by_time(self.venues.target_wallet, start, now)
        if isinstance(fetched, VenueError):
            self.failed_fetches += 1  # one line per failed cycle, with its cause (issue 11: failure is loud)
            log.warning("ingest fetch failed (%d in a row): %s %s", self.failed_fetches, fetched.code,
                        fetched.message)
            return 0
        self.ctx.runtime.observe("backfill_result", {"complete": fetched.complete,
                                                     "history_limit_reached": fetched.history_limit_reached,
                                                     "fills": len(fetched.fills)})
        if not self.engine.may("ingest"):
            return 0
        # One transaction from the dedup reads to the success stamp (issue 12: one commit, not three,
        # between a fill being observed and its order): fills + events + cursor + skips + stamp land
        # together or not at all, and a crash before the commit re-fetches everything.
        with self.ctx.db.transaction() as conn:
            seen = self.events.seen_tids([f.fill_id for f in fetched.fills], conn=conn)  # tid, or a synthetic id
            seen_keys = self.events.seen_content((f.hash for f in fetched.fills), conn=conn)  # same fill, other id
            agg = aggregate_fills(fetched.fills, symbol_map=self.settings.get("ingest.hyperliquid.symbol_map") or {},
                                  seen_tids=seen, seen_keys=seen_keys, invalid=fetched.invalid)
            self._prefetch_mark(agg.events)  # its round trip overlaps this transaction's commit
            rows, fills = [], []
            for ev in agg.events:
                rows.append(self._event_row(ev, boot, cursor))
                fills.extend(self._fill_rows(ev))
            new_cursor = None
            if agg.events:
                last = agg.events[-1]
                new_cursor = Cursor(last.timestamp_ms, last.key)
            added = self.events.insert_ingested(rows, fills, new_cursor, now, pending_state=self.pending_state,
                                                conn=conn)
            new_skips = IngestSkips(self.ctx.db).record(_skip_rows(agg.skipped), now, conn=conn)
            if fetched.complete:
                self.state.stamp_ingest_success(now, conn=conn)
        self.counters.dedup_drop_count += agg.dedup_drop_count
        for skip in new_skips:  # each skipped item once: the overlap refetch finds its key stored
            log.warning("ingest skipped %s: %s (tx %s, coin %s)", skip["reason"], skip["detail"], skip["tx_hash"],
                        skip["coin"])
            self.counters.skipped.append(skip["reason"])
        if fetched.complete and self.failed_fetches:
            log.warning("ingest fetch succeeded after %d failed cycles", self.failed_fetches)
            self.failed_fetches = 0
        self.counters.backfill_count += sum(1 for r in rows if r["is_replay"])
        return added

    def _event_row(self, ev: TargetEvent, boot_ms: int, cursor: Cursor | None) -> dict[str, Any]:
        # §4.2: "a fresh fill is never a replay, whichever fetch sees it": the rest of the cursor's
        # own transaction (same hash, same ms: Hyperliquid stamps one tx once) split across fetches
        # is not a catch-up, even though its time equals the cursor's.
        continuation = (cursor is not None and cursor.event_key is not None and ev.timestamp_ms == cursor.timestamp_ms
                        and parse_event_key(cursor.event_key).tx_hash == ev.tx_hash)
        replay = (self.mode == "backfill-only" or ev.timestamp_ms < boot_ms
                  or (cursor is not None and ev.timestamp_ms <= cursor.timestamp_ms and not continuation))
        return {"tx_hash": ev.tx_hash, "event_index": ev.event_index, "symbol": ev.symbol,
                "timestamp_ms": ev.timestamp_ms, "is_replay": replay, "action_type": ev.action,
                "prev_target": ev.prev, "next_target": ev.next, "expected_price": ev.expected_price}

    @staticmethod
    def _fill_rows(ev: TargetEvent) -> list[dict[str, Any]]:
        return [{"tid": f.fill_id, "tx_hash": f.hash, "coin": f.coin, "side": f.side, "sz": f.sz, "px": f.px,
                 "start_position": f.start_position, "time_ms": f.time_ms, "event_key": ev.key}
                for f in ev.fills]

    # ------------------------------------------------------------------ decide (§4.4)
    def decide(self, limit: int | None = None, stop: Callable[[], bool] = lambda: False) -> int:
        """Decide PENDING events in (timestamp, index) order unless the `decide` gate is shut, and
        send each one's new intents before deciding the next (issue 10 §7: a backlog drains at the
        venue's pace, and a stop between two events leaves nothing half-done). At most `limit`
        events per call; `stop` is asked before each."""
        try:
            if not self.engine.may("decide"):
                return 0
            decided = 0
            for record in self.events.unsettled([self.pending_state]):
                # asked per event: a fault met while deciding or sending the previous one may have shut it
                if (limit is not None and decided >= limit) or stop() or not self.engine.may("decide"):
                    break
                self._execute_new(self._decide_one(record), stop)
                decided += 1
            return decided
        finally:
            self.prefetch.drop()  # a prefetched mark serves this tick's decisions only

    def _execute_new(self, inserted: list[OrderIntent], stop: Callable[[], bool]) -> None:
        """Send the intents this process just decided for one event (their first step only). They are
        the rows the decision's transaction inserted, in `intents_for` order (one `created_at_ms`, then
        correlation id), so nothing is read back: none can have a result yet (issue 12)."""
        for intent in sorted(inserted, key=lambda i: i.correlation_id):
            if stop():
                return
            self._execute_one(intent, None)

    def _filters_for(self, symbol: str) -> SymbolFilters | None:
        if self.venues.binance is None or not self.settings.get("execution.binance.exchange_info_enabled"):
            return None
        if self._filters is None:
            info = self.venues.binance.exchange_info()
            self._venue_fault("exchangeInfo", info)
            self._filters = {} if isinstance(info, VenueError) else dict(info)
        return self._filters.get(symbol)

    def _prefetch_mark(self, events: list[TargetEvent]) -> None:
        """Start fetching the mark of the first new event's symbol, if it will be decided this tick
        and nothing else needs the venue first (exchange filters not fetched yet: no prefetch)."""
        binance = self.venues.binance
        if binance is None or not events or not self.engine.may("decide"):
            return
        if self._filters is None and self.settings.get("execution.binance.exchange_info_enabled"):
            return
        symbol = events[0].symbol
        self.prefetch.start(symbol, lambda: binance.mark_price(symbol))

    def _mark(self, symbol: str) -> tuple[Decimal | None, int | None]:
        if self.venues.binance is None:
            return None, None
        taken, mark = self.prefetch.take(symbol)  # asked while the ingest committed, or now
        if not taken:
            mark = self.venues.binance.mark_price(symbol)
        self._venue_fault("premiumIndex", mark)
        if isinstance(mark, VenueError):
            return None, None
        return mark.mark_price, max(0, self.ctx.clock.now_ms() - mark.time_ms)

    def _venue_fault(self, endpoint: str, answer: Any, conn: Any = None) -> None:
        """Report an answer that cannot be true (issue 10 §6) as the `venue_fault` fact: the policy
        decides the safety transition; the answer itself is never used."""
        if isinstance(answer, VenueError) and answer.code == IMPOSSIBLE_ANSWER:
            log.error("venue answer impossible (%s): %s", endpoint, answer.message)
            self.ctx.runtime.observe("venue_fault", {"endpoint": endpoint, "fault": answer.code,
                                                     "detail": scrub(answer.message)}, conn=conn)

    def _decide_one(self, ev: Any) -> list[OrderIntent]:
        """Decide one event; returns the intents its transaction inserted (committed, not yet sent)."""
        now = self.ctx.clock.now_ms()
        local = self._local_positions().get(norm(ev.symbol))
        filters = self._filters_for(ev.symbol)
        step = filters.step_size if filters else None
        sizing = self.settings.get("decision.sizing")
        mark, mark_age = self._mark(ev.symbol)
        intents, codes, fatal = [], [], None
        for leg in legs_for(ev.action_type, ev.prev_target, ev.next_target, local, step, sizing):
            qty = leg.qty_raw if leg.reduce_only or leg.qty_raw is None else floor_to_step(leg.qty_raw, step)
            expected = ev.expected_price
            fields = {
                "event_key": ev.key, "leg": leg.leg, "action": ev.action_type, "symbol": ev.symbol,
                "ts_ms": ev.timestamp_ms, "is_replay": bool(ev.is_replay), "reduce_only": leg.reduce_only,
                "strategy_version": self.settings.get("decision.strategy_version"),
                "replay_policy": self.settings.get("decision.replay_policy"),
                "sizing_mode": sizing["mode"], "kelly_win_rate": float(sizing["kelly_win_rate"]),
                "kelly_edge": float(sizing["kelly_edge"]), "kelly_fraction": float(sizing["kelly_fraction"]),
                "kelly_f": _f(leg.kelly_f), "qty_raw": _f(leg.qty_raw), "max_qty": float(sizing["max_qty"]),
                "local_qty": _f(local), "sign_matches": self._sign_matches(local, ev.prev_target),
                "mark_price": _f(mark), "mark_age_ms": mark_age, "fallback_used": False,
                "filters_available": filters is not None, "qty": _f(qty),
                "min_qty": _f(filters.min_qty) if filters else None,
                "notional": _f(qty * mark) if qty is not None and mark is not None else None,
                "min_notional": _f(filters.min_notional) if filters else None,
                "expected_price": _f(expected), "expected_age_ms": max(0, now - ev.timestamp_ms),
                "slippage_pct": (float(abs(mark - expected) / expected * 100)
                                 if mark is not None and expected else None),
            }
            decision = self.ctx.runtime.observe("intent_checked", fields, persist=False)
            rejected = decision.find("rejected")
            if rejected:
                code = rejected[0].data["code"]
                codes.append(code)
                if not rejected[0].data.get("droppable") or (leg.reduce_only and leg.leg == "close"):
                    fatal = code  # a failure not confined to this leg, or an empty close leg: whole event
                    break
                log.warning("event %s leg %s dropped: %s", ev.key, leg.leg, code)  # copy incomplete: visible
                continue
            cid = correlation_id(ev.tx_hash, ev.event_index, ev.symbol, None if leg.leg == "single" else leg.leg)
            intents.append({"correlation_id": cid, "client_order_id": client_order_id(cid), "event_key": ev.key,
                            "payload": {"symbol": ev.symbol, "side": leg.side, "type": "MARKET",
                                        "qty": str(qty), "price": None, "reduce_only": leg.reduce_only,
                                        "tif": "IOC", "is_replay": bool(ev.is_replay),
                                        "strategy_version": self.settings.get("decision.strategy_version"),
                                        "risk_notes": [], "contract_version": CONTRACT_VERSION}})
        if fatal is not None:
            intents = []
        reason = None if intents else (fatal or (codes[0] if codes else None))
        with self.ctx.db.transaction() as conn:
            self.ctx.runtime.observe("event_progress", {"event_key": ev.key, "step": "decided",
                                                        "intents": len(intents), "decision_reason": reason},
                                     conn=conn)
            new_state = self.engine.state(EVENT, event_key=ev.key)
            outcome = self.orders.record_decision(ev.key, intents, new_state, now, decision_reason=reason, conn=conn)
        self._fresh.update(outcome.inserted)
        if outcome.mismatch:
            log.error("event %s: intent payload mismatch for %s", ev.key, ", ".join(outcome.mismatched))
        made = set(outcome.inserted)
        return [OrderIntent(i["correlation_id"], i["client_order_id"], load_json(dump_json(i["payload"])),
                            i["event_key"], now) for i in intents if i["correlation_id"] in made]

    @staticmethod
    def _sign_matches(local: Decimal | None, prev: Decimal | None) -> bool | None:
        if local is None or prev is None or local == 0 or prev == 0:
            return None
        return (local > 0) == (prev > 0)

    def _local_positions(self) -> dict[str, Decimal]:
        return self.book.positions(self.ctx.clock.now_ms())

    def _checked_local_positions(self) -> dict[str, Decimal]:
        """The full recomputation, and the running sum checked against it: a disagreement is a bug,
        logged and repaired by rebuilding the sum; the full figure is the one returned."""
        full = Baselines(self.ctx.db).local_positions()
        kept = self.book.positions(self.ctx.clock.now_ms())
        if kept != full:
            log.error("local positions kept incrementally %s differ from the full recomputation %s: rebuilt",
                      kept, full)
            self.book.forget()
        self.full_check_due = False
        return full

    def _reconcile_local_positions(self, context: str, exchange: dict[str, Decimal] | None) -> dict[str, Decimal]:
        """Reconcile's local figure. The full recomputation reads every filled result since the
        baseline (linear in orders, so quadratic over a run when done every minute); it is done on
        every startup / manual / policy-requested reconcile, whenever the running sum does not agree
        with the exchange (before the policy acts on a drift, the figure is confirmed) and otherwise
        on the first loop reconcile after each hourly maintenance run (`service.retention`). Between
        those, the running sum the decisions use is the figure, and it equals the exchange's."""
        kept = self.book.positions(self.ctx.clock.now_ms())
        if context == "loop" and exchange == kept and not self.full_check_due:
            return kept
        return self._checked_local_positions()

    # ------------------------------------------------------------------ execute (§3.3, §4.5, §4.6)
    def execute(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Advance every unsettled intent one step; settle events whose intents are all final.
        An UNKNOWN is queried only when its next query is due (`_query_due_ms`); `next_query_ms`
        tells the loop when the earliest one is, so it wakes up for it. `stop` is asked before
        each order (SIGTERM: at most one more round trip)."""
        self.prefetch.drop()
        touched = 0
        self.next_query_ms = None
        for item in self.orders.unsettled_intents(self.statuses.final):
            if stop():
                break
            if self.statuses.is_parked(item.result):
                continue  # parked: only the startup sweep and `ops recover-orders` query it (§4.6)
            due = self._query_due_ms(item.result)
            if due is not None and due > self.ctx.clock.now_ms():
                self.next_query_ms = due if self.next_query_ms is None else min(self.next_query_ms, due)
                continue
            self._execute_one(item.intent, item.result)
            touched += 1
        self._settle_events()
        return touched

    def _query_due_ms(self, result: Any) -> int | None:
        """§4.6: an UNKNOWN's queries are min(unknown_poll_interval_sec, remaining window) apart, and
        none is sent before a rate-limit cooldown ends (§4.5: no Binance request of any kind). An open
        order (a state allowing `order.poll`: venue NEW / partially filled) is polled every
        order_poll_interval_sec, and once more at tif_seconds after it was sent (§3.3 POLL_TIMEOUT)."""
        if result is None or result.updated_at_ms is None:
            return None
        cooldown = self.venues.binance.http.cooldown_until_ms if self.venues.binance is not None else 0
        state = self.statuses.machine.states.get(self.statuses.state_of(result) or "")
        if state is not None and POLL_GATE in state.allows:
            due = result.updated_at_ms + int(float(self.settings.get("execution.order_poll_interval_sec")) * 1000)
            if result.created_at_ms is not None:
                due = min(due, result.created_at_ms + int(float(self.settings.get("execution.tif_seconds")) * 1000))
            return max(due, cooldown)
        if not self.statuses.is_unresolved(result):
            return None
        interval = int(float(self.settings.get("execution.unknown_poll_interval_sec")) * 1000)
        if result.first_unknown_ms is not None:
            window = int(float(self.settings.get("execution.retry_budget_window_sec")) * 1000)
            interval = min(interval, max(0, result.first_unknown_ms + window - result.updated_at_ms))
        return max(result.updated_at_ms + interval, cooldown)

    def _answer(self, cid: str, answer: str, error_code: str | None = None, message: str | None = None,
                order: Any = None, attempts: int = 0, first_unknown: int | None = None,
                sent_ms: int | None = None) -> None:
        """Report what the venue (or the pre-hook) said; store the status and code the policy chose."""
        now = self.ctx.clock.now_ms()
        with self.ctx.db.transaction() as conn:
            decision = self.ctx.runtime.observe("order_answered", {
                "correlation_id": cid, "answer": answer, "error_code": error_code,
                "query_attempts": attempts, "first_unknown_ms": first_unknown,
                "order_age_ms": None if sent_ms is None else now - sent_ms}, conn=conn)
            if error_code == IMPOSSIBLE_ANSWER:
                self._venue_fault("order", VenueError(IMPOSSIBLE_ANSWER, message or ""), conn=conn)
            status = self.engine.state(ORDER, correlation_id=cid)
            unresolved = status in self.statuses.unresolved_states
            self.orders.upsert_result(
                cid, self.statuses.stored(status), now,
                exchange_order_id=str(order.order_id) if order and order.order_id else None,
                filled_qty=order.executed_qty if order else None, avg_price=order.avg_price if order else None,
                error_code=self.engine.reason(ORDER, correlation_id=cid), error_message=message,
                contract_version=CONTRACT_VERSION, query_attempts=attempts,
                first_unknown_ms=(first_unknown or now) if unresolved else None, conn=conn)
        for effect in decision.find("reconcile_now"):
            self.reconcile(str(effect.data.get("context", "manual")))

    def _outcome(self, cid: str, outcome: OrderOutcome, attempts: int = 0, first_unknown: int | None = None,
                 sent_ms: int | None = None) -> None:
        self._answer(cid, outcome.answer, outcome.error_code, outcome.message, outcome.order, attempts,
                     first_unknown, sent_ms)

    def _execute_one(self, intent: Any, result: Any) -> None:
        cid, payload = intent.correlation_id, intent.payload
        client = self.venues.binance
        if result is not None and result.status is not None:  # sent before: follow up by query only
            if client is None:
                return
            unresolved = self.statuses.is_unresolved(result)
            attempts = (result.query_attempts or 0) + 1 if unresolved else 0
            answer = query_outcome(client.query_order(payload["symbol"], intent.client_order_id, _qty(payload)))
            self._outcome(cid, answer, attempts, result.first_unknown_ms if unresolved else None,
                          sent_ms=result.created_at_ms)
            return
        if client is not None and cid not in self._fresh:  # no result: maybe sent before a crash; query first
            found = query_outcome(client.query_order(payload["symbol"], intent.client_order_id, _qty(payload)))
            if found.order is not None:
                self._outcome(cid, found)
                return
        if not self.database_ok():  # deleted or replaced since the tick began: not one more order
            return
        gate = "order.reduce" if payload["reduce_only"] else "order.open"
        if not self.engine.may(gate):  # the pre-hook: the policy turns this into its rejection code
            self._answer(cid, GATE_CLOSED, message=f"gate {gate} closed")
            return
        if client is None:
            self._answer(cid, NO_ADAPTER)  # dry-run / backfill-only: never sent
            return
        self.counters.orders_sent += 1
        outcome = client.submit_market_order(payload["symbol"], payload["side"], Decimal(payload["qty"]),
                                             bool(payload["reduce_only"]), intent.client_order_id)
        if outcome.order is not None:
            self.counters.orders_ok += 1
        self._outcome(cid, outcome)

    def sweep_parked(self) -> int:
        """Startup sweep (§4.6): every parked UNKNOWN is queried once before new events."""
        client = self.venues.binance
        self.prefetch.drop()
        if client is None:
            return 0
        swept = 0
        for result in self.statuses.parked_results(self.orders):
            intent = self._intent(result.correlation_id)
            if intent is None:
                continue
            answer = query_outcome(client.query_order(intent.payload["symbol"], intent.client_order_id,
                                                      _qty(intent.payload)))
            self._outcome(result.correlation_id, answer, result.query_attempts, result.first_unknown_ms,
                          sent_ms=result.created_at_ms)
            swept += 1
        return swept

    def _intent(self, cid: str) -> Any:
        with self.ctx.db.transaction() as conn:
            event = conn.execute(select(order_intents.c.event_key).where(
                order_intents.c.correlation_id == cid)).scalar_one_or_none()
        if event is None:
            return None
        return next((i for i in self.orders.intents_for(event) if i.correlation_id == cid), None)

    def _settle_events(self) -> None:
        decided = [s for s in self.open_event_states if s != self.pending_state]
        final = set(self.statuses.final)
        for record in self.events.unsettled(decided):
            intents = self.orders.intents_for(record.key)
            results = [self.orders.result(i.correlation_id) for i in intents]
            if intents and all(r is not None and (r.status in final or self.statuses.is_parked(r)) for r in results):
                now = self.ctx.clock.now_ms()
                with self.ctx.db.transaction() as conn:
                    self.ctx.runtime.observe("event_progress", {"event_key": record.key, "step": "settled",
                                                                "intents": len(intents), "decision_reason": None},
                                             conn=conn)
                    self.events.set_state(record.key, self.engine.state(EVENT, event_key=record.key), now, conn=conn)

    # ------------------------------------------------------------------ reconcile (§4.7)
    def reconcile(self, context: str = "loop") -> str | None:
        """Compare local and exchange positions; the policy classifies and acts. Live mode only."""
        client = self.venues.binance
        self.prefetch.drop()
        if client is None:
            return None
        now = self.ctx.clock.now_ms()
        snapshot = client.position_risk()
        self._venue_fault("positionRisk", snapshot)
        http = client.http
        fetch_ok = not isinstance(snapshot, VenueError)
        exchange: dict[str, Decimal] = {}
        position_mode_ok = True
        age = None
        if fetch_ok:
            position_mode_ok = snapshot.position_mode_ok
            age = max(0, now - snapshot.snapshot_ts_ms)
            exchange = {norm(p.symbol): p.position_amt for p in snapshot.positions if abs(p.position_amt) > DUST}
        local = self._reconcile_local_positions(context, exchange if fetch_ok else None)
        symbols = sorted(set(local) | set(exchange))
        drifts = {s: abs(local.get(s, Decimal(0)) - exchange.get(s, Decimal(0))) for s in symbols}
        missing_local = sorted(set(exchange) - set(local))
        missing_exchange = sorted(set(local) - set(exchange))
        fields = {"context": context, "fetch_ok": fetch_ok, "position_mode_ok": position_mode_ok,
                  "snapshot_age_ms": age, "max_drift": float(max(drifts.values(), default=Decimal(0))),
                  "missing_local": missing_local, "missing_exchange": missing_exchange,
                  "adapter_last_success_ms": http.last_success_ms, "adapter_last_error_ms": http.last_error_ms,
                  "unparked_unknown": len(self.statuses.unresolved_results(self.orders))}
        before = (self.engine.state(SAFETY), self.engine.reason(SAFETY))
        with self.ctx.db.transaction() as conn:
            self.ctx.runtime.observe("reconcile_completed", fields, conn=conn)
            raw = self.engine.state(RECONCILE)
            ReconcileRuns(self.ctx.db).write({
                "ts_ms": now, "context": context, "raw_result": raw, "max_drift": fields["max_drift"],
                "drifts": {k: str(v) for k, v in drifts.items()}, "missing_local": missing_local,
                "missing_exchange": missing_exchange, "snapshot_age_ms": age, "mode_before": before[0],
                "mode_after": self.engine.state(SAFETY), "reason_after": self.engine.reason(SAFETY)}, conn=conn)
            self.state.set_many({CopytradeKey.LAST_RECONCILE_MS: str(now), CopytradeKey.LAST_RECONCILE_RESULT: raw},
                                now, conn=conn)
        return raw

