"""BinanceClient against recorded venue answers (tests/cassettes/binance, see generate.py there).

Each test replays one cassette with vcrpy in `record_mode="none"`: a request the cassette does
not hold fails the test, and `all_played` proves nothing recorded was skipped. Signing fields
are filtered out of matching, so a replay checks method, path and every other parameter
(including the client order id of the -1021 retry).
"""

from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from hlcore.adapters.binance import BinanceClient, OrderAnswer, OrderNotFound, PositionSnapshot, query_outcome
from hlcore.adapters.http import MALFORMED_RESPONSE, RATE_LIMITED, HttpResult, VenueError
from tests.support.scripted import Scripted

ROOT = Path(__file__).resolve().parents[2]


def _kit() -> Any:
    name = "binance_cassette_kit"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "cassettes" / "binance" / "generate.py")
        assert spec and spec.loader
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


kit = _kit()
T0, CID = kit.T0, kit.CID


class Spy:
    """Records what the client asks http.py for (path, params), sent or not."""

    def __init__(self, client: BinanceClient):
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        original = client.http.request

        def request(method: str, path: str, **kwargs: Any) -> HttpResult | VenueError:
            self.calls.append((method, path, dict(kwargs.get("params") or {})))
            return original(method, path, **kwargs)

        client.http.request = request  # type: ignore[method-assign]

    def paths(self) -> list[str]:
        return [f"{m} {p}" for m, p, _ in self.calls]


@pytest.fixture
def replay():
    """`with replay("order_filled") as (client, clock, cassette): ...` then all recorded answers were used."""

    @contextmanager
    def run(name: str):
        client, clock = kit.build_client()
        with kit.make_vcr().use_cassette(f"{name}.yaml") as cassette:
            yield client, clock, cassette
        assert cassette.all_played, f"{name}: not every recorded answer was replayed"

    return run


def submit(client: BinanceClient, reduce_only: bool = False):
    return client.submit_market_order("BTCUSDT", "BUY", Decimal("0.002"), reduce_only, CID)


# ------------------------------------------------------------------------------------------ time
def test_sync_time_measures_the_offset() -> None:
    client, _ = kit.build_client(offset_ms=None)
    with kit.make_vcr().use_cassette("time.yaml") as cassette:
        sample = client.sync_time()
    assert cassette.all_played
    assert sample.server_time_ms == T0 + 120 and sample.offset_ms == 120
    assert client.time_sync.offset_ms == 120 and client.time_sync.synced_at_ms == T0


def test_server_time(replay) -> None:
    with replay("time") as (client, _, _):
        assert client.server_time() == T0 + 120


# ------------------------------------------------------------------------------------------ market data
def test_exchange_info_filters_and_ttl_cache(replay) -> None:
    with replay("exchange_info") as (client, clock, cassette):
        filters = client.exchange_info()
        btc, eth = filters["BTCUSDT"], filters["ETHUSDT"]
        assert (btc.min_qty, btc.step_size, btc.tick_size, btc.min_notional) == (
            Decimal("0.001"), Decimal("0.001"), Decimal("0.10"), Decimal("100"))
        assert (eth.min_qty, eth.step_size, eth.tick_size, eth.min_notional) == (
            Decimal("0.001"), Decimal("0.001"), Decimal("0.01"), Decimal("20"))
        clock.advance(kit.EXCHANGE_INFO_TTL_MS - 1)
        assert client.exchange_info() == filters and cassette.play_count == 1  # cached
        clock.advance(1)
        assert client.exchange_info() == filters and cassette.play_count == 2  # TTL reached: refreshed


def test_mark_price(replay) -> None:
    with replay("mark_price") as (client, _, _):
        mark = client.mark_price("BTCUSDT")
    assert (mark.symbol, mark.mark_price, mark.time_ms) == ("BTCUSDT", Decimal("60000.00000000"), T0 + 40)


# ------------------------------------------------------------------------------------------ orders
def test_market_order_filled(replay) -> None:
    with replay("order_filled") as (client, _, _):
        spy = Spy(client)
        outcome = submit(client)
    assert (outcome.status, outcome.error_code, outcome.answer) == ("FILLED", None, "FILLED")
    assert outcome.order == OrderAnswer("FILLED", Decimal("0.002"), Decimal("60012.30"), 4084339817, CID, "BTCUSDT")
    assert not outcome.adopted and not outcome.time_resynced
    (_, _, params), = spy.calls
    assert {k: params[k] for k in ("type", "quantity", "reduceOnly", "newClientOrderId", "newOrderRespType")} == {
        "type": "MARKET", "quantity": "0.002", "reduceOnly": "false", "newClientOrderId": CID,
        "newOrderRespType": "RESULT"}
    assert params["timestamp"] == T0 + kit.INITIAL_OFFSET_MS and params["recvWindow"] == kit.RECV_WINDOW_MS


def test_new_then_query_filled(replay) -> None:
    with replay("order_new_then_query_filled") as (client, clock, _):
        outcome = submit(client)
        assert (outcome.status, outcome.error_code, outcome.answer) == ("SUBMITTED", None, "NEW")
        assert outcome.order.executed_qty == 0
        clock.advance(2_000)
        found = client.query_order("BTCUSDT", CID)
    assert isinstance(found, OrderAnswer) and found.status == "FILLED" and found.executed_qty == Decimal("0.002")
    assert query_outcome(found).status == "FILLED"


def test_429_cooldown_means_no_request_of_any_kind_before_retry_after(replay) -> None:
    """Drill 16: POST → 429 Retry-After: 3 → UNKNOWN/RATE_LIMITED; zero requests before +3 s."""
    with replay("order_rate_limited_429") as (client, clock, cassette):
        outcome = submit(client)
        assert (outcome.status, outcome.error_code) == ("UNKNOWN", "RATE_LIMITED")
        assert outcome.message == "-1003:binance HTTP 429"
        assert client.http.cooldown_until_ms == T0 + 3_000

        clock.advance(2_999)
        blocked = [client.query_order("BTCUSDT", CID), client.position_risk(), client.mark_price("BTCUSDT"),
                   client.exchange_info(), client.sync_time(), client.server_time()]
        assert all(isinstance(b, VenueError) and b.code == RATE_LIMITED and not b.sent for b in blocked)
        again = submit(client)  # known not sent
        assert (again.status, again.error_code) == ("REJECTED", "RATE_LIMITED_LOCAL")
        assert (query_outcome(blocked[0]).status, query_outcome(blocked[0]).error_code) == ("UNKNOWN", "RATE_LIMITED")
        assert cassette.play_count == 1 and client.http.requests_sent == 1

        clock.advance(1)
        found = client.query_order("BTCUSDT", CID)
    assert isinstance(found, OrderAnswer) and found.status == "FILLED"
    assert client.http.requests_sent == 2


def test_1021_resyncs_once_and_retries_re_signed_with_the_same_client_id(replay) -> None:
    """Drill 16 variant: one /fapi/v1/time, one re-signed retry, same client id → FILLED."""
    with replay("order_timestamp_1021_then_filled") as (client, _, _):
        spy = Spy(client)
        outcome = submit(client)
    assert (outcome.status, outcome.error_code, outcome.time_resynced) == ("FILLED", None, True)
    assert spy.paths() == ["POST /fapi/v1/order", "GET /fapi/v1/time", "POST /fapi/v1/order"]
    first, retry = spy.calls[0][2], spy.calls[2][2]
    assert first["newClientOrderId"] == retry["newClientOrderId"] == CID
    assert first["timestamp"] == T0 + kit.INITIAL_OFFSET_MS
    assert retry["timestamp"] == kit.RESYNCED_SERVER_TIME  # re-signed with the new offset
    assert first["signature"] != retry["signature"]
    assert client.time_sync.offset_ms == kit.RESYNCED_SERVER_TIME - T0


def test_second_1021_is_timestamp_rejected(replay) -> None:
    with replay("order_timestamp_1021_twice") as (client, _, _):
        spy = Spy(client)
        outcome = submit(client)
    assert (outcome.status, outcome.error_code) == ("REJECTED", "TIMESTAMP_REJECTED")
    assert outcome.message == "-1021:Timestamp for this request is outside of the recvWindow."
    assert spy.paths().count("GET /fapi/v1/time") == 1 and spy.paths().count("POST /fapi/v1/order") == 2


@pytest.mark.parametrize(("cassette", "reduce_only", "status", "code", "message"), [
    ("order_insufficient_balance_2019", False, "REJECTED", "INSUFFICIENT_BALANCE", "-2019:Margin is insufficient."),
    ("order_reduce_only_2022", True, "REJECTED", "REDUCE_ONLY_REJECTED", "-2022:ReduceOnly Order is rejected."),
    ("order_min_notional_4164", False, "REJECTED", "FILTER_REJECTED",
     "-4164:Order's notional must be no smaller than 100 (unless you choose reduce only)."),
    ("order_other_api_error", False, "REJECTED", "EXCHANGE_REJECTED",
     "-1111:Precision is over the maximum defined for this asset."),
    ("order_exchange_error_5xx", False, "UNKNOWN", "EXCHANGE_ERROR", "-1008:binance HTTP 503"),
])
def test_order_rejections_and_unknowns(replay, cassette: str, reduce_only: bool, status: str, code: str,
                                       message: str) -> None:
    with replay(cassette) as (client, _, _):
        outcome = submit(client, reduce_only)
    assert (outcome.status, outcome.error_code, outcome.message) == (status, code, message)
    assert outcome.order is None and client.http.requests_sent == 1  # a POST is never retried


def test_5xx_stamps_the_adapter_error_time(replay) -> None:
    with replay("order_exchange_error_5xx") as (client, _, _):
        submit(client)
    assert client.http.last_error_ms == T0


def test_duplicate_client_id_is_adopted_by_query(replay) -> None:
    with replay("order_duplicate_adopt") as (client, _, _):
        spy = Spy(client)
        outcome = submit(client)
    assert (outcome.status, outcome.error_code, outcome.adopted) == ("FILLED", None, True)
    assert outcome.order.client_order_id == CID and outcome.order.order_id == 4084339817
    assert spy.paths() == ["POST /fapi/v1/order", "GET /fapi/v1/order"]
    assert spy.calls[1][2]["origClientOrderId"] == CID


def test_duplicate_client_id_with_a_failing_query_is_query_error(replay) -> None:
    with replay("order_duplicate_query_fails") as (client, _, _):
        outcome = submit(client)
    assert (outcome.status, outcome.error_code, outcome.adopted) == ("UNKNOWN", "QUERY_ERROR", False)
    assert "-4116:ClientOrderId is duplicated." in outcome.message and "-2013" in outcome.message


def test_query_minus_2013_is_not_found(replay) -> None:
    with replay("query_not_found_2013") as (client, _, _):
        found = client.query_order("BTCUSDT", CID)
    assert found == OrderNotFound("BTCUSDT", CID, "-2013:Order does not exist.")
    assert (query_outcome(found).status, query_outcome(found).error_code) == ("NOT_FOUND", None)


# ------------------------------------------------------------------------------------------ reconcile
def test_position_risk_one_way(replay) -> None:
    with replay("position_risk_one_way") as (client, _, _):
        snapshot = client.position_risk()
    assert isinstance(snapshot, PositionSnapshot) and snapshot.position_mode_ok
    btc, eth = snapshot.positions
    assert (btc.symbol, btc.position_amt, btc.position_side, btc.entry_price, btc.mark_price, btc.update_time) == (
        "BTCUSDT", Decimal("0.002"), "BOTH", Decimal("60012.3"), Decimal("60000"), T0 + 180)
    assert eth.position_amt == 0
    assert snapshot.snapshot_ts_ms == T0 + kit.INITIAL_OFFSET_MS  # offset-corrected send time


def test_position_risk_with_a_long_entry_is_not_one_way(replay) -> None:
    """S8: any positionSide ≠ BOTH → position_mode_ok False (→ HALT/POSITION_MODE_INVALID)."""
    with replay("position_risk_hedge_long") as (client, _, _):
        snapshot = client.position_risk()
    assert not snapshot.position_mode_ok
    assert [(p.position_side, p.position_amt) for p in snapshot.positions] == [
        ("LONG", Decimal("0.002")), ("SHORT", Decimal("0"))]


# ------------------------------------------------------------------------------------------ no cassette


def scripted(script: list[Any], **kwargs: Any) -> tuple[BinanceClient, Scripted, Any]:
    client, clock = kit.build_client(**kwargs)
    transport = Scripted(script)
    client.http.session.mount("https://", transport)
    return client, transport, clock


def test_post_timeout_is_unknown_and_never_resent() -> None:
    client, transport, _ = scripted([requests.Timeout()])
    outcome = submit(client)
    assert (outcome.status, outcome.error_code) == ("UNKNOWN", "TIMEOUT") and len(transport.sent) == 1


def test_post_connection_error_is_unknown() -> None:
    client, transport, _ = scripted([requests.ConnectionError()])
    outcome = submit(client)
    assert (outcome.status, outcome.error_code) == ("UNKNOWN", "NETWORK_ERROR") and len(transport.sent) == 1


def test_unreadable_order_answer_is_unknown() -> None:
    client, _, _ = scripted([(200, {"orderId": "not-a-number"})])
    outcome = submit(client)
    assert (outcome.status, outcome.error_code) == ("UNKNOWN", "EXCHANGE_STATUS_UNMAPPED")


@pytest.mark.parametrize("call", ["server_time", "sync_time", "position_risk", "exchange_info", "mark_price",
                                  "query_order"])
def test_malformed_bodies_are_values(call: str) -> None:
    client, _, _ = scripted([(200, "<html>maintenance</html>"), (200, {"unexpected": True})], attempts=1)
    args = {"mark_price": ("BTCUSDT",), "query_order": ("BTCUSDT", CID)}.get(call, ())
    for _ in range(2):
        result = getattr(client, call)(*args)
        assert isinstance(result, VenueError) and result.code == MALFORMED_RESPONSE


def test_a_stale_offset_is_refreshed_before_a_signed_request() -> None:
    client, transport, clock = scripted([(200, {"serverTime": T0 + 300_001 + 40}), (200, [])])
    clock.advance(300_001)
    snapshot = client.position_risk()
    assert [r.path_url.split("?")[0] for r in transport.sent] == ["/fapi/v1/time", "/fapi/v2/positionRisk"]
    assert client.time_sync.offset_ms == 40 and snapshot.positions == () and snapshot.position_mode_ok


def test_a_failed_resync_after_1021_leaves_the_order_rejected() -> None:
    client, transport, _ = scripted([(400, {"code": -1021, "msg": "Timestamp for this request was 1000ms ahead "
                                                                  "of the server's time."}),
                                     requests.ConnectionError()], attempts=1)
    outcome = submit(client)
    assert (outcome.status, outcome.error_code) == ("REJECTED", "TIMESTAMP_REJECTED")
    assert outcome.message.endswith("(time re-sync failed)") and len(transport.sent) == 2


@pytest.mark.parametrize(("side", "qty", "cid"), [
    ("LONG", Decimal("0.002"), CID), ("BUY", Decimal("0"), CID), ("BUY", Decimal("-1"), CID),
    ("BUY", "abc", CID), ("BUY", Decimal("0.002"), "has spaces"), ("BUY", Decimal("0.002"), "x" * 37),
])
def test_caller_bugs_raise_before_anything_is_sent(side: str, qty: Any, cid: str) -> None:
    client, transport, _ = scripted([])
    with pytest.raises(ValueError):
        client.submit_market_order("BTCUSDT", side, qty, False, cid)
    assert transport.sent == []


def test_quantities_are_sent_as_plain_decimals() -> None:
    client, transport, _ = scripted([(200, kit.FILLED), (200, kit.FILLED)])
    client.submit_market_order("BTCUSDT", "SELL", Decimal("0.0020"), True, CID)
    client.submit_market_order("BTCUSDT", "SELL", Decimal("1E+2"), True, CID)
    queries = [r.url for r in transport.sent]
    assert "quantity=0.002&" in queries[0] and "reduceOnly=true" in queries[0]
    assert "quantity=100&" in queries[1]
