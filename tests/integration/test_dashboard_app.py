"""The Streamlit script (`streamlit.testing.v1.AppTest`) over real databases: the three monitor views,
storage trouble (missing file, schema mismatch) as the halt view without a traceback, the
copy-trader page, the read-only guarantee, and the `hlcore dashboard` / `--keep-db` CLI edges."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from hlcore.dashboard.session import ENV_CONFIG, ENV_DB, ENV_NOW, Session
from hlcore.storage.db import StorageUnavailable, open_read_only
from hlcore.storage.schema import system_state
from hlcore_cli import app
from tests.support.dashboard import DEGRADED_AT, HALT_AT, NORMAL_AT, ROOT, copytrader_db

SCRIPT = ROOT / "hlcore" / "dashboard" / "app.py"


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run the script with the given dashboard environment (a fresh cached session each time)."""

    def run(db: Path | str, now: str, config: Path | None = None, page: str | None = None) -> AppTest:
        monkeypatch.setenv(ENV_DB, str(db))
        monkeypatch.setenv(ENV_NOW, now)
        if config is not None:
            monkeypatch.setenv(ENV_CONFIG, str(config))
        at = AppTest.from_file(str(SCRIPT), default_timeout=60)
        if page is not None:
            at.query_params["page"] = page
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    import streamlit as st

    st.cache_resource.clear()
    yield run
    st.cache_resource.clear()


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [e.value for e in at.error] + [w.value for w in at.warning]
    return "\n".join(str(p) for p in parts)


def charts(at: AppTest) -> int:
    return len(at.get("vega_lite_chart"))


def test_halt_view_draws_the_halt_box_and_nothing_of_the_surface(app_env: Any, mask_stale_monitor_db: Path) -> None:
    at = app_env(mask_stale_monitor_db, HALT_AT)
    page = texts(at)
    assert "🚨 HALT · `AGE_STALE`" in page
    assert "## SYSTEM HALT: DATA STALE" in page
    assert "Signals and alerts are suppressed until ingestion resumes." in page
    assert "**Gap:** 12 min" in page
    assert "🚨 [SYSTEM] Data Stale: Ingestion has not succeeded f" in page
    for word in ("#### HYPE", "Long-only", "CAS ", "positioning", "Context only"):
        assert word not in page
    assert charts(at) == 0 and not at.warning


def test_degraded_view_marks_everything(app_env: Any, mask_stale_monitor_db: Path) -> None:
    at = app_env(mask_stale_monitor_db, DEGRADED_AT)
    page = texts(at)
    assert "⚠️ DEGRADED · `AGE_DEGRADED`" in page
    assert [w.value for w in at.warning] == [
        "Data quality degraded. Coverage or freshness below optimal. Signals may be less reliable."]
    assert all(f"#### {a} (degraded)" in page for a in ("HYPE", "BTC", "ETH"))
    assert "border:2px solid orange" in page and "border:2px solid yellow" in page
    assert charts(at) == 6  # 3 assets x 2 windows (CAS, dispersion, exit cluster on each)


def test_normal_view_draws_three_panels_charts_and_positioning(app_env: Any, mask_stale_monitor_db: Path) -> None:
    at = app_env(mask_stale_monitor_db, NORMAL_AT)
    page = texts(at)
    assert "✅ NORMAL · `OK`" in page
    headings = [m.value for m in at.markdown if str(m.value).startswith("#### ")]
    assert headings == ["#### HYPE", "#### BTC", "#### ETH"]
    assert page.count("<b>Long-only</b> / Reduced") == 3 and "**CAS 100 →**" in page
    assert charts(at) == 6  # 3 assets x 2 windows (CAS, dispersion, exit cluster on each)
    assert page.count("positioning: long 100.0%") == 3
    assert "SYSTEM HALT" not in page and not at.warning


def test_missing_database_is_the_halt_view_not_a_traceback(app_env: Any, tmp_path: Path) -> None:
    at = app_env(tmp_path / "nowhere" / "monitor.db", HALT_AT)
    page = texts(at)
    assert "🚨 HALT · `STORAGE_UNAVAILABLE`" in page and "## SYSTEM HALT: DATA STALE" in page
    assert not (tmp_path / "nowhere").exists()  # read-only: nothing created


def test_schema_mismatch_is_the_halt_view(app_env: Any, mask_stale_monitor_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copyfile(mask_stale_monitor_db, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE system_state SET value = '1' WHERE key = 'schema_version'")
    at = app_env(db, NORMAL_AT)
    page = texts(at)
    assert "🚨 HALT · `STORAGE_UNAVAILABLE`" in page
    assert "Long-only" not in page and charts(at) == 0


def test_copytrader_page_shows_the_halt_banner_and_runbook_facts(app_env: Any, mask_stale_monitor_db: Path,
                                                                  tmp_path: Path) -> None:
    ct = copytrader_db(tmp_path / "copytrader.db", "HALT", "RECONCILE_CRITICAL")
    config = tmp_path / "settings.yaml"
    config.write_text(f"db_path: {ct}\n", encoding="utf-8")
    at = app_env(mask_stale_monitor_db, HALT_AT, config=config, page="Copy-trader")
    assert [e.value for e in at.error] == ["HALT: trading halted — RECONCILE_CRITICAL drill"]
    table = at.table[0].value
    facts = dict(zip(table.index, table["value"], strict=True))
    assert facts["Safety mode"] == "HALT" and facts["Reason code"] == "RECONCILE_CRITICAL"
    assert facts["Since"] == "2026-01-24 10:00:00 UTC" and facts["Cursor lag"] == "755 s"
    assert facts["UNKNOWN orders"] == "0" and len(facts["Policy hash"]) == 64
    assert "**Allowed gates:** `reconcile`, `heartbeat`" in texts(at)  # machines/safety.yaml HALT allows
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 1  # the one audit row


def test_copytrader_page_banner_for_armed_safe(app_env: Any, mask_stale_monitor_db: Path, tmp_path: Path) -> None:
    ct = copytrader_db(tmp_path / "copytrader.db", "ARMED_SAFE", "BOOTSTRAP")
    config = tmp_path / "settings.yaml"
    config.write_text(f"db_path: {ct}\n", encoding="utf-8")
    at = app_env(mask_stale_monitor_db, HALT_AT, config=config, page="Copy-trader")
    assert not at.error
    assert [w.value for w in at.warning] == ["ARMED_SAFE: safe mode, no new exposure — BOOTSTRAP drill"]


def test_the_dashboard_never_writes(mask_stale_monitor_db: Path, tmp_path: Path) -> None:
    db_file = tmp_path / "monitor.db"
    shutil.copyfile(mask_stale_monitor_db, db_file)
    before = hashlib.sha256(db_file.read_bytes()).hexdigest()
    session = Session.from_env({ENV_DB: str(db_file), ENV_NOW: HALT_AT})
    assert session.monitor().name == "HALT"
    with pytest.raises(StorageUnavailable), session.db.transaction() as conn:
        conn.execute(insert(system_state).values(key="x", value="y", updated_at_ms=0))
    session.db.dispose()
    assert hashlib.sha256(db_file.read_bytes()).hexdigest() == before
    ro = open_read_only(f"sqlite:///{tmp_path / 'absent.db'}")
    with pytest.raises(StorageUnavailable):
        ro.schema_status()
    assert not (tmp_path / "absent.db").exists()


def test_dashboard_cli_help_and_bad_input() -> None:
    """Bad options stop before Streamlit starts: exit 2 and one located line (in-process: no exec)."""
    runner = CliRunner()
    assert runner.invoke(app, ["dashboard", "--help"]).exit_code == 0
    bad = runner.invoke(app, ["dashboard", "--now", "yesterday"])
    assert bad.exit_code == 2
    assert bad.stderr.strip().splitlines() == [
        "error: HLCORE_DASHBOARD_NOW / --now: expected an ISO UTC instant like 2026-01-24T10:12:00Z, got 'yesterday'"]
    port = runner.invoke(app, ["dashboard", "--port", "0"])
    assert port.exit_code == 2 and "--port: expected 1-65535, got 0" in port.stderr
    url = runner.invoke(app, ["dashboard", "--db", "mysql://x/y"])
    assert url.exit_code == 2 and "unsupported database backend 'mysql'" in url.stderr


def test_unreachable_postgresql_is_the_halt_view() -> None:
    """DATABASE_URL honoured: a server that is down (or a driver that is missing) is an outage."""
    session = Session.from_env({"DATABASE_URL": "postgresql://hl:secret@127.0.0.1:1/monitor", ENV_NOW: HALT_AT})
    v = session.monitor()
    assert (v.name, v.reason, v.surface) == ("HALT", "STORAGE_UNAVAILABLE", None)
    assert "secret" not in v.text()
