"""The database is who it says it is (issue 10): atomic first boot, half-made files recognised,
`db_path` relative to the config file, `live` never creates a database without --allow-create-db,
and a database deleted, replaced or re-versioned under a running loop HALTs it at once."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from typer.testing import CliRunner

from hlcore.app import database_file, database_url, prepare_database
from hlcore.engine.clock import ManualClock
from hlcore.errors import BadInput
from hlcore.jobs.copytrade.service import Wiring, start
from hlcore.storage.db import create_sqlite_file, open_database
from hlcore.storage.identity import BootIdentity
from hlcore.storage.schema import metadata, system_state
from hlcore.storage.writer_lock import FileWriterLock, lock_path_for
from hlcore.workspace import open_workspace
from hlcore_cli import app

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_769_248_800_000
WALLET = "0x" + "ab" * 20
runner = CliRunner()


def write_config(folder: Path, **settings: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "settings.yaml"
    path.write_text(yaml.safe_dump({"db_path": "data/ct.db", **settings}), encoding="utf-8")
    return path


def test_db_path_is_relative_to_the_config_file_not_the_working_directory(tmp_path: Path,
                                                                          monkeypatch: Any) -> None:
    config = write_config(tmp_path / "etc")
    monkeypatch.chdir(tmp_path)
    here = database_file(database_url(open_workspace(ROOT, config).settings, "copytrader"))
    monkeypatch.chdir(tmp_path / "etc")
    there = database_file(database_url(open_workspace(ROOT, Path("settings.yaml")).settings, "copytrader"))
    assert here == there == (tmp_path / "etc" / "data" / "ct.db").resolve()


def test_first_boot_builds_the_file_aside_and_links_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "data" / "ct.db"
    create_sqlite_file(path, T0)
    db = open_database(f"sqlite:///{path}")
    assert db.schema_status() == "ok" and db.identity() is not None and db.identity().startswith(f"{T0}-")
    db.dispose()
    assert sorted(p.name for p in path.parent.iterdir()) == ["ct.db"]  # no temp file, no WAL left behind
    with pytest.raises(FileExistsError):
        create_sqlite_file(path, T0)  # a first boot never overwrites a database


def test_a_half_made_database_is_recognised_and_reinitialised_only_when_allowed(tmp_path: Path) -> None:
    path = tmp_path / "ct.db"
    conn = sqlite3.connect(path)  # what a first boot killed between two CREATE TABLEs left (older versions)
    conn.execute("CREATE TABLE system_state (key TEXT PRIMARY KEY, value TEXT, updated_at_ms INTEGER)")
    conn.execute("CREATE TABLE processed_txs (tx_hash TEXT)")
    conn.commit()
    conn.close()
    db = open_database(f"sqlite:///{path}")
    assert db.schema_status() == "incomplete"  # never mistaken for a version mismatch
    db.dispose()
    with pytest.raises(BadInput, match="half-made"):
        prepare_database(f"sqlite:///{path}", T0, allow_create=False)
    prepare_database(f"sqlite:///{path}", T0, allow_create=True)
    db = open_database(f"sqlite:///{path}")
    assert db.schema_status() == "ok"
    db.dispose()
    assert (tmp_path / f"ct.db.half-made-{T0}").exists()  # set aside, not deleted


def test_a_database_with_rows_but_no_version_stays_a_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "ct.db"
    db = open_database(f"sqlite:///{path}")
    with db.transaction() as conn:
        metadata.create_all(conn)
        conn.execute(system_state.insert().values(key="safety_mode", value="HALT", updated_at_ms=T0))
    assert db.schema_status() == "mismatch"
    db.dispose()
    prepare_database(f"sqlite:///{path}", T0, allow_create=True)  # left alone: boot halts on it
    assert not list(tmp_path.glob("*.half-made-*"))


def test_live_refuses_to_create_a_database_without_the_flag_naming_the_resolved_path(tmp_path: Path,
                                                                                      monkeypatch: Any) -> None:
    config = write_config(tmp_path / "etc")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYPERLIQUID_TARGET_WALLET", WALLET)
    result = runner.invoke(app, ["live", "--mode", "dry-run", "--config", str(config), "--policy", str(ROOT)])
    assert result.exit_code == 2
    assert str((tmp_path / "etc" / "data" / "ct.db").resolve()) in result.output
    assert "--allow-create-db" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "etc" / "data" / "ct.db").exists()


def test_live_exits_2_naming_the_holder_of_the_writer_lock(tmp_path: Path, monkeypatch: Any) -> None:
    config = write_config(tmp_path / "etc")
    monkeypatch.setenv("HYPERLIQUID_TARGET_WALLET", WALLET)
    db = (tmp_path / "etc" / "data" / "ct.db").resolve()
    create_sqlite_file(db, T0)
    holder = FileWriterLock(lock_path_for(db))
    holder.acquire(since_ms=T0, command="live --mode live")
    try:
        before = db.stat().st_mtime_ns
        result = runner.invoke(app, ["live", "--mode", "dry-run", "--config", str(config), "--policy", str(ROOT)])
    finally:
        holder.release()
    assert result.exit_code == 2
    assert f"pid={os.getpid()}" in result.output and "since=2026-01-24T10:00:00Z" in result.output
    assert db.stat().st_mtime_ns == before  # touched nothing


def ops(config: Path, *args: str) -> Any:
    return runner.invoke(app, ["ops", *args, "--policy", str(ROOT), "--config", str(config)])


def test_operator_commands_wait_for_another_operator_then_exit_2_but_reach_a_running_service(
        tmp_path: Path) -> None:
    config = write_config(tmp_path / "etc", orchestrator={"writer_lock_wait_sec": 0.2})
    db = (tmp_path / "etc" / "data" / "ct.db").resolve()
    create_sqlite_file(db, T0)
    holder = FileWriterLock(lock_path_for(db))
    holder.acquire(since_ms=T0, command="ops recover-orders")
    try:
        busy = ops(config, "reset-safety", "--mode", "HALT", "--allow-non-halt", "--reason-code", "MANUAL_OVERRIDE")
        holder.release()
        holder.acquire(since_ms=T0, command="live --mode live")
        guest = ops(config, "reset-safety", "--mode", "HALT", "--allow-non-halt", "--reason-code", "MANUAL_OVERRIDE")
        rebuild = ops(config, "rebuild-db", "--backup", "--force")
    finally:
        holder.release()
    assert busy.exit_code == 2 and "command=ops recover-orders" in busy.output
    assert guest.exit_code == 0, guest.output  # the running service adopts it at its next tick
    assert rebuild.exit_code == 2 and "command=live --mode live" in rebuild.output  # never under a service
    assert db.exists()


def booted_loop(tmp_path: Path) -> tuple[Any, Any]:
    config = write_config(tmp_path / "etc")
    ws = open_workspace(ROOT, config)
    clock = ManualClock(T0)
    wiring = Wiring(clock, lambda s: clock.advance(int(s * 1000)), random.Random(1),
                    lambda _venue: requests.Session(), {"HYPERLIQUID_TARGET_WALLET": WALLET})
    ctx, _jobs, _scheduler, loop, code = start(ws, "dry-run", wiring, allow_create_db=True)
    assert code == 0
    return ctx, loop


@pytest.mark.parametrize("change, reason", [("delete", "STORAGE_UNAVAILABLE"), ("replace", "STORAGE_UNAVAILABLE"),
                                            ("reversion", "SCHEMA_VERSION_MISMATCH")])
def test_a_database_changed_under_the_loop_halts_it_before_any_work(tmp_path: Path, change: str,
                                                                    reason: str) -> None:
    ctx, loop = booted_loop(tmp_path)
    path = BootIdentity.of(ctx.db).path
    assert path is not None
    if change == "delete":
        path.unlink()
    elif change == "replace":
        path.rename(path.with_name("moved.db"))
        create_sqlite_file(path, T0 + 1)
    else:
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE system_state SET value = '3' WHERE key = 'schema_version'")
    wait = loop.tick(T0 + 1_000)  # returns before any fetch: no session is ever used
    engine = ctx.runtime.engine
    assert (engine.state("safety"), engine.reason("safety")) == ("HALT", reason)
    assert not loop.jobs.database_ok()  # and the per-order check says no from now on
    assert wait == loop.max_idle_ms
    if change == "reversion":  # still our database: the HALT is written into it
        with sqlite3.connect(path) as conn:
            stored = dict(conn.execute("SELECT key, value FROM system_state").fetchall())
        assert (stored["safety_mode"], stored["safety_reason_code"]) == ("HALT", "SCHEMA_VERSION_MISMATCH")
    ctx.close()
