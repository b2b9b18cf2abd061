"""`hlcore record` with the venues unreachable records nothing and says so: exit 1, no cassette,
no skeleton, no empty folder (issue 11: never report success without recording)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hlcore_cli import app
from replay.record import recorded_interactions

ROOT = Path(__file__).resolve().parents[2]


def test_offline_record_fails_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"db_path": str(tmp_path / "ct.db"),
                                      "ingest": {"hyperliquid": {"rest_url": "http://127.0.0.1:1/info"}}}),
                      encoding="utf-8")
    monkeypatch.setenv("HYPERLIQUID_TARGET_WALLET", "0x" + "ab" * 20)
    fixtures = tmp_path / "fixtures"
    result = CliRunner().invoke(app, ["record", "offline_try", "--seconds", "1", "--fixtures", str(fixtures),
                                      "--policy", str(ROOT), "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "nothing recorded" in result.output and "recorded " not in result.output.replace("nothing recorded", "")
    assert not (fixtures / "offline_try").exists()


def test_recorded_interactions_counts_the_cassette(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    assert recorded_interactions(path) == 0
    path.write_text(yaml.safe_dump({"interactions": [{"request": {}}, {"request": {}}], "version": 1}),
                    encoding="utf-8")
    assert recorded_interactions(path) == 2
