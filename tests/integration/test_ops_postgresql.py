"""The database operator commands on PostgreSQL (issue 15): backup (pg_dump), db-check and
retention work there; rebuild-db says plainly that it is SQLite-only. The URL comes from
DATABASE_URL with a password, which never reaches an output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from hlcore_cli import app
from replay.runner import replay

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-ops-pw"
runner = CliRunner()


def out_of(result: Any) -> dict[str, str]:
    return dict(line.split("=", 1) for line in result.output.splitlines() if "=" in line)


def test_backup_db_check_retention_on_postgresql_and_rebuild_refuses(
        pg_url: str, tmp_path: Path, monkeypatch: Any) -> None:
    assert replay(ROOT / "fixtures" / "dashboard_degraded_view", database=pg_url).verdict == "pass"
    monkeypatch.setenv("DATABASE_URL", make_url(pg_url).set(password=PASSWORD).render_as_string(hide_password=False))
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"db_path": "data/hlcore.db"}), encoding="utf-8")

    def ops(*args: str) -> Any:
        result = runner.invoke(app, ["ops", *args, "--policy", str(ROOT), "--config", str(config)])
        assert PASSWORD not in result.output
        return result

    saved = ops("backup")
    assert saved.exit_code == 0, saved.output
    assert out_of(saved)["verified"] == "true" and Path(out_of(saved)["backup_path"]).stat().st_size > 0
    assert out_of(saved)["backup_path"].endswith(".dump")

    checked = ops("db-check")
    assert checked.exit_code == 0, checked.output
    assert "connect=true schema=ok" in checked.output and "ok=true" in checked.output
    tables = [line for line in checked.output.splitlines() if line.startswith("table=")]
    assert any(line.startswith("table=wallet_snapshots ") for line in tables)
    assert tables and all("missing_indexes=none" in line for line in tables)  # every index made on PostgreSQL

    planned = ops("retention", "--dry-run")
    assert planned.exit_code == 0 and "dry_run=true" in planned.output, planned.output
    pruned = ops("retention")
    assert pruned.exit_code == 0 and "action=deleted" in pruned.output, pruned.output

    refused = ops("rebuild-db", "--backup", "--force")
    assert refused.exit_code == 2 and "SQLite only" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and "Traceback" not in refused.output
