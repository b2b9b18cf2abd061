"""parse.py on the recorded cassette bodies, and malformed bodies as values (never exceptions)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from hlcore.adapters.binance import parse
from hlcore.adapters.binance.parse import Malformed, OrderAnswer, SymbolFilters

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes" / "binance"


def body(cassette: str, index: int = 0) -> Any:
    data = yaml.safe_load((CASSETTES / f"{cassette}.yaml").read_text(encoding="utf-8"))
    return json.loads(data["interactions"][index]["response"]["body"]["string"])


def test_order_answers() -> None:
    filled = parse.order_answer(body("order_filled"))
    assert filled == OrderAnswer("FILLED", Decimal("0.002"), Decimal("60012.30"), 4084339817,
                                 "hl-766ec1f38859b635ae1ab594-00", "BTCUSDT")
    new = parse.order_answer(body("order_new_then_query_filled", 0))
    assert (new.status, new.executed_qty, new.avg_price) == ("NEW", 0, 0)
    queried = parse.order_answer(body("order_new_then_query_filled", 1))
    assert queried.status == "FILLED" and queried.client_order_id == filled.client_order_id


def test_exchange_filters() -> None:
    filters = parse.exchange_filters(body("exchange_info"))
    assert filters == {
        "BTCUSDT": SymbolFilters(Decimal("0.001"), Decimal("0.001"), Decimal("0.10"), Decimal("100")),
        "ETHUSDT": SymbolFilters(Decimal("0.001"), Decimal("0.001"), Decimal("0.01"), Decimal("20")),
    }


def test_a_symbol_missing_a_filter_is_left_out() -> None:
    info = body("exchange_info")
    info["symbols"][1]["filters"] = [f for f in info["symbols"][1]["filters"] if f["filterType"] != "MIN_NOTIONAL"]
    assert list(parse.exchange_filters(info)) == ["BTCUSDT"]


def test_position_risk_and_mode() -> None:
    one_way = parse.position_risk(body("position_risk_one_way"))
    assert [p.symbol for p in one_way] == ["BTCUSDT", "ETHUSDT"] and parse.position_mode_ok(one_way)
    hedge = parse.position_risk(body("position_risk_hedge_long"))
    assert not parse.position_mode_ok(hedge)
    assert parse.position_mode_ok([])


def test_time_and_mark_price() -> None:
    assert parse.server_time(body("time")) == 1_769_248_800_120
    mark = parse.mark_price(body("mark_price"))
    assert mark.mark_price == Decimal("60000.00000000") and mark.time_ms == 1_769_248_800_040


@pytest.mark.parametrize(("fn", "bad"), [
    (parse.order_answer, None),
    (parse.order_answer, []),
    (parse.order_answer, {"status": "FILLED", "executedQty": "0.002", "orderId": 1}),  # no clientOrderId
    (parse.order_answer, {"status": "FILLED", "executedQty": "NaN", "orderId": 1, "clientOrderId": "x"}),
    (parse.order_answer, {"status": "FILLED", "executedQty": "0.1", "orderId": True, "clientOrderId": "x"}),
    (parse.order_answer, {"status": "FILLED", "executedQty": [0.1], "orderId": 1, "clientOrderId": "x"}),
    (parse.order_answer, {"status": "FILLED", "executedQty": "0.1", "orderId": "1.5", "clientOrderId": "x"}),
    (parse.order_answer, {"status": "FILLED", "executedQty": "1", "avgPrice": "abc", "orderId": 1,
                          "clientOrderId": "x"}),
    (parse.position_risk, {"symbol": "BTCUSDT"}),
    (parse.position_risk, [{"symbol": "BTCUSDT", "positionAmt": "Infinity", "positionSide": "BOTH",
                            "entryPrice": "0", "markPrice": "0", "updateTime": 0}]),
    (parse.position_risk, ["not an object"]),
    (parse.exchange_filters, {"symbols": "BTCUSDT"}),
    (parse.exchange_filters, {"symbols": [{"symbol": "BTCUSDT", "filters": None}]}),
    (parse.exchange_filters, {"symbols": [{"symbol": "BTCUSDT", "filters": [
        {"filterType": "LOT_SIZE", "minQty": "0.001"}, {"filterType": "PRICE_FILTER", "tickSize": "0.1"},
        {"filterType": "MIN_NOTIONAL", "notional": "100"}]}]}),  # no stepSize
    (parse.server_time, {"serverTime": "1769248800000x"}),
    (parse.server_time, "1769248800000"),
    (parse.mark_price, {"symbol": "BTCUSDT", "markPrice": None, "time": 1}),
])
def test_malformed_bodies_are_values(fn: Any, bad: Any) -> None:
    result = fn(bad)
    assert isinstance(result, Malformed) and str(result).startswith("malformed ")


@pytest.mark.parametrize(("fn", "body"), [
    (parse.server_time, {"serverTime": "1769248800000"}),
    (parse.server_time, {"serverTime": Decimal("1769248800000")}),
    (parse.mark_price, {"symbol": "BTCUSDT", "markPrice": 60000.5, "time": "1769248800000"}),
    (parse.order_answer, {"status": "FILLED", "executedQty": 0.002, "orderId": "4084339817", "clientOrderId": "x"}),
])
def test_numbers_as_a_proxy_may_send_them(fn: Any, body: Any) -> None:
    """Issue 11: digit strings, JSON floats and decimals are read, not dropped."""
    assert not isinstance(fn(body), Malformed)


@pytest.mark.parametrize(("fn", "body", "detail"), [
    (parse.order_answer, {"status": "FILLED", "executedQty": "-0.002", "orderId": 1, "clientOrderId": "x"},
     "executedQty=-0.002 is below 0"),
    (parse.order_answer, {"status": "FILLED", "executedQty": "1", "avgPrice": "-5", "orderId": 1,
                          "clientOrderId": "x"}, "avgPrice=-5 is below 0"),
    (parse.mark_price, {"symbol": "BTCUSDT", "markPrice": "0", "time": 1}, "markPrice=0 is not above 0"),
    (parse.mark_price, {"symbol": "BTCUSDT", "markPrice": "-1.5", "time": 1}, "markPrice=-1.5 is not above 0"),
    (parse.position_risk, [{"symbol": "BTCUSDT", "positionAmt": "1", "positionSide": "BOTH", "entryPrice": "-1",
                            "markPrice": "1", "updateTime": 0}], "entryPrice=-1 is below 0"),
    (parse.exchange_filters, {"symbols": [{"symbol": "BTCUSDT", "filters": [
        {"filterType": "LOT_SIZE", "minQty": "0.001", "stepSize": "0"},
        {"filterType": "PRICE_FILTER", "tickSize": "0.1"},
        {"filterType": "MIN_NOTIONAL", "notional": "100"}]}]}, "stepSize=0 is not above 0"),
])
def test_impossible_answers_are_typed(fn: Any, body: Any, detail: str) -> None:
    """Issue 10 §6: a readable answer that cannot be true is `Impossible`, not a fact."""
    result = fn(body)
    assert isinstance(result, parse.Impossible) and result.detail == detail
