"""Structured logs: one JSON object per line (copytrader §5), time from the injected clock.

A redaction filter drops anything that looks like a credential before a line is written, as a
second line of defence: adapters never log keys, secrets, signatures or signed query strings.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hlcore.engine.clock import Clock
from hlcore.redact import scrub


class JsonFormatter(logging.Formatter):
    def __init__(self, clock: Clock):
        super().__init__()
        self.clock = clock

    def format(self, record: logging.LogRecord) -> str:
        message = scrub(record.getMessage())
        entry = {"ts": self.clock.now_ms(), "level": record.levelname, "logger": record.name, "msg": message}
        if record.exc_info:
            entry["exc"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(entry, sort_keys=True, ensure_ascii=False)


def configure(path: Path | None, clock: Clock, level: str = "INFO") -> logging.Handler:
    """Send hlcore's logs to `path` as JSON lines (stderr when None); returns the handler."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(clock))
    root = logging.getLogger("hlcore")
    root.handlers = [h for h in root.handlers if not isinstance(h.formatter, JsonFormatter)]
    root.addHandler(handler)
    root.setLevel(level)
    return handler


MONITOR_COMPONENTS = {  # runbooks' "Log Locations": component -> the loggers that write to it
    "ingest.log": ("hlcore.monitor.universe", "hlcore.monitor.snapshots", "hlcore.monitor.health"),
    "signals.log": ("hlcore.monitor.signals",),
    "alerts.log": ("hlcore.monitor.alerts",),
}


class _Prefixes(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith(self.prefixes)


def configure_components(log_dir: Path | None, clock: Clock, level: str = "INFO") -> list[logging.Handler]:
    """Monitor component logs: `logs/ingest.log`, `logs/signals.log`, `logs/alerts.log`, or one
    stream on stderr when `log_dir` is None (interactive runs)."""
    if log_dir is None:
        return [configure(None, clock, level)]
    log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("hlcore")
    handlers: list[logging.Handler] = []
    for name, prefixes in MONITOR_COMPONENTS.items():
        handler = logging.FileHandler(log_dir / name, encoding="utf-8")
        handler.setFormatter(JsonFormatter(clock))
        handler.addFilter(_Prefixes(prefixes))
        root.addHandler(handler)
        handlers.append(handler)
    root.setLevel(level)
    return handlers
