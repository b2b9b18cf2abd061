"""The monitor's operator commands (monitor §8) through the CLI against a temp monitor database
populated by the real jobs on a scripted clock: halt / resume (runbook 8), status exit codes,
reports, retention (§6) and the database check."""

from __future__ import annotations

import random
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select, update
from typer.testing import CliRunner

import hlcore.engine.clock as clock_module
import hlcore.ops.monitor as ops_monitor
from hlcore.app import open_app
from hlcore.engine.clock import ManualClock
from hlcore.jobs.copytrade.service import Wiring
from hlcore.jobs.monitor.service import start
from hlcore.storage.monitor import SnapshotRow, Snapshots
from hlcore.storage.monitor_signals import AlertStore
from hlcore.storage.schema import alerts, ops_events, signals, wallet_snapshots
from hlcore.workspace import open_workspace
from hlcore_cli import app
from replay.wallets import address
from replay.worlds.monitor import lb_row, leaderboard
from tests.support.fakes import monitor_venues

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_769_248_800_000  # a round 5 minutes
MIN = 60_000
DAY = 86_400_000


class Rig:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.config = tmp_path / "settings.yaml"
        self.config.write_text(yaml.safe_dump({"monitor": {"db_path": str(tmp_path / "monitor.db"),
                                                           "universe": {"size": 20}}}), encoding="utf-8")
        self.ws = open_workspace(ROOT, self.config)
        self.clock = ManualClock(T0 - 30_000)
        self.transport, self.world = monitor_venues(self.clock)
        self.world.leaderboard = leaderboard([lb_row(address(i), 1000 - i) for i in range(1, 31)])
        for i in range(1, 31):
            self.world.positions[address(i)] = {"BTC": "1.5", "ETH": "-2.0", "HYPE": "10"}
        self.wiring = Wiring(self.clock, lambda s: self.clock.advance(int(s * 1000)), random.Random(5),
                             lambda _v: self.transport.session(), {})
        # the CLI reads SystemClock(): every command here sees the scripted clock
        monkeypatch.setattr(clock_module, "SystemClock", lambda: self.clock)
        self.runner = CliRunner()

    def run_monitor(self, until_ms: int) -> str:
        """Run every monitor job up to `until_ms`; returns the health state at the end."""
        ctx, _jobs, scheduler = start(self.ws, self.wiring, allow_create_db=True)
        try:
            scheduler.run_until(until_ms, self.clock.set)
            return ctx.runtime.engine.state("health")
        finally:
            ctx.close()

    def cli(self, *args: str) -> Any:
        return self.runner.invoke(app, ["ops", *args, "--policy", str(ROOT), "--config", str(self.config)])

    def db(self) -> Any:
        return open_app(self.ws, self.clock, app="monitor", persist_start=False)

    def count(self, table: Any) -> int:
        ctx = self.db()
        try:
            with ctx.db.transaction() as conn:
                return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        finally:
            ctx.close()


def kv(output: str) -> list[dict[str, str]]:
    """Each output line as a dict of its key=value pairs."""
    return [dict(p.split("=", 1) for p in line.split() if "=" in p) for line in output.splitlines()]


def first(output: str, key: str) -> str:
    return next(d[key] for d in kv(output) if key in d)


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rig:
    r = Rig(tmp_path, monkeypatch)
    assert r.run_monitor(T0 + 12 * MIN) == "HEALTHY"
    return r


def test_halt_resume_and_status_exit_codes(rig: Rig) -> None:
    status = rig.cli("monitor-status")
    assert status.exit_code == 0, status.output
    assert first(status.output, "health") == "HEALTHY" and "ok=true" in status.output
    jobs = {d["job"]: d["state"] for d in kv(status.output) if "job" in d}
    assert jobs["snapshots"] == jobs["health"] == jobs["signals"] == "RUNNING"
    assert set(jobs) == {"universe", "snapshots", "health", "signals", "alerts", "dashboard"}
    assert "latched=false" in status.output and "system_stale=INACTIVE" in status.output
    assert sum(1 for d in kv(status.output) if "run_ts" in d) == 5

    halt = rig.cli("monitor-halt", "--reason", "data integrity doubt", "--operator", "alice")
    assert halt.exit_code == 0, halt.output
    assert "after_health_state=STALE" in halt.output and "after_health_reason=MANUAL_HALT" in halt.output
    assert "before_health_state=HEALTHY" in halt.output
    ctx = rig.db()
    with ctx.db.transaction() as conn:
        rows = conn.execute(select(ops_events)).all()
    assert (ctx.runtime.engine.state("health"), ctx.runtime.engine.reason("health")) == ("STALE", "MANUAL_HALT")
    ctx.close()
    assert len(rows) == 1 and rows[0].command == "monitor-halt" and rows[0].operator == "alice"
    assert rows[0].reason == "data integrity doubt" and '"STALE"' in rows[0].after and '"HEALTHY"' in rows[0].before

    status = rig.cli("monitor-status")
    assert status.exit_code == 1 and "health=STALE reason=MANUAL_HALT" in status.output
    assert "latched=true" in status.output and "ok=false" in status.output

    # ingestion continues while halted; health stays STALE MANUAL_HALT
    assert rig.run_monitor(T0 + 15 * MIN) == "STALE"
    assert "reason=MANUAL_HALT" in rig.cli("monitor-status").output

    resume = rig.cli("monitor-resume", "--reason", "root cause fixed")
    assert resume.exit_code == 0, resume.output
    assert "after_health_reason=RECOVERING" in resume.output and "after_manual_halt=false" in resume.output
    assert rig.count(ops_events) == 2
    status = rig.cli("monitor-status")
    assert status.exit_code == 1 and "health=STALE reason=RECOVERING" in status.output

    again = rig.cli("monitor-resume")  # not halted any more: the policy refuses
    assert again.exit_code == 1 and "refused=unknown_or_not_halted" in again.output
    assert rig.count(ops_events) == 2

    assert rig.run_monitor(T0 + 20 * MIN) == "HEALTHY"  # clean runs after the resume release the latch
    status = rig.cli("monitor-status")
    assert status.exit_code == 0 and "health=HEALTHY" in status.output


def test_halt_dry_run_and_bad_input(rig: Rig) -> None:
    dry = rig.cli("monitor-halt", "--reason", "drill", "--dry-run")
    assert dry.exit_code == 0 and "dry_run=true" in dry.output and "after_health_state=STALE" in dry.output
    assert rig.count(ops_events) == 0
    assert rig.cli("monitor-status").exit_code == 0
    assert rig.cli("monitor-halt").exit_code == 2  # --reason is required
    assert rig.cli("monitor-halt", "--reason", " ").exit_code == 2


def test_status_on_a_missing_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = Rig(tmp_path, monkeypatch)
    result = r.cli("monitor-status")
    assert result.exit_code == 1 and not (tmp_path / "monitor.db").exists()
    check = r.cli("db-check")
    assert check.exit_code == 1 and "error=db_missing" in check.output


def test_status_is_read_only(rig: Rig) -> None:
    ctx = rig.db()
    with ctx.db.transaction() as conn:
        before = [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM system_state ORDER BY key").all()]
        audit_before = conn.exec_driver_sql("SELECT count(*) FROM audit_log").scalar_one()
    ctx.close()
    rig.clock.advance(5 * MIN)
    for args in (("monitor-status",), ("report", "dirty"), ("report", "alerts"), ("report", "universe")):
        rig.cli(*args)
    ctx = rig.db()
    with ctx.db.transaction() as conn:
        assert [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM system_state ORDER BY key").all()] == before
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_log").scalar_one() == audit_before
    ctx.close()


def test_reports(rig: Rig) -> None:
    now = rig.clock.now_ms()
    ctx = rig.db()
    snaps = Snapshots(ctx.db)
    slot = T0 + 10 * MIN
    assert snaps.mark_dirty(slot, address(1), "BTC", "transient_collapse")
    snaps.add_anomaly(now, slot, address(1), "BTC", "transient_collapse", {"szi": "0"})
    store = AlertStore(ctx.db)
    base = {"severity": "warning", "message": "m", "signal_snapshot": {}}
    store.insert({**base, "alert_ts": now - MIN, "signal_ts": slot, "asset": "BTC", "alert_type": "exit_cluster"})
    store.insert({**base, "alert_ts": now - MIN, "signal_ts": slot, "asset": "ETH", "alert_type": "exit_cluster",
                  "suppressed": True, "suppressed_reason": "cooldown"})
    store.insert({**base, "alert_ts": now - 30 * DAY, "signal_ts": slot - 30 * DAY, "asset": "ETH",
                  "alert_type": "exit_cluster"})  # outside the window
    with ctx.db.transaction() as conn:
        conn.execute(update(signals).where(signals.c.signal_ts == slot, signals.c.asset == "BTC")
                     .values(exit_cluster_score=22.0, alignment_score=74.0))
        conn.execute(update(signals).where(signals.c.signal_ts == slot, signals.c.asset == "ETH")
                     .values(exit_cluster_score=50.0, alignment_score=50.0))
    ctx.close()

    dirty = rig.cli("report", "dirty", "--hours", "1")
    assert dirty.exit_code == 0, dirty.output
    per_asset = {d["asset"]: d for d in kv(dirty.output) if "asset" in d and "hour_ts" not in d and "type" not in d}
    assert per_asset["BTC"]["dirty"] == "1" and per_asset["ETH"]["dirty"] == "0"
    assert float(per_asset["BTC"]["dirty_pct"]) > 0 and per_asset["BTC"]["rows"] == per_asset["ETH"]["rows"]
    hours = [d for d in kv(dirty.output) if "hour_ts" in d]
    assert hours and all(int(d["hour_ts"]) % 3_600_000 == 0 for d in hours)
    assert "anomalies=1" in dirty.output and "type=transient_collapse" in dirty.output
    assert rig.cli("report", "dirty", "--hours", "3").exit_code == 2

    report = rig.cli("report", "alerts", "--hours", "24")
    assert report.exit_code == 0, report.output
    rows = {(d["asset"], d["alert_type"]): d for d in kv(report.output) if "asset" in d and "alert_type" in d}
    assert rows[("BTC", "exit_cluster")]["surfaced"] == "1"
    assert rows[("ETH", "exit_cluster")]["suppressed"] == "1"
    assert rows[("ETH", "exit_cluster")]["suppressed_cooldown"] == "1"
    assert "alerts=2" in report.output
    assert "band=exit_cluster_score ranges=18-27" in report.output
    assert "band=alignment_score ranges=23-27,73-77" in report.output
    near = [d for d in kv(report.output) if "signal_ts" in d]
    assert [(d["asset"], d["ec"], d["cas"]) for d in near] == [("BTC", "22.00", "74.00")]
    assert sum(1 for d in kv(report.output) if "state_asset" in d) == 7

    universe = rig.cli("report", "universe")
    assert universe.exit_code == 0, universe.output
    assert "current_size=20" in universe.output and "runs=1" in universe.output
    run = next(d for d in kv(universe.output) if "run_id" in d)
    assert run["status"] and run["requested"] and run["error"] == "none"


def test_retention(rig: Rig) -> None:
    snapshots_before = rig.count(wallet_snapshots)
    signals_before = rig.count(signals)
    assert snapshots_before and signals_before
    rig.clock.set(T0 + 8 * DAY)
    ctx = rig.db()
    Snapshots(ctx.db).upsert(T0 + 8 * DAY - MIN, [SnapshotRow(address(1), "BTC", 1.5)], None, rig.clock.now_ms())
    with ctx.db.transaction() as conn:
        conn.execute(alerts.insert().values(alert_ts=T0 - 100 * DAY, alert_type="exit_cluster", asset="BTC",
                                            signal_ts=T0 - 100 * DAY))
    ctx.close()

    dry = rig.cli("retention", "--dry-run")
    assert dry.exit_code == 0, dry.output
    planned = {d["table"]: d for d in kv(dry.output) if "table" in d}
    assert planned["wallet_snapshots"]["rows"] == str(snapshots_before)
    assert planned["signals"]["rows"] == "0" and planned["alerts"]["rows"] == "1"
    assert planned["wallet_snapshots"]["days"] == "7" and planned["alerts"]["days"] == "90"
    assert rig.count(wallet_snapshots) == snapshots_before + 1 and rig.count(ops_events) == 0

    refused = rig.cli("retention", "--snapshot-days", "6")
    assert refused.exit_code == 1 and "refused=snapshot_retention_below_minimum" in refused.output
    assert rig.count(wallet_snapshots) == snapshots_before + 1

    done = rig.cli("retention", "--operator", "bob")
    assert done.exit_code == 0, done.output
    assert rig.count(wallet_snapshots) == 1  # the recent row is kept
    assert rig.count(signals) == signals_before  # 30 days
    assert rig.count(alerts) == 0
    assert rig.count(ops_events) == 1


def test_db_check(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    check = rig.cli("db-check")
    assert check.exit_code == 0, check.output
    tables = {d["table"]: d for d in kv(check.output) if "table" in d}
    assert int(tables["wallet_snapshots"]["rows"]) > 0 and tables["wallet_snapshots"]["missing_indexes"] == "none"
    assert "connect=true" in check.output and "ok=true" in check.output and "disk_free_pct=" in check.output

    usage = namedtuple("usage", "total used free")
    real = ops_monitor.shutil.disk_usage
    monkeypatch.setattr(ops_monitor.shutil, "disk_usage", lambda _p: usage(100, 90, 10))
    low = rig.cli("db-check")
    assert low.exit_code == 1 and "failed=disk_free_below_minimum" in low.output

    monkeypatch.setattr(ops_monitor.shutil, "disk_usage", real)
    ctx = rig.db()
    with ctx.db.transaction() as conn:
        conn.exec_driver_sql("DROP INDEX ix_wallet_snapshots_dirty")
    ctx.close()
    missing = rig.cli("db-check")
    assert missing.exit_code == 1 and "index_missing:ix_wallet_snapshots_dirty" in missing.output
