"""The drill transport: a stateful fake Hyperliquid info API and Binance USD-M account mounted at
the `requests` transport level, so the real clients, retries and limiters run unchanged. Every
call is recorded (time, venue, method, path, Hyperliquid request type; never a query string or
a signature). No socket is opened.

Adapted from `tests/support/venues.py` (replay must not import tests)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from requests.adapters import BaseAdapter

from hlcore.engine.clock import Clock

BTC_FILTERS = [
    {"filterType": "PRICE_FILTER", "minPrice": "556.80", "maxPrice": "4529764", "tickSize": "0.10"},
    {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
    {"filterType": "MIN_NOTIONAL", "notional": "100"},
]


@dataclass
class VenueCall:
    ts_ms: int
    venue: str
    method: str
    path: str
    op: str | None  # Hyperliquid info `type` (e.g. userFillsByTime); None for Binance


@dataclass
class Account:
    positions: dict[str, Decimal] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # by client order id
    posts: list[dict[str, str]] = field(default_factory=list)
    position_side: str = "BOTH"
    mark: Decimal = Decimal("60000")


class DrillVenues(BaseAdapter):
    """Serves both venues; `faults` maps "METHOD /path" to a queue of faults consumed per call."""

    def __init__(self, clock: Clock, wallet: str, on_call: Any = None):
        super().__init__()
        self.clock = clock
        self.wallet = wallet
        self.fills: list[dict[str, Any]] = []
        self.account = Account()
        self.faults: dict[str, list[str]] = {}
        self.calls: list[VenueCall] = []
        self.on_call = on_call  # called before each call is recorded (the runner flushes audit rows)

    @staticmethod
    def _response(request: requests.PreparedRequest, status: int, body: Any,
                  headers: dict[str, str] | None = None) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        response.headers.update({"Content-Type": "application/json", **(headers or {})})
        response.request = request
        response.url = request.url or ""
        return response

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        url = urlsplit(request.url or "")
        method = request.method or ""
        hyperliquid = url.netloc.endswith("hyperliquid.xyz")
        op = None
        if hyperliquid:
            try:
                op = json.loads(request.body or b"{}").get("type")
            except (ValueError, AttributeError):
                op = None
        if self.on_call is not None:
            self.on_call()
        self.calls.append(VenueCall(self.clock.now_ms(), "hyperliquid" if hyperliquid else "binance", method,
                                    url.path, op))
        queue = self.faults.get(f"{method} {url.path}")
        fault = queue.pop(0) if queue else "ok"
        if fault == "timeout":
            raise requests.Timeout("scripted timeout")
        if fault == "reset":
            raise requests.ConnectionError("scripted connection reset")
        if fault == "429":
            return self._response(request, 429, {"code": -1003, "msg": "Too many requests"}, {"Retry-After": "3"})
        if fault == "5xx":
            return self._response(request, 503, {"code": -1001, "msg": "Service unavailable"})
        if hyperliquid:
            return self._info(request)
        params = dict(parse_qsl(url.query))
        if request.body:
            body = request.body.decode() if isinstance(request.body, bytes) else request.body
            params.update(dict(parse_qsl(body)))
        return self._binance(request, url.path, params)

    def _info(self, request: requests.PreparedRequest) -> requests.Response:
        body = json.loads(request.body or b"{}")
        if body.get("type") != "userFillsByTime" or body.get("user") != self.wallet:
            return self._response(request, 400, {"error": "unsupported"})
        start, end = body["startTime"], body.get("endTime", self.clock.now_ms())
        page = sorted((f for f in self.fills if start <= f["time"] <= end), key=lambda f: (f["time"], f["tid"]))
        return self._response(request, 200, page[:2000])

    def _order_body(self, order: dict[str, Any]) -> dict[str, Any]:
        return {"orderId": order["orderId"], "symbol": order["symbol"], "status": order["status"],
                "clientOrderId": order["clientOrderId"], "price": "0", "avgPrice": str(self.account.mark),
                "origQty": order["qty"], "executedQty": order["executed"], "cumQuote": "0", "timeInForce": "GTC",
                "type": "MARKET", "reduceOnly": order["reduceOnly"] == "true", "side": order["side"],
                "positionSide": "BOTH", "updateTime": self.clock.now_ms()}

    def _binance(self, request: requests.PreparedRequest, path: str, params: dict[str, str]) -> requests.Response:
        acct = self.account
        now = self.clock.now_ms()
        if path == "/fapi/v1/time":
            return self._response(request, 200, {"serverTime": now})
        if path == "/fapi/v1/exchangeInfo":
            return self._response(request, 200, {"timezone": "UTC", "serverTime": now, "symbols": [
                {"symbol": "BTCUSDT", "status": "TRADING", "filters": BTC_FILTERS}]})
        if path == "/fapi/v1/premiumIndex":
            return self._response(request, 200, {"symbol": params.get("symbol"), "markPrice": str(acct.mark),
                                                 "time": now})
        if path == "/fapi/v2/positionRisk":
            return self._response(request, 200, [
                {"symbol": s, "positionAmt": str(q), "entryPrice": "60000", "markPrice": str(acct.mark),
                 "unRealizedProfit": "0", "positionSide": acct.position_side, "updateTime": now}
                for s, q in sorted(acct.positions.items())])
        if path == "/fapi/v1/order" and request.method == "POST":
            cid = params["newClientOrderId"]
            if cid in acct.orders:
                return self._response(request, 400, {"code": -4116, "msg": "ClientOrderId is duplicated."})
            acct.posts.append(params)
            qty = Decimal(params["quantity"])
            order = {"orderId": 1000 + len(acct.posts), "symbol": params["symbol"], "status": "FILLED",
                     "clientOrderId": cid, "qty": params["quantity"], "executed": params["quantity"],
                     "reduceOnly": params.get("reduceOnly", "false"), "side": params["side"]}
            acct.orders[cid] = order
            acct.positions[params["symbol"]] = acct.positions.get(params["symbol"], Decimal(0)) + (
                qty if params["side"] == "BUY" else -qty)
            return self._response(request, 200, self._order_body(order))
        if path == "/fapi/v1/order" and request.method == "GET":
            order = acct.orders.get(params.get("origClientOrderId", ""))
            if order is None:
                return self._response(request, 400, {"code": -2013, "msg": "Order does not exist."})
            return self._response(request, 200, self._order_body(order))
        return self._response(request, 404, {"code": -1, "msg": f"no route {path}"})

    def close(self) -> None:
        pass

    def session(self) -> requests.Session:
        s = requests.Session()
        s.mount("https://", self)
        return s
