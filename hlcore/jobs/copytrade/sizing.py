"""Strategy v1 sizing (copytrader §4.4): same inputs, identical intents.

Pure Decimal arithmetic: it computes quantities and the numbers the decision table judges
(`kelly_f`, raw and floored quantities). Whether a size is acceptable is the policy's call.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

ZERO = Decimal(0)
ONE = Decimal(1)


@dataclass(frozen=True)
class Leg:
    """One intent leg before the checks: which side, how much, reduce-only or not."""

    leg: str                  # single | close | open
    side: str                 # BUY | SELL
    qty_raw: Decimal | None   # sized, before the step floor
    reduce_only: bool
    kelly_f: Decimal | None = None


def floor_to_step(qty: Decimal, step: Decimal | None) -> Decimal:
    if step is None or step <= 0:
        return qty
    return (qty / step).to_integral_value(rounding=ROUND_DOWN) * step


def _side(sign: Decimal) -> str:
    return "BUY" if sign > 0 else "SELL"


def size_increase(base: Decimal, sizing: dict[str, Any]) -> tuple[Decimal | None, Decimal | None]:
    """(qty, kelly_f) for an INCREASE (or a FLIP's open leg) of `base` target units."""
    mode = sizing["mode"]
    if mode == "fixed":
        return Decimal(str(sizing["fixed_qty"])), None
    if mode == "proportional":
        return base * Decimal(str(sizing["proportional_ratio"])), None
    w, e = Decimal(str(sizing["kelly_win_rate"])), Decimal(str(sizing["kelly_edge"]))
    if w <= 0 or e <= 0:
        return None, None
    f = w - (ONE - w) / e
    return base * f * Decimal(str(sizing["kelly_fraction"])), f


def legs_for(action: str, prev: Decimal, next_: Decimal, local: Decimal | None, step: Decimal | None,
             sizing: dict[str, Any]) -> list[Leg]:
    """The legs an event asks for, before any check."""
    if action == "INCREASE":
        qty, f = size_increase(abs(next_ - prev), sizing)
        return [Leg("single", _side(next_ - prev), qty, False, f)]
    if action == "DECREASE":
        ratio = min(ONE, abs(next_ - prev) / abs(prev)) if prev != 0 else ONE
        held = abs(local) if local is not None else ZERO
        qty = held if ratio == ONE else floor_to_step(held * ratio, step)
        sign = -(local if local not in (None, ZERO) else prev)
        return [Leg("single", _side(sign), qty, True)]
    if action == "FLIP":
        held = abs(local) if local is not None else ZERO
        close_sign = -(local if local not in (None, ZERO) else prev)
        open_qty, f = size_increase(abs(next_), sizing)
        return [Leg("close", _side(close_sign), held, True), Leg("open", _side(next_), open_qty, False, f)]
    return []
