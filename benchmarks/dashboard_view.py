"""One dashboard refresh, read + view model (`load_state` + `view()`), over a drill's kept database:
what every open page costs the server each `monitor.dashboard.refresh_sec` (monitor §4.7 D5).

Run: python benchmarks/dashboard_view.py [--refreshes N]   (prints figures; asserts nothing)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hlcore.dashboard.session import parse_instant  # noqa: E402
from hlcore.dashboard.state import load_state  # noqa: E402
from hlcore.dashboard.view import ViewSelector, view  # noqa: E402
from hlcore.storage.db import open_read_only  # noqa: E402
from hlcore.workspace import open_workspace  # noqa: E402
from tests.support.dashboard import DEGRADED_AT, HALT_AT, NORMAL_AT, mask_stale_db  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--refreshes", type=int, default=200)
    args = parser.parse_args()
    ws = open_workspace()
    with tempfile.TemporaryDirectory() as tmp:
        db = open_read_only(f"sqlite:///{mask_stale_db(Path(tmp))}")
        selector = ViewSelector(ws.policy, ws.settings)
        for name, at in (("NORMAL", NORMAL_AT), ("DEGRADED", DEGRADED_AT), ("HALT", HALT_AT)):
            now = parse_instant(at)
            samples = []
            for _ in range(args.refreshes):
                t = time.perf_counter()
                v = view(load_state(db, ws.policy, ws.settings, now), ws.policy, ws.settings, selector)
                samples.append((time.perf_counter() - t) * 1000)
            samples.sort()
            print(f"{name:8s} (view {v.name}, {v.reason}) refresh: p50 {statistics.median(samples):.2f} ms, "
                  f"p99 {samples[int(len(samples) * 0.99) - 1]:.2f} ms over {args.refreshes}")
        db.dispose()


if __name__ == "__main__":
    main()
