"""The backtest harness on a synthetic 200-wallet history (issue 16 figures; prints, asserts nothing).

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
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--wallets", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--exact-hours", type=float, default=24)
    ap.add_argument("--full-exact", action="store_true", help="run the exact path over the whole history")
    ap.add_argument("--variants", type=int, default=100)
    ap.add_argument("--sweep-hours", type=float, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--history", type=Path, help="reuse this dataset instead of writing one")
    args = ap.parse_args()
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
