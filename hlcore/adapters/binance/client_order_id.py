"""Deterministic order identifiers (copytrader §2 correlation id, §4.5 client order id).

The same event always yields the same ids, so a restart re-derives them and can query
`origClientOrderId` before ever re-sending (exactly-once across crashes). No randomness.
"""

from __future__ import annotations

import hashlib
import re

CLIENT_ORDER_ID_PATTERN = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")  # Binance newClientOrderId
CLIENT_ORDER_ID_LENGTH = 30
LEGS = ("close", "open")  # FLIP legs


def correlation_id(tx_hash: str, event_index: int, symbol: str, leg: str | None = None) -> str:
    """`hl-{tx_hash}-{event_index}-{symbol}`, plus `-close`/`-open` for the legs of a FLIP."""
    if leg is not None and leg not in LEGS:
        raise ValueError(f"leg must be one of {LEGS} or None, not {leg!r}")
    base = f"hl-{tx_hash}-{event_index}-{symbol}"
    return f"{base}-{leg}" if leg else base


def client_order_id(correlation: str, seq: int = 0) -> str:
    """`"hl-" + sha256(correlation)[:24] + "-" + seq:02d` (30 chars; 00 primary, 01… fallbacks)."""
    if not 0 <= seq <= 99:
        raise ValueError(f"seq must be 0..99, not {seq}")
    value = f"hl-{hashlib.sha256(correlation.encode()).hexdigest()[:24]}-{seq:02d}"
    assert CLIENT_ORDER_ID_PATTERN.match(value) and len(value) == CLIENT_ORDER_ID_LENGTH
    return value
