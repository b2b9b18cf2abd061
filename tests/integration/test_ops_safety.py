"""`hlcore ops` safety commands against a real SQLite database (copytrader §8, drills 6, 7, 20)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from hlcore.app import open_app
from hlcore.engine.clock import SystemClock
from hlcore.storage.copytrade import CopytradeKey, CopytradeState
from hlcore.storage.repos import AuditLog
from hlcore.workspace import open_workspace
from hlcore_cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"db_path": str(tmp_path / "ct.db")}), encoding="utf-8")
    return path


def seed(config: Path, *facts: tuple[str, dict[str, Any]]) -> None:
    ctx = open_app(open_workspace(ROOT, config), SystemClock(), create=True)
    for kind, fields in facts:
        ctx.runtime.observe(kind, fields)
    ctx.close()


def ops(config: Path, *args: str) -> tuple[int, dict[str, str]]:
    result = runner.invoke(app, ["ops", *args, "--policy", str(ROOT), "--config", str(config)])
    pairs = dict(line.split("=", 1) for line in result.output.splitlines() if "=" in line)
    return result.exit_code, pairs


def state(config: Path) -> tuple[str | None, str | None]:
    ctx = open_app(open_workspace(ROOT, config), SystemClock(), persist_start=False)
    s = CopytradeState(ctx.db)
    out = (s.get(CopytradeKey.SAFETY_MODE), s.get(CopytradeKey.SAFETY_REASON_CODE))
    ctx.close()
    return out


def test_ops_refuse_without_a_database(config: Path) -> None:
    code, _ = ops(config, "unhalt")
    assert code == 1


def test_unhalt_from_halt_and_refused_otherwise(config: Path) -> None:
    seed(config, ("storage_failed", {"app": "copytrader", "operation": "write"}))
    code, out = ops(config, "unhalt", "--operator", "alice", "--reason-message", "disk replaced")
    assert code == 0
    assert (out["before_safety_mode"], out["after_safety_mode"], out["after_safety_reason_code"]) == \
        ("HALT", "ARMED_SAFE", "MANUAL_UNHALT")
    assert state(config) == ("ARMED_SAFE", "MANUAL_UNHALT")
    ctx = open_app(open_workspace(ROOT, config), SystemClock(), persist_start=False)
    (row,) = AuditLog(ctx.db).rows(category="ops")
    assert (row["reason_message"], row["metadata"]["operator"], row["to_state"]) == \
        ("disk replaced", "alice", "ARMED_SAFE")
    ctx.close()
    code, out = ops(config, "unhalt")
    assert code == 1 and out["refused"] == "safety_mode_not_halt"


def test_promote_is_refused_without_a_recent_ok_reconcile(config: Path) -> None:
    seed(config)
    code, out = ops(config, "promote")
    assert code == 1 and out["refused"] == "last_reconcile_not_ok"
    assert state(config) == ("ARMED_SAFE", "BOOTSTRAP")
    code, _ = ops(config, "promote", "--force")
    assert code == 2  # --force needs an audited reason
    code, out = ops(config, "promote", "--force", "--reason-message", "verified by hand")
    assert code == 0 and out["after_safety_mode"] == "ARMED_LIVE"


def test_reset_safety_refuses_halt_to_live_and_records_the_given_code(config: Path) -> None:
    seed(config, ("storage_failed", {"app": "copytrader", "operation": "write"}))
    code, out = ops(config, "reset-safety", "--mode", "ARMED_LIVE")
    assert code == 1 and out["refused"] == "halt_to_live_refused"
    code, out = ops(config, "reset-safety", "--mode", "ARMED_SAFE", "--reason-code", "NO_SUCH_CODE")
    assert code == 1 and out["refused"] == "unknown_reason_code"
    assert "MAINTENANCE_SKIP" in out["allowed"].split(",")  # the refusal lists the accepted codes (issue 11)
    code, out = ops(config, "reset-safety", "--mode", "ARMED_SAFE", "--reason-code", "MAINTENANCE_SKIP",
                    "--reason-message", "gap abandoned after the planned maintenance")
    assert code == 0 and state(config) == ("ARMED_SAFE", "MAINTENANCE_SKIP")
    assert message(config) == "gap abandoned after the planned maintenance"  # the operator's words (issue 11)


def message(config: Path) -> str | None:
    ctx = open_app(open_workspace(ROOT, config), SystemClock(), persist_start=False)
    try:
        return CopytradeState(ctx.db).get(CopytradeKey.SAFETY_REASON_MESSAGE)
    finally:
        ctx.close()


def test_every_safety_transition_stores_its_message(config: Path) -> None:
    """`safety_reason_message` is written with the transition: the reason's declared text."""
    from hlcore.workspace import open_workspace as ws_open

    seed(config)
    texts = ws_open(ROOT, config).policy.reasons
    assert message(config) == texts["BOOTSTRAP"].text and message(config)
    seed(config, ("storage_failed", {"app": "copytrader", "operation": "write"}))
    assert state(config)[0] == "HALT" and message(config) == texts["STORAGE_UNAVAILABLE"].text


def test_maintenance_skip_dry_run_real_and_repeat(config: Path, tmp_path: Path) -> None:
    seed(config, ("ingest_tick", {"last_ingest_success_ms": 1, "cursor_ts_ms": 1,
                                  "maintenance_skip_applied_ms": None}))
    ctx = open_app(open_workspace(ROOT, config), SystemClock(), persist_start=False)
    CopytradeState(ctx.db).set_many({CopytradeKey.LAST_INGEST_SUCCESS_MS: "1"}, 1)  # as ingest left it
    ctx.close()
    assert state(config) == ("HALT", "BACKFILL_WINDOW_EXCEEDED")
    code, out = ops(config, "maintenance-skip", "--dry-run")
    assert code == 0 and out["dry_run"].startswith("true")
    ctx = open_app(open_workspace(ROOT, config), SystemClock(), persist_start=False)
    assert CopytradeState(ctx.db).get(CopytradeKey.MAINTENANCE_SKIP_APPLIED_MS) is None  # nothing written
    ctx.close()
    evidence = tmp_path / "evidence.txt"
    code, out = ops(config, "maintenance-skip", "--evidence", str(evidence), "--reason-message", "long downtime")
    assert code == 0
    assert out["after_cursor_after"] == f"{out['after_maintenance_skip_applied_ms']}|0|maintenance|MAINTENANCE"
    assert out["after_abandoned_from_ms"] == "1"
    text = evidence.read_text(encoding="utf-8")
    assert "config_hash=" in text and "after_abandoned_to_ms=" in text and "after_cursor_before=" in text
    assert state(config) == ("HALT", "BACKFILL_WINDOW_EXCEEDED")  # stays HALT until §4.8 recovers it
    code, out = ops(config, "maintenance-skip")
    assert code == 1 and out["refused"] == "maintenance_skip_already_applied"


def test_maintenance_skip_refused_for_another_halt(config: Path) -> None:
    seed(config, ("storage_failed", {"app": "copytrader", "operation": "write"}))
    code, out = ops(config, "maintenance-skip")
    assert code == 1 and out["refused"] == "safety_reason_not_backfill"
