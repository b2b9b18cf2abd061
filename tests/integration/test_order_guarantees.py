"""Issue 10 §5-§6 against the replay harness's venues: every order settles (NOT_FOUND after the
query window is "never placed", by policy, so `ops recover-orders` finishes) and answers that
cannot be true are typed faults that move the safety mode, never stored as facts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from hlcore.ops.baseline import recover_orders
from hlcore.storage.repos import AuditLog
from hlcore.storage.schema import order_results, processed_txs
from tests.integration.test_copytrade_live import T0, TX1, Rig
from tests.support.fakes import fill, queue


def _parked_order(rig: Rig) -> None:
    """A POST whose request never reached the book (timeout), then NOT_FOUND on every query until parked."""
    rig.boot()
    rig.clock.set(T0 + 2_000)
    rig.world.fills = [fill(1, "2.0", "0.0", "B", T0 + 1_000, TX1)]
    queue(rig.transport, ["timeout"], match="POST /fapi/v1/order")
    rig.cycle()
    for _ in range(3):
        rig.clock.advance(2_000)
        rig.jobs.execute()  # type: ignore[union-attr]
    (result,) = rig.rows(order_results)
    assert (result["status"], result["error_code"]) == ("UNKNOWN", "RETRY_BUDGET_EXCEEDED")  # parked


def test_not_found_after_the_window_settles_a_parked_order_and_recover_orders_finishes(tmp_path: Any) -> None:
    rig = Rig(tmp_path)
    _parked_order(rig)
    assert rig.jobs is not None
    early = recover_orders(rig.ctx, rig.jobs.venues, operator="op", reason_message="early")
    assert early.refused == "orders_still_unresolved"  # 8 s after the send a POST may still land
    rig.clock.advance(60_000)
    done = recover_orders(rig.ctx, rig.jobs.venues, operator="op", reason_message="sweep")
    assert done.refused is None
    (result,) = rig.rows(order_results)
    assert (result["status"], result["error_code"], result["filled_qty"]) == ("REJECTED", "ORDER_NEVER_PLACED", None)
    (event,) = rig.rows(processed_txs)
    assert event["state"] == "DONE"
    audited = [r for r in AuditLog(rig.ctx.db).rows(category="execution")
               if r.get("reason_code") == "ORDER_NEVER_PLACED"]
    assert len(audited) == 1  # the settling transition is audited
    assert rig.world.account.posts == []  # never re-sent


def test_not_found_before_the_window_keeps_querying(tmp_path: Any) -> None:
    rig = Rig(tmp_path, {"execution": {"not_found_settle_sec": 3600, "binance": {"retry": {"max_attempts": 1}}}})
    _parked_order(rig)
    assert rig.jobs is not None
    rig.clock.advance(60_000)
    assert recover_orders(rig.ctx, rig.jobs.venues, operator="op", reason_message=None).refused \
        == "orders_still_unresolved"


def _order_body_with(rig: Rig, **changes: str) -> None:
    original = rig.world._order_body

    def patched(order: Any) -> dict[str, Any]:
        return {**original(order), **changes}

    rig.world._order_body = patched  # type: ignore[method-assign]


@pytest.mark.parametrize("changes", [
    {"executedQty": "-0.002"}, {"executedQty": "1000000000"}, {"symbol": "ETHUSDT"}, {"avgPrice": "-1"},
], ids=["negative fill", "oversized fill", "other symbol", "negative price"])
def test_an_impossible_order_answer_is_a_fault_not_a_fill(tmp_path: Any, changes: dict[str, str]) -> None:
    rig = Rig(tmp_path)
    rig.boot()
    assert rig.mode == ("ARMED_LIVE", "OK")
    _order_body_with(rig, **changes)
    rig.clock.set(T0 + 2_000)
    rig.world.fills = [fill(1, "2.0", "0.0", "B", T0 + 1_000, TX1)]
    rig.cycle()
    (result,) = rig.rows(order_results)
    assert (result["status"], result["error_code"], result["filled_qty"]) == ("UNKNOWN", "IMPOSSIBLE_ANSWER", None)
    assert rig.mode == ("HALT", "VENUE_ANSWER_IMPOSSIBLE")
    rig.clock.advance(2_000)
    rig.cycle()
    assert len(rig.world.account.posts) == 1  # queried, never re-sent


@pytest.mark.parametrize("mark", ["0", "-5"])
def test_a_non_positive_mark_price_is_a_fault_and_sizes_nothing(tmp_path: Any, mark: str) -> None:
    rig = Rig(tmp_path)
    rig.boot()
    rig.world.account.marks["BTCUSDT"] = Decimal(mark)
    rig.clock.set(T0 + 2_000)
    rig.world.fills = [fill(1, "2.0", "0.0", "B", T0 + 1_000, TX1)]
    rig.cycle()
    assert rig.mode == ("HALT", "VENUE_ANSWER_IMPOSSIBLE")
    assert rig.world.account.posts == []


def test_an_echoed_signed_request_line_never_reaches_order_results(tmp_path: Any) -> None:
    """Issue 10 §8: a gateway echoing the signed request (signature, API key) in its error body."""
    rig = Rig(tmp_path)
    rig.boot()
    signature = "9f" * 32
    echo = (f"Bad request: POST /fapi/v1/order?symbol=BTCUSDT&quantity=0.002&timestamp=1769248802000"
            f"&signature={signature} X-MBX-APIKEY: {'K' * 64} key={'K' * 64} secret {'S' * 64} {signature}")
    queue(rig.transport, ["-2019"], match="POST /fapi/v1/order", msg=echo)
    rig.clock.set(T0 + 2_000)
    rig.world.fills = [fill(1, "2.0", "0.0", "B", T0 + 1_000, TX1)]
    rig.cycle()
    (result,) = rig.rows(order_results)
    assert result["error_code"] == "INSUFFICIENT_BALANCE"
    stored = result["error_message"]
    assert "POST /fapi/v1/order" in stored  # the useful part stays
    for secret in (signature, "K" * 64, "S" * 64):
        assert secret not in stored
    assert stored.count("<redacted>") >= 4
