"""The fetch path's caches (round 6, monfetch) against what they stand in for: the decimal cache
against the uncached reader, the drill transport's request-key cache against `request_key`, the
monitor world's kept `assetPositions` text against `json.dumps(state())`."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hlcore.adapters.hyperliquid import parse
from replay.cassettes import CassetteDeck, request_key
from replay.transport import DrillTransport
from replay.worlds.monitor import MonitorWorld, position


class _Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000_000

    def now_ms(self) -> int:
        return self.t


_decimal_text = st.one_of(
    st.sampled_from(["0.0", "8", "-0.00785", "1e-5", "1E+41", "1e40", "nan", "Infinity", "1_000", "", " 1",
                     "00.10", ".5", "5.", "-", "1e99999999999", "0" * 70 + "1"]),
    st.text(alphabet="0123456789.-eE+ ", max_size=12),
    st.from_regex(r"-?\d{1,6}\.\d{0,6}", fullmatch=True),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_decimal_text, min_size=1, max_size=30))
def test_cached_to_decimal_reads_as_the_uncached_reader(texts: list[str]) -> None:
    """Twice over (the second read is a cache hit): the same value, digit for digit, or None."""
    for _ in range(2):
        for text in texts:
            got, want = parse.to_decimal(text), parse._to_decimal(text)
            assert (got is None) == (want is None), text
            if want is not None:
                assert got is not None and got.as_tuple() == want.as_tuple(), text


def test_decimal_cache_is_bounded_and_skips_long_text() -> None:
    parse._DECIMALS.clear()
    long = "1" * (parse._DECIMAL_KEY_MAX + 1)
    assert parse.to_decimal(long) == parse._to_decimal(long)
    assert long not in parse._DECIMALS
    for i in range(parse._DECIMALS_MAX + 10):
        parse.to_decimal(f"{i}.5")
    assert len(parse._DECIMALS) <= parse._DECIMALS_MAX
    assert parse.to_decimal("3.5") == parse._to_decimal("3.5")


def test_a_str_subclass_and_non_strings_take_the_uncached_path() -> None:
    class S(str):
        pass

    parse._DECIMALS.clear()
    assert parse.to_decimal(S("2.5")) == parse._to_decimal("2.5")
    assert parse._DECIMALS == {}
    assert parse.to_decimal(True) is None and parse.to_decimal(2) == parse._to_decimal(2)


_bodies = st.one_of(
    st.none(),
    st.fixed_dictionaries({"type": st.sampled_from(["clearinghouseState", "userFills"]),
                           "user": st.sampled_from(["0x" + "a" * 40, "0x" + "B" * 40])},
                          optional={"startTime": st.integers(0, 10**13), "nonce": st.integers(0, 10**13)}),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["GET", "POST"]),
                          st.sampled_from(["https://api.hyperliquid.xyz/info",
                                           "https://fapi.binance.com/fapi/v1/order?symbol=BTCUSDT&timestamp=1",
                                           "https://stats-data.hyperliquid.xyz"]),
                          _bodies), min_size=1, max_size=20))
def test_transport_key_cache_gives_request_key(requests_: list[tuple[str, str, Any]]) -> None:
    transport = DrillTransport(_Clock(), MonitorWorld(_Clock()), CassetteDeck([]))
    for _ in range(2):
        for method, url, body in requests_:
            raw = None if body is None else json.dumps(body).encode()
            assert transport._key(method, url, raw) == request_key(method, url, raw)


def test_transport_key_cache_is_bounded(monkeypatch: Any) -> None:
    import replay.transport as transport_module

    monkeypatch.setattr(transport_module, "_KEYS_MAX", 8)
    transport = DrillTransport(_Clock(), MonitorWorld(_Clock()), CassetteDeck([]))
    for nonce in range(50):
        raw = json.dumps({"type": "order", "nonce": nonce}).encode()
        assert transport._key("POST", "https://api.hyperliquid.xyz/exchange", raw) == \
            request_key("POST", "https://api.hyperliquid.xyz/exchange", raw)
    assert len(transport._keys) <= 8


_sizes = st.one_of(st.sampled_from(["8", "0.5", "-2.0", "1e-5"]), st.integers(-5, 5),
                   st.floats(allow_nan=False, allow_infinity=False, width=32), st.booleans())
_entries = st.one_of(_sizes, st.builds(lambda c, s: position(c, s), st.sampled_from(["BTC", "ETH"]), _sizes))
_books = st.dictionaries(st.sampled_from(["BTC", "ETH", "HYPE", "SOL"]), _entries, max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["0x" + "1" * 40, "0x" + "2" * 40]), _books, st.integers(0, 10**6)),
                min_size=1, max_size=12))
def test_state_bytes_is_json_of_state(steps: list[tuple[str, dict[str, Any], int]]) -> None:
    """Books replaced, edited in place and re-read at other times: always `json.dumps(state())`."""
    clock = _Clock()
    world = MonitorWorld(clock)
    for wallet, book, dt in steps:
        clock.t += dt
        if wallet in world.positions and book:
            world.positions[wallet].update(book)  # edited in place: the kept text must not be reused
        else:
            world.positions[wallet] = book
        for w in ("0x" + "1" * 40, "0x" + "2" * 40, "0x" + "3" * 40):
            assert world.state_bytes(w) == json.dumps(world.state(w)).encode()
            assert world.state_bytes(w) == json.dumps(world.state(w)).encode()  # the kept text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(width=32), st.sampled_from([0.0, -0.0, 8.5, 1e-7, float("nan")]),
                          st.integers(-3, 3)), max_size=40))
def test_feed_decimal_cache_reads_as_dec(cells: list[Any]) -> None:
    """The backtest feed's kept Decimals: twice over, each cell exactly `_dec(cell)` (sign of zero included)."""
    import numpy as np

    from backtest import feed

    column = np.array(cells, dtype=object)
    for _ in range(2):
        got = feed._decs(column)
        want = [feed._dec(v) for v in cells]
        assert [None if d is None else d.as_tuple() for d in got] == \
            [None if d is None else d.as_tuple() for d in want]


_szi = st.one_of(st.none(), st.decimals(min_value=-10**6, max_value=10**6, places=6, allow_nan=False))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.sampled_from(["BTC", "ETH", "HYPE"]),
                          _szi, _szi, _szi, _szi, _szi, st.integers(0, 10**6)), min_size=1, max_size=25))
def test_snapshot_upsert_fast_path_stores_what_the_generic_upsert_stores(
        writes: list[tuple[Any, ...]]) -> None:
    """Random slot writes (re-writes of a slot, a dirty mark set in between) through the SQLite
    fast path and through `db.upsert`: the same table, column for column."""
    import tempfile
    from pathlib import Path

    from sqlalchemy import select, update

    import hlcore.storage.monitor as monitor_storage
    from hlcore.jobs.monitor.snapshots import SnapshotRow
    from hlcore.storage.db import create_sqlite_file, open_database, sqlite_url
    from hlcore.storage.schema import wallet_snapshots

    tables = []
    for fast in (True, False):
        path = Path(tempfile.mkdtemp()) / "m.db"
        create_sqlite_file(path, 0)
        db = open_database(sqlite_url(path))
        if not fast:
            key = ("upsert", "wallet_snapshots", monitor_storage._SNAPSHOT_COLUMNS)
            monitor_storage._SQLITE_MANY[key] = None  # the generic path
        try:
            store = monitor_storage.Snapshots(db)
            for slot, wallet, asset, szi, entry, liq, lev, margin, now in writes:
                store.upsert(slot * 60_000, [SnapshotRow(f"0x{wallet:040x}", asset, szi, entry, liq, lev, margin)],
                             None, now)
                with db.transaction() as c:  # a dirty mark survives a re-write
                    c.execute(update(wallet_snapshots).where(wallet_snapshots.c.snapshot_ts == 0)
                              .values(is_dirty=True, dirty_reason="S6"))
        finally:
            monitor_storage._SQLITE_MANY.clear()
        with db.transaction() as c:
            tables.append([tuple(r) for r in c.execute(select(wallet_snapshots).order_by(
                wallet_snapshots.c.snapshot_ts, wallet_snapshots.c.wallet_id, wallet_snapshots.c.asset))])
        db.engine.dispose()
    assert tables[0] == tables[1]
    assert tables[0]


_maybe_float = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 9), st.sampled_from(["BTC", "ETH", "HYPE"]),
                          _maybe_float, _maybe_float, _maybe_float, st.booleans(), st.integers(0, 10**9)),
                min_size=1, max_size=40, unique_by=lambda t: (t[0], t[1], t[2])))
def test_snapshot_insert_rows_stores_what_an_insert_executemany_stores(rows: list[tuple[Any, ...]]) -> None:
    """`Snapshots.insert_rows` (the SQLite fast path) against `conn.execute(insert(...), rows)`:
    the same table, column for column (booleans and NULLs included)."""
    import tempfile
    from pathlib import Path

    from sqlalchemy import insert, select

    import hlcore.storage.monitor as monitor_storage
    from hlcore.storage.db import create_sqlite_file, open_database, sqlite_url
    from hlcore.storage.schema import wallet_snapshots

    dicts = [{"snapshot_ts": ts * 60_000, "wallet_id": f"0x{w:040x}", "asset": asset, "position_szi": szi,
              "entry_px": entry, "liq_px": None, "leverage": lev, "margin_used": entry, "is_dirty": dirty,
              "dirty_reason": "S6" if dirty else None, "ingest_run_id": None, "created_at": created}
             for ts, w, asset, szi, entry, lev, dirty, created in rows]
    tables = []
    for fast in (True, False):
        path = Path(tempfile.mkdtemp()) / "m.db"
        create_sqlite_file(path, 0)
        db = open_database(sqlite_url(path))
        with db.transaction() as c:
            if fast:
                assert monitor_storage._sqlite_many(c, "insert", lambda: insert(wallet_snapshots), wallet_snapshots,
                                                     tuple(dicts[0])) is not None
                monitor_storage.Snapshots(db).insert_rows(dicts, conn=c)
            else:
                c.execute(insert(wallet_snapshots), dicts)
        with db.transaction() as c:
            tables.append([tuple(r) for r in c.execute(select(wallet_snapshots).order_by(
                wallet_snapshots.c.snapshot_ts, wallet_snapshots.c.wallet_id, wallet_snapshots.c.asset))])
        db.engine.dispose()
    assert tables[0] == tables[1] and len(tables[0]) == len(rows)
