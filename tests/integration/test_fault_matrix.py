"""Issue 10 campaign: every venue endpoint × every way a venue or the path to it misbehaves gives a
typed outcome (a `VenueError` code, an UNKNOWN order with a policy error code, or a recorded
skip) and the safety transition the policy prescribes, never a traceback. Runs the live-mode
copy-trader on the replay harness's venues (tests/support/fakes.py); faults persist for the
whole scenario, retries included."""

from __future__ import annotations

from typing import Any

import pytest

from hlcore.adapters.http import VenueError
from hlcore.storage.schema import ingest_skips, order_results, processed_txs
from tests.integration.test_copytrade_live import T0, TX1, Rig
from tests.support.fakes import fault, fill, queue

FAULTS = ["429", "418", "timeout", "5xx", "html", "malformed", "empty", "reset", "schema"]
TRANSPORT_CODES = {"RATE_LIMITED", "TIMEOUT", "NETWORK_ERROR", "EXCHANGE_ERROR", "MALFORMED_RESPONSE"}
# what "schema drift" drops from each endpoint's answer
DRIFT = {"userFillsByTime": ("px",), "GET /fapi/v1/time": ("serverTime",),
         "GET /fapi/v2/positionRisk": ("positionAmt",), "GET /fapi/v1/exchangeInfo": ("symbols",),
         "GET /fapi/v1/premiumIndex": ("markPrice",),
         "POST /fapi/v1/order": ("status",), "GET /fapi/v1/order": ("status",)}
# the order answer's error code per fault (copytrader §4.5; a query never settles: UNKNOWN)
ORDER_CODE = {"429": "RATE_LIMITED", "418": "RATE_LIMITED", "timeout": "TIMEOUT", "5xx": "EXCHANGE_ERROR",
              "html": "EXCHANGE_STATUS_UNMAPPED", "malformed": "EXCHANGE_STATUS_UNMAPPED",
              "empty": "EXCHANGE_STATUS_UNMAPPED", "reset": "NETWORK_ERROR", "schema": "EXCHANGE_STATUS_UNMAPPED"}


def _arm(rig: Rig, endpoint: str, kind: str) -> None:
    where = {"op": endpoint} if endpoint == "userFillsByTime" else {"match": endpoint}
    extra = {"drop": DRIFT[endpoint]} if kind == "schema" else {}
    rig.transport.faults.append(fault(kind, times=None, **where, **extra))


def _booted(tmp_path: Any, config: dict[str, Any] | None = None, baseline: dict[str, str] | None = None) -> Rig:
    rig = Rig(tmp_path, config, baseline)
    rig.boot()
    assert rig.mode == ("ARMED_LIVE", "OK")
    rig.clock.set(T0 + 2_000)
    rig.world.fills = [fill(1, "2.0", "0.0", "B", T0 + 1_000, TX1)]
    return rig


@pytest.mark.parametrize("kind", FAULTS)
def test_hyperliquid_fills(tmp_path: Any, kind: str) -> None:
    """No fetch result: no event, no order, the cursor and last success stay; drift: a recorded skip."""
    rig = _booted(tmp_path)
    before = rig.jobs.state.last_ingest_success_ms()  # type: ignore[union-attr]
    _arm(rig, "userFillsByTime", kind)
    fetched = rig.jobs.venues.hyperliquid.user_fills_by_time(rig.jobs.venues.target_wallet, T0, T0 + 2_000)  # type: ignore[union-attr]
    rig.cycle()
    assert rig.rows(processed_txs) == [] and rig.world.account.posts == []
    if kind == "schema":  # readable, but every fill lacks px: skipped with a reason, stored once
        assert not isinstance(fetched, VenueError) and fetched.fills == ()
        assert [r["reason"] for r in rig.rows(ingest_skips)] == ["ingest_fill_invalid"]
    else:
        assert isinstance(fetched, VenueError) and fetched.code in TRANSPORT_CODES
        assert rig.jobs.state.last_ingest_success_ms() == before  # type: ignore[union-attr]
    assert rig.mode == ("ARMED_LIVE", "OK")  # a transient fetch failure is the gap rule's business


@pytest.mark.parametrize("kind", FAULTS)
def test_binance_time(tmp_path: Any, kind: str) -> None:
    """A failed re-sync keeps the old offset (§4.3); the order still goes out."""
    rig = _booted(tmp_path)
    _arm(rig, "GET /fapi/v1/time", kind)
    answer = rig.jobs.venues.binance.sync_time()  # type: ignore[union-attr]
    assert isinstance(answer, VenueError) and answer.code in TRANSPORT_CODES
    queue_cleared = [f for f in rig.transport.faults if f.match != "GET /fapi/v1/time"]
    if kind in ("429", "418"):  # the shared cooldown: nothing is sent to Binance until it ends
        rig.clock.advance(120_000)
    rig.transport.faults[:] = queue_cleared
    rig.cycle()
    assert len(rig.world.account.posts) == 1
    assert rig.mode == ("ARMED_LIVE", "OK")


@pytest.mark.parametrize("kind", FAULTS)
def test_binance_position_risk(tmp_path: Any, kind: str) -> None:
    """Reconcile cannot see the exchange: SNAPSHOT_STALE, reduce-only (§4.7)."""
    rig = _booted(tmp_path, baseline={"BTCUSDT": "1.0"})  # a position, so drift has a field to drop
    _arm(rig, "GET /fapi/v2/positionRisk", kind)
    assert isinstance(rig.jobs.venues.binance.position_risk(), VenueError)  # type: ignore[union-attr]
    rig.clock.advance(60_000)
    rig.jobs.reconcile("loop")  # type: ignore[union-attr]
    assert rig.mode == ("ARMED_SAFE", "SNAPSHOT_STALE")


REJECT = {"decision": {"price_failure_policy": "reject", "filters_failure_policy": "reject"}}
MISSING = {"GET /fapi/v1/exchangeInfo": "filters_unavailable", "GET /fapi/v1/premiumIndex": "missing_reference_price"}


@pytest.mark.parametrize("endpoint", ["GET /fapi/v1/exchangeInfo", "GET /fapi/v1/premiumIndex"])
@pytest.mark.parametrize("kind", FAULTS)
def test_binance_market_data(tmp_path: Any, endpoint: str, kind: str) -> None:
    """With `reject` failure policies: no filters or no mark price rejects the intent before sending."""
    rig = _booted(tmp_path, REJECT)
    _arm(rig, endpoint, kind)
    rig.cycle()
    assert rig.world.account.posts == []
    (event,) = rig.rows(processed_txs)
    # 429/418 start the shared cooldown (§4.5): the mark price is then not even asked for (checked first)
    want = "missing_reference_price" if kind in ("429", "418") else MISSING[endpoint]
    assert (event["state"], event["decision_reason"]) == ("DONE", want)
    assert rig.mode == ("ARMED_LIVE", "OK")


@pytest.mark.parametrize("endpoint", ["GET /fapi/v1/exchangeInfo", "GET /fapi/v1/premiumIndex"])
def test_binance_market_data_default_policy_sends_without(tmp_path: Any, endpoint: str) -> None:
    """The default policies (`allow_without_price`, `allow_without_filters`, copytrader §7) send anyway."""
    rig = _booted(tmp_path)
    _arm(rig, endpoint, "5xx")
    rig.cycle()
    assert len(rig.world.account.posts) == 1


@pytest.mark.parametrize("kind", FAULTS)
def test_binance_order_post(tmp_path: Any, kind: str) -> None:
    """Any failed POST is UNKNOWN with its code (or REJECTED only when known not sent): never re-sent."""
    rig = _booted(tmp_path)
    _arm(rig, "POST /fapi/v1/order", kind)
    rig.cycle()
    (result,) = rig.rows(order_results)
    assert (result["status"], result["error_code"]) == ("UNKNOWN", ORDER_CODE[kind])
    assert result["filled_qty"] is None
    assert len(rig.world.account.posts) <= 1  # at most the one POST (schema drift: the venue took it)
    assert rig.mode == ("ARMED_LIVE", "OK")


@pytest.mark.parametrize("kind", FAULTS)
def test_binance_order_query(tmp_path: Any, kind: str) -> None:
    """The POST's answer is lost; every query fails: UNKNOWN until the budget parks it (S16: ARMED_SAFE)."""
    rig = _booted(tmp_path)
    queue(rig.transport, ["timeout"], match="POST /fapi/v1/order")
    _arm(rig, "GET /fapi/v1/order", kind)
    rig.cycle()
    for _ in range(40):
        rig.clock.advance(2_000)
        rig.jobs.execute()  # type: ignore[union-attr]
    (result,) = rig.rows(order_results)
    assert (result["status"], result["error_code"]) == ("UNKNOWN", "RETRY_BUDGET_EXCEEDED")  # parked
    assert rig.world.account.posts == []  # never re-sent
    assert rig.mode == ("ARMED_SAFE", "EXECUTION_RETRY_BUDGET_EXCEEDED")
