"""HyperliquidClient replayed from vcrpy cassettes (record_mode none, matched on the request body).

Recorded 2023 cassettes (hyperliquid-python-sdk/) and generated current-shape ones (hyperliquid/,
see generate.py there): pagination, the 10000-fill history limit, malformed bodies, 429 and 5xx.
Time and chance are injected: a ManualClock that the sleep advances, and a seeded RNG.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest
import vcr

from hlcore.adapters.http import (
    EXCHANGE_ERROR,
    MALFORMED_RESPONSE,
    RATE_LIMITED,
    HttpResult,
    RetryPolicy,
    VenueError,
    VenueHttp,
    WeightLimiter,
)
from hlcore.adapters.hyperliquid import (
    FillsHistory,
    FillsPage,
    HyperliquidClient,
    LeaderboardParse,
    Meta,
    Mids,
    PositionRow,
    aggregate_fills,
)
from hlcore.adapters.hyperliquid.aggregate import INGEST_UNMAPPED_SYMBOL
from hlcore.engine.clock import ManualClock

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"
SDK = CASSETTES / "hyperliquid-python-sdk"
GENERATED = CASSETTES / "hyperliquid"
REPLAY = vcr.VCR(record_mode="none", match_on=["method", "scheme", "host", "port", "path", "query", "body"])
SYMBOLS = {"BTC": "BTCUSDT", "ETH": "ETHUSDT", "SOL": "SOLUSDT", "HYPE": "HYPEUSDT", "XRP": "XRPUSDT"}
ASSETS = ("HYPE", "BTC", "ETH")


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hl_cassette_generator", GENERATED / "generate.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()
T0 = GEN.T0


class Venue:
    """A client over a real VenueHttp with a manual clock; `slept` records every backoff (seconds)."""

    def __init__(self, budget: int = 1200):
        self.clock = ManualClock(T0)
        self.slept: list[float] = []
        self.limiter = WeightLimiter(self.clock, budget)
        self.http = VenueHttp("hyperliquid", "https://api.hyperliquid.xyz", clock=self.clock, sleep=self.sleep,
                              rng=random.Random(7), timeout_ms=10_000, retry=RetryPolicy(), limiter=self.limiter)
        self.client = HyperliquidClient(self.http)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(round(seconds * 1000))


@contextmanager
def replay(path: Path) -> Iterator[vcr.cassette.Cassette]:
    with REPLAY.use_cassette(str(path), allow_playback_repeats=False) as cassette:
        yield cassette


# ------------------------------------------------------------------------------------ pagination
def test_pagination_over_three_pages() -> None:
    """§4.1: 2000, 2000, 13 fills; each next startTime is the previous page's max time; the boundary
    millisecond comes back on the next page and is deduplicated; a short page ends the fetch."""
    venue = Venue()
    start, end = _ranges()["pagination"]
    with replay(GENERATED / "user_fills_by_time_pagination.yaml") as cassette:
        history = venue.client.user_fills_by_time(GEN.PAGINATION_USER, start, end)
        assert cassette.all_played and cassette.play_count == 3
        bodies = [r.body for r in cassette.requests]
    assert isinstance(history, FillsHistory)
    assert (history.pages, history.n_items, history.complete, history.history_limit_reached) == (3, 4013, True, False)
    overlap = history.n_items - len(history.fills)
    assert overlap >= 2 and len({f.fill_id for f in history.fills}) == len(history.fills)
    assert history.invalid == () and venue.slept == []
    assert history.as_fact() == {"complete": True, "history_limit_reached": False, "fills": len(history.fills)}
    assert [f.time_ms for f in history.fills] == sorted(f.time_ms for f in history.fills)
    assert all(start <= f.time_ms <= end for f in history.fills)
    assert b'"startTime": %d' % start in bodies[0]
    # Weight: 20 per request, plus 1 per 20 fills owed to the next request (2000 → 100; 13 → 1 still owed).
    assert venue.limiter.used == 20 + 120 + 120 and venue.client.owed_weight == 1


def test_paginated_fills_aggregate_into_a_gapless_position_chain() -> None:
    """End to end: for each mapped coin, consecutive events chain prev → next with nothing lost or
    counted twice across page boundaries; spot, builder-dex and unmapped coins are skipped."""
    venue = Venue()
    start, end = _ranges()["pagination"]
    with replay(GENERATED / "user_fills_by_time_pagination.yaml"):
        history = venue.client.user_fills_by_time(GEN.PAGINATION_USER, start, end)
    assert isinstance(history, FillsHistory)
    result = aggregate_fills(history.fills, symbol_map=SYMBOLS, invalid=history.invalid)
    assert result.dedup_drop_count == 0
    by_coin: dict[str, list] = {}
    for event in result.events:
        by_coin.setdefault(event.coin, []).append(event)
    assert set(by_coin) == {"BTC", "ETH", "SOL", "HYPE"}
    for events in by_coin.values():
        for before, after in itertools.pairwise(events):
            assert before.next == after.prev, (before.key, after.key)
    assert {s.coin for s in result.skipped if s.reason == INGEST_UNMAPPED_SYMBOL} == {
        "DOGE", "@107", "@142", "PURR/USDC", "xyz:TSLA", "xyz:XYZ100"}
    assert {e.action for e in result.events} == {"INCREASE", "DECREASE", "FLIP"}
    placed = sum(len(e.tids) for e in result.events) + sum(len(s.tids) for s in result.skipped)
    assert placed == len(history.fills)
    keys = [e.key for e in result.events]
    assert len(set(keys)) == len(keys)

    # The next tick re-fetches with overlap: everything already ingested is dropped and counted.
    seen = {t for e in result.events for t in e.tids} | {t for s in result.skipped for t in s.tids}
    again = aggregate_fills(history.fills[-500:], symbol_map=SYMBOLS, seen_tids=seen)
    assert (again.events, again.dedup_drop_count) == ((), 500)


def test_history_limit() -> None:
    """§4.1: only the 10000 most recent fills are served; reaching them before covering the range
    stops the fetch and raises the flag the policy turns into BACKFILL_WINDOW_EXCEEDED."""
    venue = Venue()
    start, end = _ranges()["history_limit"]
    with replay(GENERATED / "user_fills_by_time_history_limit.yaml") as cassette:
        history = venue.client.user_fills_by_time(GEN.HISTORY_USER, start, end)
        assert cassette.all_played and cassette.play_count == 5
    assert isinstance(history, FillsHistory)
    assert (history.pages, history.n_items, history.history_limit_reached, history.complete) == (5, 10000, True, False)
    assert history.as_fact() == {"complete": False, "history_limit_reached": True, "fills": len(history.fills)}
    assert min(f.time_ms for f in history.fills) > start  # the range start was never reached
    assert venue.limiter.used == 20 + 4 * 120 and venue.client.owed_weight == 100


# ------------------------------------------------------------------------------------ failures
def test_a_non_list_body_is_retried_then_malformed() -> None:
    venue = Venue()
    start, end = _ranges()["malformed"]
    with replay(GENERATED / "user_fills_by_time_malformed.yaml") as cassette:
        result = venue.client.user_fills_by_time(GEN.MALFORMED_USER, start, end)
        assert cassette.play_count == 5
    assert isinstance(result, VenueError) and result.code == MALFORMED_RESPONSE and result.retryable
    assert result.status == 200 and "expected a list, got NoneType" in result.message
    assert len(venue.slept) == 4  # 5 attempts, min(250·2^(n−1), 5000) ms + jitter in [0, 150]
    for attempt, seconds in enumerate(venue.slept, 1):
        assert 0.25 * 2 ** (attempt - 1) <= seconds <= 0.25 * 2 ** (attempt - 1) + 0.15


def test_a_malformed_body_then_a_good_one() -> None:
    venue = Venue()
    start, end = _ranges()["malformed"]
    with replay(GENERATED / "user_fills_by_time_malformed.yaml") as cassette:
        history = venue.client.user_fills_by_time(GEN.MALFORMED_THEN_OK_USER, start, end)
        assert cassette.play_count == 2
    assert isinstance(history, FillsHistory) and len(history.fills) == 12 and history.complete
    assert len(venue.slept) == 1


def test_a_5xx_then_success() -> None:
    venue = Venue()
    start, end = _ranges()["5xx_then_ok"]
    with replay(GENERATED / "user_fills_by_time_5xx_then_ok.yaml") as cassette:
        history = venue.client.user_fills_by_time(GEN.RETRY_USER, start, end)
        assert cassette.all_played and cassette.play_count == 2
    assert isinstance(history, FillsHistory) and len(history.fills) == 41 and history.complete
    assert len(venue.slept) == 1 and venue.http.last_error_ms == T0
    # Two TWAP slices share the all-zero hash: §4.2 groups by (hash, coin), so they are one event
    # stamped with the later slice's time.
    result = aggregate_fills(history.fills, symbol_map=SYMBOLS)
    twap = [e for e in result.events if e.tx_hash == "0x" + "0" * 64]
    assert len(twap) == 1 and len(twap[0].fills) == 2
    assert twap[0].timestamp_ms == max(f.time_ms for f in twap[0].fills)
    assert {f.twap_id for f in twap[0].fills} != {None}


def test_5xx_on_every_attempt_is_an_exchange_error() -> None:
    """Same cassette, one attempt allowed: the 502 comes back as a value."""
    venue = Venue()
    venue.http.retry = RetryPolicy(max_attempts=1)
    start, end = _ranges()["5xx_then_ok"]
    with replay(GENERATED / "user_fills_by_time_5xx_then_ok.yaml"):
        result = venue.client.user_fills_by_time(GEN.RETRY_USER, start, end)
    assert isinstance(result, VenueError) and (result.code, result.status) == (EXCHANGE_ERROR, 502)


def test_429_on_every_attempt_is_rate_limited() -> None:
    venue = Venue()
    with replay(GENERATED / "clearinghouse_state_429.yaml") as cassette:
        result = venue.client.clearinghouse_state(GEN.RATE_LIMITED_USER, ASSETS)
        assert cassette.play_count == 5
    assert isinstance(result, VenueError) and (result.code, result.status) == (RATE_LIMITED, 429)
    assert venue.slept == [5.0] * 4  # the shared cooldown (no Retry-After: 5 s) outlasts the backoff
    assert venue.http.cooldown_until_ms == venue.clock.now_ms() + 5000


def test_429_then_success() -> None:
    venue = Venue()
    with replay(GENERATED / "clearinghouse_state_429.yaml") as cassette:
        rows = venue.client.clearinghouse_state(GEN.RATE_LIMITED_THEN_OK_USER, ASSETS)
        assert cassette.play_count == 2
    assert isinstance(rows, dict) and all(rows[a].szi not in (None, Decimal(0)) for a in ASSETS)
    assert venue.slept == [5.0] and venue.limiter.used == 2 + 2  # weight 2 per attempt


# ------------------------------------------------------------------------------------ other reads
def test_current_shapes_through_the_client() -> None:
    venue = Venue()
    with replay(GENERATED / "info_current.yaml") as cassette:
        meta = venue.client.meta()
        mids = venue.client.all_mids()
        states = {kind: venue.client.clearinghouse_state(user, ASSETS) for kind, user in GEN.STATE_USERS.items()}
        assert cassette.all_played
    assert isinstance(meta, Meta) and len(meta.assets) == len(GEN.PERPS)
    assert isinstance(mids, Mids) and mids.mids["HYPE"] == Decimal(GEN.PERPS["HYPE"][2])
    assert states["empty"] == states["others"] == {a: PositionRow(szi=Decimal(0)) for a in ASSETS}
    full = states["full"]
    assert isinstance(full, dict) and full["HYPE"].leverage_type == "isolated"
    assert venue.limiter.used == 20 + 2 + 3 * 2


@pytest.mark.parametrize(("cassette", "call", "check"), [
    ("test_get_user_fills.yaml", lambda c: c.user_fills("0xb7b6f3cea3f66bf525f5d8f965f6dbf6d9b017b2"),
     lambda r: isinstance(r, FillsPage) and len(r.fills) == 500),
    ("test_get_user_state.yaml", lambda c: c.clearinghouse_state("0x5e9ee1089755c3435139848e47e6635505d5a13a", ASSETS),
     lambda r: r["BTC"].szi == Decimal("-0.00785") and r["HYPE"] == PositionRow(szi=Decimal(0))),
    ("test_get_info.yaml", lambda c: c.meta(), lambda r: isinstance(r, Meta) and len(r.assets) == 28),
    ("test_get_all_mids.yaml", lambda c: c.all_mids(), lambda r: isinstance(r, Mids) and len(r.mids) == 28),
], ids=["userFills", "clearinghouseState", "meta", "allMids"])
def test_recorded_2023_cassettes_through_the_client(cassette: str, call, check) -> None:  # type: ignore[no-untyped-def]
    venue = Venue()
    with replay(SDK / cassette) as recorded:
        result = call(venue.client)
        assert recorded.all_played
    assert not isinstance(result, VenueError) and check(result)


def test_user_fills_weight_includes_items() -> None:
    venue = Venue()
    with replay(SDK / "test_get_user_fills.yaml"):
        venue.client.user_fills("0xb7b6f3cea3f66bf525f5d8f965f6dbf6d9b017b2")
    assert venue.limiter.used == 20 and venue.client.owed_weight == 25  # 500 fills → 25, charged next time


def test_leaderboard_through_the_client() -> None:
    venue = Venue()
    with replay(GENERATED / "leaderboard.yaml") as cassette:
        board = venue.client.leaderboard(GEN.LEADERBOARD_URL)
        assert cassette.all_played
    assert isinstance(board, LeaderboardParse) and board.schema_ok
    assert (board.n_received, board.n_invalid) == (270, 9)
    assert board.rows[0].pnl == max(r.pnl for r in board.rows)
    assert venue.limiter.used == 0  # stats-data is outside the info API's weight budget


# ------------------------------------------------------------------------------------ the cassettes
@functools.cache
def _generated() -> tuple[dict[str, str], dict[str, tuple[int, int]]]:
    return GEN.build()


def _ranges() -> dict[str, tuple[int, int]]:
    return _generated()[1]


def test_generator_reproduces_the_committed_cassettes() -> None:
    """generate.py is deterministic and the committed cassettes are its output."""
    files, _ = _generated()
    for name, text in files.items():
        assert (GENERATED / name).read_text(encoding="utf-8") == text, name
    assert sorted(p.name for p in GENERATED.glob("*.yaml")) == sorted(files)


# ------------------------------------------------------------------------------------ edge pages
class StubHttp:
    """Just enough of VenueHttp to script page bodies the cassettes cannot sensibly hold."""

    name = "stub"
    retry = RetryPolicy()

    def __init__(self, pages: list[object]):
        self.pages = list(pages)
        self.bodies: list[dict] = []
        self.rng = random.Random(1)

    def sleep(self, seconds: float) -> None:
        pass

    def request(self, method: str, path: str, *, json_body: dict, weight: int = 1, url: str | None = None):  # type: ignore[no-untyped-def]
        self.bodies.append(json_body)
        return HttpResult(200, self.pages.pop(0))


def _page(n: int, time_of: Callable[[int], int], first_tid: int = 1) -> list[dict]:
    return [{"coin": "BTC", "px": "97000.0", "sz": "0.001", "side": "B", "time": time_of(i), "startPosition": "0.0",
             "hash": "0x" + "ab" * 32, "oid": 1, "tid": first_tid + i} for i in range(n)]


def test_a_full_page_inside_one_millisecond_cannot_advance_and_is_incomplete() -> None:
    stub = StubHttp([_page(2000, lambda i: T0)])
    history = HyperliquidClient(stub).user_fills_by_time("0x" + "1" * 40, T0, T0 + 10)  # type: ignore[arg-type]
    assert isinstance(history, FillsHistory)
    assert (history.pages, history.complete, history.history_limit_reached) == (1, False, False)
    assert len(stub.bodies) == 1


def test_an_empty_range_is_one_complete_request() -> None:
    stub = StubHttp([[]])
    history = HyperliquidClient(stub).user_fills_by_time("0x" + "1" * 40, T0)  # type: ignore[arg-type]
    assert isinstance(history, FillsHistory) and history.complete and history.fills == ()
    assert stub.bodies == [{"type": "userFillsByTime", "user": "0x" + "1" * 40, "startTime": T0,
                            "aggregateByTime": False}]


def test_invalid_items_count_toward_the_page_size_and_are_reported() -> None:
    page = _page(2000, lambda i: T0 + i)
    page[5] = {"coin": "BTC"}
    stub = StubHttp([page, _page(3, lambda i: T0 + 1999 + i, first_tid=2000)])
    history = HyperliquidClient(stub).user_fills_by_time("0x" + "1" * 40, T0)  # type: ignore[arg-type]
    assert isinstance(history, FillsHistory) and history.complete and history.pages == 2
    assert [i.where for i in history.invalid] == ["page0[5]"]
    assert len(history.fills) == 1999 + 3 - 1  # the boundary fill came twice
