"""The backtest harness on a synthetic 200-wallet history (issue 16 figures; prints, asserts nothing).

Copy-trader (issue 17): python benchmarks/backtest.py --app copytrader [--days 90] [--fills 10000]
     [--exact-hours 24] [--full-exact] [--variants 50] [--sweep-hours 6] [--jobs 2]
  synth      90 days, ~10,000 target fills on 3 symbols (BTC, ETH, SOL; only the mapped ones are copied);
  exact      the copy-trader's own path over --exact-hours, extrapolated to the history (target: <= 30 s
             for the whole), or whole with --full-exact; then its loop ticks (the gap rule's floor is one
             per 9 min, 160/day), CPU ms per tick, and the CPU split between the copy-trader's tick, the
             simulated venue + transport, and the harness (docs/decisions.md, Round 4 — copybt);
  sweep      proportional_ratio x max_qty (10 x 5 = 50 variants) over --sweep-hours with --jobs.

Run: python benchmarks/backtest.py [--days 30] [--wallets 200] [--exact-hours 24] [--variants 100]
     [--sweep-hours 2] [--jobs 2] [--full-exact]

Prints, each with wall time and peak memory (max RSS of this process and its children):
  synth      writing the history (days x 1440 x wallets x 3 assets rows);
  exact      the exact path over --exact-hours (default one day: the parity window; target <= 20 s),
             extrapolated to the whole history (target <= 10 min), or run whole with --full-exact;
  sweep      --variants threshold variants over --sweep-hours with --jobs workers (variants/s;
             target: 100 variants <= 2 min);
  fast path  not built (docs/decisions.md, issue 16): printed as such;
  anchor     a plain numpy pass over the same feature arrays: per 5-minute slot and asset, the share
             of wallets that cut a position (an exit-cluster-like score) over every day of the history.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backtest.exact import Task, run_exact  # noqa: E402
from backtest.history.dataset import SNAPSHOTS, open_history  # noqa: E402
from backtest.history.synth import SynthSpec, synth  # noqa: E402
from backtest.sweep import run_sweep  # noqa: E402
from hlcore.resources import resolve_policy_dir  # noqa: E402

HOUR_MS = 3_600_000


def peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def line(name: str, wall: float, extra: str = "") -> None:
    cpu = time.process_time()
    print(f"{name:<10} wall {wall:8.1f} s   peak {peak_mb():7.0f} MB   (cpu so far {cpu:6.1f} s)   {extra}",
          flush=True)


def anchor(root: Path) -> tuple[float, float, int]:
    """Exit-cluster-like share per (5-min slot, asset), numpy only: (load s, compute s, scores).
    Loading the parquet days into one (minute, wallet, asset) array is timed apart from the pass."""
    h = open_history(root)
    t0 = time.perf_counter()
    days = []
    for day in h.manifest["days"]:
        table = h.read(SNAPSHOTS, day, ["position_szi"])  # synth writes (minute, wallet, asset) order
        days.append(table.column("position_szi").to_numpy(zero_copy_only=False).astype(np.float32))
    cube = np.nan_to_num(np.concatenate(days)).reshape(-1, int(h.manifest["universe_size"]), len(h.assets))
    loaded = time.perf_counter() - t0
    t1 = time.perf_counter()
    five = np.abs(cube[::5])
    prev, cur = five[:-1], five[1:]
    cut = (prev > 0) & (cur < prev * 0.8)
    share = cut.sum(axis=1) * 100.0 / cube.shape[1]
    return loaded, time.perf_counter() - t1, int(share.size)


class CpuSplit:
    """CPU seconds inside the copy-trader's loop tick, and inside the simulated venue + transport
    (part of the tick): where an exact-path run's time goes (benchmark only, nothing decides on it)."""

    def __init__(self) -> None:
        self.tick = 0.0
        self.venue = 0.0

    @contextmanager
    def timing(self) -> Iterator[None]:
        from hlcore.jobs.copytrade.service import Loop
        from replay.transport import DrillTransport

        tick, exchange = Loop.tick, DrillTransport.exchange

        def timed_tick(loop: Any, at_ms: int) -> int:
            t = time.process_time()
            try:
                return tick(loop, at_ms)
            finally:
                self.tick += time.process_time() - t

        def timed_exchange(transport: Any, *args: Any) -> Any:
            t = time.process_time()
            try:
                return exchange(transport, *args)
            finally:
                self.venue += time.process_time() - t

        Loop.tick, DrillTransport.exchange = timed_tick, timed_exchange  # type: ignore[method-assign]
        try:
            yield
        finally:
            Loop.tick, DrillTransport.exchange = tick, exchange  # type: ignore[method-assign]


def copytrader(args: argparse.Namespace, tmp: Path) -> None:
    """The copy-trader's figures (issue 17): synth, exact path, a 50-variant ratio x max_qty sweep."""
    from backtest.copytrade.exact import run_copytrade
    from backtest.history.copysynth import CopySynthSpec, synth_copytrader
    from backtest.history.dataset import parse_instant

    days = args.days or 90
    root = args.history or tmp / "hist"
    if args.history is None:
        t = time.perf_counter()
        m = synth_copytrader(CopySynthSpec(days, args.seed, parse_instant("2026-01-01", "start"),
                                           args.fills / days), root)
        line("synth", time.perf_counter() - t, f"{m['rows'].get('target_fills', 0):,} target fills, "
             f"{m['rows']['klines_1m']:,} minute bars, {days} d")
    h = open_history(root)
    policy = str(resolve_policy_dir(None))
    span_h = (h.until_ms + 60_000 - h.since_ms) / HOUR_MS
    hours = span_h if args.full_exact else min(args.exact_hours, span_h)
    split = CpuSplit()
    t, cpu = time.perf_counter(), time.process_time()
    with split.timing():
        out = run_copytrade(Task(str(root), policy, None, (), until_ms=h.since_ms + int(hours * HOUR_MS),
                                 app="copytrader"))
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    line("exact", wall, f"{hours:g} h: {out.fills_seen} fills, {sum(out.events.values())} events, "
         f"{len(out.executions)} orders ({cpu:.1f} s CPU); whole {span_h / 24:g} d ~ {wall * span_h / hours:.0f} s "
         f"wall, ~ {cpu * span_h / hours:.0f} s CPU")
    app_s = split.tick - split.venue
    print(f"{'':<10} {out.ticks} loop ticks ({out.ticks * 24 / hours:.0f}/day; the gap rule needs one at least every "
          f"0.9 x ingest.backfill_window_ms = 9 min, 160/day): {1000 * split.tick / max(1, out.ticks):.1f} ms CPU "
          f"per tick; CPU split: copy-trader tick {app_s:.1f} s ({100 * app_s / cpu:.0f} %), venue world + "
          f"transport {split.venue:.1f} s ({100 * split.venue / cpu:.0f} %), harness (boot, reads, report) "
          f"{cpu - split.tick:.1f} s ({100 * (cpu - split.tick) / cpu:.0f} %)", flush=True)
    t = time.perf_counter()
    ratios = [round(0.0005 * (i + 1), 4) for i in range(10)]
    max_qty = [0.005, 0.01, 0.02, 0.05, 0.1]
    grid = [("decision.sizing.max_qty", max_qty), ("decision.sizing.proportional_ratio", ratios)]
    n = len(ratios) * len(max_qty)
    grid = grid if args.variants >= n else [("decision.sizing.proportional_ratio", ratios[:args.variants])]
    rows = run_sweep(Task(str(root), policy, None, (), until_ms=h.since_ms + int(args.sweep_hours * HOUR_MS),
                          app="copytrader"), grid, jobs=args.jobs)
    wall = time.perf_counter() - t
    line("sweep", wall, f"{len(rows)} variants x {args.sweep_hours:g} h, --jobs {args.jobs}: "
         f"{len(rows) / wall:.2f} variants/s (exact path per variant)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--app", choices=("monitor", "copytrader"), default="monitor")
    ap.add_argument("--fills", type=int, default=10_000, help="copytrader: target fills over the history")
    ap.add_argument("--days", type=int, default=None, help="history days (monitor 30, copytrader 90)")
    ap.add_argument("--wallets", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--exact-hours", type=float, default=24)
    ap.add_argument("--full-exact", action="store_true", help="run the exact path over the whole history")
    ap.add_argument("--variants", type=int, default=None, help="monitor 100; copytrader 50 (the full grid)")
    ap.add_argument("--sweep-hours", type=float, default=None, help="monitor 2; copytrader 6")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--history", type=Path, help="reuse this dataset instead of writing one")
    args = ap.parse_args()
    if args.app == "copytrader":
        args.variants = args.variants or 50
        args.sweep_hours = args.sweep_hours or 6
        with tempfile.TemporaryDirectory(prefix="hlcore-bench-") as tmp:
            copytrader(args, Path(tmp))
        return
    args.days = args.days or 30
    args.variants = args.variants or 100
    args.sweep_hours = args.sweep_hours or 2
    with tempfile.TemporaryDirectory(prefix="hlcore-bench-") as tmp:
        root = args.history or Path(tmp) / "hist"
        if args.history is None:
            t = time.perf_counter()
            m = synth(SynthSpec(days=args.days, wallets=args.wallets, seed=args.seed), root)
            line("synth", time.perf_counter() - t, f"{m['rows']['wallet_snapshots']:,} wallet-asset-minutes")
        h = open_history(root)
        policy = str(resolve_policy_dir(None))
        size = (("monitor.universe.size", int(h.manifest["universe_size"])),)
        span_h = (h.until_ms + 60_000 - h.since_ms) / HOUR_MS
        hours = span_h if args.full_exact else min(args.exact_hours, span_h)
        t = time.perf_counter()
        out = run_exact(Task(str(root), policy, None, size, until_ms=h.since_ms + int(hours * HOUR_MS)))
        wall = time.perf_counter() - t
        line("exact", wall, f"{hours:g} h: {sum(out.run_status.values())} runs, {len(out.alerts)} alerts, "
             f"{len(out.transitions)} transitions; whole {span_h / 24:g} d ~ {wall * span_h / hours / 60:.1f} min")
        t = time.perf_counter()
        fire = [round(20.5 + i * 30 / args.variants, 3) for i in range(args.variants)]
        rows = run_sweep(Task(str(root), policy, None, size, until_ms=h.since_ms + int(args.sweep_hours * HOUR_MS)),
                         [("monitor.alerts.exit_fire_pct", fire)], jobs=args.jobs)
        wall = time.perf_counter() - t
        line("sweep", wall, f"{len(rows)} variants x {args.sweep_hours:g} h, --jobs {args.jobs}: "
             f"{len(rows) / wall:.2f} variants/s (exact path per variant)")
        print("fast path  not built: no cached-feature path yet (see docs/decisions.md, issue 16)")
        loaded, wall, slots = anchor(root)
        line("anchor", wall, f"numpy pass over {len(h.manifest['days'])} d: {slots:,} slot-asset scores "
             f"(+ {loaded:.1f} s to load the arrays from parquet)")


if __name__ == "__main__":
    main()
