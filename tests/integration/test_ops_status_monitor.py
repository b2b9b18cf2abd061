"""`hlcore ops status` shows both systems; the monitor section lists lock, latest signals, alerts."""

from __future__ import annotations

import random
from pathlib import Path

import yaml
from freezegun import freeze_time
from typer.testing import CliRunner

from hlcore.engine.clock import ManualClock
from hlcore.jobs.copytrade.service import Wiring
from hlcore.jobs.monitor.service import start
from hlcore.workspace import open_workspace
from hlcore_cli import app
from replay.runner import wall_time
from replay.wallets import address
from replay.worlds.monitor import lb_row, leaderboard
from tests.support.fakes import monitor_venues

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_769_248_800_000


def test_status_shows_the_monitor_section(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"db_path": str(tmp_path / "ct.db"),
                                      "monitor": {"db_path": str(tmp_path / "monitor.db"), "universe": {"size": 20}}}),
                      encoding="utf-8")
    clock = ManualClock(T0 - 30_000)
    transport, world = monitor_venues(clock)
    world.leaderboard = leaderboard([lb_row(address(i), 1000 - i) for i in range(1, 31)])
    for i in range(1, 31):
        world.positions[address(i)] = {"BTC": "1.5", "ETH": "-2.0", "HYPE": "10"}
    wiring = Wiring(clock, lambda s: clock.advance(int(s * 1000)), random.Random(5), lambda _v: transport.session(),
                    {})
    ctx, _jobs, scheduler = start(open_workspace(ROOT, config), wiring, allow_create_db=True)
    scheduler.run_until(T0 + 11 * 60_000, clock.set)
    ctx.close()

    runner = CliRunner()
    with freeze_time(wall_time(T0 + 11 * 60_000 + 5_000)):  # health is read at now: 5 s after the last run
        result = runner.invoke(app, ["ops", "monitor-status", "--policy", str(ROOT), "--config", str(config)])
        both = runner.invoke(app, ["ops", "status", "--policy", str(ROOT), "--config", str(config)])
    assert result.exit_code == 0, result.output
    tokens = result.output.split()
    assert "health=HEALTHY" in tokens and "signal_lock=OPEN" in tokens
    assert [t for t in tokens if t.startswith("signal_asset=")] == \
        ["signal_asset=HYPE", "signal_asset=BTC", "signal_asset=ETH"]
    assert tokens.count(f"signal_ts={T0 + 10 * 60_000}") == 3

    assert both.exit_code == 1  # the copy-trader has no database here: a blocker
    assert "blocker=db_missing" in both.output and "monitor_health=HEALTHY" in both.output

    # nothing has run since: 11 minutes later health(now) is STALE AGE_STALE although the last stored
    # evaluation said HEALTHY (issue 11: a dead monitor never reads healthy)
    with freeze_time(wall_time(T0 + 22 * 60_000)):
        later = runner.invoke(app, ["ops", "monitor-status", "--policy", str(ROOT), "--config", str(config)])
    assert later.exit_code == 1, later.output
    tokens = later.output.split()
    assert "health=STALE" in tokens and "reason=AGE_STALE" in tokens and "stored_health=HEALTHY" in tokens
    assert "data_age_sec=660" in tokens and "ok=false" in tokens
