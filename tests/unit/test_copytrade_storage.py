"""Copy-trader repositories: cursor, events, intents/results, reconcile runs, baselines.

Each test names the spec rule it checks (spec/copytrader.md §3.2, §3.3, §4.1–4.2, §4.7, §6, §8).
State and status names live here, never in storage: the repositories take them as arguments.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from hlcore.storage import schema
from hlcore.storage.copytrade import (
    BaselineActive,
    Baselines,
    CopytradeKey,
    CopytradeState,
    Cursor,
    EventNotFound,
    Events,
    OrderIntent,
    Orders,
    ReconcileRuns,
    event_key,
    parse_event_key,
)
from hlcore.storage.db import Database, open_database

T0 = 1_769_248_800_000  # 2026-01-24T10:00:00Z

PENDING, DECIDED, DONE = "PENDING", "DECIDED", "DONE"
UNSETTLED = (PENDING, DECIDED)
TERMINAL = ("FILLED", "CANCELED", "EXPIRED", "REJECTED", "SIMULATED")
CONTRACT = "1.0"


@pytest.fixture
def db(db_url: str):
    """The storage under test on each backend (SQLite file, then PostgreSQL: tests/conftest.py)."""
    database = open_database(db_url)
    database.create_schema(now_ms=T0)
    yield database
    database.dispose()


def count(db: Database, table) -> int:
    with db.transaction() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def ev(ts: int, index: int, tx: str = "0xabc", symbol: str = "BTCUSDT", **extra: Any) -> dict[str, Any]:
    row = {
        "tx_hash": tx,
        "event_index": index,
        "symbol": symbol,
        "timestamp_ms": ts,
        "is_replay": False,
        "action_type": "INCREASE",
        "prev_target": Decimal("0"),
        "next_target": Decimal("2.0"),
        "expected_price": Decimal("60000.5"),
    }
    row.update(extra)
    return row


def key_of(e: dict[str, Any]) -> str:
    return event_key(e["timestamp_ms"], e["event_index"], e["tx_hash"], e["symbol"])


def fill(tid: int, e: dict[str, Any], **extra: Any) -> dict[str, Any]:
    row = {
        "tid": tid,
        "tx_hash": e["tx_hash"],
        "coin": "BTC",
        "side": "B",
        "sz": Decimal("1.0"),
        "px": Decimal("60000.5"),
        "start_position": Decimal("0"),
        "time_ms": e["timestamp_ms"],
        "event_key": key_of(e),
    }
    row.update(extra)
    return row


def cursor_at(e: dict[str, Any]) -> Cursor:
    return Cursor(e["timestamp_ms"], key_of(e))


def intent(cid: str, coid: str | None = None, **payload: Any) -> OrderIntent:
    body = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "qty": Decimal("0.002"), "reduce_only": False}
    body.update(payload)
    return OrderIntent(correlation_id=cid, client_order_id=coid or f"coid-{cid}", payload=body)


def ingest(db: Database, *events: dict[str, Any], now_ms: int = T0) -> None:
    fills = [fill(e["event_index"], e) for e in events]
    Events(db).insert_ingested(list(events), fills, cursor_at(events[-1]), now_ms, pending_state=PENDING)


# --------------------------------------------------------------------------------------------------
# Event keys and the cursor (§2, §4.2 Cursor)
# --------------------------------------------------------------------------------------------------


def test_event_key_round_trip() -> None:
    key = event_key(T0, 7, "0xabc", "BTCUSDT")
    assert key == f"{T0}|7|0xabc|BTCUSDT"
    assert parse_event_key(key) == (T0, 7, "0xabc", "BTCUSDT")
    assert str(parse_event_key(key)) == key


@pytest.mark.parametrize(
    "bad",
    ["", f"{T0}|7|0xabc", f"{T0}|7|0xabc|BTC|x", "x|7|0xabc|BTC", f"{T0}|y|0xabc|BTC", f"{T0}|7||BTC"],
)
def test_malformed_event_key_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="malformed event key"):
        parse_event_key(bad)


CURSOR_CASES = [
    # (name, new (ts, index), moves)
    ("equal key", (T0, 5), False),
    ("smaller timestamp", (T0 - 1, 9), False),
    ("same timestamp, smaller index", (T0, 4), False),
    ("same timestamp, larger index", (T0, 6), True),
    ("larger timestamp, smaller index", (T0 + 1, 1), True),
]


@pytest.mark.parametrize(("name", "new", "moves"), CURSOR_CASES, ids=[c[0] for c in CURSOR_CASES])
def test_cursor_only_moves_forward(db: Database, name: str, new: tuple[int, int], moves: bool) -> None:
    state = CopytradeState(db)
    start = event_key(T0, 5, "0xabc", "BTCUSDT")
    assert state.advance_cursor(T0, start, T0) is True
    new_key = event_key(new[0], new[1], "0xdef", "BTCUSDT") if new != (T0, 5) else start
    assert state.advance_cursor(new[0], new_key, T0 + 10) is moves
    expected = Cursor(new[0], new_key) if moves else Cursor(T0, start)
    assert state.cursor() == expected


def test_cursor_absent_then_seeded_without_key(db: Database) -> None:
    state = CopytradeState(db)
    assert state.cursor() is None
    state.set_many({CopytradeKey.LAST_PROCESSED_TIMESTAMP_MS: T0}, T0)
    assert state.cursor() == Cursor(T0, None)
    # A time-only cursor sorts before every event of its millisecond.
    assert state.advance_cursor(T0, event_key(T0, 0, "0xabc", "BTCUSDT"), T0) is True


def test_cursor_key_must_carry_its_timestamp(db: Database) -> None:
    with pytest.raises(ValueError, match="does not carry"):
        CopytradeState(db).advance_cursor(T0, event_key(T0 + 1, 1, "0xabc", "BTCUSDT"), T0)


def test_ingest_success_stamp_and_int_keys(db: Database) -> None:
    state = CopytradeState(db)
    assert state.last_ingest_success_ms() is None
    state.stamp_ingest_success(T0 + 5)
    state.set_many({CopytradeKey.BOOT_MS: T0, "halt_recovery_noncritical_count": 2}, T0)
    assert state.last_ingest_success_ms() == T0 + 5
    assert state.boot_ms() == T0
    assert state.get_int(CopytradeKey.HALT_RECOVERY_NONCRITICAL_COUNT) == 2
    state.set_many({"safety_mode": "ARMED_SAFE"}, T0)
    with pytest.raises(ValueError, match="not an integer"):
        state.get_int("safety_mode")


# --------------------------------------------------------------------------------------------------
# Maintenance skip (§4.1 Skip effect)
# --------------------------------------------------------------------------------------------------


SKIP_CASES = [
    # (name, stored last success, from_ms, expected abandoned_from)
    ("from the last ingest success", T0 - 700_000, None, T0 - 700_000),
    ("from the policy's gap start", T0 - 700_000, T0 - 650_000, T0 - 650_000),
    ("no success stamp: from the cursor", None, None, T0 - 900_000),
]


@pytest.mark.parametrize(
    ("name", "last_success", "from_ms", "expected_from"), SKIP_CASES, ids=[c[0] for c in SKIP_CASES]
)
def test_maintenance_skip_evidence(
    db: Database, name: str, last_success: int | None, from_ms: int | None, expected_from: int
) -> None:
    state = CopytradeState(db)
    before_key = event_key(T0 - 900_000, 3, "0xabc", "BTCUSDT")
    state.advance_cursor(T0 - 900_000, before_key, T0 - 900_000)
    if last_success is not None:
        state.stamp_ingest_success(last_success)
    evidence = state.maintenance_skip(T0, from_ms=from_ms)
    assert evidence.before_cursor == Cursor(T0 - 900_000, before_key)
    assert evidence.after_cursor == Cursor(T0, f"{T0}|0|maintenance|MAINTENANCE")
    assert (evidence.abandoned_from_ms, evidence.abandoned_to_ms) == (expected_from, T0)
    assert state.cursor() == evidence.after_cursor
    assert state.get_int(CopytradeKey.MAINTENANCE_SKIP_APPLIED_MS) == T0
    assert state.last_ingest_success_ms() == T0
    assert evidence.to_dict()["after_cursor"]["event_key"] == f"{T0}|0|maintenance|MAINTENANCE"


def test_maintenance_skip_never_moves_the_cursor_back(db: Database) -> None:
    state = CopytradeState(db)
    ahead = event_key(T0, 4, "0xabc", "BTCUSDT")
    state.advance_cursor(T0, ahead, T0)
    evidence = state.maintenance_skip(T0)
    assert evidence.after_cursor == Cursor(T0, ahead)
    assert state.get_int(CopytradeKey.MAINTENANCE_SKIP_APPLIED_MS) == T0


def test_maintenance_skip_on_an_empty_db(db: Database) -> None:
    evidence = CopytradeState(db).maintenance_skip(T0)
    assert evidence.before_cursor is None
    assert evidence.abandoned_from_ms is None
    assert evidence.after_cursor.timestamp_ms == T0


# --------------------------------------------------------------------------------------------------
# Ingest: events + fills + cursor in one transaction (§3.2, §4.2 Dedup)
# --------------------------------------------------------------------------------------------------


def test_insert_ingested_writes_events_fills_and_cursor(db: Database) -> None:
    e1, e2 = ev(T0, 10), ev(T0 + 1000, 20, symbol="ETHUSDT")
    fills = [fill(10, e1), fill(11, e1), fill(20, e2)]
    new = Events(db).insert_ingested([e1, e2], fills, cursor_at(e2), T0 + 2000, pending_state=PENDING)
    assert new == 2
    assert count(db, schema.processed_txs) == 2
    assert count(db, schema.ingested_fills) == 3
    assert CopytradeState(db).cursor() == cursor_at(e2)
    stored = Events(db).get(key_of(e1))
    assert stored is not None
    assert (stored.state, stored.decision_reason, stored.is_replay) == (PENDING, None, False)
    assert (stored.prev_target, stored.next_target, stored.expected_price) == (
        Decimal("0"),
        Decimal("2.0"),
        Decimal("60000.5"),
    )
    assert stored.created_at_ms == stored.updated_at_ms == T0 + 2000
    assert stored.key == key_of(e1)


DEDUP_CASES = [
    # (name, second batch events, second batch fill tids, new events expected, fills after)
    ("same batch again", [ev(T0, 10)], [10], 0, 1),
    ("overlap: one old, one new", [ev(T0, 10), ev(T0 + 1000, 20)], [10, 20], 1, 2),
    ("duplicate inside one batch", [ev(T0 + 1000, 20), ev(T0 + 1000, 20)], [20, 20], 1, 2),
]


@pytest.mark.parametrize(
    ("name", "events", "tids", "new_expected", "fills_after"), DEDUP_CASES, ids=[c[0] for c in DEDUP_CASES]
)
def test_insert_ingested_dedups_events_and_fills(
    db: Database, name: str, events: list[dict[str, Any]], tids: list[int], new_expected: int, fills_after: int
) -> None:
    repo = Events(db)
    first = ev(T0, 10)
    assert repo.insert_ingested([first], [fill(10, first)], cursor_at(first), T0, pending_state=PENDING) == 1
    repo.set_state(key_of(first), DONE, T0 + 1, "some_reason")
    fills = [fill(tid, next(e for e in events if e["event_index"] == tid)) for tid in tids]
    new = repo.insert_ingested(events, fills, cursor_at(events[-1]), T0 + 5000, pending_state=PENDING)
    assert new == new_expected
    assert count(db, schema.ingested_fills) == fills_after
    # Dedup never resets a stored event's state.
    again = repo.get(key_of(first))
    assert again is not None and again.state == DONE


def _fail_on_cursor(*_args: Any, **_kwargs: Any) -> bool:
    raise RuntimeError("crash between the rows and the cursor")


FAILURE_CASES = ["fill without event_key", "forced exception at the cursor", "cursor key inconsistent"]


@pytest.mark.parametrize("failure", FAILURE_CASES)
def test_insert_ingested_is_all_or_nothing(db: Database, monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    repo = Events(db)
    before = ev(T0 - 5000, 1)
    repo.insert_ingested([before], [fill(1, before)], cursor_at(before), T0 - 5000, pending_state=PENDING)
    e1, e2 = ev(T0, 10), ev(T0 + 1000, 20)
    fills = [fill(10, e1), fill(20, e2)]
    cursor = cursor_at(e2)
    expected_error: type[BaseException] = IntegrityError
    if failure == "fill without event_key":
        fills[-1]["event_key"] = None
    elif failure == "forced exception at the cursor":
        monkeypatch.setattr(CopytradeState, "advance_cursor", _fail_on_cursor)
        expected_error = RuntimeError
    else:
        cursor = Cursor(T0 + 999, key_of(e2))
        expected_error = ValueError
    with pytest.raises(expected_error):
        repo.insert_ingested([e1, e2], fills, cursor, T0 + 2000, pending_state=PENDING)
    assert count(db, schema.processed_txs) == 1
    assert count(db, schema.ingested_fills) == 1
    assert CopytradeState(db).cursor() == cursor_at(before)


def test_insert_ingested_never_moves_the_cursor_back(db: Database) -> None:
    late, early = ev(T0 + 5000, 50), ev(T0, 10)
    ingest(db, late)
    assert Events(db).insert_ingested([early], [fill(10, early)], cursor_at(early), T0, pending_state=PENDING) == 1
    assert CopytradeState(db).cursor() == cursor_at(late)


def test_insert_ingested_state_name_comes_from_the_caller(db: Database) -> None:
    e = ev(T0, 10)
    Events(db).insert_ingested([e], [], None, T0, pending_state="CUSTOM_INITIAL")
    stored = Events(db).get(key_of(e))
    assert stored is not None and stored.state == "CUSTOM_INITIAL"
    assert CopytradeState(db).cursor() is None


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"not_a_column": 1}, "unknown column"),
        ({"event_key": "1|2|x|y"}, "does not match"),
        ({"timestamp_ms": None}, "lacks timestamp_ms"),
    ],
)
def test_insert_ingested_rejects_bad_rows(db: Database, bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Events(db).insert_ingested([ev(T0, 1, **bad)], [], None, T0, pending_state=PENDING)
    assert count(db, schema.processed_txs) == 0


def test_seen_tids(db: Database) -> None:
    e = ev(T0, 10)
    Events(db).insert_ingested([e], [fill(10, e), fill(11, e)], None, T0, pending_state=PENDING)
    assert Events(db).seen_tids([9, 10, 11, 12]) == {10, 11}
    assert Events(db).seen_tids([]) == set()
    assert Events(db).seen_tids(range(1000, 2500)) == set()


# --------------------------------------------------------------------------------------------------
# Event lifecycle reads and writes (§3.2)
# --------------------------------------------------------------------------------------------------


def test_unsettled_is_ordered_by_timestamp_then_index(db: Database) -> None:
    rows = [
        ev(T0 + 2000, 5, tx="0xc"),
        ev(T0, 30, tx="0xb"),
        ev(T0, 7, tx="0xa", symbol="ETHUSDT"),
        ev(T0 + 1000, 1, tx="0xd"),
        ev(T0 - 1000, 99, tx="0xe"),
    ]
    repo = Events(db)
    repo.insert_ingested(rows, [], None, T0, pending_state=PENDING)
    repo.set_state(key_of(rows[3]), DECIDED, T0 + 1)
    repo.set_state(key_of(rows[4]), DONE, T0 + 1, "no_intent_code")
    got = repo.unsettled(UNSETTLED)
    assert [(e.timestamp_ms, e.event_index) for e in got] == [(T0, 7), (T0, 30), (T0 + 1000, 1), (T0 + 2000, 5)]
    assert [e.state for e in got] == [PENDING, PENDING, DECIDED, PENDING]
    assert [e.key for e in repo.unsettled([DONE])] == [key_of(rows[4])]
    assert repo.unsettled([]) == []


def test_set_state_records_reason_and_reports_missing_events(db: Database) -> None:
    e = ev(T0, 10)
    repo = Events(db)
    repo.insert_ingested([e], [], None, T0, pending_state=PENDING)
    assert repo.set_state(key_of(e), DONE, T0 + 7, decision_reason="blacklisted_symbol") is True
    stored = repo.get(key_of(e))
    assert stored is not None
    assert (stored.state, stored.decision_reason, stored.created_at_ms, stored.updated_at_ms) == (
        DONE,
        "blacklisted_symbol",
        T0,
        T0 + 7,
    )
    assert repo.set_state(event_key(T0, 11, "0xnope", "BTCUSDT"), DONE, T0) is False
    assert repo.get(event_key(T0, 11, "0xnope", "BTCUSDT")) is None


def test_prune_done_keeps_the_cursor_row_and_live_events(db: Database) -> None:
    cutoff = T0
    old_done, old_cursor, old_pending, recent_done = (
        ev(T0 - 3000, 1, tx="0x1"),
        ev(T0 - 1000, 3, tx="0x3"),
        ev(T0 - 2000, 2, tx="0x2"),
        ev(T0 + 1000, 4, tx="0x4"),
    )
    repo = Events(db)
    events = [old_done, old_pending, old_cursor, recent_done]
    repo.insert_ingested(events, [fill(e["event_index"], e) for e in events], None, T0, pending_state=PENDING)
    for e in (old_done, old_cursor, recent_done):
        repo.set_state(key_of(e), DONE, T0)
    pruned = repo.prune_done(cutoff, DONE, keep_key=key_of(old_cursor))
    assert (pruned.events, pruned.fills) == (1, 1)
    assert repo.get(key_of(old_done)) is None
    for e in (old_cursor, old_pending, recent_done):
        assert repo.get(key_of(e)) is not None
    assert repo.seen_tids([1, 2, 3, 4]) == {2, 3, 4}


# --------------------------------------------------------------------------------------------------
# Decisions: intents and the event state in one transaction (§3.2, §3.3, §5 step 3)
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def decided_db(db: Database) -> Database:
    ingest(db, ev(T0, 10))
    return db


def test_record_decision_persists_intents_and_state_together(decided_db: Database) -> None:
    db, key = decided_db, key_of(ev(T0, 10))
    orders = Orders(db)
    outcome = orders.record_decision(
        key, [intent("hl-0xabc-10-BTCUSDT-close"), intent("hl-0xabc-10-BTCUSDT-open")], DECIDED, T0 + 5
    )
    assert outcome.inserted == ("hl-0xabc-10-BTCUSDT-close", "hl-0xabc-10-BTCUSDT-open")
    assert not outcome.mismatch
    stored = Events(db).get(key)
    assert stored is not None and stored.state == DECIDED
    got = orders.intents_for(key)
    assert [i.correlation_id for i in got] == ["hl-0xabc-10-BTCUSDT-close", "hl-0xabc-10-BTCUSDT-open"]
    assert got[0].payload["qty"] == "0.002"  # Decimals keep their digits as strings
    assert (got[0].event_key, got[0].created_at_ms) == (key, T0 + 5)
    with db.transaction() as conn:
        text = conn.execute(select(schema.order_intents.c.intent_payload).limit(1)).scalar_one()
    assert text == '{"qty":"0.002","reduce_only":false,"side":"BUY","symbol":"BTCUSDT","type":"MARKET"}'


def test_record_decision_without_intents_ends_the_event(decided_db: Database) -> None:
    key = key_of(ev(T0, 10))
    outcome = Orders(decided_db).record_decision(key, [], DONE, T0 + 5, decision_reason="replay_policy_blocked")
    assert outcome.inserted == ()
    stored = Events(decided_db).get(key)
    assert stored is not None and (stored.state, stored.decision_reason) == (DONE, "replay_policy_blocked")


IMMUTABILITY_CASES = [
    # (name, second intent, mismatch expected)
    ("same payload is a no-op", intent("cid-1"), False),
    (
        "same payload, mapping form",
        {"correlation_id": "cid-1", "client_order_id": "coid-cid-1", "payload": intent("cid-1").payload},
        False,
    ),
    ("different qty", intent("cid-1", qty=Decimal("0.003")), True),
    ("different client order id", intent("cid-1", coid="other-coid"), True),
]


@pytest.mark.parametrize(("name", "second", "mismatch"), IMMUTABILITY_CASES, ids=[c[0] for c in IMMUTABILITY_CASES])
def test_intent_payload_is_immutable(decided_db: Database, name: str, second: Any, mismatch: bool) -> None:
    db, key = decided_db, key_of(ev(T0, 10))
    orders, events = Orders(db), Events(db)
    orders.record_decision(key, [intent("cid-1")], DECIDED, T0 + 5)
    events.set_state(key, PENDING, T0 + 6)  # a re-decision, e.g. after a crash
    outcome = orders.record_decision(key, [second, intent("cid-2")], DECIDED, T0 + 9)
    assert outcome.mismatch is mismatch
    stored_event = events.get(key)
    assert stored_event is not None
    if mismatch:
        assert outcome.mismatched == ("cid-1",)
        assert outcome.inserted == ()
        # Nothing written: no new intent, the event state untouched, the stored payload kept.
        assert [i.correlation_id for i in orders.intents_for(key)] == ["cid-1"]
        assert stored_event.state == PENDING
    else:
        assert (outcome.existing, outcome.inserted) == (("cid-1",), ("cid-2",))
        assert stored_event.state == DECIDED
    assert orders.intents_for(key)[0].payload == {
        "qty": "0.002",
        "reduce_only": False,
        "side": "BUY",
        "symbol": "BTCUSDT",
        "type": "MARKET",
    }


def test_mismatch_inside_one_batch(decided_db: Database) -> None:
    key = key_of(ev(T0, 10))
    outcome = Orders(decided_db).record_decision(key, [intent("cid-1"), intent("cid-1", side="SELL")], DECIDED, T0 + 5)
    assert outcome.mismatched == ("cid-1",)
    assert count(decided_db, schema.order_intents) == 0


ATOMICITY_CASES = ["duplicate client order id", "unknown event"]


@pytest.mark.parametrize("failure", ATOMICITY_CASES)
def test_record_decision_is_all_or_nothing(decided_db: Database, failure: str) -> None:
    db, key = decided_db, key_of(ev(T0, 10))
    orders = Orders(db)
    if failure == "duplicate client order id":
        ingest(db, ev(T0 + 1, 11))
        orders.record_decision(key_of(ev(T0 + 1, 11)), [intent("other", coid="shared")], DECIDED, T0 + 2)
        batch, target, error = [intent("cid-1"), intent("cid-2", coid="shared")], key, IntegrityError
    else:
        batch, target, error = [intent("cid-1")], event_key(T0, 99, "0xnope", "BTCUSDT"), EventNotFound
    before = count(db, schema.order_intents)
    with pytest.raises(error):
        orders.record_decision(target, batch, DECIDED, T0 + 5)
    assert count(db, schema.order_intents) == before
    assert orders.intents_for(target) == []
    stored = Events(db).get(key)
    assert stored is not None and stored.state == PENDING


def test_record_decision_joins_a_callers_transaction(decided_db: Database) -> None:
    key = key_of(ev(T0, 10))
    with pytest.raises(RuntimeError), decided_db.transaction() as conn:
        Orders(decided_db).record_decision(key, [intent("cid-1")], DECIDED, T0 + 5, conn=conn)
        raise RuntimeError("submit step crashed before commit")
    assert count(decided_db, schema.order_intents) == 0


# --------------------------------------------------------------------------------------------------
# Results (§3.3, §4.6)
# --------------------------------------------------------------------------------------------------


def _three_intents(db: Database) -> Orders:
    ingest(db, ev(T0, 10))
    orders = Orders(db)
    orders.record_decision(key_of(ev(T0, 10)), [intent("a"), intent("b"), intent("c")], DECIDED, T0)
    return orders


def test_upsert_result_keeps_created_at_and_known_facts(db: Database) -> None:
    orders = _three_intents(db)
    first = orders.upsert_result(
        "a",
        "SUBMITTED",
        T0 + 1,
        exchange_order_id="123",
        filled_qty=Decimal("0.001"),
        avg_price=Decimal("60000.1"),
        contract_version=CONTRACT,
    )
    assert (first.created_at_ms, first.updated_at_ms, first.query_attempts) == (T0 + 1, T0 + 1, 0)
    unknown = orders.upsert_result(
        "a",
        "UNKNOWN",
        T0 + 10,
        error_code="TIMEOUT",
        error_message="read timeout",
        contract_version=CONTRACT,
        query_attempts=1,
        first_unknown_ms=T0 + 10,
    )
    assert (unknown.created_at_ms, unknown.updated_at_ms) == (T0 + 1, T0 + 10)
    assert (unknown.exchange_order_id, unknown.filled_qty, unknown.avg_price) == (
        "123",
        Decimal("0.001"),
        Decimal("60000.1"),
    )
    filled = orders.upsert_result("a", "FILLED", T0 + 20, filled_qty=Decimal("0.002"), contract_version=CONTRACT)
    assert (filled.status, filled.filled_qty, filled.error_code, filled.error_message) == (
        "FILLED",
        Decimal("0.002"),
        None,
        None,
    )
    assert (filled.created_at_ms, filled.query_attempts, filled.first_unknown_ms) == (T0 + 1, 1, T0 + 10)
    assert orders.result("a") == filled
    assert orders.result("zzz") is None


def test_upsert_result_needs_a_stored_intent(db: Database) -> None:
    with pytest.raises(IntegrityError):
        Orders(db).upsert_result("no-such-intent", "FILLED", T0, contract_version=CONTRACT)


def test_unsettled_intents_results_by_status_and_unknowns(db: Database) -> None:
    orders = _three_intents(db)
    ingest(db, ev(T0 + 1, 11))
    orders.record_decision(key_of(ev(T0 + 1, 11)), [intent("d"), intent("e")], DECIDED, T0 + 1)
    orders.upsert_result("a", "FILLED", T0 + 2, filled_qty=Decimal("0.002"), contract_version=CONTRACT)
    orders.upsert_result(
        "b", "UNKNOWN", T0 + 3, error_code="TIMEOUT", first_unknown_ms=T0 + 3, contract_version=CONTRACT
    )
    orders.upsert_result(
        "d",
        "UNKNOWN",
        T0 + 4,
        error_code="RETRY_BUDGET_EXCEEDED",
        first_unknown_ms=T0 + 1,
        contract_version=CONTRACT,
    )
    orders.upsert_result("e", "REJECTED", T0 + 4, error_code="SAFETY_REJECTED", contract_version=CONTRACT)
    pending = orders.unsettled_intents(TERMINAL)
    assert [(p.intent.correlation_id, p.result and p.result.status) for p in pending] == [
        ("b", "UNKNOWN"),
        ("c", None),
        ("d", "UNKNOWN"),
    ]
    assert pending[1].result is None
    assert pending[0].intent.payload["side"] == "BUY"
    assert orders.results_by_status() == {"FILLED": 1, "REJECTED": 1, "UNKNOWN": 2}
    assert [r.correlation_id for r in orders.unknown_results("UNKNOWN")] == ["d", "b"]
    # With no terminal statuses every intent is unsettled.
    assert len(orders.unsettled_intents([])) == 5


# --------------------------------------------------------------------------------------------------
# Reconcile runs (§4.7 step 7)
# --------------------------------------------------------------------------------------------------


def test_reconcile_runs_write_and_last(db: Database) -> None:
    runs = ReconcileRuns(db)
    assert runs.last() is None
    runs.write({"ts_ms": T0, "context": "startup", "raw_result": "OK", "max_drift": Decimal("0")})
    second = runs.write(
        {
            "ts_ms": T0 + 60_000,
            "context": "loop",
            "raw_result": "CRIT",
            "max_drift": Decimal("0.02"),
            "drifts": {"BTCUSDT": Decimal("0.02")},
            "missing_local": ["ETHUSDT"],
            "missing_exchange": [],
            "snapshot_age_ms": 120,
            "mode_before": "ARMED_LIVE",
            "mode_after": "HALT",
            "reason_after": "RECONCILE_CRITICAL",
        }
    )
    last = runs.last()
    assert last is not None
    assert last["id"] == second
    assert (last["raw_result"], last["max_drift"], last["missing_local"], last["missing_exchange"]) == (
        "CRIT",
        Decimal("0.02"),
        ["ETHUSDT"],
        [],
    )
    assert last["drifts"] == {"BTCUSDT": "0.02"}
    with pytest.raises(ValueError, match="unknown column"):
        runs.write({"ts_ms": T0, "bogus": 1})


# --------------------------------------------------------------------------------------------------
# Baselines (§8 baseline sync/reset) and local positions (§4.7 step 4)
# --------------------------------------------------------------------------------------------------


BASELINE_CASES = [
    # (name, steps, expected active positions or None, expected error on the last step)
    ("first sync", [("sync", False)], {"BTCUSDT": Decimal("1.0")}, None),
    ("second sync refused", [("sync", False), ("sync", False)], {"BTCUSDT": Decimal("1.0")}, BaselineActive),
    ("replace", [("sync", False), ("sync2", True)], {"ETHUSDT": Decimal("3")}, None),
    ("replace with none active", [("sync2", True)], {"ETHUSDT": Decimal("3")}, None),
    ("reset", [("sync", False), ("reset", False)], None, None),
    ("sync after reset", [("sync", False), ("reset", False), ("sync2", False)], {"ETHUSDT": Decimal("3")}, None),
]


@pytest.mark.parametrize(("name", "steps", "expected", "error"), BASELINE_CASES, ids=[c[0] for c in BASELINE_CASES])
def test_baseline_sync_refusal_replace_reset(
    db: Database, name: str, steps: list[tuple[str, bool]], expected: dict[str, Decimal] | None, error: Any
) -> None:
    baselines = Baselines(db)
    for n, (op, replace) in enumerate(steps):
        now = T0 + n
        last = n == len(steps) - 1

        def run(op: str = op, replace: bool = replace, now: int = now) -> None:
            if op == "sync":
                baselines.sync({"BTC-USDT": Decimal("1.0")}, "ops", "initial", now, replace=replace)
            elif op == "sync2":
                baselines.sync({"ETH_USDT": "3"}, "ops", "second", now, replace=replace)
            else:
                baselines.reset(now)

        if last and error is not None:
            with pytest.raises(error):
                run()
        else:
            run()
    active = baselines.active()
    if expected is None:
        assert active is None
    else:
        assert active is not None and active.positions == expected
    with db.transaction() as conn:
        n_active = conn.execute(
            select(func.count()).select_from(schema.baseline_snapshots).where(schema.baseline_snapshots.c.active)
        ).scalar_one()
    assert n_active == (0 if expected is None else 1)


def test_baseline_sync_reports_the_replaced_one(db: Database) -> None:
    baselines = Baselines(db)
    first = baselines.sync({"BTCUSDT": Decimal("1")}, "alice", "start", T0)
    assert first.replaced is None
    assert (first.baseline.baseline_id, first.baseline.operator, first.baseline.reason_message) == (
        f"baseline-{T0}",
        "alice",
        "start",
    )
    second = baselines.sync({}, "bob", "flat", T0, replace=True)
    assert second.replaced is not None and second.replaced.baseline_id == f"baseline-{T0}"
    assert second.replaced.active is False
    assert second.baseline.baseline_id == f"baseline-{T0}-2"
    assert second.baseline.positions == {}
    reset = baselines.reset(T0 + 1)
    assert reset is not None and reset.baseline_id == f"baseline-{T0}-2"
    assert baselines.reset(T0 + 2) is None


def _filled(db: Database, orders: Orders, cid: str, side: str, symbol: str, qty: str, at: int) -> None:
    key = key_of(ev(at, at - T0 + 1000, tx=f"0x{cid}"))
    ingest(db, ev(at, at - T0 + 1000, tx=f"0x{cid}"))
    orders.record_decision(key, [intent(cid, side=side, symbol=symbol)], DECIDED, at)
    orders.upsert_result(cid, "FILLED", at, filled_qty=Decimal(qty), contract_version=CONTRACT)


LOCAL_CASES = [
    # (name, baseline, fills [(side, symbol, qty, offset_ms)], expected)
    (
        "baseline 1.0 + BUY 0.5 - SELL 0.25",
        {"BTCUSDT": "1.0"},
        [("BUY", "BTCUSDT", "0.5", 10), ("SELL", "BTCUSDT", "0.25", 20)],
        {"BTCUSDT": Decimal("1.25")},
    ),
    (
        "symbols normalised on both sides",
        {"BTC-USDT": "1.0"},
        [("BUY", "BTC_USDT", "0.5", 10), ("sell", "BTCUSDT", "0.25", 20)],
        {"BTCUSDT": Decimal("1.25")},
    ),
    (
        "tiny residue dropped",
        {"BTCUSDT": "1.0", "ETHUSDT": "0.3"},
        [("SELL", "BTCUSDT", "0.9999999999", 10), ("SELL", "ETHUSDT", "0.3", 20)],
        {},
    ),
    (
        "fills before the baseline do not count",
        {"BTCUSDT": "1.0"},
        [("BUY", "BTCUSDT", "0.5", -10)],
        {"BTCUSDT": Decimal("1.0")},
    ),
    ("no baseline: fills only", None, [("SELL", "ETHUSDT", "0.5", 10)], {"ETHUSDT": Decimal("-0.5")}),
]


@pytest.mark.parametrize(("name", "baseline", "fills", "expected"), LOCAL_CASES, ids=[c[0] for c in LOCAL_CASES])
def test_local_positions(
    db: Database,
    name: str,
    baseline: dict[str, str] | None,
    fills: list[tuple[str, str, str, int]],
    expected: dict[str, Decimal],
) -> None:
    orders = Orders(db)
    for n, (side, symbol, qty, offset) in enumerate(fills):
        if offset < 0:
            _filled(db, orders, f"c{n}", side, symbol, qty, T0 + offset)
    if baseline is not None:
        Baselines(db).sync(baseline, "ops", "test", T0)
    for n, (side, symbol, qty, offset) in enumerate(fills):
        if offset >= 0:
            _filled(db, orders, f"c{n}", side, symbol, qty, T0 + offset)
    assert Baselines(db).local_positions() == expected


def test_local_positions_ignore_unfilled_results_and_can_skip_the_baseline(db: Database) -> None:
    orders = Orders(db)
    _filled(db, orders, "early", "BUY", "BTCUSDT", "0.5", T0 - 10)
    Baselines(db).sync({"BTCUSDT": "1.0"}, "ops", "test", T0)
    _filled(db, orders, "late", "SELL", "BTCUSDT", "0.25", T0 + 10)
    ingest(db, ev(T0 + 20, 5000, tx="0xrej"))
    orders.record_decision(key_of(ev(T0 + 20, 5000, tx="0xrej")), [intent("rej")], DECIDED, T0 + 20)
    orders.upsert_result("rej", "REJECTED", T0 + 20, filled_qty=Decimal("0"), contract_version=CONTRACT)
    assert Baselines(db).local_positions() == {"BTCUSDT": Decimal("0.75")}
    assert Baselines(db).local_positions(since_baseline=False) == {"BTCUSDT": Decimal("0.25")}


def test_local_positions_refuse_an_unknown_side(db: Database) -> None:
    orders = Orders(db)
    _filled(db, orders, "odd", "HOLD", "BTCUSDT", "0.5", T0)
    with pytest.raises(ValueError, match="side"):
        Baselines(db).local_positions()


# --------------------------------------------------------------------------------------------------
# Local positions kept incrementally (issue 12): always equal to the full recomputation
# --------------------------------------------------------------------------------------------------


def test_local_book_follows_every_write_as_the_full_recomputation_does(db: Database) -> None:
    from hlcore.engine.runtime import OPS_REVISION
    from hlcore.storage.local_book import LocalBook
    from hlcore.storage.repos import SystemState

    orders, book = Orders(db), LocalBook(db)
    steps: list[Any] = [
        lambda: _filled(db, orders, "early", "BUY", "BTCUSDT", "0.5", T0 - 10),  # before any baseline
        lambda: Baselines(db).sync({"BTC-USDT": "1.0"}, "ops", "test", T0),
        lambda: _filled(db, orders, "a", "BUY", "BTC_USDT", "0.5", T0 + 10),
        lambda: _filled(db, orders, "b", "SELL", "ETHUSDT", "0.3", T0 + 20),
        # a partial fill that completes later: the same row updated, counted once at its latest qty
        lambda: orders.upsert_result("b", "FILLED", T0 + 30, filled_qty=Decimal("0.7"), contract_version=CONTRACT),
        lambda: _filled(db, orders, "c", "SELL", "BTCUSDT", "1.5", T0 + 30),  # same ms as the last stamp
        lambda: SystemState(db).set(OPS_REVISION, "7", T0 + 40),
        lambda: Baselines(db).sync({"BTCUSDT": "2.0"}, "ops", "again", T0 + 50, replace=True),  # a new baseline
        lambda: _filled(db, orders, "d", "BUY", "BTCUSDT", "0.25", T0 + 60),
    ]
    seen = []
    for step in steps:
        step()
        kept = book.positions(T0 + 100)
        assert kept == Baselines(db).local_positions()
        seen.append(kept)
    assert seen[4] == {"BTCUSDT": Decimal("1.5"), "ETHUSDT": Decimal("-0.7")}
    assert seen[5] == {"ETHUSDT": Decimal("-0.7")}  # 1.0 + 0.5 − 1.5 = 0: dropped as dust
    assert seen[-1] == {"BTCUSDT": Decimal("2.25")}


def test_local_book_reads_only_new_results(db: Database) -> None:
    """After the first read, a read folds in only the rows stamped since: a row written behind the
    book's back with an old stamp is not seen until something makes it rebuild (reconcile does)."""
    from hlcore.storage.local_book import LocalBook

    orders, book = Orders(db), LocalBook(db)
    _filled(db, orders, "a", "BUY", "BTCUSDT", "0.5", T0 + 10)
    assert book.positions(T0 + 20) == {"BTCUSDT": Decimal("0.5")}
    with db.transaction() as conn:  # not through upsert_result: an old stamp
        conn.execute(schema.order_results.update().values(filled_qty=Decimal("0.9"), updated_at_ms=T0))
    assert book.positions(T0 + 20) == {"BTCUSDT": Decimal("0.5")}
    book.forget()
    assert book.positions(T0 + 20) == {"BTCUSDT": Decimal("0.9")} == Baselines(db).local_positions()
    assert book.positions(T0 - 1) == {"BTCUSDT": Decimal("0.9")}  # a clock behind what was seen: rebuilt


# --------------------------------------------------------------------------------------------------
# Unsettled intents by seeks (issue 17): always the rows and order of the full join
# --------------------------------------------------------------------------------------------------

# statuses around the terminal ones in sort order (before, between, after, equal, prefixes), and NULL
_STATUSES = ["A", "CANCELED", "CANCELEDX", "CANCEL", "EXPIRED", "FILLED", "FILLE", "NEW", "PARTIALLY_FILLED",
             "REJECTED", "SIMULATED", "UNKNOWN", "Z", "", None]


def test_unsettled_intents_by_seeks_equal_the_full_join() -> None:
    """`Orders.unsettled_intents` reads open results by status ranges and unanswered intents only
    when their count says there are some; against random intents, results (none, NULL status,
    statuses sorting before, between and after the terminal ones) and terminal sets it returns
    exactly the rows, in the order, of the join of every intent to its result it replaces."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from hlcore.storage.copytrade import _unsettled_intents_query

    row = st.tuples(st.integers(0, 5), st.sampled_from([*_STATUSES, "no result"]))
    terminal_sets = st.sets(st.sampled_from(["CANCELED", "EXPIRED", "FILLED", "REJECTED", "SIMULATED", ""]),
                            min_size=1)

    @settings(max_examples=120, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(row, max_size=25), st.lists(terminal_sets, min_size=1, max_size=3))
    def check(rows: list[tuple[int, str | None]], terminals: list[set[str]]) -> None:
        db = open_database("sqlite://")
        db.create_schema(now_ms=T0)
        orders = Orders(db)
        for n, (created, status) in enumerate(rows):
            e = ev(T0 + n, n)
            ingest(db, e)
            orders.record_decision(key_of(e), [intent(f"c{n}")], DECIDED, T0 + created)
            if status != "no result":
                orders.upsert_result(f"c{n}", status, T0 + n, contract_version=CONTRACT)  # type: ignore[arg-type]
        for terminal in terminals:
            got = [(u.intent.correlation_id, u.result.status if u.result else "-", u.result is None)
                   for u in orders.unsettled_intents(terminal)]
            with db.transaction() as c:
                full = [(m["correlation_id"], m["r_status"] if m["r_correlation_id"] else "-",
                         m["r_correlation_id"] is None)
                        for m in c.execute(_unsettled_intents_query(True), {"terminal": sorted(terminal)}).mappings()]
            assert got == full
        db.dispose()

    check()


def test_unsettled_intents_find_an_unanswered_intent_among_many_answered(db: Database) -> None:
    """The unanswered part is limited by the count difference: one intent without a result among
    answered ones, older and newer, is found on either backend."""
    orders = Orders(db)
    for n in range(12):
        e = ev(T0 + n, n)
        ingest(db, e)
        orders.record_decision(key_of(e), [intent(f"c{n:02}")], DECIDED, T0 + n)
        if n != 4:
            orders.upsert_result(f"c{n:02}", "FILLED" if n % 5 else "UNKNOWN", T0 + n, contract_version=CONTRACT)
    got = [(u.intent.correlation_id, u.result and u.result.status) for u in orders.unsettled_intents(TERMINAL)]
    assert got == [("c00", "UNKNOWN"), ("c04", None), ("c05", "UNKNOWN"), ("c10", "UNKNOWN")]
