"""Client order ids (copytrader §4.5): stable, 30 chars, Binance-valid, distinct per FLIP leg."""

from __future__ import annotations

import hashlib

import pytest

from hlcore.adapters.binance.client_order_id import CLIENT_ORDER_ID_PATTERN, client_order_id, correlation_id

TX_HASH = "0x" + "a1b2c3d4" * 8  # 66 chars, as Hyperliquid reports it


def test_correlation_id_shape() -> None:
    assert len(TX_HASH) == 66
    assert correlation_id(TX_HASH, 7, "BTCUSDT") == f"hl-{TX_HASH}-7-BTCUSDT"
    assert correlation_id(TX_HASH, 7, "BTCUSDT", "close") == f"hl-{TX_HASH}-7-BTCUSDT-close"
    assert correlation_id(TX_HASH, 7, "BTCUSDT", "open") == f"hl-{TX_HASH}-7-BTCUSDT-open"
    with pytest.raises(ValueError):
        correlation_id(TX_HASH, 7, "BTCUSDT", "both")


def test_client_order_id_is_stable_short_and_valid() -> None:
    cid = correlation_id(TX_HASH, 7, "BTCUSDT")
    value = client_order_id(cid)
    assert value == client_order_id(cid)  # no randomness
    assert value == "hl-" + hashlib.sha256(cid.encode()).hexdigest()[:24] + "-00"
    assert len(value) == 30 and CLIENT_ORDER_ID_PATTERN.match(value)
    assert client_order_id(cid, 1).endswith("-01") and len(client_order_id(cid, 1)) == 30


def test_flip_legs_and_events_get_distinct_ids() -> None:
    ids = {
        client_order_id(correlation_id(TX_HASH, 7, "BTCUSDT")),
        client_order_id(correlation_id(TX_HASH, 7, "BTCUSDT", "close")),
        client_order_id(correlation_id(TX_HASH, 7, "BTCUSDT", "open")),
        client_order_id(correlation_id(TX_HASH, 8, "BTCUSDT")),
        client_order_id(correlation_id(TX_HASH, 7, "ETHUSDT")),
    }
    assert len(ids) == 5
    assert all(CLIENT_ORDER_ID_PATTERN.match(i) and len(i) == 30 for i in ids)


def test_seq_is_two_digits() -> None:
    with pytest.raises(ValueError):
        client_order_id("x", 100)
