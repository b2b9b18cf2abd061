"""Copytrader §4.5 as a table: every venue answer → (result_status, error_code), plus the follow-up
the client owes (re-sync on the first -1021, adopt by query on a duplicate client id)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hlcore.adapters.binance.errors import (
    ADOPT_BY_QUERY,
    RESYNC_AND_RETRY,
    BinanceCode,
    classify,
    classify_query_error,
    map_answer,
)
from hlcore.adapters.http import (
    API_ERROR,
    EXCHANGE_ERROR,
    MALFORMED_RESPONSE,
    NETWORK_ERROR,
    RATE_LIMITED,
    TIMEOUT,
    VenueError,
)

ROOT = Path(__file__).resolve().parents[2]


def api(code: int, msg: str, status: int = 400) -> VenueError:
    return VenueError(API_ERROR, msg, status=status, venue_code=code)


STATUS_ROWS = [
    pytest.param("NEW", ("SUBMITTED", None), id="NEW-is-SUBMITTED"),
    pytest.param("PARTIALLY_FILLED", ("PARTIALLY_FILLED", None), id="PARTIALLY_FILLED"),
    pytest.param("FILLED", ("FILLED", None), id="FILLED"),
    pytest.param("CANCELED", ("CANCELED", None), id="CANCELED"),
    pytest.param("EXPIRED", ("EXPIRED", None), id="EXPIRED"),
    pytest.param("REJECTED", ("REJECTED", None), id="status-REJECTED"),
    pytest.param("PENDING_CANCEL", ("UNKNOWN", "EXCHANGE_STATUS_UNMAPPED"), id="unmapped-PENDING_CANCEL"),
    pytest.param("EXPIRED_IN_MATCH", ("UNKNOWN", "EXCHANGE_STATUS_UNMAPPED"), id="unmapped-EXPIRED_IN_MATCH"),
    pytest.param("", ("UNKNOWN", "EXCHANGE_STATUS_UNMAPPED"), id="unmapped-empty"),
]

ERROR_ROWS = [
    # 429, 418, -1003 → UNKNOWN / RATE_LIMITED (the shared cooldown is http.py's)
    pytest.param(VenueError(RATE_LIMITED, "HTTP 429", status=429, venue_code=-1003, retry_after_ms=3000),
                 ("UNKNOWN", "RATE_LIMITED"), id="429"),
    pytest.param(VenueError(RATE_LIMITED, "HTTP 418", status=418, retry_after_ms=5000),
                 ("UNKNOWN", "RATE_LIMITED"), id="418"),
    pytest.param(api(-1003, "Too many requests queued."), ("UNKNOWN", "RATE_LIMITED"), id="-1003-as-4xx"),
    # never sent (cooldown / weight budget): known not placed (hlcore choice)
    pytest.param(VenueError(RATE_LIMITED, "binance cooldown until 1", sent=False, retry_after_ms=1000),
                 ("REJECTED", "RATE_LIMITED_LOCAL"), id="cooldown-not-sent"),
    # timeout, -1007, connection, HTTP >= 500 → UNKNOWN
    pytest.param(VenueError(TIMEOUT, "binance request timed out"), ("UNKNOWN", "TIMEOUT"), id="timeout"),
    pytest.param(api(-1007, "Timeout waiting for response from backend server.", status=408),
                 ("UNKNOWN", "TIMEOUT"), id="-1007"),
    pytest.param(VenueError(EXCHANGE_ERROR, "HTTP 503", status=503, venue_code=-1007),
                 ("UNKNOWN", "TIMEOUT"), id="-1007-as-503"),
    pytest.param(VenueError(NETWORK_ERROR, "binance ConnectionError"), ("UNKNOWN", "NETWORK_ERROR"),
                 id="connection"),
    pytest.param(VenueError(EXCHANGE_ERROR, "HTTP 502", status=502), ("UNKNOWN", "EXCHANGE_ERROR"), id="5xx"),
    pytest.param(api(-1006, "An unexpected response was received from the message bus."),
                 ("UNKNOWN", "EXCHANGE_ERROR"), id="-1006-execution-status-unknown"),
    pytest.param(VenueError(MALFORMED_RESPONSE, "binance HTTP 200: body is not JSON", status=200),
                 ("UNKNOWN", "EXCHANGE_STATUS_UNMAPPED"), id="malformed-body"),
    # -1021 after the re-signed retry
    pytest.param(api(-1021, "Timestamp for this request is outside of the recvWindow."),
                 ("REJECTED", "TIMESTAMP_REJECTED"), id="-1021-first-fallback"),
    # -2019 / -2022 / -4164
    pytest.param(api(-2019, "Margin is insufficient."), ("REJECTED", "INSUFFICIENT_BALANCE"), id="-2019"),
    pytest.param(api(-2022, "ReduceOnly Order is rejected."), ("REJECTED", "REDUCE_ONLY_REJECTED"), id="-2022"),
    pytest.param(api(-4164, "Order's notional must be no smaller than 100 (unless you choose reduce only)."),
                 ("REJECTED", "FILTER_REJECTED"), id="-4164"),
    # other API errors
    pytest.param(api(-1111, "Precision is over the maximum defined for this asset."),
                 ("REJECTED", "EXCHANGE_REJECTED"), id="other--1111"),
    pytest.param(api(-1022, "Signature for this request is not valid.", status=401),
                 ("REJECTED", "EXCHANGE_REJECTED"), id="other--1022"),
    pytest.param(VenueError(API_ERROR, "Forbidden", status=403), ("REJECTED", "EXCHANGE_REJECTED"),
                 id="other-4xx-without-code"),
    # duplicate client id: fallback when the adopting query fails
    pytest.param(api(-4116, "ClientOrderId is duplicated."), ("UNKNOWN", "QUERY_ERROR"), id="-4116-fallback"),
]


@pytest.mark.parametrize(("status", "expected"), STATUS_ROWS)
def test_venue_status(status: str, expected: tuple[str, str | None]) -> None:
    assert map_answer(status) == expected
    assert classify(status).action is None


@pytest.mark.parametrize(("error", "expected"), ERROR_ROWS)
def test_venue_error(error: VenueError, expected: tuple[str, str | None]) -> None:
    assert map_answer(error) == expected


def test_other_api_errors_carry_code_and_message() -> None:
    verdict = classify(api(-1111, "Precision is over the maximum defined for this asset."))
    assert verdict.message == "-1111:Precision is over the maximum defined for this asset."
    assert classify(VenueError(API_ERROR, "Forbidden", status=403)).message == "HTTP 403:Forbidden"


def test_first_1021_asks_for_a_resync_and_the_second_is_final() -> None:
    error = api(-1021, "Timestamp for this request is outside of the recvWindow.")
    first = classify(error)
    assert first.action == RESYNC_AND_RETRY and first.pair == ("REJECTED", "TIMESTAMP_REJECTED")
    second = classify(error, timestamp_retried=True)
    assert second.action is None and second.pair == ("REJECTED", "TIMESTAMP_REJECTED")
    assert second.message == "-1021:Timestamp for this request is outside of the recvWindow."


def test_duplicate_client_order_id_asks_to_adopt_by_query() -> None:
    verdict = classify(api(BinanceCode.DUPLICATED_CLIENT_ORDER_ID, "ClientOrderId is duplicated."))
    assert verdict.action == ADOPT_BY_QUERY


def test_no_other_answer_asks_for_a_follow_up() -> None:
    for row in ERROR_ROWS:
        error = row.values[0]
        if error.venue_code not in (-1021, -4116):
            assert classify(error).action is None, row.id


@pytest.mark.parametrize(("error", "expected"), [
    pytest.param(VenueError(TIMEOUT, "timed out"), ("UNKNOWN", "TIMEOUT"), id="timeout"),
    pytest.param(VenueError(EXCHANGE_ERROR, "HTTP 503", status=503), ("UNKNOWN", "EXCHANGE_ERROR"), id="5xx"),
    pytest.param(VenueError(RATE_LIMITED, "HTTP 429", status=429), ("UNKNOWN", "RATE_LIMITED"), id="429"),
    pytest.param(VenueError(RATE_LIMITED, "cooldown", sent=False), ("UNKNOWN", "RATE_LIMITED"), id="cooldown"),
    pytest.param(api(-2013, "Order does not exist."), ("NOT_FOUND", None), id="-2013"),
    pytest.param(api(-1022, "Signature for this request is not valid."), ("UNKNOWN", "QUERY_ERROR"), id="-1022"),
    pytest.param(api(-1021, "Timestamp outside recvWindow."), ("UNKNOWN", "QUERY_ERROR"), id="-1021"),
])
def test_a_failed_query_never_settles_an_order(error: VenueError, expected: tuple[str, str | None]) -> None:
    assert classify_query_error(error).pair == expected


def test_every_code_is_one_the_policy_knows() -> None:
    """The adapter's answers are the policy's inputs: UNKNOWN codes must be `unknown_outcomes`,
    REJECTED codes `rejection_codes` (rules/execution.yaml), all of them reason codes."""
    execution = yaml.safe_load((ROOT / "rules" / "execution.yaml").read_text(encoding="utf-8"))
    reasons = yaml.safe_load((ROOT / "rules" / "reasons.yaml").read_text(encoding="utf-8"))["reason_codes"]
    unknown, rejection = execution["lists"]["unknown_outcomes"], execution["lists"]["rejection_codes"]
    verdicts = [classify(row.values[0]) for row in STATUS_ROWS + ERROR_ROWS]
    verdicts += [classify(row.values[0], timestamp_retried=True) for row in ERROR_ROWS]
    for verdict in verdicts:
        if verdict.error_code is None:
            continue
        assert verdict.error_code in reasons, verdict
        assert verdict.error_code in (unknown if verdict.status == "UNKNOWN" else rejection), verdict
