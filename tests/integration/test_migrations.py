"""`hlcore ops migrate` (issue 15): a database written at the previous release's schema (4) HALTs
until migrated, `--dry-run` touches nothing, and the migration (after a verified backup) keeps
every row, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from hlcore.storage.db import Database, open_database
from hlcore.storage.runbook_columns import RUNBOOK_COLUMNS
from hlcore.storage.schema import SCHEMA_VERSION, metadata, processed_txs, system_state
from hlcore_cli import app
from replay.runner import replay

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def as_release_4(db: Database) -> None:
    """Turn a database written by this code into what release 4 wrote: no runbook columns,
    `event_index` INTEGER on PostgreSQL, schema_version 4 (the rows stay)."""
    with db.transaction() as conn:
        for table, column, _source, _kind in RUNBOOK_COLUMNS:
            conn.exec_driver_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE processed_txs ALTER COLUMN event_index TYPE INTEGER")
        conn.execute(system_state.update().where(system_state.c["key"] == "schema_version").values(value="4"))


def counts(db: Database) -> dict[str, int]:
    with db.transaction() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in metadata.sorted_tables}


def out_of(result: Any) -> dict[str, str]:
    return dict(line.split("=", 1) for line in result.output.splitlines() if "=" in line)


def test_a_release_4_database_halts_until_migrated_and_keeps_every_row(
        db_url: str, tmp_path: Path, monkeypatch: Any) -> None:
    assert replay(ROOT / "fixtures" / "dashboard_degraded_view", database=db_url).verdict == "pass"
    db = open_database(db_url)
    as_release_4(db)
    before = counts(db)
    assert before["wallet_snapshots"] > 0 and before["ingest_runs"] > 0 and before["system_state"] > 0
    assert db.schema_status() == "mismatch"  # what makes a start HALT with SCHEMA_VERSION_MISMATCH
    config = tmp_path / "etc" / "settings.yaml"
    config.parent.mkdir()
    if db_url.startswith("sqlite"):
        config.write_text(yaml.safe_dump({"db_path": db_url.removeprefix("sqlite:///")}), encoding="utf-8")
    else:
        config.write_text(yaml.safe_dump({"db_path": str(tmp_path / "etc" / "data" / "unused.db")}),
                          encoding="utf-8")
        monkeypatch.setenv("DATABASE_URL", db_url)
    args = ["ops", "migrate", "--policy", str(ROOT), "--config", str(config)]

    planned = runner.invoke(app, [*args, "--dry-run"])
    assert planned.exit_code == 0, planned.output
    assert out_of(planned)["dry_run"] == "true" and out_of(planned)["from_schema_version"] == "4"
    assert db.stored_schema_version() == "4" and counts(db) == before

    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    out = out_of(done)
    assert (out["migrated"], out["rows_kept"], out["verified"]) == ("ok", "true", "true")
    assert Path(out["backup_path"]).is_file()
    assert db.stored_schema_version() == str(SCHEMA_VERSION) and db.schema_status() == "ok"
    assert counts(db) == before
    with db.transaction() as conn:  # the runbook's own query works on the migrated database
        ages = conn.execute(text("SELECT timestamp, wallet_success_count FROM ingest_runs "
                                 "ORDER BY timestamp DESC LIMIT 5")).all()
        assert len(ages) == 5 and all(row[0] is not None for row in ages)
        conn.execute(processed_txs.insert().values(  # a fill id beyond 32 bits now fits
            tx_hash="0x1", event_index=611402750381120, symbol="BTCUSDT", timestamp_ms=1, is_replay=False,
            state="x", created_at_ms=1, updated_at_ms=1))
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and out_of(again)["migrated"] == "nothing_to_do"
    db.dispose()
