"""Binance USD-M client: signed requests over `VenueHttp`, answers as values (copytrader §4.3–§4.7).

Every public method returns a value or a `VenueError`; venue behaviour never raises past this
module. The only exceptions are `ValueError`s for caller bugs (a bad side, a non-positive quantity,
an invalid client order id), raised before anything is sent.

Two follow-ups of §4.5 live here because they need the network:
- `-1021`: re-sync the offset (GET /fapi/v1/time) and retry once, re-signed, same client id;
  a second `-1021` is final (REJECTED / TIMESTAMP_REJECTED).
- duplicate client order id (`-4116`): query by `origClientOrderId` and adopt what it says
  (UNKNOWN / QUERY_ERROR if the query fails).

The API key, secret and signature never appear in a return value, an error text or a repr.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from hlcore.adapters.binance import parse
from hlcore.adapters.binance.client_order_id import CLIENT_ORDER_ID_PATTERN
from hlcore.adapters.binance.errors import (
    ADOPT_BY_QUERY,
    NOT_FOUND,
    QUERY_ERROR,
    RESYNC_AND_RETRY,
    UNKNOWN,
    BinanceCode,
    Verdict,
    classify_error,
    classify_query_error,
    classify_status,
)
from hlcore.adapters.binance.parse import MarkPrice, OrderAnswer, PositionRisk, SymbolFilters
from hlcore.adapters.binance.sign import Credentials, TimeSample, TimeSync
from hlcore.adapters.http import IMPOSSIBLE_ANSWER, MALFORMED_RESPONSE, HttpResult, VenueError, VenueHttp
from hlcore.engine.clock import Clock

TIME_PATH = "/fapi/v1/time"
ORDER_PATH = "/fapi/v1/order"
POSITION_RISK_PATH = "/fapi/v2/positionRisk"
EXCHANGE_INFO_PATH = "/fapi/v1/exchangeInfo"
PREMIUM_INDEX_PATH = "/fapi/v1/premiumIndex"

# Request weights (IP limits, USDⓈ-M docs).
WEIGHT = {TIME_PATH: 1, ORDER_PATH: 1, POSITION_RISK_PATH: 5, EXCHANGE_INFO_PATH: 1, PREMIUM_INDEX_PATH: 1}
SIDES = ("BUY", "SELL")
EXCHANGE_INFO_TTL_MS = 300_000  # execution.binance.exchange_info_ttl_sec; pass the configured value


@dataclass(frozen=True)
class OrderNotFound:
    """A query by `origClientOrderId` answered -2013: the venue has no such order."""

    symbol: str
    client_order_id: str
    message: str


@dataclass(frozen=True)
class OrderOutcome:
    """One order's result as `order_results` records it.

    Attributes:
        status: SUBMITTED (venue NEW), PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED, REJECTED,
            UNKNOWN, or NOT_FOUND (a query that found nothing).
        error_code: §4.5 code or None.
        message: `order_results.error_message` (`"{code}:{msg}"` for API errors).
        order: the venue's order (`executedQty`, `avgPrice`, `orderId`) when it answered with one.
        venue_status: the venue's own status word (`NEW`, `PENDING_CANCEL`...) when there was one.
        adopted: the answer came from a query after a duplicate client order id.
        time_resynced: the answer came from the re-signed retry after a -1021.
    """

    status: str
    error_code: str | None = None
    message: str | None = None
    order: OrderAnswer | None = None
    venue_status: str | None = None
    adopted: bool = False
    time_resynced: bool = False

    @property
    def answer(self) -> str:
        """The venue's word for the policy's `order_answered.answer`: the raw status when the
        venue gave one (`NEW`, `PENDING_CANCEL`), else the mapped result (`UNKNOWN`, `REJECTED`)."""
        return self.venue_status or self.status


@dataclass(frozen=True)
class PositionSnapshot:
    """GET /fapi/v2/positionRisk as facts. `snapshot_ts_ms` is the offset-corrected send time
    (§4.7 age); `position_mode_ok` is False when any entry's positionSide is not BOTH (S8)."""

    positions: tuple[PositionRisk, ...]
    position_mode_ok: bool
    snapshot_ts_ms: int


def _from_verdict(verdict: Verdict, **extra: Any) -> OrderOutcome:
    return OrderOutcome(verdict.status, verdict.error_code, verdict.message, **extra)


def outcome_of_order(order: OrderAnswer, **extra: Any) -> OrderOutcome:
    return _from_verdict(classify_status(order.status), order=order, venue_status=order.status, **extra)


def query_outcome(answer: OrderAnswer | OrderNotFound | VenueError) -> OrderOutcome:
    """A `query_order` answer as an outcome. A failed query never settles an order (UNKNOWN)."""
    if isinstance(answer, OrderAnswer):
        return outcome_of_order(answer)
    if isinstance(answer, OrderNotFound):
        return OrderOutcome(NOT_FOUND, None, answer.message)
    return _from_verdict(classify_query_error(answer))


def _quantity(qty: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros (`0.0020` → `0.002`, `1E+2` → `100`)."""
    return format(qty.normalize(), "f")


class BinanceClient:
    """Binance USDⓈ-M Futures REST, signed, over one `VenueHttp` (shared cooldown, limiter).

    Attributes:
        http: the venue's HTTP layer (the only network user).
        clock: injected time; the offset and the exchangeInfo cache run on it.
        time_sync: the current server-time offset (§4.3).
        recv_window_ms: sent with every signed request.
    """

    def __init__(self, http: VenueHttp, *, api_key: str, api_secret: str, clock: Clock, recv_window_ms: int,
                 exchange_info_ttl_ms: int = EXCHANGE_INFO_TTL_MS, time_sync: TimeSync | None = None):
        if not api_key or not api_secret:
            raise ValueError("Binance API key and secret must both be set")
        self.http = http
        self.clock = clock
        self.recv_window_ms = recv_window_ms
        self.exchange_info_ttl_ms = exchange_info_ttl_ms
        self.time_sync = time_sync or TimeSync()
        self._credentials = Credentials(api_key, api_secret)
        http.redact = (api_key, api_secret)  # an echoed request line never carries them into a stored text
        self._filters: dict[str, SymbolFilters] | None = None
        self._filters_at_ms: int | None = None

    def __repr__(self) -> str:
        return (f"BinanceClient(venue={self.http.name!r}, base_url={self.http.base_url!r}, api_key=<redacted>, "
                f"api_secret=<redacted>, recv_window_ms={self.recv_window_ms}, {self.time_sync!r})")

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("BinanceClient holds credentials and cannot be pickled")

    # ------------------------------------------------------------------ time (§4.3)
    def server_time(self) -> int | VenueError:
        """GET /fapi/v1/time → `serverTime` (epoch ms)."""
        result = self._public(TIME_PATH)
        if isinstance(result, VenueError):
            return result
        return _parsed(parse.server_time(result.body), result)

    def sync_time(self) -> TimeSample | VenueError:
        """Measure the offset: serverTime − local midpoint of the round trip; store it."""
        result = self._public(TIME_PATH)
        if isinstance(result, VenueError):
            return result
        server = _parsed(parse.server_time(result.body), result)
        if isinstance(server, VenueError):
            return server
        sample = TimeSample(server, result.sent_ms, result.received_ms)
        self.time_sync.update(sample)
        return sample

    # ------------------------------------------------------------------ orders (§4.5)
    def submit_market_order(self, symbol: str, side: str, qty: Decimal, reduce_only: bool,
                            client_order_id: str) -> OrderOutcome:
        """POST /fapi/v1/order, MARKET, `newClientOrderId`. Never retried by the HTTP layer (not
        idempotent): a lost answer is UNKNOWN and is resolved by `query_order`, never a re-send."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, not {side!r}")
        try:
            qty = Decimal(str(qty))
        except InvalidOperation:
            raise ValueError(f"qty must be a positive decimal, not {str(qty)[:40]!r}") from None
        if not qty.is_finite() or qty <= 0:
            raise ValueError(f"qty must be a positive decimal, not {qty}")
        if not CLIENT_ORDER_ID_PATTERN.match(client_order_id):
            raise ValueError(f"client order id {client_order_id!r} does not match {CLIENT_ORDER_ID_PATTERN.pattern}")
        params = {
            "symbol": symbol,
            "side": side,
            "type": "MARKET",
            "quantity": _quantity(qty),
            "reduceOnly": "true" if reduce_only else "false",
            "newClientOrderId": client_order_id,
            "newOrderRespType": "RESULT",  # the final status of a MARKET order, not just an ACK
        }
        result, resynced = self._signed("POST", ORDER_PATH, params, idempotent=False)
        if isinstance(result, HttpResult):
            order = parse.order_answer(result.body)
            if isinstance(order, parse.Malformed):
                return _from_verdict(classify_error(_malformed(order, result)), time_resynced=resynced)
            untrue = check_order(order, symbol, client_order_id, qty)
            if untrue is not None:
                return _from_verdict(classify_error(_untrue("order", untrue, result)), time_resynced=resynced)
            return outcome_of_order(order, time_resynced=resynced)
        verdict = classify_error(result, timestamp_retried=resynced)
        if verdict.action == RESYNC_AND_RETRY:  # the re-sync itself failed: the -1021 stands
            return OrderOutcome(verdict.status, verdict.error_code, f"{verdict.message} (time re-sync failed)")
        if verdict.action == ADOPT_BY_QUERY:
            found = self.query_order(symbol, client_order_id, qty)
            if isinstance(found, OrderAnswer):
                return outcome_of_order(found, adopted=True, time_resynced=resynced)
            detail = found.message
            return OrderOutcome(UNKNOWN, QUERY_ERROR, f"{verdict.message}; query: {detail}",
                                time_resynced=resynced)
        return _from_verdict(verdict, time_resynced=resynced)

    def query_order(self, symbol: str, client_order_id: str,
                    qty: Decimal | None = None) -> OrderAnswer | OrderNotFound | VenueError:
        """GET /fapi/v1/order by `origClientOrderId`. -2013 is `OrderNotFound`, a distinct answer.
        An answer about another order, or filled beyond `qty` (the ordered quantity, when the
        caller knows it), is an `IMPOSSIBLE_ANSWER` error (issue 10 §6)."""
        result, _ = self._signed("GET", ORDER_PATH, {"symbol": symbol, "origClientOrderId": client_order_id},
                                 idempotent=True)
        if isinstance(result, VenueError):
            if result.venue_code == BinanceCode.NO_SUCH_ORDER:
                return OrderNotFound(symbol, client_order_id, f"{result.venue_code}:{result.message}")
            return result
        order = parse.order_answer(result.body)
        if isinstance(order, parse.Malformed):
            return _malformed(order, result)
        untrue = check_order(order, symbol, client_order_id, qty)
        return order if untrue is None else _untrue("order", untrue, result)

    # ------------------------------------------------------------------ reconcile (§4.7)
    def position_risk(self) -> PositionSnapshot | VenueError:
        """GET /fapi/v2/positionRisk (every symbol; zero amounts included)."""
        result, _ = self._signed("GET", POSITION_RISK_PATH, {}, idempotent=True)
        if isinstance(result, VenueError):
            return result
        positions = parse.position_risk(result.body)
        if isinstance(positions, parse.Malformed):
            return _malformed(positions, result)
        return PositionSnapshot(tuple(positions), parse.position_mode_ok(positions),
                                self.time_sync.server_now_ms(result.sent_ms))

    # ------------------------------------------------------------------ market data (§4.4 checks 8–10)
    def exchange_info(self) -> dict[str, SymbolFilters] | VenueError:
        """GET /fapi/v1/exchangeInfo → filters per symbol, cached for `exchange_info_ttl_ms` on the
        injected clock. A failed refresh returns the error; it never serves an expired cache."""
        now = self.clock.now_ms()
        if self._filters is not None and self._filters_at_ms is not None \
                and now - self._filters_at_ms < self.exchange_info_ttl_ms:
            return dict(self._filters)
        result = self._public(EXCHANGE_INFO_PATH)
        if isinstance(result, VenueError):
            return result
        filters = parse.exchange_filters(result.body)
        if isinstance(filters, parse.Malformed):
            return _malformed(filters, result)
        self._filters, self._filters_at_ms = filters, result.received_ms
        return dict(filters)

    def mark_price(self, symbol: str) -> MarkPrice | VenueError:
        """GET /fapi/v1/premiumIndex?symbol=… → mark price and the venue's time for it."""
        result = self._public(PREMIUM_INDEX_PATH, {"symbol": symbol})
        if isinstance(result, VenueError):
            return result
        mark = _parsed(parse.mark_price(result.body), result)
        if isinstance(mark, MarkPrice) and mark.symbol != symbol:
            return _untrue("premiumIndex", f"mark price for {mark.symbol}, asked {symbol}", result)
        return mark

    def prime(self, symbol: str) -> None:
        """Build, never send, the two requests of the fill -> order path (the mark GET and a signed
        order POST), so the first real order does not pay for normalising their URLs (`hlcore live`
        warm-up, `CopytradeJobs.prime`). Nothing leaves the process; no state but that cache changes."""
        self.http.prepare("GET", f"{self.http.base_url}{PREMIUM_INDEX_PATH}", {"symbol": symbol}, None, {})
        signed = self._credentials.sign({"symbol": symbol, "side": "BUY", "type": "MARKET", "quantity": "1",
                                         "reduceOnly": "false", "newClientOrderId": "prime",
                                         "newOrderRespType": "RESULT"}, now_ms=self.clock.now_ms(),
                                        offset_ms=self.time_sync.offset_ms, recv_window_ms=self.recv_window_ms)
        self.http.prepare("POST", f"{self.http.base_url}{ORDER_PATH}", signed, None, self._credentials.headers())

    # ------------------------------------------------------------------ transport
    def _public(self, path: str, params: dict[str, Any] | None = None) -> HttpResult | VenueError:
        return self.http.request("GET", path, params=params, weight=WEIGHT[path], idempotent=True)

    def _signed(self, method: str, path: str, params: dict[str, Any], *,
                idempotent: bool) -> tuple[HttpResult | VenueError, bool]:
        """Send signed; on -1021 re-sync and retry once, re-signed. Returns (answer, resynced)."""
        if self.time_sync.is_stale(self.clock.now_ms()):
            self.sync_time()  # best effort: a failure keeps the old offset; -1021 would say so
        first = self._send_signed(method, path, params, idempotent)
        if not (isinstance(first, VenueError) and first.venue_code == BinanceCode.INVALID_TIMESTAMP):
            return first, False
        if isinstance(self.sync_time(), VenueError):
            return first, False
        return self._send_signed(method, path, params, idempotent), True

    def _send_signed(self, method: str, path: str, params: dict[str, Any],
                     idempotent: bool) -> HttpResult | VenueError:
        signed = self._credentials.sign(params, now_ms=self.clock.now_ms(), offset_ms=self.time_sync.offset_ms,
                                        recv_window_ms=self.recv_window_ms)
        return self.http.request(method, path, params=signed, headers=self._credentials.headers(),
                                 weight=WEIGHT[path], idempotent=idempotent)


def _malformed(bad: parse.Malformed, result: HttpResult) -> VenueError:
    code = IMPOSSIBLE_ANSWER if isinstance(bad, parse.Impossible) else MALFORMED_RESPONSE
    return VenueError(code, f"binance {bad}", status=result.status)


def _untrue(what: str, detail: str, result: HttpResult) -> VenueError:
    return _malformed(parse.Impossible(what, detail), result)


def check_order(order: OrderAnswer, symbol: str, client_order_id: str, qty: Decimal | None) -> str | None:
    """Why this answer cannot be about the order we asked for (issue 10 §6), or None: another
    symbol, another client order id, or more executed than was ordered."""
    if order.symbol is not None and order.symbol != symbol:
        return f"answer for symbol {order.symbol}, asked {symbol}"
    if order.client_order_id != client_order_id:
        return f"answer for client order id {order.client_order_id}, asked {client_order_id}"
    if qty is not None and order.executed_qty > qty:
        return f"executedQty={order.executed_qty} exceeds the ordered {qty}"
    return None


def _parsed(value: Any, result: HttpResult) -> Any:
    return _malformed(value, result) if isinstance(value, parse.Malformed) else value
