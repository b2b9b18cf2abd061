"""Binance request signing and the server-time offset (copytrader §4.3).

Signed requests carry the offset-corrected `timestamp`, `recvWindow` and an HMAC-SHA256 hex
`signature` of the urlencoded query, in the order sent. The secret lives only in memory here
(`Credentials`), and nothing in this module returns, logs or reprs it.

Venue doc: https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

API_KEY_HEADER = "X-MBX-APIKEY"
SIGNING_FIELDS = ("signature", "timestamp", "recvWindow")  # never recorded, never matched on

# Refresh the offset when older than this (§4.3); -1021 refreshes at once.
TIME_SYNC_MAX_AGE_MS = 300_000
# Binance rejects a timestamp more than 1000 ms ahead of its clock, whatever recvWindow says.
AHEAD_LIMIT_MS = 1000


def query_string(params: Mapping[str, Any]) -> str:
    """The urlencoded query exactly as `requests` sends it (insertion order, `quote_plus`)."""
    return urlencode([(k, v) for k, v in params.items()])


def sign(params: Mapping[str, Any], secret: str) -> str:
    """HMAC-SHA256 hex of the urlencoded `params` under `secret`."""
    return hmac.new(secret.encode(), query_string(params).encode(), hashlib.sha256).hexdigest()


def signed_params(params: Mapping[str, Any], *, now_ms: int, offset_ms: int, recv_window_ms: int,
                  secret: str) -> dict[str, Any]:
    """`params` + `timestamp` (local + offset) + `recvWindow`, then `signature` over all of them."""
    out = dict(params)
    out["timestamp"] = now_ms + offset_ms
    out["recvWindow"] = recv_window_ms
    out["signature"] = sign(out, secret)
    return out


class Credentials:
    """API key and secret, held in memory only. Both are hidden from repr/str."""

    __slots__ = ("_key", "_secret")

    def __init__(self, api_key: str, api_secret: str):
        self._key = api_key
        self._secret = api_secret

    def headers(self) -> dict[str, str]:
        return {API_KEY_HEADER: self._key}

    def sign(self, params: Mapping[str, Any], *, now_ms: int, offset_ms: int, recv_window_ms: int) -> dict[str, Any]:
        return signed_params(params, now_ms=now_ms, offset_ms=offset_ms, recv_window_ms=recv_window_ms,
                             secret=self._secret)

    def __repr__(self) -> str:
        return "Credentials(api_key=<redacted>, api_secret=<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("Credentials cannot be pickled")


@dataclass(frozen=True)
class TimeSample:
    """One `/fapi/v1/time` round trip: `offset_ms = server_time_ms − local midpoint`."""

    server_time_ms: int
    sent_ms: int
    received_ms: int

    @property
    def local_mid_ms(self) -> int:
        return (self.sent_ms + self.received_ms) // 2

    @property
    def offset_ms(self) -> int:
        return self.server_time_ms - self.local_mid_ms


class TimeSync:
    """The current server-time offset and when it was measured (on the injected clock).

    Attributes:
        offset_ms: server − local, 0 until the first sample (Binance rejects a bad guess with
            -1021, which is a known rejection, so a missing offset never risks a blind order).
        synced_at_ms: local time of the last sample, or None.
        max_age_ms: older than this → refresh before the next signed request.
    """

    def __init__(self, max_age_ms: int = TIME_SYNC_MAX_AGE_MS):
        self.max_age_ms = max_age_ms
        self.offset_ms = 0
        self.synced_at_ms: int | None = None
        self.last_sample: TimeSample | None = None

    def update(self, sample: TimeSample) -> int:
        self.offset_ms = sample.offset_ms
        self.synced_at_ms = sample.received_ms
        self.last_sample = sample
        return self.offset_ms

    def is_stale(self, now_ms: int) -> bool:
        return self.synced_at_ms is None or now_ms - self.synced_at_ms > self.max_age_ms

    def server_now_ms(self, now_ms: int) -> int:
        return now_ms + self.offset_ms

    def __repr__(self) -> str:
        return f"TimeSync(offset_ms={self.offset_ms}, synced_at_ms={self.synced_at_ms})"


def offset_check(offset_ms: int, *, recv_window_ms: int, warn_above_ms: int = AHEAD_LIMIT_MS) -> str:
    """Preflight (§4.3, §8): `"fail"` when |offset| ≥ recvWindow, `"warn"` above 1000 ms, else `"ok"`."""
    size = abs(offset_ms)
    if size >= recv_window_ms:
        return "fail"
    if size > warn_above_ms:
        return "warn"
    return "ok"
