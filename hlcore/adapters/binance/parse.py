"""Pure functions from Binance USD-M JSON bodies to facts. No I/O, no clock.

A body of the wrong shape comes back as a `Malformed` value naming what was wrong; nothing here
raises on venue input. Quantities and prices are `Decimal` (never float).

Venue docs (USDⓈ-M Futures REST):
- New order / query order: .../trade/rest-api/New-Order, .../Query-Order
- Position information V2: .../trade/rest-api/Position-Information-V2
- Exchange information: .../market-data/rest-api/Exchange-Information
- Check server time: .../market-data/rest-api/Check-Server-Time
- Mark price: .../market-data/rest-api/Mark-Price
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

_INTEGER = re.compile(r"-?\d{1,19}")


@dataclass(frozen=True)
class Malformed:
    """A body that does not have the documented shape."""

    what: str
    detail: str

    def __str__(self) -> str:
        return f"malformed {self.what}: {self.detail}"


@dataclass(frozen=True)
class OrderAnswer:
    """An order as the venue reports it (POST or GET /fapi/v1/order). `status` is the venue's
    own word (`NEW`, `FILLED`, ...); `errors.classify_status` maps it."""

    status: str
    executed_qty: Decimal
    avg_price: Decimal | None
    order_id: int
    client_order_id: str
    symbol: str | None = None  # the venue's, when it says (checked against the request by the client)


@dataclass(frozen=True)
class PositionRisk:
    """One `/fapi/v2/positionRisk` entry. `position_amt` is signed (short < 0)."""

    symbol: str
    position_amt: Decimal
    position_side: str
    entry_price: Decimal
    mark_price: Decimal
    update_time: int


@dataclass(frozen=True)
class SymbolFilters:
    """LOT_SIZE minQty/stepSize, PRICE_FILTER tickSize, MIN_NOTIONAL notional."""

    min_qty: Decimal
    step_size: Decimal
    tick_size: Decimal
    min_notional: Decimal


@dataclass(frozen=True)
class MarkPrice:
    symbol: str
    mark_price: Decimal
    time_ms: int


@dataclass(frozen=True)
class Impossible(Malformed):
    """A readable body saying something that cannot be true (a negative fill, a non-positive
    price): the client reports it as `IMPOSSIBLE_ANSWER`, a typed fault, never as a fact."""

    def __str__(self) -> str:
        return f"impossible {self.what}: {self.detail}"


ZERO = Decimal(0)


class _Bad(Exception):
    """Internal: a field failed; turned into `Malformed` at the function boundary."""


class _Untrue(_Bad):
    """Internal: a field parsed but its value cannot be true; turned into `Impossible`."""


def _fail(what: str, bad: _Bad) -> Malformed:
    return Impossible(what, str(bad)) if isinstance(bad, _Untrue) else Malformed(what, str(bad))


def _at_least(value: Decimal | None, key: str, floor: Decimal, *, strict: bool = False) -> Decimal | None:
    if value is not None and (value <= floor if strict else value < floor):
        raise _Untrue(f"{key}={value} is {'not above' if strict else 'below'} {floor}")
    return value


def _decimal(obj: Mapping[str, Any], key: str, *, optional: bool = False) -> Decimal | None:
    value = obj.get(key)
    if value is None:
        if optional:
            return None
        raise _Bad(f"missing {key}")
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise _Bad(f"{key} is not a decimal string")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        raise _Bad(f"{key}={str(value)[:40]!r} is not a decimal") from None
    if not number.is_finite():
        raise _Bad(f"{key} is not finite")
    return number


def _required_decimal(obj: Mapping[str, Any], key: str) -> Decimal:
    value = _decimal(obj, key)
    assert value is not None
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    """A JSON integer, a digit string or an integral decimal (what a proxy may send, issue 11)."""
    value = obj.get(key)
    if isinstance(value, bool):
        raise _Bad(f"{key} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    if isinstance(value, float | Decimal):
        try:
            number = Decimal(repr(value)) if isinstance(value, float) else value
            if number.is_finite() and number == number.to_integral_value():
                return int(number)
        except InvalidOperation:
            pass
    raise _Bad(f"{key} is not an integer")


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise _Bad(f"{key} is not a non-empty string")
    return value


def _object(body: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise _Bad(f"{what} is not a JSON object")
    return body


def order_answer(body: Any) -> OrderAnswer | Malformed:
    """POST /fapi/v1/order (newOrderRespType=RESULT) or GET /fapi/v1/order."""
    try:
        obj = _object(body, "order")
        symbol = obj.get("symbol")
        return OrderAnswer(
            status=_str(obj, "status"),
            executed_qty=_at_least(_required_decimal(obj, "executedQty"), "executedQty", ZERO) or ZERO,
            avg_price=_at_least(_decimal(obj, "avgPrice", optional=True), "avgPrice", ZERO),
            order_id=_int(obj, "orderId"),
            client_order_id=_str(obj, "clientOrderId"),
            symbol=symbol if isinstance(symbol, str) and symbol else None,
        )
    except _Bad as bad:
        return _fail("order", bad)


def position_risk(body: Any) -> list[PositionRisk] | Malformed:
    """GET /fapi/v2/positionRisk: one entry per symbol (one-way) or per side (hedge mode)."""
    if not isinstance(body, list):
        return Malformed("positionRisk", "body is not a JSON list")
    out = []
    try:
        for index, item in enumerate(body):
            obj = _object(item, f"entry {index}")
            out.append(PositionRisk(
                symbol=_str(obj, "symbol"),
                position_amt=_required_decimal(obj, "positionAmt"),
                position_side=_str(obj, "positionSide"),
                entry_price=_at_least(_required_decimal(obj, "entryPrice"), "entryPrice", ZERO) or ZERO,
                mark_price=_at_least(_required_decimal(obj, "markPrice"), "markPrice", ZERO) or ZERO,
                update_time=_int(obj, "updateTime"),
            ))
    except _Bad as bad:
        return _fail("positionRisk", bad)
    return out


def position_mode_ok(positions: list[PositionRisk]) -> bool:
    """One-way mode: every entry has positionSide BOTH (copytrader S8)."""
    return all(p.position_side == "BOTH" for p in positions)


def exchange_filters(body: Any) -> dict[str, SymbolFilters] | Malformed:
    """GET /fapi/v1/exchangeInfo → `{symbol: SymbolFilters}`. A symbol lacking any of LOT_SIZE,
    PRICE_FILTER or MIN_NOTIONAL is left out, so "filters present" means "symbol in the dict"."""
    try:
        obj = _object(body, "exchangeInfo")
        symbols = obj.get("symbols")
        if not isinstance(symbols, list):
            raise _Bad("symbols is not a list")
        out: dict[str, SymbolFilters] = {}
        for item in symbols:
            entry = _object(item, "symbol entry")
            filters = entry.get("filters")
            if not isinstance(filters, list):
                raise _Bad(f"{entry.get('symbol')!r}: filters is not a list")
            by_type = {f.get("filterType"): f for f in filters if isinstance(f, Mapping)}
            lot, price, notional = by_type.get("LOT_SIZE"), by_type.get("PRICE_FILTER"), by_type.get("MIN_NOTIONAL")
            if lot is None or price is None or notional is None:
                continue
            out[_str(entry, "symbol")] = SymbolFilters(
                min_qty=_at_least(_required_decimal(lot, "minQty"), "minQty", ZERO) or ZERO,
                step_size=_at_least(_required_decimal(lot, "stepSize"), "stepSize", ZERO, strict=True) or ZERO,
                tick_size=_at_least(_required_decimal(price, "tickSize"), "tickSize", ZERO) or ZERO,
                min_notional=_at_least(_required_decimal(notional, "notional"), "notional", ZERO) or ZERO,
            )
    except _Bad as bad:
        return _fail("exchangeInfo", bad)
    return out


def server_time(body: Any) -> int | Malformed:
    """GET /fapi/v1/time → `serverTime` (epoch ms)."""
    try:
        return _int(_object(body, "time"), "serverTime")
    except _Bad as bad:
        return Malformed("time", str(bad))


def mark_price(body: Any) -> MarkPrice | Malformed:
    """GET /fapi/v1/premiumIndex?symbol=… → mark price and its venue time."""
    try:
        obj = _object(body, "premiumIndex")
        return MarkPrice(symbol=_str(obj, "symbol"),
                         mark_price=_at_least(_required_decimal(obj, "markPrice"), "markPrice", ZERO, strict=True)
                         or ZERO, time_ms=_int(obj, "time"))
    except _Bad as bad:
        return _fail("premiumIndex", bad)
