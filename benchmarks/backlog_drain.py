"""A backlog of copied events drains a budget per tick, each event decided and sent in turn
(issue 10 §7). Before, one tick decided every pending event before sending any order.

Run: python benchmarks/backlog_drain.py [--events N] [--budget B]   (prints figures; asserts nothing)

In process, live mode, ARMED_LIVE, the replay harness's venue models (no sockets): N fresh
INCREASE events arrive in one fetch; each tick is timed. Printed: orders sent after the first tick,
ticks until every event is DONE, per-tick wall time (p50, max) and orders per second.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hlcore.engine.clock import ManualClock  # noqa: E402
from hlcore.jobs.copytrade.service import Wiring, start  # noqa: E402
from hlcore.workspace import open_workspace  # noqa: E402
from replay.cassettes import CassetteDeck  # noqa: E402
from replay.transport import DrillTransport  # noqa: E402
from replay.worlds.copytrade import WALLET, CopytradeWorld, hl_fill  # noqa: E402

T0 = 1_769_248_800_000
ENV = {"HYPERLIQUID_TARGET_WALLET": WALLET, "BINANCE_API_KEY": "K" * 64, "BINANCE_API_SECRET": "S" * 64}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--budget", type=int, default=None, help="orchestrator.max_events_per_tick (default: policy)")
    args = parser.parse_args()
    logging.getLogger("hlcore").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        settings: dict = {"db_path": f"{tmp}/ct.db", "safety": {"startup_policy": "auto"}}
        if args.budget:
            settings["orchestrator"] = {"max_events_per_tick": args.budget}
        path = Path(tmp) / "settings.yaml"
        path.write_text(yaml.safe_dump(settings), encoding="utf-8")
        ws = open_workspace(ROOT, path)
        clock = ManualClock(T0)
        world = CopytradeWorld(clock)
        transport = DrillTransport(clock, world, CassetteDeck([]))
        wiring = Wiring(clock, lambda s: clock.advance(int(s * 1000)), random.Random(1),
                        lambda _venue: transport.session(), ENV)
        ctx, jobs, _scheduler, loop, code = start(ws, "live", wiring)
        assert code == 0
        world.fills = [hl_fill({"tid": 1000 + i, "sz": "2.0", "startPosition": f"{2 * i}.0", "side": "B",
                                "time": T0 + 1_000 + i}) for i in range(args.events)]
        clock.set(T0 + 1_000 + args.events + 1_000)
        durations, first_tick_orders, ticks = [], None, 0
        started = time.perf_counter()
        while True:
            t = time.perf_counter()
            loop.tick(clock.now_ms())
            durations.append((time.perf_counter() - t) * 1000)
            ticks += 1
            if first_tick_orders is None:
                first_tick_orders = len(world.account.posts)
            pending = [e for e in jobs.events.unsettled(jobs.open_event_states)]
            if not pending or ticks > 10 * args.events:
                break
            clock.advance(1)
        total = time.perf_counter() - started
        ctx.close()
    print(f"events={args.events} budget={loop.max_events} ticks_to_drain={ticks} "
          f"orders_after_first_tick={first_tick_orders} orders={len(world.account.posts)}")
    print(f"tick_ms p50={statistics.median(durations):.1f} max={max(durations):.1f} "
          f"orders_per_s={len(world.account.posts) / total:.0f}")


if __name__ == "__main__":
    main()
