"""A synthetic monitor history, deterministic per seed (demos, tests and benchmarks).

Each wallet holds per asset a position that mostly sits still (real books do), with occasional
adds and cuts, entries and exits; on top of that, per day: exit clusters (a share of holders of
one asset cut hard in the same few minutes), now and then a regime change (many wallets flip
side over half an hour), dirty collapses (one minute reads ~0 then recovers), fetch-fault
episodes (a share of wallets rate-limited or timing out for some minutes) and outages (every
fetch fails). The generator works day by day on numpy arrays and carries only the book (wallets
x assets) between days, so a month never sits in memory. Rates are parameters of `SynthSpec`,
not policy: they describe a world, not a threshold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from backtest.history.dataset import (
    DAY_MS,
    INGEST_RUNS,
    SNAPSHOTS,
    UNIVERSE_MEMBERS,
    UNIVERSE_RUNS,
    Writer,
    day_of,
)

MINUTE_MS = 60_000
MINUTES = 1440


@dataclass(frozen=True)
class SynthSpec:
    days: int
    wallets: int
    seed: int
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    assets: tuple[str, ...] = ("HYPE", "BTC", "ETH")
    prices: tuple[float, ...] = (30.0, 95_000.0, 3_300.0)
    hold_pct: float = 0.6          # share of wallet-assets holding a position at the start
    adjust_per_min: float = 0.002  # chance a holder adds or cuts in a given minute
    entry_per_min: float = 0.0004  # chance a flat wallet opens
    exit_per_min: float = 0.0003   # chance a holder closes outright
    clusters_per_day: float = 4.0  # exit clusters per day (over all assets)
    cluster_share: tuple[float, float] = (0.3, 0.6)  # share of an asset's holders cutting in a cluster
    regime_every_days: float = 4.0
    dirty_per_day: float = 40.0    # transient collapses per day
    fault_episodes_per_day: float = 2.0
    outages_per_day: float = 0.3
    universe_every_ms: int = 6 * 3_600_000


def wallet_ids(n: int, seed: int) -> list[str]:
    return ["0x" + hashlib.sha256(f"hlcore-synth:{seed}:{i}".encode()).hexdigest()[:40] for i in range(n)]


def synth(spec: SynthSpec, out: Path, progress: Any = None) -> dict[str, Any]:
    """Write the dataset to `out` and return its manifest."""
    writer = Writer(out, source=f"synth seed={spec.seed} days={spec.days} wallets={spec.wallets}",
                    assets=list(spec.assets))
    ids = np.array(wallet_ids(spec.wallets, spec.seed), dtype=object)
    n_w, n_a = spec.wallets, len(spec.assets)
    rng0 = np.random.default_rng([spec.seed, 0])
    # per wallet: a typical size per asset (lognormal around ~$50k notional) and a leverage
    typical = np.exp(rng0.normal(np.log(50_000), 1.0, (n_w, n_a))) / np.array(spec.prices)
    leverage = rng0.integers(2, 21, n_w).astype(float)
    side = np.where(rng0.random((n_w, n_a)) < 0.6, 1.0, -1.0)
    book = np.where(rng0.random((n_w, n_a)) < spec.hold_pct, side * typical, 0.0)
    entry = np.where(book != 0, np.array(spec.prices), np.nan) * np.ones((n_w, n_a))
    price = np.array(spec.prices, dtype=float)
    pnl = rng0.normal(1e6, 4e5, n_w)
    for d in range(spec.days):
        rng = np.random.default_rng([spec.seed, d + 1])
        day0 = spec.start_ms + d * DAY_MS
        szi = np.empty((MINUTES, n_w, n_a))
        px = np.empty((MINUTES, n_a))
        ent = np.empty((MINUTES, n_w, n_a))
        # shocks planned for the day: (minute, asset, share of holders) exit clusters; regime flips
        # (a cluster's three minutes sit inside one 5-minute signal window: minutes 5k+1 .. 5k+3)
        clusters = {(int(rng.integers(0, MINUTES // 5)) * 5 + 1, int(rng.integers(0, n_a))):
                    float(rng.uniform(*spec.cluster_share)) for _ in range(rng.poisson(spec.clusters_per_day))}
        regime = rng.random() < 1 / spec.regime_every_days
        r_start, r_asset = int(rng.integers(0, MINUTES - 30)), int(rng.integers(0, n_a))
        for t in range(MINUTES):
            price *= np.exp(rng.normal(0, 0.0008, n_a))
            holding = book != 0
            u = rng.random((n_w, n_a))
            adjust = holding & (u < spec.adjust_per_min)
            book = np.where(adjust, book * rng.uniform(0.6, 1.5, (n_w, n_a)), book)
            close = holding & (u > 1 - spec.exit_per_min)
            book = np.where(close, 0.0, book)
            opening = ~holding & (u < spec.entry_per_min)
            book = np.where(opening, np.where(rng.random((n_w, n_a)) < 0.55, 1.0, -1.0) * typical, book)
            entry = np.where(opening | adjust, price, entry)
            for (minute, a), share in clusters.items():
                if minute <= t < minute + 3:  # a cluster spreads over three minutes
                    hit = (book[:, a] != 0) & (rng.random(n_w) < share / 3)
                    book[:, a] = np.where(hit, book[:, a] * rng.uniform(0.0, 0.6, n_w), book[:, a])
            if regime and r_start <= t < r_start + 30:
                flip = rng.random(n_w) < 0.4 / 30
                col = book[:, r_asset]
                book[:, r_asset] = np.where(flip, np.where(col == 0, -typical[:, r_asset], -col), col)
                entry[:, r_asset] = np.where(flip, price[r_asset], entry[:, r_asset])
            szi[t], px[t], ent[t] = book, price, entry
        observed = szi.copy()
        # dirty collapses: one minute reads ~0 between two normal reads (never the first/last minute)
        for _ in range(rng.poisson(spec.dirty_per_day)):
            t, w, a = int(rng.integers(1, MINUTES - 1)), int(rng.integers(0, n_w)), int(rng.integers(0, n_a))
            if szi[t - 1, w, a] != 0 and szi[t + 1, w, a] != 0:
                observed[t, w, a] = 0.0
        # fetch outcome per (minute, wallet): status, error, attempts, latency
        status = np.full((MINUTES, n_w), 200, dtype=np.int32)
        error = np.full((MINUTES, n_w), None, dtype=object)
        attempts = np.ones((MINUTES, n_w), dtype=np.int32)
        latency = rng.integers(80, 900, (MINUTES, n_w)).astype(np.int32)
        for _ in range(rng.poisson(spec.fault_episodes_per_day)):
            t0, length = int(rng.integers(0, MINUTES - 20)), int(rng.integers(2, 15))
            share = float(rng.uniform(0.05, 0.35))
            hit = rng.random((length, n_w)) < share
            rate_limited = rng.random() < 0.5
            block = slice(t0, t0 + length)
            status[block] = np.where(hit, 429 if rate_limited else 0, status[block])
            error[block] = np.where(hit, "RATE_LIMITED: 429 Too Many Requests" if rate_limited
                                    else "TIMEOUT: read timed out", error[block])
            attempts[block] = np.where(hit, 4, attempts[block])
        for _ in range(rng.poisson(spec.outages_per_day)):
            t0, length = int(rng.integers(0, MINUTES - 30)), int(rng.integers(3, 25))
            block = slice(t0, t0 + length)
            status[block], error[block], attempts[block] = 0, "NETWORK_ERROR: connection refused", 4
        # a few successes that needed a retry (the earlier attempt's error is kept)
        retried = (status == 200) & (rng.random((MINUTES, n_w)) < 0.002)
        attempts[retried], error[retried] = 2, "TIMEOUT: read timed out"
        failed = status != 200
        observed = np.where(failed[:, :, None], np.nan, observed)
        writer.write(SNAPSHOTS, day_of(day0), _snapshot_table(day0, ids, spec.assets, observed, px, ent, leverage,
                                                              status, error, attempts, latency))
        writer.write(INGEST_RUNS, day_of(day0), _ingest_table(day0, failed, n_w))
        runs, members = _universe_tables(day0, ids, pnl, rng, spec)
        pnl = pnl + rng.normal(0, 5e4, n_w)
        writer.write(UNIVERSE_RUNS, day_of(day0), runs)
        writer.write(UNIVERSE_MEMBERS, day_of(day0), members)
        if progress is not None:
            progress(d + 1, spec.days)
    return writer.close({"synth": {"seed": spec.seed, "days": spec.days, "wallets": spec.wallets}})


def _snapshot_table(day0: int, ids: np.ndarray, assets: tuple[str, ...], szi: np.ndarray, px: np.ndarray,
                    ent: np.ndarray, leverage: np.ndarray, status: np.ndarray, error: np.ndarray,
                    attempts: np.ndarray, latency: np.ndarray) -> pa.Table:
    n_t, n_w, n_a = szi.shape
    ts = (day0 + np.arange(n_t, dtype=np.int64) * MINUTE_MS)
    rep = n_w * n_a
    flat = szi.reshape(-1)
    holding = np.nan_to_num(flat) != 0
    lev = np.tile(np.repeat(leverage, n_a), n_t)
    entry = np.where(holding, ent.reshape(-1), np.where(np.isnan(flat), np.nan, 0.0))
    entry = np.where(np.isnan(flat), np.nan, entry)
    sign = np.sign(np.nan_to_num(flat))
    liq = np.where(holding, entry * (1 - sign / lev), np.nan)
    mark = np.repeat(px, n_w, axis=0).reshape(-1)
    margin = np.where(np.isnan(flat), np.nan, np.abs(np.nan_to_num(flat)) * mark / lev)
    ok = np.repeat(status.reshape(-1) == 200, n_a)
    return pa.table({
        "snapshot_ts": np.repeat(ts, rep),
        "observed_ts": np.repeat(ts[:, None] + latency, n_a, axis=1).reshape(-1).astype(np.int64),
        "wallet_id": pa.array(np.tile(np.repeat(ids, n_a), n_t)),
        "asset": pa.array(np.tile(np.array(assets, dtype=object), n_t * n_w)),
        "position_szi": pa.array(np.round(flat, 6), mask=np.isnan(flat)),
        "entry_px": pa.array(np.round(entry, 4), mask=np.isnan(entry) | ~holding),
        "liq_px": pa.array(np.round(liq, 4), mask=np.isnan(liq)),
        "leverage": pa.array(np.where(holding, lev, np.nan), mask=~holding),
        "margin_used": pa.array(np.round(margin, 2), mask=np.isnan(margin) | ~holding),
        "http_status": pa.array(np.repeat(status.reshape(-1), n_a), mask=np.repeat(status.reshape(-1) == 0, n_a)),
        "error": pa.array(np.repeat(error.reshape(-1), n_a)),
        "attempts": np.repeat(attempts.reshape(-1), n_a),
        "latency_ms": pa.array(np.repeat(latency.reshape(-1), n_a), mask=~ok),
    })


def _ingest_table(day0: int, failed: np.ndarray, n_w: int) -> pa.Table:
    ts = day0 + np.arange(failed.shape[0], dtype=np.int64) * MINUTE_MS
    ok = n_w - failed.sum(axis=1)
    return pa.table({"snapshot_ts": ts, "run_id": pa.array([f"ingest-{t}" for t in ts]),
                     "status": pa.array([None] * len(ts), pa.string()),  # not judged: the backtest judges
                     "wallets_expected": np.full(len(ts), n_w, np.int32), "wallets_succeeded": ok.astype(np.int32),
                     "coverage_pct": ok / n_w * 100, "error": pa.array([None] * len(ts), pa.string())})


def _universe_tables(day0: int, ids: np.ndarray, pnl: np.ndarray, rng: np.random.Generator,
                     spec: SynthSpec) -> tuple[pa.Table, pa.Table]:
    runs: dict[str, list[Any]] = {k: [] for k in ("as_of_ts", "run_id", "status", "n_requested", "n_received",
                                                  "n_invalid", "schema_ok", "error")}
    members: dict[str, list[Any]] = {k: [] for k in ("as_of_ts", "run_id", "wallet_id", "rank", "month_pnl",
                                                     "month_roi", "account_value")}
    for as_of in range(day0, day0 + DAY_MS, spec.universe_every_ms):
        run_id = f"universe-{as_of}"
        drift = pnl + rng.normal(0, 2e4, len(ids))
        order = np.lexsort((ids, -drift))
        runs["as_of_ts"].append(as_of)
        runs["run_id"].append(run_id)
        runs["status"].append(None)
        runs["n_requested"].append(len(ids))
        runs["n_received"].append(len(ids))
        runs["n_invalid"].append(0)
        runs["schema_ok"].append(True)
        runs["error"].append(None)
        for rank, i in enumerate(order, start=1):
            members["as_of_ts"].append(as_of)
            members["run_id"].append(run_id)
            members["wallet_id"].append(str(ids[i]))
            members["rank"].append(rank)
            members["month_pnl"].append(round(float(drift[i]), 2))
            members["month_roi"].append(round(float(drift[i]) / 1e7, 4))
            members["account_value"].append(1e7)
    return pa.table(runs), pa.table(members)
