"""The copy-trader's world: the target wallet's Hyperliquid fills (`userFillsByTime`) and a
Binance USD-M account (time, exchangeInfo, premiumIndex, positionRisk, order POST/GET) that
keeps positions and orders. Shapes follow the real venues (see ../shared/cassettes and the
Binance USD-M docs); recorded bodies in a drill's cassettes take precedence over this model.

Also the app driver: how a drill boots the copy-trader (`hlcore.jobs.copytrade.service.start`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

from hlcore.jobs.copytrade.service import start
from hlcore.storage.copytrade import Baselines
from replay.cassettes import SIGNING_FIELDS
from replay.registry import given, step
from replay.transport import Reply

APP = "copytrader"
WALLET = "0x" + "cd" * 20  # the copied wallet (public address, not a secret)
ENV = {"HYPERLIQUID_TARGET_WALLET": WALLET, "BINANCE_API_KEY": "K" * 64, "BINANCE_API_SECRET": "S" * 64}

# exchangeInfo filters per symbol (copytrader §9: BTCUSDT minQty/step 0.001, notional 100)
FILTERS = {
    "BTCUSDT": [{"filterType": "PRICE_FILTER", "minPrice": "556.80", "maxPrice": "4529764", "tickSize": "0.10"},
                {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120", "stepSize": "0.001"},
                {"filterType": "MIN_NOTIONAL", "notional": "100"}],
    "ETHUSDT": [{"filterType": "PRICE_FILTER", "minPrice": "39.86", "maxPrice": "306177", "tickSize": "0.01"},
                {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "10000", "stepSize": "0.001"},
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "2000", "stepSize": "0.001"},
                {"filterType": "MIN_NOTIONAL", "notional": "20"}],
}
MARKS = {"BTCUSDT": Decimal("60000"), "ETHUSDT": Decimal("3000")}
_OFFSET = re.compile(r"^([+-])(\d+)(ms|s|m|h)$")
_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def offset_ms(text: str) -> int:
    match = _OFFSET.match(text)
    if not match:
        raise ValueError(f"expected an offset like -3s or +1s, got {text!r}")
    value = int(match.group(2)) * _UNITS[match.group(3)]
    return -value if match.group(1) == "-" else value


@dataclass
class Account:
    positions: dict[str, Decimal] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # by client order id
    position_side: str = "BOTH"
    marks: dict[str, Decimal] = field(default_factory=lambda: dict(MARKS))
    order_status: str = "FILLED"  # what a new MARKET order ends as (FILLED, PARTIALLY_FILLED: half, EXPIRED, NEW)
    # the parameters of every order the venue took (POST /fapi/v1/order past the duplicate check),
    # without signing fields: what the app asked for, in order
    posts: list[dict[str, str]] = field(default_factory=list)
    next_order_id: int = 8_389_765_000_000_000
    # scripted lifecycles: the next new orders each walk one list of statuses, one per answer
    lifecycles: list[list[str]] = field(default_factory=list)


class CopytradeWorld:
    def __init__(self, clock: Any):
        self.clock = clock
        self.fills: list[dict[str, Any]] = []
        self.account = Account()

    # ------------------------------------------------------------------ routing
    def venue_of(self, host: str) -> str | None:
        if host.endswith("hyperliquid.xyz"):
            return "hyperliquid"
        if host.endswith("binance.com"):
            return "binance"
        return None

    def answer(self, venue: str, method: str, path: str, params: Mapping[str, str], payload: Any) -> Reply:
        if venue == "hyperliquid":
            return self._info(payload)
        if venue == "binance":
            return self._binance(method, path, params)
        return Reply(404, {"error": f"no venue for {path}"})

    # ------------------------------------------------------------------ Hyperliquid
    def _info(self, payload: Any) -> Reply:
        if not isinstance(payload, dict) or payload.get("type") != "userFillsByTime":
            return Reply(422, raw=b"Failed to deserialize the JSON body into the target type")
        if str(payload.get("user", "")).lower() != WALLET:
            return Reply(200, [])
        start, end = int(payload["startTime"]), int(payload.get("endTime") or self.clock.now_ms())
        # a drill may write time/tid/oid as strings (what a proxy may send): compared as numbers, served as written
        now = self.clock.now_ms()
        page = sorted((f for f in self.fills if start <= int(f["time"]) <= end and int(f["time"]) <= now),
                      key=lambda f: (int(f["time"]), int(f.get("tid") or 0)))
        return Reply(200, page[:2000])

    # ------------------------------------------------------------------ Binance USD-M
    def _order_body(self, order: Mapping[str, Any]) -> dict[str, Any]:
        mark = self.account.marks.get(order["symbol"], Decimal("1"))
        executed = Decimal(order["executed"])
        return {"orderId": order["orderId"], "symbol": order["symbol"], "status": order["status"],
                "clientOrderId": order["clientOrderId"], "price": "0.00", "avgPrice": str(mark) if executed else "0.00",
                "origQty": order["qty"], "executedQty": order["executed"], "cumQty": order["executed"],
                "cumQuote": str((executed * mark).quantize(Decimal("0.00001"))), "timeInForce": order["tif"],
                "type": "MARKET", "reduceOnly": order["reduceOnly"] == "true", "closePosition": False,
                "side": order["side"], "positionSide": "BOTH", "stopPrice": "0.00", "workingType": "CONTRACT_PRICE",
                "priceProtect": False, "origType": "MARKET", "updateTime": order["updated"]}

    def _binance(self, method: str, path: str, params: Mapping[str, str]) -> Reply:
        acct, now = self.account, self.clock.now_ms()
        if path == "/fapi/v1/time":
            return Reply(200, {"serverTime": now})
        if path == "/fapi/v1/exchangeInfo":
            return Reply(200, {"timezone": "UTC", "serverTime": now, "futuresType": "U_MARGINED", "symbols": [
                {"symbol": s, "pair": s, "contractType": "PERPETUAL", "status": "TRADING", "baseAsset": s[:-4],
                 "quoteAsset": "USDT", "marginAsset": "USDT", "pricePrecision": 2, "quantityPrecision": 3,
                 "filters": f, "orderTypes": ["LIMIT", "MARKET"], "timeInForce": ["GTC", "IOC", "FOK", "GTX"]}
                for s, f in sorted(FILTERS.items())]})
        if path == "/fapi/v1/premiumIndex":
            symbol = params.get("symbol", "")
            return Reply(200, {"symbol": symbol, "markPrice": f"{acct.marks.get(symbol, Decimal(1)):.8f}",
                               "indexPrice": f"{acct.marks.get(symbol, Decimal(1)):.8f}",
                               "lastFundingRate": "0.00010000", "nextFundingTime": now - now % 28_800_000 + 28_800_000,
                               "interestRate": "0.00010000", "time": now})
        if path == "/fapi/v2/positionRisk":
            return Reply(200, [
                {"symbol": s, "positionAmt": f"{q:.3f}", "entryPrice": f"{acct.marks.get(s, Decimal(1)):.1f}",
                 "breakEvenPrice": "0.0", "markPrice": f"{acct.marks.get(s, Decimal(1)):.8f}",
                 "unRealizedProfit": "0.00000000", "liquidationPrice": "0", "leverage": "5",
                 "maxNotionalValue": "10000000", "marginType": "cross", "isolatedMargin": "0.00000000",
                 "isAutoAddMargin": "false", "positionSide": acct.position_side, "notional": "0",
                 "isolatedWallet": "0", "updateTime": now}
                for s, q in sorted(acct.positions.items())])
        if path == "/fapi/v1/order" and method == "POST":
            cid = params.get("newClientOrderId", "")
            if cid in acct.orders:
                return Reply(400, {"code": -4116, "msg": "ClientOrderId is duplicated."})
            acct.posts.append({k: v for k, v in params.items() if k not in SIGNING_FIELDS})
            acct.next_order_id += 1
            script = acct.lifecycles.pop(0) if acct.lifecycles else [acct.order_status]
            order = {"orderId": acct.next_order_id, "symbol": params.get("symbol", ""), "status": "NEW",
                     "clientOrderId": cid, "qty": params.get("quantity", "0"), "executed": "0",
                     "tif": params.get("timeInForce", "GTC"),
                     "reduceOnly": params.get("reduceOnly", "false"), "side": params.get("side", ""), "updated": now,
                     "script": script[1:]}
            acct.orders[cid] = order
            self._move(order, script[0])
            return Reply(200, self._order_body(order))
        if path == "/fapi/v1/order" and method == "GET":
            order = acct.orders.get(params.get("origClientOrderId", ""))
            if order is None:
                return Reply(400, {"code": -2013, "msg": "Order does not exist."})
            if order.get("script"):  # a scripted lifecycle: this query sees its next status
                order["updated"] = now
                self._move(order, order["script"].pop(0))
            return Reply(200, self._order_body(order))
        return Reply(404, {"code": -1, "msg": f"no route {method} {path}"})

    def _move(self, order: dict[str, Any], status: str) -> None:
        """The order reaches `status`: FILLED executes it all, PARTIALLY_FILLED half (down to the
        quantity's precision); the others keep what executed. The position follows."""
        qty = Decimal(order["qty"])
        before = Decimal(order["executed"])
        order["status"] = status
        if status not in ("FILLED", "PARTIALLY_FILLED"):
            return
        executed = qty if status == "FILLED" else (qty / 2).quantize(qty, rounding=ROUND_DOWN)
        order["executed"] = str(executed)
        delta = executed - before
        sign = delta if order["side"] == "BUY" else -delta
        self.account.positions[order["symbol"]] = self.account.positions.get(order["symbol"], Decimal(0)) + sign

    # ------------------------------------------------------------------ timeline changes
    def add_fills(self, fills: list[Mapping[str, Any]], now_ms: int) -> None:
        for raw in fills:
            fill = dict(raw)
            if "offset" in fill:
                fill["time"] = now_ms + offset_ms(str(fill.pop("offset")))
            self.fills.append(hl_fill(fill))

    def set_exchange(self, spec: Mapping[str, Any]) -> None:
        acct = self.account
        if "positions" in spec:
            acct.positions = {k: Decimal(str(v)) for k, v in spec["positions"].items()}
        if "position_side" in spec:
            acct.position_side = spec["position_side"]
        if "order_status" in spec:
            acct.order_status = spec["order_status"]
        for symbol, mark in (spec.get("marks") or {}).items():
            acct.marks[symbol] = Decimal(str(mark))


def fill_direction(start: Any, side: str, after: Any) -> str:
    """Hyperliquid's `dir` of a fill on `side` (B buys, A sells) taking the position from `start` to `after`."""
    if start == 0 or (start > 0 and after > start) or (start < 0 and after < start):
        return "Open Long" if side == "B" else "Open Short"
    if (start > 0 > after) or (start < 0 < after):
        return "Long > Short" if side == "A" else "Short > Long"
    return "Close Long" if start > 0 else "Close Short"


def hl_fill(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A fill as Hyperliquid's `userFillsByTime` returns it; the drill gives tid, time, side,
    sz, startPosition and hash, the rest takes realistic defaults."""
    side = spec.get("side", "B")
    start = Decimal(str(spec.get("startPosition", "0")))
    sz = Decimal(str(spec["sz"]))
    direction = fill_direction(start, side, start + (sz if side == "B" else -sz))
    tid = int(spec["tid"])
    return {"coin": spec.get("coin", "BTC"), "px": str(spec.get("px", "60000.0")), "sz": str(spec["sz"]),
            "side": side, "time": _as_written(spec["time"]), "startPosition": str(spec.get("startPosition", "0.0")),
            "dir": spec.get("dir", direction), "closedPnl": str(spec.get("closedPnl", "0.0")),
            "hash": spec.get("hash", "0x" + f"{tid:064x}"),
            "oid": _as_written(spec.get("oid", 90_000_000_000 + tid)),
            "crossed": bool(spec.get("crossed", True)), "fee": str(spec.get("fee", "1.26")),
            "tid": _as_written(spec["tid"]),
            "feeToken": spec.get("feeToken", "USDC"), **({"twapId": spec["twapId"]} if "twapId" in spec else {})}


def _as_written(value: Any) -> Any:
    """An id or time as the drill wrote it: an integer stays one, a digit string stays a string
    (the venue field types a proxy may send, issue 11), so the parser sees exactly that."""
    return value if isinstance(value, str) else int(value)


# ---------------------------------------------------------------------- drill vocabulary
_QTYS = {"type": "dict", "keysrules": {"type": "string", "regex": r"^[A-Z0-9]+$"},
         "valuesrules": {"type": ["string", "number"]}}
_ID = {"type": ["integer", "string"], "regex": r"^\d+$"}  # a string is served as written (issue 18)
_FILL = {"type": "dict", "schema": {
    "tid": {**_ID, "required": True}, "sz": {"type": ["string", "number"], "required": True},
    "side": {"type": "string", "allowed": ["A", "B"]}, "startPosition": {"type": ["string", "number"]},
    "time": {**_ID, "excludes": "offset"}, "offset": {"type": "string", "regex": _OFFSET.pattern},
    "hash": {"type": "string"}, "coin": {"type": "string"}, "px": {"type": ["string", "number"]},
    "oid": _ID, "dir": {"type": "string"}, "crossed": {"type": "boolean"},
    "fee": {"type": ["string", "number"]}, "closedPnl": {"type": ["string", "number"]},
    "feeToken": {"type": "string"}, "twapId": {"type": "integer", "nullable": True}}}
_FILLS = {"type": "list", "schema": _FILL}
_EXCHANGE = {"positions": _QTYS, "position_side": {"type": "string", "allowed": ["BOTH", "LONG", "SHORT"]},
             "order_status": {"type": "string", "allowed": ["FILLED", "PARTIALLY_FILLED", "NEW", "EXPIRED"]},
             "marks": _QTYS}


@given("baseline", _QTYS, "Active baseline positions {SYMBOL: qty} (the local positions).", apps=(APP,),
    example="baseline: {BTCUSDT: \"0.5\"}")
def _given_baseline(player: Any, value: Mapping[str, Any]) -> None:
    Baselines(player.db).sync({k: Decimal(str(v)) for k, v in value.items()}, "drill", "drill given", player.now())


@given("exchange", {"type": "dict", "schema": _EXCHANGE},
       "The Binance account: positions {SYMBOL: qty}, position_side, order_status, marks.", apps=(APP,),
    example="exchange: {positions: {BTCUSDT: \"0.5\"}, order_status: NEW}")
def _given_exchange(player: Any, value: Mapping[str, Any]) -> None:
    player.world.set_exchange(value)


@given("fills", _FILLS, "Hyperliquid fills of the target wallet (time absolute, or offset like -3s); "
       "`tid`/`time`/`oid` written as digit strings are served as strings, as a proxy may send them.", apps=(APP,),
    example="fills: [{tid: 7, sz: \"1.0\", side: B, startPosition: \"0.0\", offset: \"-3s\"}]")
def _given_fills(player: Any, value: list[Mapping[str, Any]]) -> None:
    player.world.add_fills(value, player.now())


@step("fills", {"fills": {**_FILLS, "required": True}},
      "The target wallet trades: these fills appear on Hyperliquid (offset relative to the step; digit-string "
      "ids and times served as written).", apps=(APP,),
    example="{at: 5s, do: fills, fills: [{tid: 7, sz: \"2.0\", side: B, startPosition: \"0.0\", offset: \"-1s\"}]}")
def _step_fills(player: Any, args: Mapping[str, Any]) -> None:
    player.world.add_fills(args["fills"], player.now())


@step("exchange", _EXCHANGE, "The Binance account changes (positions, position side, order outcome, marks).",
      apps=(APP,),
    example="{at: 80s, do: exchange, positions: {BTCUSDT: \"0.9\"}}")
def _step_exchange(player: Any, args: Mapping[str, Any]) -> None:
    player.world.set_exchange(args)


_STATUSES = ["FILLED", "PARTIALLY_FILLED", "NEW", "EXPIRED", "CANCELED"]


@step("order_lifecycle", {"statuses": {"type": "list", "required": True, "empty": False,
                                       "schema": {"type": "string", "allowed": _STATUSES}}},
      "The next new order Binance takes walks these statuses, one per answer: the POST gets the first, each "
      "later query of it the next, the last one stays (FILLED executes all of it, PARTIALLY_FILLED half, the "
      "others keep what executed); a second step scripts the order after it.", apps=(APP,),
      example="{at: 10s, do: order_lifecycle, statuses: [PARTIALLY_FILLED, PARTIALLY_FILLED, FILLED]}")
def _step_order_lifecycle(player: Any, args: Mapping[str, Any]) -> None:
    player.world.account.lifecycles.append(list(args["statuses"]))


class CopytraderDriver:
    """Boots the copy-trader exactly as `hlcore live` does, on the drill's wiring."""

    name = APP
    threaded = False  # one thread: audit rows can be interleaved with venue calls as they happen
    watch: tuple[str, ...] = ()
    env = ENV

    @staticmethod
    def world(clock: Any) -> CopytradeWorld:
        return CopytradeWorld(clock)

    @staticmethod
    def start(player: Any) -> tuple[Any, Any, int]:
        # metrics go where `hlcore live` writes them (metrics_log_path, inside the run's temporary folder)
        ctx, _jobs, scheduler, _loop, code = start(player.ws, player.run.mode, player.wiring,
                                                   metrics_path=Path(player.ws.settings.get("metrics_log_path")))
        return ctx, scheduler, code
