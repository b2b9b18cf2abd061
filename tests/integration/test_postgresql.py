"""PostgreSQL for real (issue 15), against a real server (the `pg_server` fixture): the driver
extra, DATABASE_URL over db_url without the password leaking, the advisory writer lock naming its
holder, and two `hlcore live --app monitor` on one database (the second exits 2)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from hlcore.app import database_url, lock_system
from hlcore.config.hashing import config_hash
from hlcore.errors import BadInput
from hlcore.storage.db import open_database
from hlcore.storage.pg_lock import AdvisoryWriterLock, holder_tag, parse_tag
from hlcore.storage.schema import audit_log, system_state
from hlcore.storage.writer_lock import WriterLockHeld
from hlcore.workspace import open_workspace
from hlcore_cli import app

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_769_248_800_000
PASSWORD = "s3cret-pg-pw"
runner = CliRunner()


def with_password(url: str) -> str:
    """The same database with a password in the URL (the test cluster trusts loopback, so any
    password connects: enough to prove it never reaches an output)."""
    return make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def test_missing_driver_names_the_package_to_install(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    with pytest.raises(BadInput) as err:
        open_database(f"postgresql://hl:{PASSWORD}@127.0.0.1:1/hl")
    message = str(err.value)
    assert "pip install 'hlcore[postgres]'" in message and "psycopg" in message
    assert "\n" not in message and PASSWORD not in message


def test_bare_postgresql_url_uses_psycopg_3() -> None:
    assert open_database("postgresql://hl@127.0.0.1:1/hl").engine.dialect.driver == "psycopg"


def test_database_url_env_overrides_db_url_for_both_apps(tmp_path: Path, monkeypatch: Any) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"db_url": "postgresql://file@db/hl",
                                      "monitor": {"db_url": "postgresql://file@db/mon"}}), encoding="utf-8")
    settings = open_workspace(ROOT, config).settings
    before = config_hash(settings, {})
    monkeypatch.setenv("DATABASE_URL", f"postgresql://env:{PASSWORD}@127.0.0.1/hl")
    assert database_url(settings, "copytrader") == database_url(settings, "monitor") == \
        f"postgresql://env:{PASSWORD}@127.0.0.1/hl"
    assert config_hash(open_workspace(ROOT, config).settings, {}) == before  # the environment is not config
    monkeypatch.delenv("DATABASE_URL")
    assert database_url(settings, "copytrader") == "postgresql://file@db/hl"


def test_copytrader_boots_on_postgresql_from_database_url_and_never_writes_the_password(
        tmp_path: Path, pg_url: str, monkeypatch: Any) -> None:
    url = with_password(pg_url)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"app_log_path": str(tmp_path / "app.log"),
                                      "metrics_log_path": str(tmp_path / "metrics.log")}), encoding="utf-8")
    result = runner.invoke(app, ["ops", "preflight", "--allow-create-db", "--mode", "dry-run",
                                 "--policy", str(ROOT), "--config", str(config)])
    assert PASSWORD not in result.output
    db = open_database(pg_url)
    try:
        with db.engine.connect() as conn:
            rows = [*conn.execute(select(system_state)).all(), *conn.execute(select(audit_log)).all()]
    finally:
        db.dispose()
    assert rows, result.output  # the database on the server was created and written
    assert all(PASSWORD not in repr(row) for row in rows)
    written = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    assert PASSWORD not in written


def test_advisory_lock_refuses_a_second_holder_naming_the_first(pg_url: str) -> None:
    first = AdvisoryWriterLock(with_password(pg_url), "copytrader")
    second = AdvisoryWriterLock(pg_url, "copytrader")
    other_system = AdvisoryWriterLock(pg_url, "monitor")
    first.acquire(since_ms=T0, command="live --mode live")
    try:
        with pytest.raises(WriterLockHeld) as err:
            second.acquire(wait_s=0.1)
        assert err.value.exit_code == 2
        message = str(err.value)
        assert f"pid={os.getpid()}" in message and "since=2026-01-24T10:00:00Z" in message
        assert "command=live --mode live" in message and PASSWORD not in message
        other_system.acquire()  # the monitor's lock is another key on the same database
        other_system.release()
    finally:
        first.release()
    second.acquire()
    assert second.holder() is not None and second.holder().pid == os.getpid()  # type: ignore[union-attr]
    second.release()
    assert second.holder() is None


def test_a_killed_holder_frees_the_lock(pg_url: str) -> None:
    code = ("import sys,time; from hlcore.storage.pg_lock import AdvisoryWriterLock as L; "
            "lock = L(sys.argv[1], 'copytrader'); lock.acquire(command='live --mode live'); print('held', flush=True); "
            "time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, pg_url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        lock = AdvisoryWriterLock(pg_url, "copytrader")
        with pytest.raises(WriterLockHeld, match=f"pid={child.pid} "):
            lock.acquire()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        lock.acquire(wait_s=10)  # the server ends the dead session and its lock with it
        lock.release()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_holder_tag_round_trips_and_fits_application_name() -> None:
    tag = holder_tag(4242, "host-" + "x" * 80, "2026-01-24T10:00:00Z", "live --app monitor --job all")
    assert len(tag) <= 63
    assert parse_tag(holder_tag(4242, "h1", "2026-01-24T10:00:00Z", "live --mode live"), 9) == \
        parse_tag("hlcore|4242|2026-01-24T10:00:00Z|h1|live --mode live", 9)
    assert parse_tag("psql", 9).pid is None and "psql" in (parse_tag("psql", 9).command or "")


def test_operator_lock_system_on_postgresql_waits_then_names_the_holder(tmp_path: Path, pg_url: str) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"db_url": pg_url}), encoding="utf-8")
    ws = open_workspace(ROOT, config)
    held = lock_system(ws, "copytrader", command="ops recover-orders", since_ms=T0, wait_s=0.0)
    try:
        with pytest.raises(WriterLockHeld, match="command=ops recover-orders"):
            lock_system(ws, "copytrader", command="ops reset-safety", since_ms=T0, wait_s=0.2)
    finally:
        held.release()


def _monitor(tmp_path: Path, url: str, *extra: str) -> subprocess.Popen[str]:
    config = tmp_path / "settings.yaml"
    loopback = "http://127.0.0.1:9/info"  # nothing listens: venue calls fail at once, on this machine
    config.write_text(yaml.safe_dump({"monitor": {"universe": {"leaderboard_url": loopback},
                                                  "snapshots": {"info_url": loopback}}}), encoding="utf-8")
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.Popen([sys.executable, "-m", "hlcore", "live", "--app", "monitor", "--policy", str(ROOT),
                             "--config", str(config), *extra], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_two_monitors_on_one_postgresql_database_the_second_exits_2_naming_the_first(
        tmp_path: Path, pg_url: str) -> None:
    url = with_password(pg_url)
    first = _monitor(tmp_path, url, "--allow-create-db")
    try:
        assert first.stdout is not None
        line = first.stdout.readline()
        assert line.startswith("app=monitor"), line + first.stdout.read()
        second = _monitor(tmp_path, url)
        out, _ = second.communicate(timeout=120)
        assert second.returncode == 2, out
        assert f"pid={first.pid} " in out and "command=live --app monitor" in out
        assert PASSWORD not in out and "Traceback" not in out
        assert len(out.strip().splitlines()) == 1, out
    finally:
        first.send_signal(signal.SIGTERM)
        try:
            first.wait(30)
        except subprocess.TimeoutExpired:
            first.kill()
            first.wait()
    time.sleep(0)  # the first released its lock on exit: a third start takes it
    third = AdvisoryWriterLock(pg_url, "monitor")
    third.acquire(wait_s=10)
    third.release()
