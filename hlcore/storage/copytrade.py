"""The copy-trader's repositories: cursor and ingest keys, events, order intents and results,
reconcile runs and baselines (spec/copytrader.md §3.2, §3.3, §4.1–4.2, §4.7, §6, §8).

This module owns the storage half of the copy-trader's exactly-once guarantees:

- fills, their events and the cursor advance commit in one transaction (`Events.insert_ingested`),
  so a crash never leaves a cursor past an event that was not stored, nor an event without its fills;
- an event's intents and its new state commit in one transaction (`Orders.record_decision`), so an
  intent is persisted before it can be submitted and a decided event always has its intents;
- intents are immutable: a different payload for a stored correlation id is reported, never written;
- the cursor only moves forward (§4.2), whoever advances it (ingest or a maintenance skip).

Every state, status and reason name is an argument: the policy owns those names (house rule 4).
Times are arguments too (`now_ms`), never read from a clock (house rule 8). Writers take an
optional `conn` to join a caller's transaction. Quantities go in as Decimal (or anything `str`
turns into one) through the schema's Numeric columns and come back as Decimal.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Connection, Row, Select, Table, and_, bindparam, delete, func, or_, select, union_all, update

from hlcore.errors import CheckFailed
from hlcore.redact import scrub
from hlcore.storage.db import Database, insert_ignore, upsert
from hlcore.storage.repos import TypedState, dump_json, int_value, load_json
from hlcore.storage.schema import (
    baseline_positions,
    baseline_snapshots,
    ingested_fills,
    order_intents,
    order_results,
    processed_txs,
    reconcile_runs,
    system_state,
)

# --------------------------------------------------------------------------------------------------
# Keys, event keys and small values
# --------------------------------------------------------------------------------------------------


class CopytradeKey(StrEnum):
    """The copy-trader's `system_state` keys (spec §6), so no caller spells one by hand."""

    SCHEMA_VERSION = "schema_version"
    CONFIG_HASH = "config_hash"
    CONFIG_VERSION = "config_version"
    CONTRACT_VERSION = "contract_version"
    BOOT_MS = "boot_ms"
    SAFETY_MODE = "safety_mode"
    SAFETY_REASON_CODE = "safety_reason_code"
    SAFETY_REASON_MESSAGE = "safety_reason_message"
    SAFETY_CHANGED_AT_MS = "safety_changed_at_ms"
    LAST_PROCESSED_TIMESTAMP_MS = "last_processed_timestamp_ms"
    LAST_PROCESSED_EVENT_KEY = "last_processed_event_key"
    LAST_INGEST_SUCCESS_MS = "last_ingest_success_ms"
    MAINTENANCE_SKIP_APPLIED_MS = "maintenance_skip_applied_ms"
    ADAPTER_LAST_SUCCESS_MS = "adapter_last_success_ms"
    ADAPTER_LAST_ERROR_MS = "adapter_last_error_ms"
    HALT_RECOVERY_NONCRITICAL_COUNT = "halt_recovery_noncritical_count"
    BINANCE_COOLDOWN_UNTIL_MS = "binance_cooldown_until_ms"
    TIME_OFFSET_MS = "time_offset_ms"
    TIME_OFFSET_AT_MS = "time_offset_at_ms"
    LAST_RECONCILE_MS = "last_reconcile_ms"
    LAST_RECONCILE_RESULT = "last_reconcile_result"
    LOOP_LAST_TICK_STARTED_MS = "loop_last_tick_started_ms"
    LOOP_LAST_TICK_MS = "loop_last_tick_ms"
    EVENT_GAP_WARNED_MS = "event_gap_warned_ms"


MAINTENANCE_TX_HASH = "maintenance"
MAINTENANCE_SYMBOL = "MAINTENANCE"
"""The fixed hash and symbol of the cursor a maintenance skip writes (§4.1 Skip effect)."""

BUY = "BUY"
SELL = "SELL"
"""Binance order sides as stored in an intent payload: venue vocabulary, not policy names."""

POSITION_DUST = Decimal("1e-9")
"""Local positions with |qty| at or below this are flat (spec §4.7 step 4, fixed by the spec)."""

_IN_CHUNK = 500  # keeps IN (...) lists well under SQLite's bound-parameter limit


class EventKey(NamedTuple):
    """A parsed event key; tuple order is the cursor order (timestamp, index, then hash, symbol)."""

    timestamp_ms: int
    event_index: int
    tx_hash: str
    symbol: str

    def __str__(self) -> str:
        return f"{self.timestamp_ms}|{self.event_index}|{self.tx_hash}|{self.symbol}"


def event_key(timestamp_ms: int, event_index: int, tx_hash: str, symbol: str) -> str:
    """The event key and cursor value `"{timestamp_ms}|{event_index}|{tx_hash}|{symbol}"` (§2)."""
    return str(EventKey(int(timestamp_ms), int(event_index), tx_hash, symbol))


def parse_event_key(key: str) -> EventKey:
    """Split an event key; a malformed one is a bug upstream, so it raises rather than guesses."""
    parts = key.split("|")
    if len(parts) != 4 or not parts[2] or not parts[3]:
        raise ValueError(f"malformed event key {key!r}: want 'timestamp_ms|event_index|tx_hash|symbol'")
    try:
        return EventKey(int(parts[0]), int(parts[1]), parts[2], parts[3])
    except ValueError as exc:
        raise ValueError(f"malformed event key {key!r}: timestamp and index must be integers") from exc


def normalise_symbol(symbol: str) -> str:
    """Strip `-` and `_` so `BTC-USDT`, `BTC_USDT` and `BTCUSDT` compare equal (§4.7 step 4)."""
    return symbol.replace("-", "").replace("_", "")


def _dec(value: Any) -> Decimal | None:
    """A stored quantity back as Decimal; via `str` so a float keeps its shortest decimal digits."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # SQLite's NUMERIC hands integral values back as int: same digits on PostgreSQL
    return Decimal(str(value))


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]




def _check_columns(table: Table, record: Mapping[str, Any], *, allowed: Iterable[str] = ()) -> None:
    unknown = sorted(set(record) - set(table.c.keys()) - set(allowed))
    if unknown:
        raise ValueError(f"{table.name}: unknown column(s) {', '.join(unknown)}")


# --------------------------------------------------------------------------------------------------
# system_state: cursor and ingest keys
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """The ingest cursor (§4.2): the last processed event's time and key.

    `event_key` may be None for a cursor seeded with a time only (fresh DB = boot time, §4.1);
    such a cursor sorts before every event of the same millisecond.
    """

    timestamp_ms: int
    event_key: str | None

    @property
    def order(self) -> tuple[int, int, str, str]:
        if self.event_key is None:
            return (self.timestamp_ms, -1, "", "")
        return parse_event_key(self.event_key)

    def to_dict(self) -> dict[str, Any]:
        return {"timestamp_ms": self.timestamp_ms, "event_key": self.event_key}


@dataclass(frozen=True)
class SkipEvidence:
    """What a maintenance skip changed (§4.1 Skip effect, §8 `maintenance-skip --evidence`)."""

    before_cursor: Cursor | None
    after_cursor: Cursor
    abandoned_from_ms: int | None
    abandoned_to_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "before_cursor": None if self.before_cursor is None else self.before_cursor.to_dict(),
            "after_cursor": self.after_cursor.to_dict(),
            "abandoned_from_ms": self.abandoned_from_ms,
            "abandoned_to_ms": self.abandoned_to_ms,
        }


_CURSOR_KEYS = select(system_state.c["key"], system_state.c.value).where(system_state.c["key"].in_(
    [str(CopytradeKey.LAST_PROCESSED_TIMESTAMP_MS), str(CopytradeKey.LAST_PROCESSED_EVENT_KEY)]))


_INGEST_KEYS = select(system_state.c["key"], system_state.c.value).where(system_state.c["key"].in_(
    [str(CopytradeKey.LAST_PROCESSED_TIMESTAMP_MS), str(CopytradeKey.LAST_PROCESSED_EVENT_KEY),
     str(CopytradeKey.BOOT_MS), str(CopytradeKey.LAST_INGEST_SUCCESS_MS),
     str(CopytradeKey.MAINTENANCE_SKIP_APPLIED_MS)]))


@dataclass(frozen=True)
class IngestKeys:
    """The keys an ingest tick starts from, read together (one statement a tick, not four)."""

    boot_ms: int | None
    cursor: Cursor | None
    last_ingest_success_ms: int | None
    maintenance_skip_applied_ms: int | None


def _int_key(stored: dict[str, str], key: str) -> int | None:
    return int_value(key, stored.get(key))


def _cursor_of(stored: dict[str, str]) -> Cursor | None:
    ts = _int_key(stored, CopytradeKey.LAST_PROCESSED_TIMESTAMP_MS)
    return None if ts is None else Cursor(ts, stored.get(CopytradeKey.LAST_PROCESSED_EVENT_KEY) or None)


class CopytradeState(TypedState):
    """Typed access to the cursor and ingest keys of `system_state` (§4.1, §4.2, §6)."""

    def ingest_keys(self, *, conn: Connection | None = None) -> IngestKeys:
        """`boot_ms`, `cursor()`, `last_ingest_success_ms` and the maintenance-skip stamp in one read."""
        with self.db.begin_or_join(conn) as c:
            stored = dict(c.execute(_INGEST_KEYS).all())
        return IngestKeys(_int_key(stored, CopytradeKey.BOOT_MS), _cursor_of(stored),
                          _int_key(stored, CopytradeKey.LAST_INGEST_SUCCESS_MS),
                          _int_key(stored, CopytradeKey.MAINTENANCE_SKIP_APPLIED_MS))

    def boot_ms(self, *, conn: Connection | None = None) -> int | None:
        return self.get_int(CopytradeKey.BOOT_MS, conn=conn)

    def cursor(self, *, conn: Connection | None = None) -> Cursor | None:
        """The stored cursor, or None before the first boot seeded it."""
        with self.db.begin_or_join(conn) as c:
            stored = dict(c.execute(_CURSOR_KEYS).all())  # one read for both keys (issue 12)
        return _cursor_of(stored)

    def advance_cursor(self, timestamp_ms: int, key: str, now_ms: int, *, conn: Connection | None = None) -> bool:
        """Move the cursor to `key` only if it is strictly after the stored one; True if it moved.

        Order is the parsed key tuple (timestamp_ms, event_index, tx_hash, symbol), so an equal key,
        an older time or the same time with a smaller index leave the cursor alone (§4.2 Cursor).
        """
        new = Cursor(int(timestamp_ms), key)
        if new.order[0] != new.timestamp_ms:
            raise ValueError(f"cursor key {key!r} does not carry timestamp_ms {timestamp_ms}")
        with self.db.begin_or_join(conn) as c:
            current = self.cursor(conn=c)
            if current is not None and new.order <= current.order:
                return False
            self.set_many(
                {
                    CopytradeKey.LAST_PROCESSED_TIMESTAMP_MS: new.timestamp_ms,
                    CopytradeKey.LAST_PROCESSED_EVENT_KEY: key,
                },
                now_ms,
                conn=c,
            )
            return True

    def last_ingest_success_ms(self, *, conn: Connection | None = None) -> int | None:
        return self.get_int(CopytradeKey.LAST_INGEST_SUCCESS_MS, conn=conn)

    def stamp_ingest_success(self, now_ms: int, *, conn: Connection | None = None) -> None:
        """Record a complete fetch (all pages) at `now_ms` (§4.1 Success stamp)."""
        self.set_many({CopytradeKey.LAST_INGEST_SUCCESS_MS: now_ms}, now_ms, conn=conn)

    def maintenance_skip(
        self, now_ms: int, *, from_ms: int | None = None, conn: Connection | None = None
    ) -> SkipEvidence:
        """Apply the skip effect (§4.1) in one transaction and return its evidence.

        Cursor `"{now}|0|maintenance|MAINTENANCE"`, `maintenance_skip_applied_ms` and
        `last_ingest_success_ms` = now. The abandoned range runs from `from_ms` (the gap start the
        policy names), else the last ingest success, else the old cursor time, to now. Whether a
        skip is allowed is the policy's and the operator command's call, not checked here. The
        cursor still never moves back: a stored cursor already past the skip key is kept.
        """
        skip_key = event_key(now_ms, 0, MAINTENANCE_TX_HASH, MAINTENANCE_SYMBOL)
        with self.db.begin_or_join(conn) as c:
            before = self.cursor(conn=c)
            last_success = self.last_ingest_success_ms(conn=c)
            if from_ms is not None:
                abandoned_from = from_ms
            elif last_success is not None:
                abandoned_from = last_success
            else:
                abandoned_from = None if before is None else before.timestamp_ms
            self.advance_cursor(now_ms, skip_key, now_ms, conn=c)
            self.set_many(
                {
                    CopytradeKey.MAINTENANCE_SKIP_APPLIED_MS: now_ms,
                    CopytradeKey.LAST_INGEST_SUCCESS_MS: now_ms,
                },
                now_ms,
                conn=c,
            )
            after = self.cursor(conn=c)
        assert after is not None  # advance_cursor just wrote it, or kept a later one
        return SkipEvidence(before, after, abandoned_from, now_ms)


# --------------------------------------------------------------------------------------------------
# processed_txs and ingested_fills
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRecord:
    """One `processed_txs` row; quantities as Decimal."""

    tx_hash: str
    event_index: int
    symbol: str
    timestamp_ms: int
    is_replay: bool
    action_type: str | None
    prev_target: Decimal | None
    next_target: Decimal | None
    expected_price: Decimal | None
    state: str
    decision_reason: str | None
    created_at_ms: int | None
    updated_at_ms: int | None

    @property
    def key(self) -> str:
        return event_key(self.timestamp_ms, self.event_index, self.tx_hash, self.symbol)

    @classmethod
    def from_row(cls, row: Row[Any]) -> EventRecord:
        m = row._mapping
        return cls(
            tx_hash=m["tx_hash"],
            event_index=int(m["event_index"]),
            symbol=m["symbol"],
            timestamp_ms=int(m["timestamp_ms"]),
            is_replay=bool(m["is_replay"]),
            action_type=m["action_type"],
            prev_target=_dec(m["prev_target"]),
            next_target=_dec(m["next_target"]),
            expected_price=_dec(m["expected_price"]),
            state=m["state"],
            decision_reason=m["decision_reason"],
            created_at_ms=m["created_at_ms"],
            updated_at_ms=m["updated_at_ms"],
        )


@dataclass(frozen=True)
class Pruned:
    """Rows removed by one retention pass (§6 Retention)."""

    events: int
    fills: int


_EVENT_INPUT = ("tx_hash", "event_index", "symbol", "timestamp_ms")


def _event_pk(key: str) -> Any:
    k = parse_event_key(key)
    return and_(
        processed_txs.c.tx_hash == k.tx_hash,
        processed_txs.c.event_index == k.event_index,
        processed_txs.c.symbol == k.symbol,
    )


# Statements on the copy-trader's fill -> order path, built once: constructing a statement costs
# more than running it (issue 12); values are bound at execution.
_f, _t = ingested_fills, processed_txs
_SEEN_TIDS = select(_f.c.tid).where(_f.c.tid.in_(bindparam("ids", expanding=True)))
_SEEN_CONTENT = select(_f.c.tx_hash, _f.c.coin, _f.c.time_ms, _f.c.side, _f.c.px, _f.c.sz, _f.c.start_position).where(
    _f.c.tx_hash.in_(bindparam("hashes", expanding=True)))
_UNSETTLED_EVENTS = (select(_t).where(_t.c.state.in_(bindparam("states", expanding=True)))
                     .order_by(_t.c.timestamp_ms, _t.c.event_index, _t.c.tx_hash, _t.c.symbol))
_SET_EVENT_STATE = (update(_t)
                    .where(and_(_t.c.tx_hash == bindparam("k_tx"), _t.c.event_index == bindparam("k_index"),
                                _t.c.symbol == bindparam("k_symbol")))
                    .values(state=bindparam("new_state"), decision_reason=bindparam("new_reason"),
                            updated_at_ms=bindparam("now_ms")))
_STORED_INTENTS = select(order_intents.c.correlation_id, order_intents.c.client_order_id,
                         order_intents.c.intent_payload).where(
    order_intents.c.correlation_id.in_(bindparam("ids", expanding=True)))
_RESULT = select(order_results).where(order_results.c.correlation_id == bindparam("cid"))
_INSERT_INTENT = order_intents.insert()  # built once: the decision inserts on the fill -> order path
_ACTIVE_BASELINE = select(baseline_snapshots).where(baseline_snapshots.c.active.is_(True))
_BASELINE_POSITIONS = (select(baseline_positions.c.symbol, baseline_positions.c.qty)
                       .where(baseline_positions.c.baseline_id == bindparam("baseline_id"))
                       .order_by(baseline_positions.c.symbol))


class Events:
    """`processed_txs` (the event lifecycle, §3.2) and `ingested_fills` (fill dedup, §4.2)."""

    def __init__(self, db: Database):
        self.db = db
        self.state = CopytradeState(db)

    def insert_ingested(
        self,
        events: Sequence[Mapping[str, Any]],
        fills: Sequence[Mapping[str, Any]],
        cursor: Cursor | None,
        now_ms: int,
        *,
        pending_state: str,
        conn: Connection | None = None,
    ) -> int:
        """Commit one ingest: new events in `pending_state`, new fills, the cursor advance.

        All in one transaction (§3.2 "fills + event + cursor"): any failure writes nothing.
        `events` are `processed_txs` columns (tx_hash, event_index, symbol, timestamp_ms required;
        is_replay, action_type, prev_target, next_target, expected_price optional; `state`,
        `decision_reason` and the stamps are set here). `fills` are `ingested_fills` columns.
        Both are insert-or-ignore on their primary keys. Returns how many events were new.
        """
        event_rows = [self._event_row(e, pending_state, now_ms) for e in events]
        fill_rows = []
        for f in fills:
            _check_columns(ingested_fills, f)
            fill_rows.append(dict(f))
        new_events = 0
        with self.db.begin_or_join(conn) as c:
            for row in event_rows:
                if insert_ignore(c, processed_txs, row, ("tx_hash", "event_index", "symbol")):
                    new_events += 1
            for row in fill_rows:
                insert_ignore(c, ingested_fills, row, ("tid",))
            if cursor is not None:
                if cursor.event_key is None:
                    raise ValueError("an ingest cursor needs an event key")
                self.state.advance_cursor(cursor.timestamp_ms, cursor.event_key, now_ms, conn=c)
        return new_events

    @staticmethod
    def _event_row(event: Mapping[str, Any], pending_state: str, now_ms: int) -> dict[str, Any]:
        _check_columns(processed_txs, event, allowed=("event_key",))
        missing = [k for k in _EVENT_INPUT if event.get(k) is None]
        if missing:
            raise ValueError(f"processed_txs row lacks {', '.join(missing)}")
        row = {k: v for k, v in event.items() if k != "event_key"}
        given_key = event.get("event_key")
        if given_key is not None:
            derived = event_key(row["timestamp_ms"], row["event_index"], row["tx_hash"], row["symbol"])
            if given_key != derived:
                raise ValueError(f"event_key {given_key!r} does not match its columns ({derived!r})")
        row["is_replay"] = bool(row.get("is_replay", False))
        row["state"] = pending_state
        row["decision_reason"] = None
        row["created_at_ms"] = now_ms
        row["updated_at_ms"] = now_ms
        return row

    def get(self, key: str, *, conn: Connection | None = None) -> EventRecord | None:
        with self.db.begin_or_join(conn) as c:
            row = c.execute(select(processed_txs).where(_event_pk(key))).first()
        return None if row is None else EventRecord.from_row(row)

    def unsettled(self, states: Iterable[str], *, conn: Connection | None = None) -> list[EventRecord]:
        """Events in `states`, oldest first by (timestamp_ms, event_index): the resume order (§3.2)."""
        wanted = sorted(set(states))
        if not wanted:
            return []
        with self.db.begin_or_join(conn) as c:
            return [EventRecord.from_row(r) for r in c.execute(_UNSETTLED_EVENTS, {"states": wanted})]

    def set_state(
        self,
        key: str,
        state: str,
        now_ms: int,
        decision_reason: str | None = None,
        *,
        conn: Connection | None = None,
    ) -> bool:
        """Set an event's state (and decision reason, replaced even when None); False if no such event."""
        k = parse_event_key(key)
        params = {"k_tx": k.tx_hash, "k_index": k.event_index, "k_symbol": k.symbol, "new_state": state,
                  "new_reason": decision_reason, "now_ms": now_ms}
        with self.db.begin_or_join(conn) as c:
            return c.execute(_SET_EVENT_STATE, params).rowcount == 1

    def seen_tids(self, tids: Iterable[int], *, conn: Connection | None = None) -> set[int]:
        """Which of `tids` are already ingested (§4.2 Dedup: only new fills are aggregated)."""
        wanted = sorted({int(t) for t in tids})
        seen: set[int] = set()
        with self.db.begin_or_join(conn) as c:
            for chunk in _chunks(wanted):
                seen.update(int(t) for t in c.execute(_SEEN_TIDS, {"ids": list(chunk)}).scalars())
        return seen

    def seen_content(self, tx_hashes: Iterable[str], *,
                     conn: Connection | None = None) -> set[tuple[str, str, int, str, float, float, float]]:
        """Content keys (`Fill.content_key`) of the ingested fills of these transactions, so a fill
        stored under one id (tid or synthetic) is recognised when it comes back under the other."""
        wanted = sorted(set(tx_hashes))
        seen: set[tuple[str, str, int, str, float, float, float]] = set()
        with self.db.begin_or_join(conn) as c:
            for chunk in _chunks(wanted):
                rows = c.execute(_SEEN_CONTENT, {"hashes": list(chunk)})
                seen.update((r.tx_hash, r.coin, int(r.time_ms), r.side, float(r.px), float(r.sz),
                             float(r.start_position)) for r in rows
                            if None not in (r.coin, r.time_ms, r.side, r.px, r.sz, r.start_position))
        return seen

    def prune_done(
        self, before_ms: int, done_state: str, keep_key: str | None, *, conn: Connection | None = None
    ) -> Pruned:
        """Retention (§6): drop `done_state` events and fills older than `before_ms`.

        The caller computes `before_ms` = now − max(dedup TTL, window + overlap). The cursor's event
        (`keep_key`) and its fills are kept, and so are the fills of events not yet done, whatever
        their age, so a resumed event never loses the fills that dedup it.
        """
        t, f = processed_txs, ingested_fills
        event_cond = and_(t.c.state == done_state, t.c.timestamp_ms < before_ms)
        if keep_key is not None:
            event_cond = and_(event_cond, ~_event_pk(keep_key))
        with self.db.begin_or_join(conn) as c:
            live = c.execute(
                select(t.c.timestamp_ms, t.c.event_index, t.c.tx_hash, t.c.symbol).where(t.c.state != done_state)
            ).all()
            keep = {event_key(*r) for r in live}
            if keep_key is not None:
                keep.add(keep_key)
            events_deleted = int(c.execute(delete(t).where(event_cond)).rowcount)
            fill_cond = f.c.time_ms < before_ms
            if keep:
                fill_cond = and_(fill_cond, f.c.event_key.notin_(sorted(keep)))
            fills_deleted = int(c.execute(delete(f).where(fill_cond)).rowcount)
        return Pruned(events_deleted, fills_deleted)


# --------------------------------------------------------------------------------------------------
# order_intents and order_results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderIntent:
    """One `order_intents` row; `payload` is the decoded canonical JSON (§6)."""

    correlation_id: str
    client_order_id: str
    payload: Mapping[str, Any]
    event_key: str | None = None
    created_at_ms: int | None = None


@dataclass(frozen=True)
class OrderResult:
    """One `order_results` row; quantities as Decimal."""

    correlation_id: str
    status: str | None
    exchange_order_id: str | None
    filled_qty: Decimal | None
    avg_price: Decimal | None
    error_code: str | None
    error_message: str | None
    contract_version: str
    query_attempts: int
    first_unknown_ms: int | None
    created_at_ms: int | None
    updated_at_ms: int | None

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> OrderResult:
        return cls(
            correlation_id=m["correlation_id"],
            status=m["status"],
            exchange_order_id=m["exchange_order_id"],
            filled_qty=_dec(m["filled_qty"]),
            avg_price=_dec(m["avg_price"]),
            error_code=m["error_code"],
            error_message=m["error_message"],
            contract_version=m["contract_version"],
            query_attempts=int(m["query_attempts"] or 0),
            first_unknown_ms=m["first_unknown_ms"],
            created_at_ms=m["created_at_ms"],
            updated_at_ms=m["updated_at_ms"],
        )


@dataclass(frozen=True)
class UnsettledIntent:
    """An intent still to execute or follow up, with its latest result (None: never answered)."""

    intent: OrderIntent
    result: OrderResult | None


@dataclass(frozen=True)
class DecisionOutcome:
    """What `record_decision` did. On a mismatch nothing was written (not even the event state)."""

    inserted: tuple[str, ...] = ()
    existing: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()

    @property
    def mismatch(self) -> bool:
        return bool(self.mismatched)


class EventNotFound(LookupError):
    """A decision named an event that is not stored: a bug, so the decision is rolled back."""


def _intent_from_mapping(m: Mapping[str, Any]) -> OrderIntent:
    return OrderIntent(
        correlation_id=m["correlation_id"],
        client_order_id=m["client_order_id"],
        payload=load_json(m["intent_payload"]),
        event_key=m["event_key"],
        created_at_ms=m["created_at_ms"],
    )


_RESULT_COLUMNS = [c for c in order_results.c if c.name != "correlation_id"]


def _unsettled_intents_query(with_terminal: bool) -> Select[Any]:
    i, r = order_intents, order_results
    query = (
        select(i, *[col.label(f"r_{col.name}") for col in [r.c.correlation_id, *_RESULT_COLUMNS]])
        .select_from(i.outerjoin(r, r.c.correlation_id == i.c.correlation_id))
        .order_by(i.c.created_at_ms, i.c.correlation_id)
    )
    if with_terminal:  # with no terminal status every intent is unsettled
        query = query.where(r.c.correlation_id.is_(None) | r.c.status.is_(None)
                            | r.c.status.notin_(bindparam("terminal", expanding=True)))
    return query


_UNSETTLED_INTENTS = {flag: _unsettled_intents_query(flag) for flag in (False, True)}
"""Read every tick by execute: built once (issue 12: building a statement costs more than running it)."""


def _open_results_query(terminal_count: int) -> Select[Any]:
    """The rows of `_unsettled_intents_query(True)`, in its order, without joining every intent to
    its result (issue 17: that join grew with every order, on every tick):
    (1) results whose status is NULL or outside the sorted terminal statuses t0 < t1 < …, written
    as ranges (`status < t0 OR t0 < status < t1 OR … OR status > tk`) so each is a seek on
    `ix_order_results_status` (a NOT IN scans);
    (2) intents with no result at all, LIMITed to how many there are: `order_results.correlation_id`
    is a foreign key to `order_intents` (enforced on both backends; SQLite's `foreign_keys` pragma
    is set at every connect), so the two row counts differ by exactly that number. The counts walk
    the smallest index of each table in the database engine; a limit of 0 (the usual case: every
    intent sent so far was answered) stops the anti-join before it reads a row."""
    i, r = order_intents, order_results
    bounds = [bindparam(f"t{n}") for n in range(terminal_count)]
    ranges = [r.c.status < bounds[0], r.c.status > bounds[-1]]
    ranges += [and_(r.c.status > lo, r.c.status < hi) for lo, hi in itertools.pairwise(bounds)]
    cols = [i, *[col.label(f"r_{col.name}") for col in [r.c.correlation_id, *_RESULT_COLUMNS]]]
    open_ = select(*cols).select_from(i.join(r, r.c.correlation_id == i.c.correlation_id)).where(
        or_(r.c.status.is_(None), *ranges))
    unanswered = (select(func.count()).select_from(order_intents).scalar_subquery()
                  - select(func.count()).select_from(order_results).scalar_subquery())
    none = (select(*cols).select_from(i.outerjoin(r, r.c.correlation_id == i.c.correlation_id))
            .where(r.c.correlation_id.is_(None)).limit(unanswered).subquery())
    both = union_all(open_, select(none)).subquery()
    return select(both).order_by(both.c.created_at_ms, both.c.correlation_id)


_OPEN_RESULTS: dict[int, Select[Any]] = {}
"""`_open_results_query` per number of terminal statuses, built once."""

_UNKNOWN_RESULTS = (select(order_results).where(order_results.c.status == bindparam("status"))
                    .order_by(order_results.c.first_unknown_ms, order_results.c.created_at_ms,
                              order_results.c.correlation_id))


class Orders:
    """`order_intents` (immutable, persisted before submit) and `order_results` (§3.3, §4.5, §4.6)."""

    def __init__(self, db: Database):
        self.db = db
        self.events = Events(db)

    def record_decision(
        self,
        event_key: str,
        intents: Sequence[OrderIntent | Mapping[str, Any]],
        decided_state: str,
        now_ms: int,
        *,
        decision_reason: str | None = None,
        conn: Connection | None = None,
    ) -> DecisionOutcome:
        """Persist an event's intents and set its state in one transaction (§3.2, §5 step 3).

        Intents are insert-or-ignore by correlation id and immutable: if a stored intent has another
        payload (or client order id), nothing is written and the outcome lists it, so the caller can
        end the event with the policy's mismatch reason. A client order id already used by another
        correlation id raises IntegrityError and rolls the whole decision back. With no intents this
        only sets the state (PENDING → DONE with a reject code).
        """
        wanted: dict[str, tuple[str, str]] = {}
        mismatched: list[str] = []
        for intent in intents:
            it = intent if isinstance(intent, OrderIntent) else OrderIntent(**intent)
            pair = (it.client_order_id, dump_json(dict(it.payload)))
            if it.correlation_id in wanted and wanted[it.correlation_id] != pair:
                mismatched.append(it.correlation_id)
            wanted.setdefault(it.correlation_id, pair)
        inserted: list[str] = []
        existing: list[str] = []
        with self.db.begin_or_join(conn) as c:
            stored: dict[str, tuple[str, str]] = {}
            ids = sorted(wanted)
            for chunk in _chunks(ids):
                stored.update({r[0]: (r[1], r[2]) for r in c.execute(_STORED_INTENTS, {"ids": list(chunk)})})
            for cid in wanted:
                if cid in stored:
                    if stored[cid] != wanted[cid]:
                        mismatched.append(cid)
                    else:
                        existing.append(cid)
            if mismatched:
                return DecisionOutcome(existing=tuple(existing), mismatched=tuple(dict.fromkeys(mismatched)))
            for cid, (client_order_id, payload) in wanted.items():
                if cid in stored:
                    continue
                c.execute(_INSERT_INTENT, {"correlation_id": cid, "client_order_id": client_order_id,
                                                   "event_key": event_key, "intent_payload": payload,
                                                   "created_at_ms": now_ms})
                inserted.append(cid)
            if not self.events.set_state(event_key, decided_state, now_ms, decision_reason, conn=c):
                raise EventNotFound(f"no stored event {event_key!r}")
        return DecisionOutcome(inserted=tuple(inserted), existing=tuple(existing))

    def intents_for(self, event_key: str, *, conn: Connection | None = None) -> list[OrderIntent]:
        """An event's intents in creation order (created_at_ms, then correlation id)."""
        t = order_intents
        query = select(t).where(t.c.event_key == event_key).order_by(t.c.created_at_ms, t.c.correlation_id)
        with self.db.begin_or_join(conn) as c:
            return [_intent_from_mapping(r._mapping) for r in c.execute(query)]

    def unsettled_intents(
        self, terminal_statuses: Iterable[str], *, conn: Connection | None = None
    ) -> list[UnsettledIntent]:
        """Intents with no result or a non-terminal one, in creation order (§3.3, §5 step 4).

        Parked UNKNOWNs are non-terminal too; the caller tells them apart by `error_code`.
        """
        terminal = sorted(set(terminal_statuses))
        out = []
        with self.db.begin_or_join(conn) as c:
            if terminal:  # seeks, not a join of every intent (issue 17: this read grew with every order)
                query = _OPEN_RESULTS.get(len(terminal))
                if query is None:
                    query = _OPEN_RESULTS[len(terminal)] = _open_results_query(len(terminal))
                rows = c.execute(query, {f"t{n}": t for n, t in enumerate(terminal)})
            else:  # with no terminal status every intent is unsettled
                rows = c.execute(_UNSETTLED_INTENTS[False])
            for row in rows:
                m = row._mapping
                result = None
                if m["r_correlation_id"] is not None:
                    result = OrderResult.from_mapping({k[2:]: v for k, v in m.items() if k.startswith("r_")})
                out.append(UnsettledIntent(_intent_from_mapping(m), result))
        return out

    def result(self, correlation_id: str, *, conn: Connection | None = None) -> OrderResult | None:
        with self.db.begin_or_join(conn) as c:
            row = c.execute(_RESULT, {"cid": correlation_id}).first()
        return None if row is None else OrderResult.from_mapping(row._mapping)

    def upsert_result(
        self,
        correlation_id: str,
        status: str,
        now_ms: int,
        *,
        exchange_order_id: str | None = None,
        filled_qty: Decimal | None = None,
        avg_price: Decimal | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        contract_version: str,
        query_attempts: int | None = None,
        first_unknown_ms: int | None = None,
        conn: Connection | None = None,
    ) -> OrderResult:
        """Write an intent's latest result; `created_at_ms` stays the first write's (§6).

        The error pair describes this answer, so it is replaced (a FILLED after a TIMEOUT carries
        no error). What the venue already told us (order id, filled qty, average price) is never
        erased by a later answer without it, since local positions count `filled_qty` (§4.7).
        `query_attempts` and `first_unknown_ms` left None keep their stored values (0 / NULL at
        first write).
        """
        error_message = scrub(error_message)  # never a signature or key in a stored error (or its backups)
        with self.db.begin_or_join(conn) as c:
            prev = self.result(correlation_id, conn=c)
            row = {
                "correlation_id": correlation_id,
                "status": status,
                "exchange_order_id": exchange_order_id,
                "filled_qty": filled_qty,
                "avg_price": avg_price,
                "error_code": error_code,
                "error_message": error_message,
                "contract_version": contract_version,
                "query_attempts": 0 if query_attempts is None else int(query_attempts),
                "first_unknown_ms": first_unknown_ms,
                "created_at_ms": now_ms,
                "updated_at_ms": now_ms,
            }
            if prev is not None:
                if exchange_order_id is None:
                    row["exchange_order_id"] = prev.exchange_order_id
                if filled_qty is None:
                    row["filled_qty"] = prev.filled_qty
                if avg_price is None:
                    row["avg_price"] = prev.avg_price
                if query_attempts is None:
                    row["query_attempts"] = prev.query_attempts
                if first_unknown_ms is None:
                    row["first_unknown_ms"] = prev.first_unknown_ms
                row["created_at_ms"] = prev.created_at_ms
            upsert(c, order_results, [row], keys=["correlation_id"], keep=["created_at_ms"])
            stored = self.result(correlation_id, conn=c)
        assert stored is not None
        return stored

    def results_by_status(self, *, conn: Connection | None = None) -> dict[str | None, int]:
        """Result counts per status (poststart, validate-run)."""
        r = order_results
        query = select(r.c.status, func.count()).group_by(r.c.status)
        with self.db.begin_or_join(conn) as c:
            rows = c.execute(query).all()
        return {status: int(n) for status, n in sorted(rows, key=lambda x: (x[0] is not None, x[0] or ""))}

    def unknown_results(self, unknown_status: str, *, conn: Connection | None = None) -> list[OrderResult]:
        """Results in `unknown_status` (parked included), oldest episode first: the sweep order (§4.6)."""
        with self.db.begin_or_join(conn) as c:
            return [OrderResult.from_mapping(row._mapping) for row in c.execute(_UNKNOWN_RESULTS,
                                                                                 {"status": unknown_status})]


# --------------------------------------------------------------------------------------------------
# reconcile_runs
# --------------------------------------------------------------------------------------------------


_INSERT_RECONCILE_RUN = reconcile_runs.insert()
"""Built once, values bound at execution: `.values(**row)` rebuilt the statement every reconcile."""


class ReconcileRuns:
    """Append-only `reconcile_runs` (§4.7 step 7); JSON columns hold canonical JSON."""

    JSON_COLUMNS = ("drifts", "missing_local", "missing_exchange")

    def __init__(self, db: Database):
        self.db = db

    def write(self, run: Mapping[str, Any], *, conn: Connection | None = None) -> int:
        """Insert one run whose keys are column names; returns its id. Unknown keys are a bug."""
        _check_columns(reconcile_runs, run)
        row = {k: v for k, v in run.items() if k != "id"}
        for col in self.JSON_COLUMNS:
            if row.get(col) is not None and not isinstance(row[col], str):
                row[col] = dump_json(row[col])
        with self.db.begin_or_join(conn) as c:
            return int(c.execute(_INSERT_RECONCILE_RUN, row).inserted_primary_key[0])

    def last(self, *, conn: Connection | None = None) -> dict[str, Any] | None:
        """The latest run (by ts_ms, then id), JSON decoded and `max_drift` as Decimal."""
        t = reconcile_runs
        query = select(t).order_by(t.c.ts_ms.desc(), t.c.id.desc()).limit(1)
        with self.db.begin_or_join(conn) as c:
            row = c.execute(query).first()
        if row is None:
            return None
        out = dict(row._mapping)
        for col in self.JSON_COLUMNS:
            out[col] = load_json(out[col])
        out["max_drift"] = _dec(out["max_drift"])
        return out


# --------------------------------------------------------------------------------------------------
# baseline_snapshots / baseline_positions
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """An operator snapshot of exchange positions that local counts from (§2, §8 `baseline sync`)."""

    baseline_id: str
    created_at_ms: int | None
    operator: str | None
    reason_message: str | None
    active: bool
    positions: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class BaselineSync:
    """A synced baseline and the one it replaced, if any (`BASELINE_SYNCED` vs `_REPLACED`)."""

    baseline: Baseline
    replaced: Baseline | None


class BaselineActive(CheckFailed):
    """`baseline sync` without `--replace` while a baseline is active: refused (§8)."""

    def __init__(self, active: Baseline):
        super().__init__(f"baseline {active.baseline_id!r} is active; replace it explicitly")
        self.active = active


class Baselines:
    """The active baseline and the local position built on it (§4.7 step 4, §8)."""

    def __init__(self, db: Database):
        self.db = db

    def active(self, *, conn: Connection | None = None) -> Baseline | None:
        with self.db.begin_or_join(conn) as c:
            snap = c.execute(_ACTIVE_BASELINE).first()
            if snap is None:
                return None
            rows = c.execute(_BASELINE_POSITIONS, {"baseline_id": snap.baseline_id}).all()
        return Baseline(
            baseline_id=snap.baseline_id,
            created_at_ms=snap.created_at_ms,
            operator=snap.operator,
            reason_message=snap.reason_message,
            active=True,
            positions={sym: _dec(qty) or Decimal(0) for sym, qty in rows},
        )

    def sync(
        self,
        positions: Mapping[str, Decimal | str | int | float],
        operator: str | None,
        reason: str | None,
        now_ms: int,
        replace: bool = False,
        *,
        baseline_id: str | None = None,
        conn: Connection | None = None,
    ) -> BaselineSync:
        """Store `positions` as the one active baseline; refused (BaselineActive) unless `replace`.

        Symbols are normalised (duplicates after normalising are summed). The id defaults to
        `baseline-{now_ms}`, suffixed `-{n}` when taken: deterministic, so a replayed run writes
        the same rows as the live one.
        """
        merged: dict[str, Decimal] = {}
        for symbol, qty in positions.items():
            norm = normalise_symbol(symbol)
            merged[norm] = merged.get(norm, Decimal(0)) + Decimal(str(qty))
        s, p = baseline_snapshots, baseline_positions
        with self.db.begin_or_join(conn) as c:
            current = self.active(conn=c)
            if current is not None and not replace:
                raise BaselineActive(current)
            if current is not None:
                c.execute(update(s).where(s.c.baseline_id == current.baseline_id).values(active=False))
            new_id = baseline_id or self._free_id(c, f"baseline-{now_ms}")
            c.execute(
                s.insert().values(
                    baseline_id=new_id, created_at_ms=now_ms, operator=operator, reason_message=reason, active=True
                )
            )
            if merged:
                c.execute(
                    p.insert(),
                    [{"baseline_id": new_id, "symbol": sym, "qty": merged[sym]} for sym in sorted(merged)],
                )
            stored = self.active(conn=c)
        assert stored is not None
        replaced = None
        if current is not None:
            replaced = Baseline(
                current.baseline_id,
                current.created_at_ms,
                current.operator,
                current.reason_message,
                False,
                current.positions,
            )
        return BaselineSync(stored, replaced)

    @staticmethod
    def _free_id(conn: Connection, base: str) -> str:
        s = baseline_snapshots
        taken = set(
            conn.execute(
                select(s.c.baseline_id).where((s.c.baseline_id == base) | s.c.baseline_id.like(f"{base}-%"))
            ).scalars()
        )
        if base not in taken:
            return base
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    def reset(self, now_ms: int, *, conn: Connection | None = None) -> Baseline | None:
        """Deactivate the active baseline (`baseline reset`); returns it, or None if there was none.

        `now_ms` is taken for symmetry with every writer: the table has no deactivation stamp,
        the audit row written by the caller carries the time.
        """
        del now_ms
        s = baseline_snapshots
        with self.db.begin_or_join(conn) as c:
            current = self.active(conn=c)
            if current is None:
                return None
            c.execute(update(s).where(s.c.baseline_id == current.baseline_id).values(active=False))
        return Baseline(
            current.baseline_id,
            current.created_at_ms,
            current.operator,
            current.reason_message,
            False,
            current.positions,
        )

    def local_positions(
        self, since_baseline: bool = True, *, dust: Decimal = POSITION_DUST, conn: Connection | None = None
    ) -> dict[str, Decimal]:
        """Local = active baseline + Σ filled_qty of results created since it (§4.7 step 4).

        BUY adds, SELL subtracts, side and symbol from the intent payload; every status counts once
        its `filled_qty > 0` (§3.3). "Since" is inclusive (`created_at_ms >= baseline.created_at_ms`).
        Symbols are normalised and |qty| <= `dust` is dropped. `since_baseline=False` ignores the
        baseline and sums every result ever stored (diagnostics). An unknown side raises: a
        mis-signed fill would silently corrupt the position reconcile checks.
        """
        i, r = order_intents, order_results
        with self.db.begin_or_join(conn) as c:
            base = self.active(conn=c) if since_baseline else None
            query = (
                select(r.c.correlation_id, r.c.filled_qty, i.c.intent_payload)
                .select_from(r.join(i, i.c.correlation_id == r.c.correlation_id))
                .where(r.c.filled_qty > 0)
                .order_by(r.c.created_at_ms, r.c.correlation_id)
            )
            if base is not None and base.created_at_ms is not None:
                query = query.where(r.c.created_at_ms >= base.created_at_ms)
            rows = c.execute(query).all()
        totals: dict[str, Decimal] = {}
        if base is not None:
            for symbol, qty in base.positions.items():
                norm = normalise_symbol(symbol)
                totals[norm] = totals.get(norm, Decimal(0)) + qty
        for correlation_id, filled, payload_text in rows:
            norm, signed = signed_fill(correlation_id, filled, payload_text)
            totals[norm] = totals.get(norm, Decimal(0)) + signed
        return {sym: qty for sym, qty in sorted(totals.items()) if abs(qty) > dust}


@lru_cache(maxsize=16384)
def _symbol_and_sign(payload_text: str | None) -> tuple[str | None, Decimal | None, Any]:
    """(normalised symbol, +1 / −1, the raw side) of an intent payload. A pure function of the
    text (payloads are immutable once written), so its result is kept: the full recomputation
    parses every filled intent's JSON on each call, and that parse was most of its cost."""
    payload = load_json(payload_text) or {}
    raw_side = payload.get("side")
    side = str(payload.get("side", "")).upper()
    sign = Decimal(1) if side == BUY else Decimal(-1) if side == SELL else None
    symbol = payload.get("symbol")
    return (normalise_symbol(str(symbol)) if symbol else None), sign, raw_side


def signed_fill(correlation_id: str, filled: Any, payload_text: Any) -> tuple[str, Decimal]:
    """One result's part of the local position: (normalised symbol, +qty for BUY / −qty for SELL)."""
    symbol, sign, raw_side = _symbol_and_sign(payload_text)
    if sign is None:
        raise ValueError(f"intent {correlation_id!r} has side {raw_side!r}, not {BUY}/{SELL}")
    if symbol is None:
        raise ValueError(f"intent {correlation_id!r} has no symbol")
    return symbol, sign * (_dec(filled) or Decimal(0))


__all__ = [
    "BUY",
    "MAINTENANCE_SYMBOL",
    "MAINTENANCE_TX_HASH",
    "POSITION_DUST",
    "SELL",
    "Baseline",
    "BaselineActive",
    "BaselineSync",
    "Baselines",
    "CopytradeKey",
    "CopytradeState",
    "Cursor",
    "DecisionOutcome",
    "EventKey",
    "EventNotFound",
    "EventRecord",
    "Events",
    "IngestKeys",
    "OrderIntent",
    "OrderResult",
    "Orders",
    "Pruned",
    "ReconcileRuns",
    "SkipEvidence",
    "UnsettledIntent",
    "event_key",
    "normalise_symbol",
    "parse_event_key",
    "signed_fill",
]
