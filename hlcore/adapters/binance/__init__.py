"""Binance USDⓈ-M Futures adapter (copytrader §4.3–§4.7): `errors` (code enum and the §4.5 answer
map), `sign` (HMAC signing, server-time offset), `client_order_id` (deterministic ids), `parse`
(pure JSON → facts) and `client` (signed requests over `hlcore.adapters.http.VenueHttp`)."""

from hlcore.adapters.binance.client import (
    BinanceClient,
    OrderNotFound,
    OrderOutcome,
    PositionSnapshot,
    query_outcome,
)
from hlcore.adapters.binance.client_order_id import CLIENT_ORDER_ID_PATTERN, client_order_id, correlation_id
from hlcore.adapters.binance.errors import (
    ADOPT_BY_QUERY,
    RESYNC_AND_RETRY,
    BinanceCode,
    Verdict,
    classify,
    classify_error,
    classify_query_error,
    classify_status,
    map_answer,
)
from hlcore.adapters.binance.parse import Malformed, MarkPrice, OrderAnswer, PositionRisk, SymbolFilters
from hlcore.adapters.binance.sign import Credentials, TimeSample, TimeSync, offset_check, sign, signed_params

__all__ = [
    "ADOPT_BY_QUERY",
    "CLIENT_ORDER_ID_PATTERN",
    "RESYNC_AND_RETRY",
    "BinanceClient",
    "BinanceCode",
    "Credentials",
    "Malformed",
    "MarkPrice",
    "OrderAnswer",
    "OrderNotFound",
    "OrderOutcome",
    "PositionRisk",
    "PositionSnapshot",
    "SymbolFilters",
    "TimeSample",
    "TimeSync",
    "Verdict",
    "classify",
    "classify_error",
    "classify_query_error",
    "classify_status",
    "client_order_id",
    "correlation_id",
    "map_answer",
    "offset_check",
    "query_outcome",
    "sign",
    "signed_params",
]
