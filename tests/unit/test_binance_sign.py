"""Signing (copytrader §4.3): HMAC vectors from the Binance docs, the offset-corrected timestamp,
recvWindow, the round-trip midpoint and the refresh age."""

from __future__ import annotations

import requests

from hlcore.adapters.binance.sign import (
    Credentials,
    TimeSample,
    TimeSync,
    offset_check,
    query_string,
    sign,
    signed_params,
)

T0 = 1_769_248_800_000


def test_spot_docs_vector() -> None:
    """developers.binance.com, SIGNED endpoint examples (HMAC, query string)."""
    params = {"symbol": "LTCBTC", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": 1,
              "price": "0.1", "recvWindow": 5000, "timestamp": 1499827319559}
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    assert sign(params, secret) == "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def test_usdm_futures_docs_vector() -> None:
    """USDⓈ-M Futures general info, SIGNED endpoint example."""
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": 1, "price": 9000,
              "timeInForce": "GTC", "recvWindow": 5000, "timestamp": 1591702613943}
    secret = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
    assert sign(params, secret) == "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"


def test_signed_params_apply_the_offset_and_recv_window() -> None:
    out = signed_params({"symbol": "BTCUSDT", "origClientOrderId": "hl-x-00"}, now_ms=T0, offset_ms=-250,
                        recv_window_ms=5000, secret="s3cr3t")
    assert list(out) == ["symbol", "origClientOrderId", "timestamp", "recvWindow", "signature"]
    assert out["timestamp"] == T0 - 250 and out["recvWindow"] == 5000
    unsigned = {k: v for k, v in out.items() if k != "signature"}
    assert out["signature"] == sign(unsigned, "s3cr3t")


def test_the_signed_string_is_the_one_requests_sends() -> None:
    params = signed_params({"symbol": "BTCUSDT", "quantity": "0.002", "newClientOrderId": "hl-ab_c.d:e/f-00"},
                           now_ms=T0, offset_ms=120, recv_window_ms=5000, secret="s")
    prepared = requests.Request("POST", "https://fapi.binance.com/fapi/v1/order", params=params).prepare()
    sent = prepared.url.split("?", 1)[1]
    payload, _, signature = sent.rpartition("&signature=")
    assert payload == query_string({k: v for k, v in params.items() if k != "signature"})
    assert signature == params["signature"]


def test_offset_is_server_time_minus_the_local_midpoint() -> None:
    sample = TimeSample(server_time_ms=T0 + 500, sent_ms=T0, received_ms=T0 + 400)
    assert sample.local_mid_ms == T0 + 200 and sample.offset_ms == 300
    assert TimeSample(T0 - 1_700, T0, T0 + 200).offset_ms == -1_800


def test_time_sync_refreshes_when_older_than_300000_ms() -> None:
    sync = TimeSync()
    assert sync.is_stale(T0) and sync.offset_ms == 0  # never synced
    assert sync.update(TimeSample(T0 + 900, T0 - 100, T0 + 100)) == 900
    assert sync.synced_at_ms == T0 + 100
    assert not sync.is_stale(T0 + 100 + 300_000)
    assert sync.is_stale(T0 + 100 + 300_001)
    assert sync.server_now_ms(T0) == T0 + 900


def test_preflight_offset_check() -> None:
    assert offset_check(0, recv_window_ms=5000) == "ok"
    assert offset_check(1000, recv_window_ms=5000) == "ok"
    assert offset_check(-1001, recv_window_ms=5000) == "warn"
    assert offset_check(4999, recv_window_ms=5000) == "warn"
    assert offset_check(5000, recv_window_ms=5000) == "fail"
    assert offset_check(-5000, recv_window_ms=5000) == "fail"


def test_credentials_hide_key_and_secret() -> None:
    creds = Credentials("KEY-visible-nowhere", "SECRET-visible-nowhere")
    assert "visible-nowhere" not in repr(creds) and "visible-nowhere" not in str(creds)
    assert creds.headers() == {"X-MBX-APIKEY": "KEY-visible-nowhere"}
    signed = creds.sign({"a": 1}, now_ms=T0, offset_ms=0, recv_window_ms=5000)
    assert signed["signature"] == sign({"a": 1, "timestamp": T0, "recvWindow": 5000}, "SECRET-visible-nowhere")
