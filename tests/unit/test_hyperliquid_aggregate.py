"""Fills → target events: the copytrader §4.2 Aggregation and Action rows, as tables.

Each case is (fills of one fetch, already-ingested tids) → (events, skips, dedup count).
"""

from __future__ import annotations

import itertools
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hlcore.adapters.hyperliquid import (
    DECREASE,
    FLIP,
    INCREASE,
    INGEST_FILL_INVALID,
    INGEST_UNMAPPED_SYMBOL,
    NOOP_DELTA,
    Aggregation,
    Fill,
    FillsPage,
    TargetEvent,
    aggregate_fills,
    classify,
    event_key,
    parse_fills,
)
from hlcore.adapters.hyperliquid.parse import SYNTHETIC_TID_BASE

SDK = Path(__file__).resolve().parents[1] / "cassettes" / "hyperliquid-python-sdk"
SYMBOLS = {"BTC": "BTCUSDT", "ETH": "ETHUSDT", "HYPE": "HYPEUSDT", "@107": "HYPEUSDT"}
H1 = "0x" + "1a" * 32
H2 = "0x" + "2b" * 32
T = 1_769_248_800_000
D = Decimal


def fill(sz: str, side: str = "B", start: str | None = "0", *, tid: int | None = 1, time: int = T, coin: str = "BTC",
         px: str = "97000.0", tx: str = H1, oid: int = 299000000001) -> Fill:
    return Fill(coin=coin, px=D(px), sz=D(sz), side=side, time_ms=time,
                start_position=None if start is None else D(start), hash=tx, oid=oid, tid=tid, crossed=True, dir=None,
                fee=D("0.1"), fee_token="USDC")


def chain(prev: str, sizes: list[str], side: str, *, first_tid: int = 1, time: int = T, **kw: Any) -> list[Fill]:
    """Consecutive fills of one transaction, each starting where the previous ended."""
    out, position = [], D(prev)
    for i, sz in enumerate(sizes):
        out.append(fill(sz, side, str(position), tid=first_tid + i, time=time, **kw))
        position += D(sz) if side == "B" else -D(sz)
    return out


def aggregate(fills: list[Fill], seen: set[int] | None = None, **kw: Any) -> Aggregation:
    return aggregate_fills(fills, symbol_map=SYMBOLS, seen_tids=seen or set(), **kw)


# ------------------------------------------------------------------------------------ Action row
@pytest.mark.parametrize(("prev", "next_", "action"), [
    ("0", "2.0", INCREASE),
    ("1000", "1500", INCREASE),
    ("1500", "750", DECREASE),
    ("1000", "-50", FLIP),
    ("750", "0", DECREASE),
    ("-10", "-20", INCREASE),
    ("-10", "-5", DECREASE),
    ("-5", "5", FLIP),
    ("0", "-3", INCREASE),
    ("7.5", "7.50", None),
    ("0", "0", None),
])
def test_action_row(prev: str, next_: str, action: str | None) -> None:
    assert classify(D(prev), D(next_)) == action


@pytest.mark.parametrize(("fills", "expected"), [
    pytest.param(chain("0", ["0.5", "1.5"], "B"), ("0", "2.0", INCREASE, None, None), id="0→2.0"),
    pytest.param(chain("1000", ["200", "300"], "B"), ("1000", "1500", INCREASE, None, None), id="1000→1500"),
    pytest.param(chain("1500", ["700", "50"], "A"), ("1500", "750", DECREASE, None, None), id="1500→750"),
    pytest.param(chain("1000", ["400", "650"], "A"), ("1000", "-50", FLIP, "1000", "50"), id="1000→-50"),
    pytest.param(chain("-20", ["20"], "B"), ("-20", "0", DECREASE, None, None), id="close-short"),
])
def test_one_transaction_is_one_event(fills: list[Fill], expected: tuple[Any, ...]) -> None:
    result = aggregate(fills)
    (event,) = result.events
    prev, next_, action, close_qty, open_qty = expected
    assert (event.prev, event.next, event.action) == (D(prev), D(next_), action)
    assert event.delta == D(next_) - D(prev)
    assert (event.close_qty, event.open_qty) == (
        None if close_qty is None else D(close_qty), None if open_qty is None else D(open_qty))
    assert result.skipped == () and result.dedup_drop_count == 0


def test_self_matched_pairs_net_out() -> None:
    """2023 data: the wallet's own buy and sell matched in one transaction, both reported at the
    pre-match startPosition. Only the rest of the transaction moves the position."""
    fills = [fill("26.9", "B", "-68.5", tid=1, px="7.35"), fill("20.5", "B", "-41.6", tid=2, px="7.36"),
             fill("20.5", "A", "-41.6", tid=3, px="7.36")]
    (event,) = aggregate(fills).events
    assert (event.prev, event.next, event.action, event.tids) == (D("-68.5"), D("-41.6"), DECREASE, (1, 2, 3))
    assert event.expected_price == D("7.35")
    only_self = aggregate([fill("89.7", "B", "-1714.8", tid=1), fill("89.7", "A", "-1714.8", tid=2)])
    assert only_self.events == () and [(s.reason, s.tids) for s in only_self.skipped] == [(NOOP_DELTA, (1, 2))]


def test_noop_is_dropped_with_its_reason() -> None:
    fills = [fill("1", "B", "10", tid=5), fill("1", "A", "11", tid=6)]
    result = aggregate(fills)
    assert result.events == ()
    (skip,) = result.skipped
    assert (skip.reason, skip.tx_hash, skip.coin, skip.tids) == (NOOP_DELTA, H1, "BTC", (5, 6))


def test_event_fields_key_index_time_and_weighted_price() -> None:
    fills = [fill("1", "B", "1", tid=300, time=T, px="100"),
             fill("3", "B", "2", tid=301, time=T + 2, px="104"),
             fill("1", "B", "0", tid=299, time=T - 5, px="99")]  # listed last, but earliest and smallest tid
    (event,) = aggregate(fills).events
    assert event == TargetEvent(
        key=f"{T + 2}|299|{H1}|BTCUSDT", tx_hash=H1, event_index=299, symbol="BTCUSDT", coin="BTC",
        timestamp_ms=T + 2, prev=D(0), next=D(5), delta=D(5), action=INCREASE, close_qty=None, open_qty=None,
        expected_price=(D(99) + D(100) + D(312)) / 5, tids=(299, 300, 301),
        fills=(fills[2], fills[0], fills[1]))
    assert event.key == event_key(T + 2, 299, H1, "BTCUSDT") and event.last_fill_time_ms == T + 2


def test_prev_is_the_first_start_position_and_next_the_last_even_with_a_hole() -> None:
    """Fills 2..3 of this transaction are missing: prev/next still come from the venue's startPosition."""
    fills = [fill("1", "B", "0", tid=1), fill("1", "B", "5", tid=4)]
    (event,) = aggregate(fills).events
    assert (event.prev, event.next) == (D(0), D(6))


def test_next_falls_back_to_prev_plus_sum_without_a_last_start_position() -> None:
    fills = [fill("1", "A", "3", tid=1), fill("0.5", "A", None, tid=2)]
    (event,) = aggregate(fills).events
    assert (event.prev, event.next, event.action) == (D(3), D("1.5"), DECREASE)


def test_prev_walks_back_when_the_first_fill_lacks_a_start_position() -> None:
    fills = [fill("1", "B", None, tid=1), fill("2", "B", "4", tid=2)]
    (event,) = aggregate(fills).events
    assert (event.prev, event.next) == (D(3), D(6))


def test_no_start_position_at_all_is_an_invalid_group() -> None:
    result = aggregate([fill("1", "B", None, tid=1), fill("2", "B", None, tid=2)])
    assert result.events == ()
    assert [(s.reason, s.tids) for s in result.skipped] == [(INGEST_FILL_INVALID, (1, 2))]


def test_groups_are_per_hash_and_coin_and_come_out_in_key_order() -> None:
    fills = [*chain("0", ["1"], "B", first_tid=10, time=T + 9, tx=H2),
             *chain("2", ["1"], "A", first_tid=20, time=T + 1, tx=H2, coin="ETH", px="3300"),
             *chain("5", ["2"], "B", first_tid=30, time=T + 1, tx=H1)]
    keys = [e.key for e in aggregate(fills).events]
    assert keys == [f"{T + 1}|20|{H2}|ETHUSDT", f"{T + 1}|30|{H1}|BTCUSDT", f"{T + 9}|10|{H2}|BTCUSDT"]


# ------------------------------------------------------------------------------------ dedup / split
def test_a_transaction_split_across_fetches_yields_disjoint_events() -> None:
    """86 fills of 0.15 in one transaction: the first fetch sees 50 (7.5), the next all 86 (overlap)."""
    whole = chain("0", ["0.15"] * 86, "B", first_tid=1000, px="3300", coin="ETH")
    first = aggregate(whole[:50])
    (e1,) = first.events
    assert (e1.prev, e1.next, len(e1.tids), e1.event_index) == (D(0), D("7.50"), 50, 1000)

    second = aggregate(list(reversed(whole)), seen=set(e1.tids))
    (e2,) = second.events
    assert second.dedup_drop_count == 50
    assert (e2.prev, e2.next, len(e2.tids), e2.event_index) == (D("7.50"), D("12.90"), 36, 1050)
    assert e2.delta == D("5.40") and e1.delta == D("7.50")
    assert set(e1.tids).isdisjoint(e2.tids) and e1.key != e2.key
    assert e1.tx_hash == e2.tx_hash == H1


def test_overlap_dedup_drops_and_counts_already_ingested_fills() -> None:
    fills = chain("0", ["1", "1", "1"], "B", first_tid=1)
    result = aggregate(fills, seen={1})
    (event,) = result.events
    assert result.dedup_drop_count == 1
    assert (event.tids, event.prev, event.next, event.event_index) == ((2, 3), D(1), D(3), 2)


def test_repeats_inside_one_fetch_count_as_dedup_drops() -> None:
    fills = chain("0", ["1", "1"], "B", first_tid=1)
    result = aggregate([*fills, fills[1]])
    assert result.dedup_drop_count == 1 and result.events[0].tids == (1, 2)


def test_everything_already_seen_gives_nothing() -> None:
    result = aggregate(chain("0", ["1", "1"], "B", first_tid=1), seen={1, 2})
    assert (result.events, result.skipped, result.dedup_drop_count) == ((), (), 2)


# ------------------------------------------------------------------------------------ skips
@pytest.mark.parametrize(("coin", "detail"), [
    ("@107", "spot coin @107"),             # skipped even though symbol_map names it
    ("PURR/USDC", "spot coin PURR/USDC"),
    ("xyz:TSLA", "builder-dex coin xyz:TSLA"),
    ("DOGE", "no symbol_map entry for DOGE"),
])
def test_unmapped_spot_and_builder_dex_coins_are_skipped(coin: str, detail: str) -> None:
    fills = [fill("1", "B", "0", tid=1, coin=coin), *chain("0", ["1"], "B", first_tid=2, tx=H2)]
    result = aggregate(fills)
    assert [e.coin for e in result.events] == ["BTC"]
    (skip,) = result.skipped
    assert (skip.reason, skip.detail, skip.coin, skip.tids) == (INGEST_UNMAPPED_SYMBOL, detail, coin, (1,))


def test_invalid_fills_from_the_parser_are_skipped_with_reason() -> None:
    good = {"coin": "BTC", "px": "97000.0", "sz": "0.5", "side": "B", "time": T, "startPosition": "0.0",
            "hash": H1, "oid": 1, "tid": 7}
    page = parse_fills([good, {**good, "sz": "-0.5", "tid": 8}])
    assert isinstance(page, FillsPage)
    result = aggregate(list(page.fills), invalid=page.invalid)
    assert [(e.prev, e.next) for e in result.events] == [(D(0), D("0.5"))]
    assert [(s.reason, s.detail) for s in result.skipped] == [(INGEST_FILL_INVALID, "[1]: sz: -0.5 is not positive")]


# ------------------------------------------------------------------------------------ 2023 shape
def old_fills() -> list[Fill]:
    data = yaml.safe_load((SDK / "test_get_user_fills.yaml").read_text(encoding="utf-8"))
    page = parse_fills(json.loads(data["interactions"][0]["response"]["body"]["string"]))
    assert isinstance(page, FillsPage)
    return list(page.fills)


def without_self_matches(fills: list[Fill]) -> list[Fill]:
    """The test's own reading of a self-match: a B and an A with equal time, startPosition, sz, px."""
    out = fills[:]
    for f in fills:
        twin = next((g for g in out if g is not f and g.side != f.side and (g.time_ms, g.start_position, g.sz, g.px)
                     == (f.time_ms, f.start_position, f.sz, f.px)), None)
        if twin is not None and f in out:
            out.remove(f)
            out.remove(twin)
    return out


def test_tidless_fills_use_the_documented_fallback() -> None:
    """No tids (2023): ids are synthetic (≥ 2^62), and the direction-progress order rebuilds each
    transaction's startPosition chain, so last startPosition ± sz agrees with prev + Σ. The wallet
    often crossed itself; those pairs net out instead of becoming phantom trades."""
    fills = old_fills()
    symbol_map = {coin: f"{coin}USDT" for coin in {f.coin for f in fills}}
    result = aggregate_fills(fills, symbol_map=symbol_map)
    assert result.dedup_drop_count == 0
    events = result.events
    noops = [s for s in result.skipped if s.reason == NOOP_DELTA]
    assert len(events) + len(noops) == 345 and len(result.skipped) == len(noops)  # one per (hash, coin)
    assert len(noops) == 45  # transactions that were nothing but the wallet trading with itself
    assert sum(len(e.fills) for e in events) + sum(len(s.tids) for s in result.skipped) == 500
    for event in events:
        assert event.event_index >= SYNTHETIC_TID_BASE
        assert event.next == event.prev + sum((f.signed_sz for f in event.fills), D(0))
    with_self_matches = 0
    for event in events:
        moving = without_self_matches(list(event.fills))
        with_self_matches += len(moving) < len(event.fills)
        for before, after in itertools.pairwise(moving):
            assert before.start_position + before.signed_sz == after.start_position
    assert with_self_matches == 33  # + the 45 noops = 78 transactions with self-matched pairs
    assert {e.action for e in events} == {INCREASE, DECREASE, FLIP}
    shuffled = fills[:]
    random.Random(3).shuffle(shuffled)
    assert aggregate_fills(shuffled, symbol_map=symbol_map) == result
    again = aggregate_fills(fills, symbol_map=symbol_map, seen_tids={events[0].tids[0]})
    assert again.dedup_drop_count == 1  # synthetic ids are stable across fetches


# ------------------------------------------------------------------------------------ property
@st.composite
def fetches(draw: st.DrawFn) -> tuple[list[Fill], set[int]]:
    n = draw(st.integers(1, 30))
    tids = draw(st.lists(st.integers(1, 10**6), min_size=n, max_size=n, unique=True))
    fills = []
    for tid in tids:
        fills.append(Fill(
            coin=draw(st.sampled_from(["BTC", "ETH", "@107", "xyz:TSLA", "DOGE"])),
            px=D(draw(st.integers(1, 10**7))) / 100, sz=D(draw(st.integers(1, 10**5))) / 1000,
            side=draw(st.sampled_from("BA")), time_ms=T + draw(st.integers(0, 40)),
            start_position=draw(st.none() | st.integers(-10**5, 10**5).map(lambda x: D(x) / 1000)),
            hash=draw(st.sampled_from([H1, H2, "0x" + "0" * 64])), oid=draw(st.integers(1, 4)),
            tid=draw(st.sampled_from([tid, tid, tid, None]))))
    seen = set(draw(st.lists(st.sampled_from([f.fill_id for f in fills]), max_size=5)))
    return fills, seen


@settings(max_examples=200, deadline=None)
@given(fetches(), st.randoms(use_true_random=False))
def test_aggregation_is_deterministic_and_independent_of_input_order(fetch: tuple[list[Fill], set[int]],
                                                                    rnd: random.Random) -> None:
    fills, seen = fetch
    expected = aggregate(fills, seen)
    shuffled = fills[:]
    rnd.shuffle(shuffled)
    assert aggregate(shuffled, set(seen)) == expected
    assert aggregate(fills, seen) == expected
    # Conservation: every fill is in exactly one event or skip, or was a dedup drop.
    placed = [t for e in expected.events for t in e.tids] + [t for s in expected.skipped for t in s.tids]
    assert len(placed) == len(set(placed)) and len(placed) + expected.dedup_drop_count == len(fills)
    assert all(e.action == classify(e.prev, e.next) for e in expected.events)


@pytest.mark.parametrize("first_tid", [None, 7], ids=["first without tid", "first with tid"])
def test_one_fill_served_with_and_without_tid_is_one_event(first_tid: int | None) -> None:
    """Issue 10 §2: the same fill seen once without `tid` and once with it (in either order, in one
    fetch or across fetches) makes one event, never two."""
    first = fill("0.5", tid=first_tid)
    again = fill("0.5", tid=7 if first_tid is None else None)
    same_fetch = aggregate_fills([first, again], symbol_map=SYMBOLS)
    assert len(same_fetch.events) == 1 and same_fetch.dedup_drop_count == 1
    stored = aggregate_fills([first], symbol_map=SYMBOLS)
    assert len(stored.events) == 1
    assert first.content_key is not None
    later = aggregate_fills([again], symbol_map=SYMBOLS, seen_tids={first.fill_id}, seen_keys={first.content_key})
    assert later.events == () and later.dedup_drop_count == 1
    # without the content key (the old tid-only dedup) the repeat would have become a second event
    assert len(aggregate_fills([again], symbol_map=SYMBOLS, seen_tids={first.fill_id}).events) == 1
