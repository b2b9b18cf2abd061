"""The long crash campaign of issue 10 (CI runs the short one: tests/integration/test_crash_campaign.py).

Run: python benchmarks/crash_campaign.py [--kills 200] [--first-boot-kills 30] [--seed 10]
(prints, per case, kills, fills, orders and the duplicates / lost / stuck / bricked counts;
asserts nothing, exits 1 if any of those counts is not 0)

The real `hlcore live --mode live` subprocess against loopback venue stubs on 127.0.0.1:
- random_kills: SIGKILL at a random point of each life, --kills times, then a clean drain;
- two_writers: a second `live` on the same database while the first trades (it must exit 2
  naming the first; the stub must see each client order id once);
- first_boot_kills: the very first start (--allow-create-db) killed on fresh installations;
- deleted_db: the database deleted under a running process (no order after it; the restart
  refuses instead of creating an empty database). lost = orders sent after the deletion,
  bricked = a database silently re-created.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.crash_campaign import (  # noqa: E402
    Counts,
    deleted_database,
    first_boot_kills,
    random_kills,
    two_writers,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--first-boot-kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args()
    results: list[Counts] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hlcore-crash-") as tmp:
        home = Path(tmp)
        cases = [
            lambda: random_kills(home / "kills", args.kills, args.seed),
            lambda: two_writers(home / "two")[0],
            lambda: first_boot_kills(home / "first", args.first_boot_kills, args.seed),
            lambda: deleted_database(home / "deleted")[0],
        ]
        for run in cases:
            t0 = time.monotonic()
            counts = run()
            results.append(counts)
            print(f"{counts.line()}  ({time.monotonic() - t0:.1f} s)", flush=True)
            for note in counts.notes:
                print(f"  note: {note}", flush=True)
    bad = [c for c in results if (c.duplicates, c.lost, c.stuck, c.bricked) != (0, 0, 0, 0)]
    total_kills = sum(c.kills for c in results)
    print(f"total kills={total_kills} in {time.monotonic() - started:.0f} s; "
          f"{'all counts 0' if not bad else 'NOT 0: ' + ', '.join(c.case for c in bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
