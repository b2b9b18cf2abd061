"""Databases for the dashboard tests: a drill's kept monitor database (dashboard_mask_stale: NORMAL
at 10:01:30, DEGRADED at 10:05, HALT from 10:10:30) and a hand-seeded copy-trader database."""

from __future__ import annotations

from pathlib import Path

from hlcore.storage.db import open_database
from hlcore.storage.repos import AuditLog, SystemState

ROOT = Path(__file__).resolve().parents[2]
MASK_STALE = ROOT / "fixtures" / "dashboard_mask_stale"
NORMAL_AT = "2026-01-24T10:01:30Z"
DEGRADED_AT = "2026-01-24T10:05:00Z"
HALT_AT = "2026-01-24T10:12:30Z"
T0 = 1_769_248_800_000  # 2026-01-24T10:00:00Z


def mask_stale_db(folder: Path) -> Path:
    """Replay dashboard_mask_stale's base run and keep its database (~2 s)."""
    from replay.runner import replay

    outcome = replay(MASK_STALE, keep_db=folder, runs={"base"})
    assert outcome.verdict == "pass", outcome.failures
    return folder / "base" / "monitor.db"


def copytrader_db(path: Path, mode: str, reason: str) -> Path:
    """A copy-trader database a service left in `mode` (the system_state keys ops reads)."""
    db = open_database(f"sqlite:///{path}")
    db.create_schema(T0)
    SystemState(db).set_many({"safety_mode": mode, "safety_reason_code": reason,
                              "safety_reason_message": "drill", "safety_changed_at_ms": str(T0),
                              "last_processed_timestamp_ms": str(T0 - 5000)}, T0)
    AuditLog(db).write({"timestamp_ms": T0, "category": "safety", "entity_id": "safety", "machine": "safety",
                        "instance": "safety", "from_state": "ARMED_LIVE", "to_state": mode, "event": "x",
                        "reason_code": reason, "event_id": "t", "facts": "{}", "policy_hash": "p",
                        "metadata": '{"severity": "critical"}'})
    db.dispose()
    return path
