"""Log lines carry ISO-8601 UTC times an operator can read (issue 11), and the console echo is
one plain line per warning."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hlcore.engine.clock import ManualClock
from hlcore.logs import ConsoleFormatter, JsonFormatter, iso_utc

T0 = 1_769_248_800_123  # 2026-01-24T10:00:00.123Z


def _record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("hlcore.copytrade", level, __file__, 1, msg, (), None)


def test_iso_utc_keeps_milliseconds() -> None:
    assert iso_utc(T0) == "2026-01-24T10:00:00.123Z"
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"


def test_json_lines_carry_the_iso_time_and_the_epoch() -> None:
    entry = json.loads(JsonFormatter(ManualClock(T0)).format(_record("ingest fetch failed")))
    assert entry["time"] == "2026-01-24T10:00:00.123Z" and entry["ts"] == T0


def test_console_line_is_time_level_message_with_secrets_redacted() -> None:
    line = ConsoleFormatter(ManualClock(T0)).format(_record("ingest fetch failed: signature=abc123 timeout"))
    assert line == "2026-01-24T10:00:00.123Z WARNING ingest fetch failed: signature=<redacted> timeout"


def test_metrics_lines_carry_the_iso_time_too(tmp_path: Path) -> None:
    from hlcore.jobs.copytrade.service import metrics_writer

    path = tmp_path / "metrics.log"
    metrics_writer(path, ManualClock(T0))("heartbeat", 1, {})
    line = path.read_text(encoding="utf-8")
    assert line.startswith("[METRICS] ")
    entry = json.loads(line[len("[METRICS] "):])
    assert (entry["ts"], entry["time"], entry["name"]) == (T0, "2026-01-24T10:00:00.123Z", "heartbeat")
