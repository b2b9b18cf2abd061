"""The signal arithmetic of the wallet monitor (spec/monitor.md §4.5), as pure functions on floats.

Owns what a signal *measures*: per-wallet ε, the four behaviour classes, Exit Cluster (EC),
Alignment (CAS), its trend, Dispersion (Di), the contributor breakdown, positioning, and the two
derived booleans. What a measurement *means* (playbook, risk mode, forcing, invariants, alerts) is
the policy's (rules/playbook.yaml, signal_qa.yaml, signal_invariants.yaml): the signal job feeds
these numbers to it as facts.

No threshold lives here. Every band edge is an argument (`exit_fire_pct`, `cas_cap`, `ec_low`,
`di_high`, `band`, `clamp`, ...), so the values stay in settings and rule files and a test can
walk each boundary. Floats throughout (the store returns quantities as float, schema.quantity, and
the scores are percentages), except the ε comparisons of `classify`, which run in Decimal.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Behaviour(StrEnum):
    """One wallet's move between the previous and the current window (§4.5 Classify)."""

    ADD_LONG = "add_long"
    ADD_SHORT = "add_short"
    REDUCER = "reducer"
    FLAT = "flat"


class Trend(StrEnum):
    """CAS against its trailing mean (§4.5 Trend); the values the `signal_scored` fact carries."""

    RISING = "rising"
    FLAT = "flat"
    FALLING = "falling"


def epsilon(abs_szi: Iterable[float], eps_abs: float, eps_rel: float) -> float:
    """`max(ε_abs, eps_rel × median|szi|)` over a wallet's non-dirty, non-NULL rows of the
    lookback; no rows or a median of 0 give `ε_abs` (a flat wallet must not get ε = 0)."""
    return epsilon_of_sorted(sorted(abs(v) for v in abs_szi), eps_abs, eps_rel)


def epsilon_of_sorted(abs_sorted: Sequence[float], eps_abs: float, eps_rel: float) -> float:
    """`epsilon` of rows given as their absolute sizes, ascending (the signal job keeps them sorted
    across cycles, issue 16); the median as `statistics.median` takes it."""
    n = len(abs_sorted)
    if not n:
        return eps_abs
    median = abs_sorted[n // 2] if n % 2 else (abs_sorted[n // 2 - 1] + abs_sorted[n // 2]) / 2
    if median == 0:
        return eps_abs
    return max(eps_abs, eps_rel * median)


def _exact(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def classify(prev: float, cur: float, eps: float) -> Behaviour:
    """First match: an add in the position's own direction, then a reduction beyond ε, else flat.

    A flip (+1 → −1) is an AddShort: the new side is what the wallet is adding. The comparisons
    with ε run on the decimal value of each float (its shortest repr), so venue quantities compare
    exactly at the boundary: 1.0 → 1.1 with ε 0.1 is flat, as the spec's strict `>` says."""
    p, c, e = _exact(prev), _exact(cur), _exact(eps)
    delta = c - p
    if delta > e and c > 0:
        return Behaviour.ADD_LONG
    if delta < -e and c < 0:
        return Behaviour.ADD_SHORT
    if abs(c) < abs(p) - e:
        return Behaviour.REDUCER
    return Behaviour.FLAT


@dataclass(frozen=True)
class Counts:
    """How many wallets of `N_total` fell in each class."""

    add_long: int = 0
    add_short: int = 0
    reducers: int = 0
    flat: int = 0

    @property
    def total(self) -> int:
        return self.add_long + self.add_short + self.reducers + self.flat

    @classmethod
    def of(cls, behaviours: Iterable[Behaviour]) -> Counts:
        tally = dict.fromkeys(Behaviour, 0)
        for b in behaviours:
            tally[b] += 1
        return cls(tally[Behaviour.ADD_LONG], tally[Behaviour.ADD_SHORT], tally[Behaviour.REDUCER],
                   tally[Behaviour.FLAT])


def exit_cluster(counts: Counts) -> float:
    """EC = reducers / N_total × 100; 0 when nobody is comparable (nothing to exit)."""
    if counts.total == 0:
        return 0.0
    return counts.reducers * 100.0 / counts.total


def alignment(counts: Counts, ec: float, *, exit_fire_pct: float, cas_cap: float) -> float:
    """CAS = 50 + (AddLong − AddShort) / N_total × 50 (50 when N_total = 0); while EC is above the
    exit-cluster fire level the score is capped at `cas_cap`, so a crowd heading for the door never
    reads as bullish; clamped to [0, 100]."""
    n = counts.total
    cas = 50.0 if n == 0 else 50.0 + (counts.add_long - counts.add_short) * 50.0 / n
    if ec > exit_fire_pct:
        cas = min(cas, cas_cap)
    return min(max(cas, 0.0), 100.0)


def trend(cas: float, history: Sequence[float | None], *, band: float, periods: int) -> Trend:
    """CAS against the mean of the stored CAS at T−5, T−10, ... (`periods` slots, all required:
    a gap gives `flat`, never a guess)."""
    if len(history) < periods or any(v is None for v in history[:periods]):
        return Trend.FLAT
    mean = statistics.fmean(float(v) for v in history[:periods] if v is not None)
    if cas > mean + band:
        return Trend.RISING
    if cas < mean - band:
        return Trend.FALLING
    return Trend.FLAT


def ratio(prev: float, cur: float, eps: float, clamp: float) -> float:
    """A wallet's relative move Δ / max(|prev|, ε), clamped to [−clamp, clamp] so one wallet
    opening from zero cannot dominate the dispersion."""
    value = (cur - prev) / max(abs(prev), eps)
    return min(max(value, -clamp), clamp)


def dispersion(ratios: Sequence[float], *, min_ratios: int) -> float:
    """Di: fewer than `min_ratios` ratios → 50 (unknown, not calm); all identical → 0; else
    min(100 × sample σ, 100)."""
    if len(ratios) < min_ratios:
        return 50.0
    if all(r == ratios[0] for r in ratios):
        return 0.0
    return min(100.0 * statistics.stdev(ratios), 100.0)


@dataclass(frozen=True)
class Contributors:
    """The `signal_contributors` row: counts and shares (2 decimals, summing to 99–101)."""

    counts: Counts
    pct_add_long: float
    pct_add_short: float
    pct_reducers: float
    pct_flat: float

    @property
    def total_wallets(self) -> int:
        return self.counts.total


def contributors(counts: Counts) -> Contributors | None:
    """The breakdown, or None when N_total = 0 (no row is written then, §4.5)."""
    n = counts.total
    if n == 0:
        return None

    def pct(c: int) -> float:
        return round(c / n * 100.0, 2)

    return Contributors(counts, pct(counts.add_long), pct(counts.add_short), pct(counts.reducers), pct(counts.flat))


@dataclass(frozen=True)
class Positioning:
    """The `asset_positioning` row: context only, never a playbook input (§4.7 D4)."""

    net_szi: float
    long_count: int
    short_count: int
    flat_count: int
    long_pct: float
    short_pct: float
    flat_pct: float
    top10_share_pct: float


def positioning(szis: Iterable[float], *, top: int = 10) -> Positioning:
    """Σszi, long/short/flat counts and shares (szi > 0 / < 0 / = 0), and the share of Σ|szi| held
    by the `top` largest positions (0 when nobody holds anything)."""
    values = list(szis)
    n = len(values)
    longs = sum(1 for v in values if v > 0)
    shorts = sum(1 for v in values if v < 0)
    flats = n - longs - shorts
    gross = sum(abs(v) for v in values)
    top_sum = sum(sorted((abs(v) for v in values), reverse=True)[:top])

    def pct(c: int) -> float:
        return round(c / n * 100.0, 2) if n else 0.0

    return Positioning(
        net_szi=sum(values),
        long_count=longs,
        short_count=shorts,
        flat_count=flats,
        long_pct=pct(longs),
        short_pct=pct(shorts),
        flat_pct=pct(flats),
        top10_share_pct=round(top_sum / gross * 100.0, 2) if gross > 0 else 0.0,
    )


def tighten_stops(ec: float, di: float, current: Trend, previous: Trend | str | None, *,
                  exit_fire_pct: float, di_high: float) -> bool:
    """EC above the fire level, or Di in the high band, or the trend turned `falling` from rising
    or flat. An unknown previous trend (no stored row at T−5) counts as not falling: tightening
    on a fresh fall is the stricter reading (STYLE rule 14)."""
    if ec > exit_fire_pct or di >= di_high:
        return True
    return current is Trend.FALLING and previous != Trend.FALLING


def add_exposure(current: Trend, ec: float, di: float, *, ec_low: float, di_high: float,
                 trading_allowed: bool) -> bool:
    """Rising, EC in the low band and Di below the high band; and (hlcore choice) only when the
    caller says trading is allowed at all: a directional playbook, a risk mode below the strongest,
    health HEALTHY and no forcing that forbids it."""
    return trading_allowed and current is Trend.RISING and ec < ec_low and di < di_high
