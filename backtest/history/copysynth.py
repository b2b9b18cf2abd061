"""`hlcore history synth --app copytrader`: a deterministic copy-trade history for demos, tests, benchmarks.

A target wallet trades three perps (BTC, ETH, SOL) on Hyperliquid: it opens, adds, trims, closes and
flips, each order split into 1-3 fills sharing one hash (so aggregation by hash is exercised); the
Binance minute bars are a geometric random walk per symbol that the fill prices follow, and the
exchangeInfo filters are Binance's published values, one row per symbol and day.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from backtest.history.dataset import DAY_MS, EXCHANGE_INFO, KLINES, TARGET_FILLS, Writer, day_of
from replay.worlds.copytrade import fill_direction

# (coin, Binance symbol, first price, typical order size, size decimals): venue facts for the demo data
COINS = (("BTC", "BTCUSDT", 60_000.0, 4.0, 4), ("ETH", "ETHUSDT", 3_000.0, 20.0, 3),
         ("SOL", "SOLUSDT", 150.0, 300.0, 1))
# Binance USD-M filters per symbol (stepSize, tickSize, minQty, maxQty, minNotional), as published
FILTERS = {"BTCUSDT": ("0.001", "0.10", "0.001", "1000", "100"), "ETHUSDT": ("0.001", "0.01", "0.001", "10000", "20"),
           "SOLUSDT": ("1", "0.01", "1", "1000000", "5")}
MINUTE_MS = 60_000


@dataclass(frozen=True)
class CopySynthSpec:
    days: int
    seed: int
    start_ms: int
    fills_per_day: float = 12.0


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def synth_copytrader(spec: CopySynthSpec, out: Path, progress: Callable[[int, int], None] | None = None
                     ) -> dict[str, Any]:
    """Write the dataset day by day; same spec, same bytes."""
    rng = np.random.default_rng(spec.seed)
    writer = Writer(out, source=f"synth:copytrader:seed={spec.seed}", app="copytrader",
                    assets=[c[1] for c in COINS])
    prices = {c[0]: c[2] for c in COINS}
    position = {c[0]: 0.0 for c in COINS}
    tid = 400_000_000_000_000 + spec.seed * 1_000_000
    oid = 90_000_000_000
    for d in range(spec.days):
        t0 = spec.start_ms + d * DAY_MS
        day = day_of(t0)
        bars: dict[str, np.ndarray] = {}
        kl: dict[str, list[Any]] = {k: [] for k in ("open_time", "symbol", "open", "high", "low", "close", "volume")}
        for coin, symbol, _p0, _size, _dec in COINS:
            steps = rng.normal(0.0, 0.0008, 1440)
            path = prices[coin] * np.exp(np.cumsum(steps))
            opens = np.concatenate([[prices[coin]], path[:-1]])
            prices[coin] = float(path[-1])
            wiggle = np.abs(rng.normal(0.0, 0.0004, (2, 1440)))
            highs = np.maximum(opens, path) * (1 + wiggle[0])
            lows = np.minimum(opens, path) * (1 - wiggle[1])
            bars[coin] = opens
            kl["open_time"] += [t0 + i * MINUTE_MS for i in range(1440)]
            kl["symbol"] += [symbol] * 1440
            kl["open"] += np.round(opens, 2).tolist()
            kl["high"] += np.round(highs, 2).tolist()
            kl["low"] += np.round(lows, 2).tolist()
            kl["close"] += np.round(path, 2).tolist()
            kl["volume"] += np.round(rng.gamma(2.0, 50.0, 1440), 3).tolist()
        writer.write(KLINES, day, pa.table(kl).sort_by([("open_time", "ascending"), ("symbol", "ascending")]))
        writer.write(EXCHANGE_INFO, day, pa.table({
            "as_of": [t0] * len(FILTERS), "symbol": sorted(FILTERS),
            **{name: [FILTERS[s][i] for s in sorted(FILTERS)] for i, name in
               enumerate(("step_size", "tick_size", "min_qty", "max_qty", "min_notional"))}}))
        rows: list[dict[str, Any]] = []
        n_orders = int(rng.poisson(spec.fills_per_day / 2.0))
        for at in np.sort(rng.integers(0, DAY_MS - 2 * MINUTE_MS, n_orders)):
            pick = int(rng.choice(3, p=[0.6, 0.25, 0.15]))
            coin, _symbol, _p0, size, dec = COINS[pick]
            minute = int(at // MINUTE_MS)
            px = float(bars[coin][minute]) * (1 + rng.normal(0, 0.0002))
            pos = position[coin]
            move = rng.random()
            if pos == 0 or move < 0.45:  # open or add in the position's direction (or a fresh side)
                sign = (1 if rng.random() < 0.5 else -1) if pos == 0 else (1 if pos > 0 else -1)
                delta = sign * size * float(rng.uniform(0.2, 1.5))
            elif move < 0.75:  # trim
                delta = -pos * float(rng.uniform(0.2, 0.7))
            elif move < 0.93:  # close
                delta = -pos
            else:  # flip
                delta = -pos - (1 if pos > 0 else -1) * size * float(rng.uniform(0.3, 1.0))
            delta = round(delta, dec)
            if delta == 0:
                continue
            parts = int(rng.integers(1, 4))
            cuts = np.sort(rng.uniform(0, 1, parts - 1))
            shares = np.diff(np.concatenate([[0.0], cuts, [1.0]]))
            oid += 1
            order_hash = "0x" + rng.bytes(32).hex()
            done = 0.0
            for i, share in enumerate(shares):
                sz = round(abs(delta) - done, dec) if i == parts - 1 else round(abs(delta) * float(share), dec)
                if sz <= 0:
                    continue
                done = round(done + sz, dec)
                start = position[coin]
                side = "B" if delta > 0 else "A"
                after = round(start + (sz if side == "B" else -sz), dec)
                direction = fill_direction(start, side, after)
                tid += 1
                ts = t0 + int(at) + i * 40
                rows.append({"time": ts, "observed_ts": ts + int(rng.integers(150, 900)), "coin": coin,
                             "px": _fmt(px, 1 if coin == "BTC" else 2), "sz": _fmt(sz, dec), "side": side,
                             "start_position": _fmt(start, dec), "dir": direction, "closed_pnl": "0.0",
                             "hash": order_hash, "oid": oid, "crossed": True,
                             "fee": _fmt(px * sz * 0.00035, 6), "tid": tid, "fee_token": "USDC",
                             "twap_id": None, "source": "synth"})
                position[coin] = after
        if rows:
            writer.write(TARGET_FILLS, day, pa.Table.from_pylist(rows, schema=None).sort_by(
                [("time", "ascending"), ("tid", "ascending")]))
        if progress is not None:
            progress(d + 1, spec.days)
    return writer.close({"target_wallet": None})
