"""Fills → target events (copytrader §4.2 Aggregation and Action). Pure and deterministic.

One event per `(hash, coin)` of the *new* fills of a fetch: `prev` is the first fill's
`startPosition`, `next` the last fill's `startPosition ± sz` (fallback `prev + Σ signed sz`), so a
transaction split across fetches yields disjoint events that each carry their own prev → next.
Self-matched buy/sell pairs (the wallet crossing itself) are netted out first; see
`_without_self_matches`.

Ordering is `(time, tid)`. Fills without a venue tid (the 2023 shape) are a documented fallback:
their dedup id is `Fill.fill_id` (a stable synthetic id ≥ 2^62), and inside one millisecond they
are ordered by progress along their trade direction (`startPosition` ascending for buys,
descending for sells: one order's fills walk the position monotonically), then by that id. The
result never depends on the order of the input list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from decimal import Decimal

from hlcore.adapters.hyperliquid.parse import ContentKey, Fill, Invalid

INCREASE = "INCREASE"
DECREASE = "DECREASE"
FLIP = "FLIP"
# Skip reasons (copytrader §4.2): logged and counted by the ingest job, never decided on.
INGEST_UNMAPPED_SYMBOL = "ingest_unmapped_symbol"
INGEST_FILL_INVALID = "ingest_fill_invalid"
NOOP_DELTA = "noop_delta"

ZERO = Decimal(0)


@dataclass(frozen=True)
class TargetEvent:
    """The target's position change for one `(hash, coin)` of new fills.

    Attributes:
        key: `"{timestamp_ms}|{event_index}|{tx_hash}|{symbol}"`, the event key and cursor.
        event_index: smallest fill id (tid) of the event's fills.
        timestamp_ms: the last fill's time.
        prev, next, delta: signed target position before, after, and next − prev.
        action: INCREASE, DECREASE or FLIP; `close_qty` = |prev| and `open_qty` = |next| for FLIP only.
        expected_price: size-weighted px of the fills that moved the position (self-matches excluded).
        tids: the fills' ids in aggregation order; `fills` the fills themselves (for `ingested_fills`).
    """

    key: str
    tx_hash: str
    event_index: int
    symbol: str
    coin: str
    timestamp_ms: int
    prev: Decimal
    next: Decimal
    delta: Decimal
    action: str
    close_qty: Decimal | None
    open_qty: Decimal | None
    expected_price: Decimal
    tids: tuple[int, ...]
    fills: tuple[Fill, ...]

    @property
    def last_fill_time_ms(self) -> int:
        """Same as `timestamp_ms` by §4.2 (the last fill's time); named for cursor code."""
        return self.timestamp_ms


@dataclass(frozen=True)
class Skipped:
    """Fills that produced no event, with a stable reason code and a human detail."""

    reason: str
    detail: str
    tx_hash: str | None = None
    coin: str | None = None
    tids: tuple[int, ...] = ()
    item_key: str = ""  # for an unreadable item: `Invalid.key`

    @property
    def keys(self) -> tuple[str, ...]:
        """One stable key per skipped item (`ingest_skips.skip_key`): the fill ids of a skipped
        group, or the digest of an unreadable item."""
        return tuple(f"fill:{t}" for t in self.tids) if self.tids else (f"item:{self.item_key or self.detail}",)


@dataclass(frozen=True)
class Aggregation:
    events: tuple[TargetEvent, ...]
    skipped: tuple[Skipped, ...]
    dedup_drop_count: int


def event_key(timestamp_ms: int, event_index: int, tx_hash: str, symbol: str) -> str:
    return f"{timestamp_ms}|{event_index}|{tx_hash}|{symbol}"


def classify(prev: Decimal, next_: Decimal) -> str | None:
    """§4.2 Action row; None means `next = prev` (dropped as `noop_delta`)."""
    if next_ == prev:
        return None
    if prev == 0:
        return INCREASE
    if next_ == 0:
        return DECREASE
    if (prev > 0) != (next_ > 0):
        return FLIP
    return DECREASE if abs(next_) < abs(prev) else INCREASE


def symbol_for(coin: str, symbol_map: Mapping[str, str]) -> tuple[str | None, str]:
    """(symbol, '') or (None, why). Spot (`@107`, `PURR/USDC`) and builder-dex (`dex:COIN`) coins are
    skipped even if mapped: only the main perp dex is copied."""
    if coin.startswith("@") or "/" in coin:
        return None, f"spot coin {coin}"
    if ":" in coin:
        return None, f"builder-dex coin {coin}"
    symbol = symbol_map.get(coin)
    if not symbol:
        return None, f"no symbol_map entry for {coin}"
    return symbol, ""


def order_key(fill: Fill) -> tuple[int, int, int, Decimal, int, tuple[str, ...]]:
    """`(time, tid)`; tid-less fills sort after tidded ones of the same ms, by direction progress.
    The last element (the fill's own fields) only breaks ties between malformed duplicates."""
    tiebreak = (fill.hash, fill.coin, fill.side, str(fill.px), str(fill.sz), str(fill.start_position), str(fill.oid))
    if fill.tid is not None:
        return (fill.time_ms, 0, fill.tid, ZERO, 0, tiebreak)
    progress = ZERO if fill.start_position is None else (
        fill.start_position if fill.side == "B" else fill.start_position.copy_negate())
    return (fill.time_ms, 1, 0, progress, fill.fill_id, tiebreak)


def aggregate_fills(fills: Iterable[Fill], *, symbol_map: Mapping[str, str],
                    seen_tids: AbstractSet[int] = frozenset(), seen_keys: AbstractSet[ContentKey] = frozenset(),
                    invalid: Iterable[Invalid] = ()) -> Aggregation:
    """Aggregate one fetch's fills into events (copytrader §4.2).

    `seen_tids` are fill ids already ingested (`ingested_fills`) and `seen_keys` their content
    keys (`Fill.content_key`); a fill matching either, or repeating one inside `fills` (pagination
    overlap) by id or by content, is dropped and counted in `dedup_drop_count`. The content key
    makes the identity independent of the optional `tid` (issue 10 §2). `invalid` (from
    the parser) is passed through as `ingest_fill_invalid` skips. Events come out in key order.
    """
    skipped = [Skipped(INGEST_FILL_INVALID, f"{item.where}: {item.reason}", item_key=item.key) for item in invalid]
    dropped = 0
    taken: set[int] = set()
    taken_keys: set[ContentKey] = set()
    groups: dict[tuple[str, str], list[Fill]] = {}
    for fill in sorted(fills, key=order_key):  # tidded first: a repeat keeps the venue's tid
        fid, content = fill.fill_id, fill.content_key
        if fid in seen_tids or fid in taken or (content is not None and (content in seen_keys
                                                                        or content in taken_keys)):
            dropped += 1
            continue
        taken.add(fid)
        if content is not None:
            taken_keys.add(content)
        groups.setdefault((fill.hash, fill.coin), []).append(fill)

    events: list[TargetEvent] = []
    for (tx_hash, coin), group in sorted(groups.items()):
        tids = tuple(f.fill_id for f in group)
        symbol, why = symbol_for(coin, symbol_map)
        if symbol is None:
            skipped.append(Skipped(INGEST_UNMAPPED_SYMBOL, why, tx_hash, coin, tids))
            continue
        moving = _without_self_matches(group)
        if not moving:
            skipped.append(Skipped(NOOP_DELTA, "only self-matched fills", tx_hash, coin, tids))
            continue
        prev = _prev(moving)
        if prev is None:
            skipped.append(Skipped(INGEST_FILL_INVALID, "no fill carries startPosition; prev is unknown",
                                   tx_hash, coin, tids))
            continue
        last = moving[-1]
        total = sum((f.signed_sz for f in moving), ZERO)
        next_ = last.start_position + last.signed_sz if last.start_position is not None else prev + total
        action = classify(prev, next_)
        if action is None:
            skipped.append(Skipped(NOOP_DELTA, f"prev = next = {prev}", tx_hash, coin, tids))
            continue
        size = sum((f.sz for f in moving), ZERO)
        expected_price = sum((f.px * f.sz for f in moving), ZERO) / size
        event_index = min(tids)
        timestamp_ms = last.time_ms
        events.append(TargetEvent(
            key=event_key(timestamp_ms, event_index, tx_hash, symbol), tx_hash=tx_hash, event_index=event_index,
            symbol=symbol, coin=coin, timestamp_ms=timestamp_ms, prev=prev, next=next_, delta=next_ - prev,
            action=action, close_qty=abs(prev) if action == FLIP else None,
            open_qty=abs(next_) if action == FLIP else None, expected_price=expected_price, tids=tids,
            fills=tuple(group)))
    events.sort(key=lambda e: (e.timestamp_ms, e.event_index, e.tx_hash, e.symbol))
    return Aggregation(tuple(events), tuple(skipped), dropped)


def _without_self_matches(group: list[Fill]) -> list[Fill]:
    """The fills that moved the position. When a wallet's own orders cross (78 of the 345
    transactions in the 2023 cassette), it gets a buy and a sell with the same time, px, sz and
    startPosition: the venue reports both at the pre-match position, so they break the
    startPosition chain and would make `last startPosition ± sz` a phantom trade. Such pairs net to
    zero and are set aside (hlcore choice); their tids stay on the event. Pairing takes fills in
    aggregation order, so it does not depend on input order."""
    pending: dict[tuple[int, Decimal, Decimal, Decimal], dict[str, list[int]]] = {}
    for index, fill in enumerate(group):
        if fill.start_position is not None:  # without it a pair cannot be told from two real fills
            sides = pending.setdefault((fill.time_ms, fill.start_position, fill.sz, fill.px), {"B": [], "A": []})
            sides[fill.side].append(index)
    matched: set[int] = set()
    for sides in pending.values():
        pairs = min(len(sides["B"]), len(sides["A"]))
        matched.update(sides["B"][:pairs] + sides["A"][:pairs])
    return [fill for index, fill in enumerate(group) if index not in matched] if matched else group


def _prev(group: list[Fill]) -> Decimal | None:
    """The first fill's startPosition; if it lacks one, the first that has one, walked back by the
    signed sizes before it. None if no fill has one."""
    walked = ZERO
    for fill in group:
        if fill.start_position is not None:
            return fill.start_position - walked
        walked += fill.signed_sz
    return None
