"""The HTTP layer: typed failures, retries on the injected clock, rate limits and cooldowns."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from hlcore.adapters.http import (
    EXCHANGE_ERROR,
    MALFORMED_RESPONSE,
    NETWORK_ERROR,
    RATE_LIMITED,
    TIMEOUT,
    HttpResult,
    RetryPolicy,
    VenueError,
    VenueHttp,
    WeightLimiter,
)
from hlcore.engine.clock import ManualClock
from tests.support.scripted import Scripted

T0 = 1_769_248_800_000




def venue(script: list[Any], *, limiter_budget: int | None = None,
          attempts: int = 3) -> tuple[VenueHttp, Scripted, ManualClock, list[float]]:
    clock = ManualClock(T0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(int(seconds * 1000))

    session = requests.Session()
    transport = Scripted(script)
    session.mount("https://", transport)
    limiter = WeightLimiter(clock, limiter_budget) if limiter_budget else None
    http = VenueHttp("test", "https://venue.test", clock=clock, sleep=sleep, rng=random.Random(1),
                     timeout_ms=1000, retry=RetryPolicy(max_attempts=attempts, base_delay_ms=250, max_delay_ms=5000,
                                                        jitter_ms=0),
                     limiter=limiter, session=session)
    return http, transport, clock, slept


def test_ok_json() -> None:
    http, transport, _, _ = venue([(200, {"a": 1}, {})])
    result = http.request("POST", "/info", json_body={"type": "meta"})
    assert isinstance(result, HttpResult) and result.body == {"a": 1}
    assert json.loads(transport.sent[0].body) == {"type": "meta"}
    assert http.last_success_ms == T0


@pytest.mark.parametrize(("failure", "code"), [
    (requests.Timeout(), TIMEOUT),
    (requests.ConnectionError(), NETWORK_ERROR),
    ((502, "bad gateway", {}), EXCHANGE_ERROR),
    ((200, "<html>oops</html>", {}), MALFORMED_RESPONSE),
], ids=["timeout", "connection-reset", "5xx", "malformed-json"])
def test_failures_are_values_and_reads_are_retried_with_backoff(failure: Any, code: str) -> None:
    http, transport, _, slept = venue([failure, failure, failure])
    result = http.request("GET", "/x")
    assert isinstance(result, VenueError) and result.code == code and result.retryable
    assert len(transport.sent) == 3
    assert slept == [0.25, 0.5]  # min(250·2^(n−1), 5000) ms, jitter 0


def test_a_retry_can_succeed() -> None:
    http, transport, _, _ = venue([requests.Timeout(), (200, [1, 2], {})])
    result = http.request("GET", "/x")
    assert isinstance(result, HttpResult) and result.body == [1, 2]
    assert len(transport.sent) == 2


def test_non_idempotent_requests_are_never_retried() -> None:
    http, transport, _, _ = venue([requests.Timeout(), (200, {}, {})])
    result = http.request("POST", "/fapi/v1/order", idempotent=False)
    assert isinstance(result, VenueError) and result.code == TIMEOUT
    assert len(transport.sent) == 1


def test_429_sets_a_shared_cooldown_from_retry_after() -> None:
    http, transport, clock, _ = venue([(429, {"code": -1003, "msg": "Too many requests"}, {"Retry-After": "3"}),
                                       (200, {"ok": True}, {})], attempts=1)
    first = http.request("POST", "/fapi/v1/order", idempotent=False)
    assert isinstance(first, VenueError) and first.code == RATE_LIMITED and first.retry_after_ms == 3000
    assert first.venue_code == -1003
    clock.advance(2_999)
    blocked = http.request("GET", "/fapi/v1/order")
    assert isinstance(blocked, VenueError) and blocked.code == RATE_LIMITED and not blocked.sent
    assert len(transport.sent) == 1  # nothing of any kind left during the cooldown
    clock.advance(1)
    assert isinstance(http.request("GET", "/fapi/v1/order"), HttpResult)


def test_418_without_retry_after_uses_the_default_cooldown() -> None:
    http, _, clock, _ = venue([(418, {"code": -1003, "msg": "banned"}, {})], attempts=1)
    http.request("GET", "/x")
    assert http.cooldown_until_ms == clock.now_ms() + 5000


def test_api_errors_carry_the_venue_code_and_are_not_retried() -> None:
    http, transport, _, _ = venue([(400, {"code": -2019, "msg": "Margin is insufficient."}, {})])
    result = http.request("POST", "/fapi/v1/order", idempotent=False)
    assert isinstance(result, VenueError) and result.venue_code == -2019 and not result.retryable
    assert result.message == "Margin is insufficient."
    assert len(transport.sent) == 1


def test_used_weight_header_is_recorded() -> None:
    http, _, _, _ = venue([(200, {}, {"X-MBX-USED-WEIGHT-1M": "37"})])
    http.request("GET", "/fapi/v2/positionRisk")
    assert http.used_weight_header == 37


def test_weight_limiter_waits_for_the_window_on_the_injected_clock() -> None:
    http, _, clock, slept = venue([(200, {}, {})] * 3, limiter_budget=40)
    for _ in range(2):
        assert isinstance(http.request("POST", "/info", weight=20), HttpResult)
    assert slept == []
    clock.advance(10_000)
    assert isinstance(http.request("POST", "/info", weight=20), HttpResult)
    assert slept == [50.0]  # the first 20 expire 60 s after T0: 50 s after the third call asked
    assert clock.now_ms() == T0 + 60_000


def test_limiter_accounting() -> None:
    clock = ManualClock(T0)
    limiter = WeightLimiter(clock, 1200)
    for _ in range(60):
        limiter.spend(20)
    assert limiter.used == 1200 and limiter.wait_ms(2) == 60_000
    clock.advance(60_000)
    assert limiter.used == 0 and limiter.wait_ms(2) == 0


def test_errors_never_echo_request_headers_or_params() -> None:
    http, _, _, _ = venue([(400, {"code": -1022, "msg": "Signature for this request is not valid."}, {})])
    result = http.request("POST", "/fapi/v1/order", params={"signature": "deadbeef" * 8},
                          headers={"X-MBX-APIKEY": "k" * 64}, idempotent=False)
    assert isinstance(result, VenueError)
    assert "deadbeef" not in repr(result) and "kkkk" not in repr(result)


def test_local_request_limiter_delays_and_refuses_past_the_wait_budget() -> None:
    clock = ManualClock(T0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(int(seconds * 1000))

    session = requests.Session()
    session.mount("https://", Scripted([(200, {}, {})] * 3))
    http = VenueHttp("binance", "https://venue.test", clock=clock, sleep=sleep, rng=random.Random(1),
                     timeout_ms=1000, retry=RetryPolicy(max_attempts=1), session=session,
                     request_limiter=WeightLimiter(clock, 2, window_ms=1000), max_wait_ms=500)
    assert isinstance(http.request("GET", "/a"), HttpResult)
    assert isinstance(http.request("GET", "/b"), HttpResult)
    refused = http.request("POST", "/fapi/v1/order", idempotent=False)  # 1000 ms away > 500 ms budget
    assert isinstance(refused, VenueError) and refused.code == RATE_LIMITED and not refused.sent
    clock.advance(600)
    assert isinstance(http.request("GET", "/c"), HttpResult)  # 400 ms wait fits the budget
    assert slept == [0.4]


def test_used_weight_header_at_the_limit_pauses_until_the_next_minute() -> None:
    clock = ManualClock(T0 + 10_000)
    session = requests.Session()
    transport = Scripted([(200, {}, {"X-MBX-USED-WEIGHT-1M": "2400"}), (200, {}, {})])
    session.mount("https://", transport)
    http = VenueHttp("binance", "https://venue.test", clock=clock, sleep=lambda s: None, rng=random.Random(1),
                     timeout_ms=1000, retry=RetryPolicy(max_attempts=1), session=session, used_weight_limit=2400)
    assert isinstance(http.request("GET", "/fapi/v2/positionRisk"), HttpResult)
    blocked = http.request("GET", "/fapi/v2/positionRisk")
    assert isinstance(blocked, VenueError) and blocked.code == RATE_LIMITED and not blocked.sent
    assert len(transport.sent) == 1 and http.cooldown_until_ms == T0 + 60_000
    clock.set(T0 + 60_000)
    assert isinstance(http.request("GET", "/fapi/v2/positionRisk"), HttpResult)


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_VALUE = st.one_of(_TEXT, st.integers(-10**12, 10**12), st.decimals(allow_nan=False, allow_infinity=False),
                   st.floats(allow_nan=False, allow_infinity=False))


@hyp_settings(max_examples=200, deadline=None)
@given(method=st.sampled_from(["GET", "POST", "DELETE", "get"]),
       base=st.sampled_from(["https://fapi.binance.com", "http://127.0.0.1:8080/", "HTTPS://Api.Hyperliquid.xyz",
                             "https://h.example/a b", "https://h.example/p?x=1", "https://u:p@h.example"]),
       path=st.sampled_from(["", "/fapi/v1/order", "/info", "/caf\u00e9"]),
       params=st.none() | st.dictionaries(_TEXT.filter(bool), _VALUE | st.none() | st.booleans(), max_size=4),
       body=st.none() | st.dictionaries(_TEXT, st.integers() | _TEXT, max_size=3),
       headers=st.dictionaries(st.sampled_from(["X-MBX-APIKEY", "Content-Type", "content-length", "Accept"]),
                               st.text("abcXYZ/ -09", min_size=1, max_size=8).map(str.strip).filter(bool),
                               max_size=3))
def test_the_fast_prepare_builds_what_requests_builds(method: str, base: str, path: str, params: Any, body: Any,
                                                      headers: dict[str, str]) -> None:
    """`VenueHttp.prepare` skips `requests`' per-call work for plain requests (issue 12); what goes on
    the wire must not change: method, URL (the signed query string), headers and body."""
    http = venue([])[0]
    merged = {**requests.Session().headers, **headers}
    url = base + path
    ours = http.prepare(method, url, params, body, merged)
    theirs = requests.Request(method, url, params=params, json=body, headers=merged).prepare()
    assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
    assert list(ours.headers.items()) == list(theirs.headers.items())
