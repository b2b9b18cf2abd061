"""The whole drill suite, timed: per drill (all its runs) and in total, cold (first run in the
process: policy parsing included) and warm (policy cached), in wall seconds and in CPU seconds
summed over the drills (what a shared machine does not distort). Targets: the suite <= 10 s
wall; the CPU summed <= 40 s (issue 12).

Run: python benchmarks/drills.py [-k PATTERN] [--repeat N] [--jobs N]   (prints figures; asserts nothing)
With --jobs > 1 each drill's seconds are measured inside its worker process (no cache is shared).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from replay.suite import discover, run_suite  # noqa: E402

TARGET_S = 10.0
TARGET_CPU_S = 40.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-k", dest="pattern", default=None)
    parser.add_argument("--repeat", type=int, default=1, help="warm passes after the cold one")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (hlcore drill -j)")
    args = parser.parse_args()
    dirs = discover(ROOT / "fixtures", args.pattern)
    started = time.perf_counter()
    cold = run_suite(dirs, jobs=args.jobs)
    cold_s = time.perf_counter() - started
    warm: list[float] = []
    per: dict[str, list[float]] = {r.name: [] for r in cold.results}
    for _ in range(args.repeat):
        started = time.perf_counter()
        suite = run_suite(dirs, jobs=args.jobs)
        warm.append(time.perf_counter() - started)
        for r in suite.results:
            per[r.name].append(r.seconds)
    runs = sum(len({e["run"] for e in o.entries}) for o in cold.outcomes())
    print(f"drills={len(dirs)} runs={runs} passed={cold.passed} failed={len(cold.failed)} errors={len(cold.errors)}")
    print(f"{'drill':<42} {'cold s':>8} {'warm s (median)':>16}")
    for r in sorted(cold.results, key=lambda r: -r.seconds):
        med = statistics.median(per[r.name]) if per[r.name] else float("nan")
        print(f"{r.name:<42} {r.seconds:>8.2f} {med:>16.2f}")
    best = min(warm) if warm else cold_s
    verdict = "met" if best <= TARGET_S else "NOT met"
    warm_text = f", warm best {best:.2f} s over {args.repeat} pass(es)" if warm else ""
    copy = sum(r.seconds for r in cold.results if r.outcome is not None and next(
        (e["app"] for e in r.outcome.entries if e["kind"] == "process" and e.get("app")), "") == "copytrader")
    print(f"suite: cold {cold_s:.2f} s{warm_text} (jobs={args.jobs}); target <= {TARGET_S:.0f} s: {verdict}")
    print(f"by app (cold): copytrader {copy:.2f} s, monitor {cold.seconds - copy:.2f} s")
    cpu = sum(r.cpu_s for r in cold.results)
    print(f"CPU summed (cold): {cpu:.2f} s; target <= {TARGET_CPU_S:.0f} s: "
          f"{'met' if cpu <= TARGET_CPU_S else 'NOT met'}")


if __name__ == "__main__":
    main()
