"""Record the Binance USDⓈ-M cassettes, deterministically and offline.

    python tests/cassettes/binance/generate.py          # rewrite every cassette
    python tests/cassettes/binance/generate.py order_filled time

A scripted local server answers in the documented USDⓈ-M shapes (New Order with
newOrderRespType=RESULT, Query Order, Position Information V2, Exchange Information, Mark Price,
Check Server Time). Like the venue, it refuses a request whose X-MBX-APIKEY or HMAC signature is
wrong, so the cassettes can only be recorded by a client that signs correctly. vcrpy records the
real `BinanceClient` requests with the signing fields filtered out (`make_vcr`), and the host is
rewritten to https://fapi.binance.com. The tests replay the same calls with `make_vcr()`.

The fake key and secret below exist only in this file; no cassette may contain them
(tests/unit/test_binance_secrets.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
import vcr

from hlcore.adapters.binance import BinanceClient, TimeSample, TimeSync, client_order_id, correlation_id
from hlcore.adapters.http import RetryPolicy, VenueHttp
from hlcore.engine.clock import ManualClock

HERE = Path(__file__).resolve().parent
VENUE = "https://fapi.binance.com"
T0 = 1_769_248_800_000  # 2026-01-24T10:00:00Z, as tests/conftest.py
RECV_WINDOW_MS = 5000
EXCHANGE_INFO_TTL_MS = 300_000
INITIAL_OFFSET_MS = 120  # the offset the client starts with in every order scenario
RESYNCED_SERVER_TIME = T0 + 7_000  # the -1021 story: the local clock fell 7 s behind

GENERATOR_API_KEY = "GENERATOR-FAKE-binance-api-key-0000000000000000000000000000000000"
GENERATOR_API_SECRET = "GENERATOR-FAKE-binance-api-secret-111111111111111111111111111111"

TX_HASH = "0x" + "3f9a" * 16
CID = client_order_id(correlation_id(TX_HASH, 7, "BTCUSDT"))
SIGNED_PATHS = {"/fapi/v1/order", "/fapi/v2/positionRisk"}


# ---------------------------------------------------------------------------- vcrpy configuration
def _venue_host(request: Any) -> Any:
    """Recorded against 127.0.0.1:<port>; stored (and matched) as the venue."""
    request.uri = re.sub(r"^http://127\.0\.0\.1:\d+", VENUE, request.uri)
    return request


def make_vcr(record_mode: str = "none") -> vcr.VCR:
    """Signing fields never reach a cassette nor take part in matching."""
    return vcr.VCR(
        cassette_library_dir=str(HERE),
        record_mode=record_mode,
        match_on=["method", "path", "query", "body"],
        filter_headers=["X-MBX-APIKEY"],
        filter_query_parameters=["signature", "timestamp", "recvWindow"],
        before_record_request=_venue_host,
        decode_compressed_response=True,
    )


def build_client(base_url: str = VENUE, *, api_key: str = GENERATOR_API_KEY,
                 api_secret: str = GENERATOR_API_SECRET, start_ms: int = T0,
                 offset_ms: int | None = INITIAL_OFFSET_MS, attempts: int = 3) -> tuple[BinanceClient, ManualClock]:
    """The client every scenario uses: manual clock, sleeps advance it, no jitter, offset known."""
    clock = ManualClock(start_ms)

    def sleep(seconds: float) -> None:
        clock.advance(int(seconds * 1000))

    http = VenueHttp("binance", base_url, clock=clock, sleep=sleep, rng=random.Random(0), timeout_ms=10_000,
                     retry=RetryPolicy(max_attempts=attempts, base_delay_ms=250, max_delay_ms=5000, jitter_ms=0),
                     session=requests.Session())
    sync = TimeSync()
    if offset_ms is not None:
        sync.update(TimeSample(start_ms + offset_ms, start_ms, start_ms))
    client = BinanceClient(http, api_key=api_key, api_secret=api_secret, clock=clock,
                           recv_window_ms=RECV_WINDOW_MS, exchange_info_ttl_ms=EXCHANGE_INFO_TTL_MS, time_sync=sync)
    return client, clock


# ---------------------------------------------------------------------------- venue bodies
def order_body(status: str, *, executed: str, avg: str, side: str = "BUY", qty: str = "0.002",
               reduce_only: bool = False, query: bool = False, order_id: int = 4084339817) -> dict[str, Any]:
    cum_quote = str((Decimal(executed) * Decimal(avg)).quantize(Decimal("0.00001")))
    body: dict[str, Any] = {
        "orderId": order_id, "symbol": "BTCUSDT", "status": status, "clientOrderId": CID, "price": "0.00",
        "avgPrice": avg, "origQty": qty, "executedQty": executed, "cumQuote": cum_quote, "timeInForce": "GTC",
        "type": "MARKET", "reduceOnly": reduce_only, "closePosition": False, "side": side, "positionSide": "BOTH",
        "stopPrice": "0.00", "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": "MARKET",
        "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
        "updateTime": T0 + 180,
    }
    if query:
        body["time"] = T0 + 150
        return body
    at = list(body).index("clientOrderId") + 1
    items = list(body.items())
    return dict([*items[:at], ("cumQty", executed), *items[at:]])


FILLED = order_body("FILLED", executed="0.002", avg="60012.30")
NEW = order_body("NEW", executed="0.000", avg="0.00")
QUERY_FILLED = order_body("FILLED", executed="0.002", avg="60012.30", query=True)


def api_error(code: int, msg: str) -> dict[str, Any]:
    return {"code": code, "msg": msg}


def _symbol(symbol: str, base: str, *, tick: str, min_price: str, max_price: str, max_qty: str,
            market_max: str, notional: str, price_precision: int) -> dict[str, Any]:
    return {
        "symbol": symbol, "pair": symbol, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000", "baseAsset": base, "quoteAsset": "USDT", "marginAsset": "USDT",
        "pricePrecision": price_precision, "quantityPrecision": 3, "baseAssetPrecision": 8, "quotePrecision": 8,
        "underlyingType": "COIN", "underlyingSubType": ["PoW"] if base == "BTC" else ["Layer-1"],
        "settlePlan": 0, "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": min_price, "maxPrice": max_price, "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": max_qty, "stepSize": "0.001"},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": market_max, "stepSize": "0.001"},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": notional},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                       "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


EXCHANGE_INFO = {
    "timezone": "UTC",
    "serverTime": T0 + 95,
    "futuresType": "U_MARGINED",
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
    ],
    "exchangeFilters": [],
    "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
    "symbols": [
        _symbol("BTCUSDT", "BTC", tick="0.10", min_price="556.80", max_price="4529764", max_qty="1000",
                market_max="120", notional="100", price_precision=2),
        _symbol("ETHUSDT", "ETH", tick="0.01", min_price="39.86", max_price="306177", max_qty="10000",
                market_max="2000", notional="20", price_precision=2),
    ],
}


def position(symbol: str, amt: str, side: str, *, entry: str, mark: str, update: int) -> dict[str, Any]:
    notional = str((Decimal(amt) * Decimal(mark)).quantize(Decimal("0.00000001")))
    pnl = str(((Decimal(mark) - Decimal(entry)) * Decimal(amt)).quantize(Decimal("0.00000001")))
    return {
        "symbol": symbol, "positionAmt": amt, "entryPrice": entry, "breakEvenPrice": entry, "markPrice": mark,
        "unRealizedProfit": pnl, "liquidationPrice": "0", "leverage": "5", "maxNotionalValue": "80000000",
        "marginType": "cross", "isolatedMargin": "0.00000000", "isAutoAddMargin": "false", "positionSide": side,
        "notional": notional, "isolatedWallet": "0", "updateTime": update,
    }


POSITIONS_ONE_WAY = [
    position("BTCUSDT", "0.002", "BOTH", entry="60012.3", mark="60000.00000000", update=T0 + 180),
    position("ETHUSDT", "0.000", "BOTH", entry="0.0", mark="3105.42000000", update=0),
]
POSITIONS_HEDGE = [
    position("BTCUSDT", "0.002", "LONG", entry="60012.3", mark="60000.00000000", update=T0 + 180),
    position("BTCUSDT", "0.000", "SHORT", entry="0.0", mark="60000.00000000", update=0),
]
PREMIUM_INDEX = {
    "symbol": "BTCUSDT", "markPrice": "60000.00000000", "indexPrice": "59987.41234783",
    "estimatedSettlePrice": "59990.10442390", "lastFundingRate": "0.00010000", "interestRate": "0.00010000",
    "nextFundingTime": 1769270400000, "time": T0 + 40,
}

TOO_MANY = api_error(-1003, "Too many requests; current limit of IP(203.0.113.7) is 2400 requests per minute. "
                            "Please use the websocket for live updates to avoid polling the API.")
OUTSIDE_RECV_WINDOW = api_error(-1021, "Timestamp for this request is outside of the recvWindow.")
DUPLICATED = api_error(-4116, "ClientOrderId is duplicated.")
NO_SUCH_ORDER = api_error(-2013, "Order does not exist.")


# ---------------------------------------------------------------------------- scenarios
@dataclass(frozen=True)
class Reply:
    method: str
    path: str
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def order(status: int, body: Any, **headers: str) -> Reply:
    return Reply("POST", "/fapi/v1/order", status, body, {"X-MBX-ORDER-COUNT-1M": "1", **headers})


def query(status: int, body: Any) -> Reply:
    return Reply("GET", "/fapi/v1/order", status, body)


def submit(client: BinanceClient, reduce_only: bool = False) -> Any:
    return client.submit_market_order("BTCUSDT", "BUY", Decimal("0.002"), reduce_only, CID)


def _run_exchange_info(client: BinanceClient, clock: ManualClock) -> list[Any]:
    first = client.exchange_info()
    clock.advance(EXCHANGE_INFO_TTL_MS)
    return [first, client.exchange_info()]


def _run_429(client: BinanceClient, clock: ManualClock) -> list[Any]:
    first = submit(client)
    clock.advance(3_000)
    return [first, client.query_order("BTCUSDT", CID)]


def _run_new_then_query(client: BinanceClient, clock: ManualClock) -> list[Any]:
    first = submit(client)
    clock.advance(2_000)
    return [first, client.query_order("BTCUSDT", CID)]


TIME = Reply("GET", "/fapi/v1/time", 200, {"serverTime": T0 + INITIAL_OFFSET_MS})
RESYNC = Reply("GET", "/fapi/v1/time", 200, {"serverTime": RESYNCED_SERVER_TIME})

# name -> (what the venue answers, in order; what the client does, returning what it got)
SCENARIOS: dict[str, tuple[list[Reply], Callable[[BinanceClient, ManualClock], Any]]] = {
    "time": ([TIME], lambda c, _: c.sync_time()),
    "exchange_info": ([Reply("GET", "/fapi/v1/exchangeInfo", 200, EXCHANGE_INFO)] * 2, _run_exchange_info),
    "mark_price": ([Reply("GET", "/fapi/v1/premiumIndex", 200, PREMIUM_INDEX)], lambda c, _: c.mark_price("BTCUSDT")),
    "order_filled": ([order(200, FILLED)], lambda c, _: submit(c)),
    "order_new_then_query_filled": ([order(200, NEW), query(200, QUERY_FILLED)], _run_new_then_query),
    "order_rate_limited_429": ([order(429, TOO_MANY, **{"Retry-After": "3"}), query(200, QUERY_FILLED)], _run_429),
    "order_timestamp_1021_then_filled": ([order(400, OUTSIDE_RECV_WINDOW), RESYNC, order(200, FILLED)],
                                         lambda c, _: submit(c)),
    "order_timestamp_1021_twice": ([order(400, OUTSIDE_RECV_WINDOW), RESYNC, order(400, OUTSIDE_RECV_WINDOW)],
                                   lambda c, _: submit(c)),
    "order_insufficient_balance_2019": ([order(400, api_error(-2019, "Margin is insufficient."))],
                                        lambda c, _: submit(c)),
    "order_reduce_only_2022": ([order(400, api_error(-2022, "ReduceOnly Order is rejected."))],
                               lambda c, _: submit(c, reduce_only=True)),
    "order_min_notional_4164": ([order(400, api_error(
        -4164, "Order's notional must be no smaller than 100 (unless you choose reduce only)."))],
        lambda c, _: submit(c)),
    "order_other_api_error": ([order(400, api_error(-1111, "Precision is over the maximum defined for this asset."))],
                              lambda c, _: submit(c)),
    "order_exchange_error_5xx": ([order(503, api_error(
        -1008, "Server is currently overloaded with other requests. Please try again in a few minutes."))],
        lambda c, _: submit(c)),
    "order_duplicate_adopt": ([order(400, DUPLICATED), query(200, QUERY_FILLED)], lambda c, _: submit(c)),
    "order_duplicate_query_fails": ([order(400, DUPLICATED), query(400, NO_SUCH_ORDER)], lambda c, _: submit(c)),
    "query_not_found_2013": ([query(400, NO_SUCH_ORDER)], lambda c, _: c.query_order("BTCUSDT", CID)),
    "position_risk_one_way": ([Reply("GET", "/fapi/v2/positionRisk", 200, POSITIONS_ONE_WAY)],
                              lambda c, _: c.position_risk()),
    "position_risk_hedge_long": ([Reply("GET", "/fapi/v2/positionRisk", 200, POSITIONS_HEDGE)],
                                 lambda c, _: c.position_risk()),
}


# ---------------------------------------------------------------------------- the scripted venue
class _Venue(BaseHTTPRequestHandler):
    """Answers the next scripted reply; refuses bad keys/signatures like Binance (-2014/-1022)."""

    script: deque[Reply]
    problems: list[str]

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        parts = urlsplit(self.path)
        reply = self.script.popleft() if self.script else None
        if reply is None or (reply.method, reply.path) != (method, parts.path):
            self.problems.append(f"unexpected {method} {parts.path}; script wanted {reply}")
            return self._send(500, api_error(-1000, "scripted venue: unexpected request"), {})
        if parts.path in SIGNED_PATHS:
            problem = _check_signed(parts.query, self.headers.get("X-MBX-APIKEY"))
            if problem:
                self.problems.append(f"{method} {parts.path}: {problem}")
                return self._send(401, api_error(-1022, "Signature for this request is not valid."), {})
        self._send(reply.status, reply.body, reply.headers)

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.send_response_only(status)  # no Server/Date headers: cassettes stay byte-stable
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-MBX-USED-WEIGHT-1M", "7")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _check_signed(raw_query: str, api_key: str | None) -> str | None:
    if api_key != GENERATOR_API_KEY:
        return "wrong or missing X-MBX-APIKEY"
    payload, sep, signature = raw_query.rpartition("&signature=")
    if not sep:
        return "no signature"
    expected = hmac.new(GENERATOR_API_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return "bad signature"
    fields = dict(parse_qsl(payload))
    if "timestamp" not in fields or fields.get("recvWindow") != str(RECV_WINDOW_MS):
        return "timestamp/recvWindow missing"
    return None


def record(name: str) -> Path:
    replies, run = SCENARIOS[name]
    handler = type("Venue", (_Venue,), {"script": deque(replies), "problems": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    path = HERE / f"{name}.yaml"
    path.unlink(missing_ok=True)
    try:
        client, clock = build_client(f"http://127.0.0.1:{server.server_address[1]}")
        with make_vcr("all").use_cassette(path.name):
            run(client, clock)
    finally:
        server.shutdown()
        server.server_close()
    if handler.problems or handler.script:
        raise SystemExit(f"{name}: {handler.problems or 'unused replies: ' + str(list(handler.script))}")
    return path


def main(names: list[str]) -> None:
    for name in names or list(SCENARIOS):
        print(record(name).relative_to(HERE.parents[2]))


if __name__ == "__main__":
    main(sys.argv[1:])
