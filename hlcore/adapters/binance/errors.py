"""Binance USD-M error numbers and the venue-answer map of copytrader §4.5.

This module owns one pure function: what a venue answer (an order status string, or a
`VenueError` from `hlcore.adapters.http`) means for `order_results` as `(result_status,
error_code)`, plus the follow-up the adapter owes before that answer is final (re-sync time and
retry once on the first -1021; query and adopt on a duplicate client order id). The order of the
checks below is the adapter's contract. What those answers do to the safety mode is decided by
the policy (rules/execution.yaml), not here.

Venue doc: https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from hlcore.adapters.http import (
    API_ERROR,
    EXCHANGE_ERROR,
    IMPOSSIBLE_ANSWER,
    MALFORMED_RESPONSE,
    NETWORK_ERROR,
    RATE_LIMITED,
    TIMEOUT,
    VenueError,
)


class BinanceCode(IntEnum):
    """Binance error numbers the adapter names (the `code` of `{"code": -2019, "msg": ...}`)."""

    DISCONNECTED = -1001
    TOO_MANY_REQUESTS = -1003
    UNEXPECTED_RESPONSE = -1006  # "Execution status unknown."
    BACKEND_TIMEOUT = -1007  # "Send status unknown; execution status unknown."
    INVALID_TIMESTAMP = -1021
    INVALID_SIGNATURE = -1022
    BAD_PRECISION = -1111
    NO_SUCH_ORDER = -2013
    MARGIN_INSUFFICIENT = -2019
    REDUCE_ONLY_REJECT = -2022
    CLIENT_ORDER_ID_INVALID = -4015
    DUPLICATED_CLIENT_ORDER_ID = -4116
    MIN_NOTIONAL = -4164


# ---------------------------------------------------------------- result statuses (order_results.status)
SUBMITTED = "SUBMITTED"
PARTIALLY_FILLED = "PARTIALLY_FILLED"
FILLED = "FILLED"
CANCELED = "CANCELED"
EXPIRED = "EXPIRED"
REJECTED = "REJECTED"
UNKNOWN = "UNKNOWN"
NOT_FOUND = "NOT_FOUND"  # a query answered -2013; never the answer to a POST
TERMINAL = frozenset({FILLED, CANCELED, EXPIRED, REJECTED})

# ---------------------------------------------------------------- error codes (order_results.error_code)
EXCHANGE_STATUS_UNMAPPED = "EXCHANGE_STATUS_UNMAPPED"
RATE_LIMITED_LOCAL = "RATE_LIMITED_LOCAL"
INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
REDUCE_ONLY_REJECTED = "REDUCE_ONLY_REJECTED"
FILTER_REJECTED = "FILTER_REJECTED"
TIMESTAMP_REJECTED = "TIMESTAMP_REJECTED"
EXCHANGE_REJECTED = "EXCHANGE_REJECTED"
QUERY_ERROR = "QUERY_ERROR"
# RATE_LIMITED, TIMEOUT, NETWORK_ERROR, EXCHANGE_ERROR are the transport classes of http.py.

# ---------------------------------------------------------------- follow-ups the client owes
RESYNC_AND_RETRY = "resync_time_and_retry"
ADOPT_BY_QUERY = "adopt_by_query"

# Venue status → result status; anything else is UNKNOWN / EXCHANGE_STATUS_UNMAPPED.
STATUS_MAP: dict[str, str] = {
    "NEW": SUBMITTED,
    "PARTIALLY_FILLED": PARTIALLY_FILLED,
    "FILLED": FILLED,
    "CANCELED": CANCELED,
    "EXPIRED": EXPIRED,
    "REJECTED": REJECTED,
}

# API errors that reject the order outright, each with its own error code.
REJECTION_CODES: dict[int, str] = {
    BinanceCode.MARGIN_INSUFFICIENT: INSUFFICIENT_BALANCE,
    BinanceCode.REDUCE_ONLY_REJECT: REDUCE_ONLY_REJECTED,
    BinanceCode.MIN_NOTIONAL: FILTER_REJECTED,
}

# API errors whose documented meaning is "execution status unknown": never read as a rejection.
UNKNOWN_OUTCOME_CODES: dict[int, str] = {
    BinanceCode.BACKEND_TIMEOUT: TIMEOUT,
    BinanceCode.UNEXPECTED_RESPONSE: EXCHANGE_ERROR,
}


@dataclass(frozen=True)
class Verdict:
    """What one venue answer means.

    Attributes:
        status: result status (SUBMITTED, FILLED, ..., UNKNOWN, or NOT_FOUND for a -2013 query).
        error_code: §4.5 error code, or None for a plain status answer.
        message: human text for `order_results.error_message` (`"{code}:{msg}"` for API errors).
        action: a follow-up the client owes before the answer is final (`RESYNC_AND_RETRY`,
            `ADOPT_BY_QUERY`), or None. When the follow-up cannot be done, `status`/`error_code`
            are the answer to record.
    """

    status: str
    error_code: str | None
    message: str | None = None
    action: str | None = None

    @property
    def pair(self) -> tuple[str, str | None]:
        return self.status, self.error_code


def classify_status(status: str) -> Verdict:
    """An order status string from the venue (`"NEW"`, `"FILLED"`, `"PENDING_CANCEL"`...)."""
    mapped = STATUS_MAP.get(status)
    if mapped is None:
        return Verdict(UNKNOWN, EXCHANGE_STATUS_UNMAPPED, f"status {status!r}")
    return Verdict(mapped, None)


def classify_error(error: VenueError, *, timestamp_retried: bool = False) -> Verdict:
    """A failed request. `timestamp_retried` says the request already is the re-signed retry
    after a -1021, so a second -1021 is final."""
    code = error.venue_code
    text = f"{code}:{error.message}" if code is not None else error.message
    # Never sent (shared cooldown, weight budget): known not placed.
    if error.code == RATE_LIMITED and not error.sent:
        return Verdict(REJECTED, RATE_LIMITED_LOCAL, error.message)
    if error.code == RATE_LIMITED or code == BinanceCode.TOO_MANY_REQUESTS:
        return Verdict(UNKNOWN, RATE_LIMITED, text)
    if code in UNKNOWN_OUTCOME_CODES:
        return Verdict(UNKNOWN, UNKNOWN_OUTCOME_CODES[code], text)
    if error.code in (TIMEOUT, NETWORK_ERROR, EXCHANGE_ERROR):
        return Verdict(UNKNOWN, error.code, text)
    if error.code == IMPOSSIBLE_ANSWER:
        # Readable but untrue: nothing it says is stored; the order may exist (issue 10 §6).
        return Verdict(UNKNOWN, IMPOSSIBLE_ANSWER, error.message)
    if error.code == MALFORMED_RESPONSE:
        # The venue answered but we cannot read the answer: the order may exist.
        return Verdict(UNKNOWN, EXCHANGE_STATUS_UNMAPPED, error.message)
    if code == BinanceCode.INVALID_TIMESTAMP:
        if timestamp_retried:
            return Verdict(REJECTED, TIMESTAMP_REJECTED, text)
        return Verdict(REJECTED, TIMESTAMP_REJECTED, text, action=RESYNC_AND_RETRY)
    if code == BinanceCode.DUPLICATED_CLIENT_ORDER_ID:
        return Verdict(UNKNOWN, QUERY_ERROR, text, action=ADOPT_BY_QUERY)
    if code == BinanceCode.NO_SUCH_ORDER:
        return Verdict(NOT_FOUND, None, text)
    if code in REJECTION_CODES:
        return Verdict(REJECTED, REJECTION_CODES[code], text)
    if error.code == API_ERROR:
        shown = code if code is not None else f"HTTP {error.status}"
        return Verdict(REJECTED, EXCHANGE_REJECTED, f"{shown}:{error.message}")
    # A transport class this map does not know: never guess a rejection.
    return Verdict(UNKNOWN, EXCHANGE_STATUS_UNMAPPED, text)


def classify_query_error(error: VenueError) -> Verdict:
    """A failed GET by `origClientOrderId`. A failed query never settles an order: whatever the
    error, the order stays UNKNOWN (-2013 is NOT_FOUND), so the retry budget keeps querying."""
    verdict = classify_error(error, timestamp_retried=True)
    if verdict.status in (UNKNOWN, NOT_FOUND):
        return Verdict(verdict.status, verdict.error_code, verdict.message)
    if error.code == RATE_LIMITED:  # not sent: the shared cooldown is still running
        return Verdict(UNKNOWN, RATE_LIMITED, verdict.message)
    return Verdict(UNKNOWN, QUERY_ERROR, verdict.message)


def classify(answer: str | VenueError, *, timestamp_retried: bool = False) -> Verdict:
    if isinstance(answer, VenueError):
        return classify_error(answer, timestamp_retried=timestamp_retried)
    return classify_status(answer)


def map_answer(answer: str | VenueError, *, timestamp_retried: bool = False) -> tuple[str, str | None]:
    """§4.5 as a pure function: venue answer → `(result_status, error_code)`."""
    return classify(answer, timestamp_retried=timestamp_retried).pair
