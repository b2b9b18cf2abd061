"""The backtest harness on a synthetic 200-wallet history (issue 16 figures; prints, asserts nothing).

Copy-trader (issue 17): python benchmarks/backtest.py --app copytrader [--days 90] [--fills 10000]
     [--exact-hours 24] [--full-exact] [--variants 50] [--sweep-hours 6] [--jobs 2]
  synth      90 days, ~10,000 target fills on 3 symbols (BTC, ETH, SOL; only the mapped ones are copied);
  exact      the copy-trader's own path over --exact-hours, extrapolated to the history (target: <= 30 s
             for the whole), or whole with --full-exact; then its loop ticks (the gap rule's floor is one
             per 9 min, 160/day), CPU ms per tick, and the CPU split between the copy-trader's tick, the
             simulated venue + transport, and the harness (docs/decisions.md, Round 4 — copybt);
  sweep      proportional_ratio x max_qty (10 x 5 = 50 variants) over --sweep-hours with --jobs.

Run: python benchmarks/backtest.py [--days 30] [--wallets 200] [--hours H] [--exact-hours 24]
     [--variants 100] [--sweep-hours H] [--jobs 2] [--full-exact] [--no-parity] [--history DIR]

Prints, each with wall time and peak memory (max RSS of this process and its children):
  synth      writing the history (days x 1440 x wallets x 3 assets rows);
  fast cold  the fast path's features (the measuring half, once) over --hours (default: the whole
             history; target <= 20 s for 30 d x 200 wallets);
  fast warm  one threshold variant (exit_fire_pct=27) from the cached features (target <= 1 s);
  sweep      --variants exit_fire_pct variants on the fast path over --sweep-hours (default --hours)
             with --jobs workers, features already cached (target: 100 variants <= 2 min);
  exact      the exact path over --exact-hours (default one day; target <= 20 s), extrapolated to
             the whole history (target <= 10 min), or run whole with --full-exact;
  anchor     a plain numpy pass over the same feature arrays (the cached per-slot EC), with a
             fire/reset/cooldown count done in numpy: the floor a vectorised decision layer could reach;
  anchor raw the previous round's numpy pass over the raw (minute, wallet, asset) snapshot cube;
  parity     the fast path's outcome tables against the exact path's over --hours: "parity: equal"
             or the first difference (skipped with --no-parity).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
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
        self.by_day: dict[int, list[float]] = {}  # simulated UTC day -> [ticks, CPU s]: is a tick flat?

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
                spent = time.process_time() - t
                self.tick += spent
                day = self.by_day.setdefault(at_ms // 86_400_000, [0, 0.0])
                day[0] += 1
                day[1] += spent

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
    days = [split.by_day[d] for d in sorted(split.by_day)]
    if len(days) >= 2:
        first, last = days[0], days[-1]
        print(f"{'':<10} CPU per tick on the first simulated day {1000 * first[1] / first[0]:.1f} ms "
              f"({first[0]} ticks), on the last {1000 * last[1] / last[0]:.1f} ms ({last[0]} ticks): "
              "flat unless a tick's work grows with the run", flush=True)
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
    ap.add_argument("--sweep-hours", type=float, default=None, help="monitor: --hours; copytrader 6")
    ap.add_argument("--hours", type=float, default=None, help="monitor: the fast path's window (default: all)")
    ap.add_argument("--no-parity", action="store_true", help="monitor: skip the exact-vs-fast parity")
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
    with tempfile.TemporaryDirectory(prefix="hlcore-bench-") as tmp:
        root = args.history or Path(tmp) / "hist"
        if args.history is None:
            t = time.perf_counter()
            m = synth(SynthSpec(days=args.days, wallets=args.wallets, seed=args.seed), root)
            line("synth", time.perf_counter() - t, f"{m['rows']['wallet_snapshots']:,} wallet-asset-minutes")
        monitor(args, root, Path(tmp) / "cache")


def monitor(args: argparse.Namespace, root: Path, cache: Path) -> None:
    """The monitor's figures: fast cold / warm / sweep, exact, anchor, parity."""
    from backtest.exact import outcome_tables
    from backtest.fast.decide import run_fast
    from backtest.fast.features import ensure, load, task_settings

    h = open_history(root)
    policy = str(resolve_policy_dir(None))
    size = (("monitor.universe.size", int(h.manifest["universe_size"])),)
    span_h = (h.until_ms + 60_000 - h.since_ms) / HOUR_MS
    fast_h = min(args.hours or span_h, span_h)
    base = Task(str(root), policy, None, size, until_ms=h.since_ms + int(fast_h * HOUR_MS), path="fast",
                cache_dir=str(cache))
    t = time.perf_counter()
    folder, _ = ensure(base, task_settings(base))
    features = load(folder)
    line("fast cold", time.perf_counter() - t, f"{fast_h:g} h: {len(features.runs):,} runs, "
         f"{len(features.slots):,} slot-asset features")
    head = replace(base, overrides=(*size, ("monitor.alerts.exit_fire_pct", 27)), label="head")
    t = time.perf_counter()
    out = run_fast(head, features=features)
    line("fast warm", time.perf_counter() - t, f"{fast_h:g} h, exit_fire_pct=27: {len(out.alerts)} alerts, "
         f"{len(out.transitions)} transitions")
    sweep_h = min(args.sweep_hours or fast_h, fast_h)
    fire = [round(20.5 + i * 30 / args.variants, 3) for i in range(args.variants)]
    sweep_base = replace(base, until_ms=h.since_ms + int(sweep_h * HOUR_MS))
    ensure(sweep_base, task_settings(sweep_base))
    t = time.perf_counter()
    rows = run_sweep(sweep_base, [("monitor.alerts.exit_fire_pct", fire)], jobs=args.jobs)
    wall = time.perf_counter() - t
    line("sweep", wall, f"{len(rows)} variants x {sweep_h:g} h, --jobs {args.jobs}: {len(rows) / wall:.2f} "
         "variants/s (fast path, features cached)")
    hours = span_h if args.full_exact else min(args.exact_hours, span_h)
    t, cpu = time.perf_counter(), time.process_time()
    exact = run_exact(Task(str(root), policy, None, size, until_ms=h.since_ms + int(hours * HOUR_MS)))
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    line("exact", wall, f"{hours:g} h: {sum(exact.run_status.values())} runs, {len(exact.alerts)} alerts, "
         f"{len(exact.transitions)} transitions; whole {span_h / 24:g} d ~ {wall * span_h / hours / 60:.1f} min; "
         f"cpu {cpu:.1f} s = {cpu * 1000 / (hours * 60):.1f} ms per simulated minute (what load does not distort)")
    wall, fired = anchor_features(features)
    line("anchor", wall, f"numpy over {len(features.slots):,} slot-asset features: {fired} exit-cluster "
         "fires at 27 (fire/reset/cooldown in numpy)")
    loaded, wall, slots = anchor(root)
    line("anchor raw", wall, f"numpy pass over the snapshot cube of {len(h.manifest['days'])} d: {slots:,} "
         f"slot-asset cut shares (+ {loaded:.1f} s to load the arrays from parquet)")
    if args.no_parity:
        return
    t = time.perf_counter()
    same = exact if hours == fast_h else run_exact(replace(base, path="exact"))
    fast = run_fast(base, features=features)
    a, b = outcome_tables(same), outcome_tables(fast)
    verdict = "parity: equal"
    for name in a:
        if a[name] != b[name]:
            i = next((i for i, (x, y) in enumerate(zip(a[name], b[name], strict=False)) if x != y),
                     min(len(a[name]), len(b[name])))
            verdict = (f"parity: {name} differ at row {i}: exact {a[name][i] if i < len(a[name]) else None} "
                       f"fast {b[name][i] if i < len(b[name]) else None}")
            break
    line("parity", time.perf_counter() - t, f"{fast_h:g} h: {verdict}")


def anchor_features(features: object) -> tuple[float, int]:
    """EC per (slot, asset) from the cached features as numpy arrays; count fires above 27 with reset
    below 20 and a 60-minute cooldown, vectorised over assets (the decision layer's numpy floor)."""
    slots = features.slots  # type: ignore[attr-defined]
    t = time.perf_counter()
    assets = sorted({a for _, a in slots})
    stamps = np.array(sorted({s for s, _ in slots}), dtype=np.int64)
    ec = np.array([[slots[(int(s), a)].ec if (int(s), a) in slots else 0.0 for a in assets] for s in stamps])
    fired = 0
    armed = np.ones(len(assets), dtype=bool)
    cool = np.zeros(len(assets), dtype=np.int64)
    for i in range(len(stamps)):
        hit = armed & (ec[i] > 27) & (stamps[i] >= cool)
        fired += int(hit.sum())
        cool = np.where(hit, stamps[i] + 60 * 60_000, cool)
        armed = np.where(hit, False, armed | (ec[i] < 20))
    return time.perf_counter() - t, fired

if __name__ == "__main__":
    main()
