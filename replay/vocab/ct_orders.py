"""Copy-trader order vocabulary (copytrader §9 drills 8-14): what Binance received (the world's
account), what the decision persisted (`order_intents` payload + `order_results`), and the
`[METRICS]` lines the loop wrote (e.g. `dedup_drop_count`)."""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import select

from hlcore.storage.schema import order_intents, order_results
from replay.drill import Expectation
from replay.registry import check

APP = ("copytrader",)
_VALUE = {"type": ["string", "integer", "number", "boolean"], "nullable": True}
_ORDER = {"type": "dict", "schema": {
    "symbol": {"type": "string"}, "side": {"type": "string", "allowed": ["BUY", "SELL"]},
    "qty": {"type": ["string", "number"]}, "reduce_only": {"type": "boolean"},
    "client_id": {"type": "string"}, "client_id_like": {"type": "string"},
    "status": {"type": "string"}}}


def _same(got: Any, want: Any) -> bool:
    """Quantities compare as decimals ("1.0" == "1" == 1.000), the rest as text."""
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, bool) or isinstance(got, bool):
        return str(got).lower() == str(want).lower()
    try:
        return Decimal(str(got)) == Decimal(str(want))
    except InvalidOperation:
        return str(got) == str(want)


def _client_id_problems(cid: str | None, spec: dict[str, Any]) -> list[str]:
    out = []
    if "client_id" in spec and cid != spec["client_id"]:
        out.append(f"client id {cid!r}, expected {spec['client_id']!r}")
    if "client_id_like" in spec and not re.fullmatch(spec["client_id_like"], cid or ""):
        out.append(f"client id {cid!r} does not match {spec['client_id_like']!r}")
    return out


@check("venue_orders", {"venue_orders": {"type": "list", "required": True, "schema": _ORDER}},
       "Binance received exactly these new orders (POST /fapi/v1/order that reached the account), in order: "
       "symbol, side, qty, reduce_only, client_id (or client_id_like regex), status.", apps=APP,
    example="{at: 20s, venue_orders: [{symbol: BTCUSDT, side: BUY, qty: \"0.002\", status: FILLED}]}")
def _venue_orders(player: Any, exp: Expectation) -> list[str]:
    got = list(player.world.account.orders.values())
    want = exp.spec["venue_orders"]
    desc = "; ".join(f"{o['side']} {o['qty']} ro={o['reduceOnly']} {o['clientOrderId']} {o['status']}" for o in got)
    if len(got) != len(want):
        return [f"{len(got)} order(s) reached Binance, expected {len(want)}: {desc or 'none'}"]
    out = []
    for i, (order, spec) in enumerate(zip(got, want, strict=True)):
        fields = {"symbol": order["symbol"], "side": order["side"], "qty": order["qty"],
                  "reduce_only": order["reduceOnly"] == "true", "status": order["status"]}
        out += [f"order {i + 1}: {k} is {fields[k]}, expected {v}" for k, v in spec.items()
                if k in fields and not _same(fields[k], v)]
        out += [f"order {i + 1}: {m}" for m in _client_id_problems(order["clientOrderId"], spec)]
    return out


_INTENT = {
    "intent": {"type": "string", "required": True, "empty": False},
    "absent": {"type": "boolean"},
    # order_intents.intent_payload fields
    "symbol": {"type": "string"}, "side": {"type": "string"}, "type": {"type": "string"}, "tif": {"type": "string"},
    "qty": {"type": ["string", "number"]}, "reduce_only": {"type": "boolean"}, "is_replay": {"type": "boolean"},
    "client_id": {"type": "string"}, "client_id_like": {"type": "string"},
    # order_results columns (`result: null`: no result row)
    "result": {"type": "dict", "nullable": True, "keysrules": {"type": "string", "allowed": [
        "status", "error_code", "filled_qty", "query_attempts", "exchange_order_id"]}, "valuesrules": _VALUE},
}


@check("intent", _INTENT,
       "The order intent with this correlation id (`hl-{tx_hash}-{event_index}-{symbol}[-close|-open]`) holds "
       "these payload fields / client id, and its `result` these order_results columns (`absent: true`: no such "
       "intent).", apps=APP,
    example="{at: 6s, intent: \"hl-0xabc-7-BTCUSDT\", side: BUY, qty: \"0.002\", result: {status: FILLED}}")
def _intent(player: Any, exp: Expectation) -> list[str]:
    spec = exp.spec
    with player.db.transaction() as conn:
        intent = conn.execute(select(order_intents).where(
            order_intents.c.correlation_id == spec["intent"])).mappings().first()
        result = conn.execute(select(order_results).where(
            order_results.c.correlation_id == spec["intent"])).mappings().first()
    if spec.get("absent"):
        return [] if intent is None else [f"intent exists: {intent['intent_payload']}"]
    if intent is None:
        return ["no such intent"]
    payload = json.loads(intent["intent_payload"])
    out = [f"payload {k} is {payload.get(k)!r}, expected {spec[k]!r}"
           for k in ("symbol", "side", "type", "tif", "qty", "reduce_only", "is_replay")
           if k in spec and not _same(payload.get(k), spec[k])]
    out += _client_id_problems(intent["client_order_id"], spec)
    if "result" in spec:
        want = spec["result"]
        if want is None:
            if result is not None:
                out.append(f"result exists: {result['status']}/{result['error_code']}")
        elif result is None:
            out.append("no order_results row")
        else:
            out += [f"result {k} is {result[k]!r}, expected {v!r}" for k, v in sorted(want.items())
                    if not _same(result[k], v)]
    return out


@check("metric", {"metric": {"type": "string", "required": True, "empty": False},
                  "value": {**_VALUE, "required": True}},
       "The last `[METRICS]` line named so (up to `at`) carries this value.", apps=APP,
    example="{at: 0s, metric: dedup_drop_count, value: 1}")
def _metric(player: Any, exp: Expectation) -> list[str]:
    path = Path(player.tmp) / str(player.ws.settings.get("metrics_log_path"))
    end = None if exp.at_ms is None else player.start_ms + exp.at_ms
    last = None
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("[METRICS] "):
                continue
            item = json.loads(line[len("[METRICS] "):])
            if item["name"] == exp.spec["metric"] and (end is None or item["ts"] <= end):
                last = item
    if last is None:
        return [f"no {exp.spec['metric']} metric written"]
    return [] if _same(last["value"], exp.spec["value"]) else [f"last value {last['value']!r} (at ts {last['ts']})"]
