"""The monitor's jobs on the shared scheduler, driven by a scripted clock (monitor §5): minutes of
snapshots, health recovering after two clean runs, a signal slot written, the dashboard view."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from hlcore.engine.clock import ManualClock
from hlcore.errors import BadInput
from hlcore.jobs.copytrade.service import Wiring
from hlcore.jobs.monitor.service import start
from hlcore.storage.schema import ingest_runs, signals, wallet_universe_current
from hlcore.workspace import open_workspace
from replay.wallets import address
from replay.worlds.monitor import lb_row, leaderboard
from tests.support.fakes import fail_wallet, monitor_venues

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_769_248_800_000  # a round 5 minutes


@pytest.fixture
def rig(tmp_path: Path) -> Any:
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"monitor": {"db_path": str(tmp_path / "monitor.db"),
                                                  "universe": {"size": 20}}}), encoding="utf-8")
    ws = open_workspace(ROOT, config)
    clock = ManualClock(T0 - 30_000)
    transport, world = monitor_venues(clock)
    world.leaderboard = leaderboard([lb_row(address(i), 1000 - i) for i in range(1, 31)])
    for i in range(1, 31):
        world.positions[address(i)] = {"BTC": "1.5", "ETH": "-2.0", "HYPE": "10"}
    wiring = Wiring(clock, lambda s: clock.advance(int(s * 1000)), random.Random(5), lambda _v: transport.session(),
                    {})
    return ws, clock, transport, wiring


def count(ctx: Any, table: Any) -> int:
    with ctx.db.transaction() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_twelve_minutes_of_the_monitor(rig: Any) -> None:
    ws, clock, _transport, wiring = rig
    ctx, _jobs, scheduler = start(ws, wiring, allow_create_db=True)
    log = scheduler.run_until(T0 + 12 * 60_000, clock.set)
    names = [name for _, name in log]
    assert names.count("snapshots") == 13 and "universe" in names and names.count("signals") == 3
    assert count(ctx, wallet_universe_current) == 20
    assert count(ctx, ingest_runs) == 13
    engine = ctx.runtime.engine
    assert (engine.state("health"), engine.reason("health")) == ("HEALTHY", "OK")
    # slot T0 came before health released (locked: no rows); T0+5 and T0+10 are written, and T0+5,
    # whose previous window predates the universe, is forced No-trade by the missing-data rule
    with ctx.db.transaction() as conn:
        rows = conn.execute(select(signals.c.signal_ts, signals.c.asset, signals.c.allowed_playbook,
                                   signals.c.degraded_reason)).all()
    assert sorted({r[0] for r in rows}) == [T0 + 5 * 60_000, T0 + 10 * 60_000]
    first = [r for r in rows if r[0] == T0 + 5 * 60_000]
    assert len(first) == 3 and all(r[2] == "No-trade" and "low_coverage" in r[3] for r in first)
    assert engine.state("dashboard_view") == "NORMAL"
    from hlcore.storage.monitor import MonitorState

    beats = {job: MonitorState(ctx.db).get_int(f"job_heartbeat_{job}")
             for job in ("snapshots", "health", "signals", "alerts", "dashboard")}
    assert all(v is not None and v > T0 for v in beats.values()), beats
    ctx.close()


def test_one_job_only_and_bad_job_name(rig: Any) -> None:
    ws, _clock, _transport, wiring = rig
    ctx, _jobs, scheduler = start(ws, wiring, only="universe", allow_create_db=True)
    assert [j.name for j in scheduler.jobs] == ["universe"]
    ctx.close()
    with pytest.raises(BadInput, match="--job: expected one of"):
        start(ws, wiring, only="nope")


def test_component_logs_split_by_job(rig: Any, tmp_path: Path) -> None:
    import logging

    from hlcore.logs import configure_components

    ws, clock, _transport, wiring = rig
    handlers = configure_components(tmp_path / "logs", clock)
    try:
        ctx, _jobs, scheduler = start(ws, wiring, allow_create_db=True)
        scheduler.run_until(T0 + 60_000, clock.set)  # the first signal slot is locked: a "blocked" line
        ctx.close()
    finally:
        for h in handlers:
            logging.getLogger("hlcore").removeHandler(h)
            h.close()
    signals_log = (tmp_path / "logs" / "signals.log").read_text(encoding="utf-8")
    assert "Signal computation blocked" in signals_log
    assert "Signal computation blocked" not in (tmp_path / "logs" / "ingest.log").read_text(encoding="utf-8")


def test_a_cycle_starts_with_the_wallets_left_out_last_time(rig: Any) -> None:
    """Under a weight budget that cannot cover everyone, the next cycle asks first about the wallets
    whose last good snapshot is oldest, so coverage rotates instead of always skipping the tail."""
    from hlcore.storage.monitor import Universe

    ws, clock, transport, wiring = rig
    ctx, jobs, _scheduler = start(ws, wiring, only="universe", allow_create_db=True)
    jobs.universe.run()
    universe = Universe(ctx.db)
    by_rank = universe.current_ids()
    assert len(by_rank) == 20 and universe.stalest_first() == by_rank  # nothing snapshotted yet
    clock.set(T0)
    jobs.snapshots.run(T0)
    assert universe.stalest_first() == by_rank  # everyone covered at T0: rank order
    for wallet in by_rank[-5:]:  # the five lowest-ranked wallets fail at T0 + 1 min ...
        fail_wallet(transport, wallet, "500", times=10)
    clock.set(T0 + 60_000)
    jobs.snapshots.run(T0 + 60_000)
    assert universe.stalest_first() == by_rank[-5:] + by_rank[:-5]  # ... so they go first next time
    transport.faults.clear()
    for wallet in by_rank[5:10]:
        fail_wallet(transport, wallet, "500", times=10)
    clock.set(T0 + 120_000)
    jobs.snapshots.run(T0 + 120_000)  # ranks 6-10 fail now: their last good snapshot is the oldest
    assert universe.stalest_first() == by_rank[5:10] + by_rank[:5] + by_rank[10:]
    ctx.close()
