"""Structured logs: one JSON object per line (copytrader §5), time from the injected clock.

A redaction filter drops anything that looks like a credential before a line is written, as a
second line of defence: adapters never log keys, secrets, signatures or signed query strings.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from hlcore.engine.clock import Clock
from hlcore.redact import scrub


def iso_utc(ms: int) -> str:
    """Epoch ms as ISO-8601 UTC with milliseconds (what an operator reads in a log line)."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    def __init__(self, clock: Clock):
        super().__init__()
        self.clock = clock

    def format(self, record: logging.LogRecord) -> str:
        message = scrub(record.getMessage())
        now = self.clock.now_ms()
        entry = {"time": iso_utc(now), "ts": now, "level": record.levelname, "logger": record.name, "msg": message}
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


class ConsoleFormatter(logging.Formatter):
    """One plain line for a person watching the terminal: ISO time, level, message."""

    def __init__(self, clock: Clock):
        super().__init__()
        self.clock = clock

    def format(self, record: logging.LogRecord) -> str:
        message = scrub(record.getMessage())
        return f"{iso_utc(self.clock.now_ms())} {record.levelname} {message}"


def configure_console(clock: Clock, level: str = "WARNING") -> logging.Handler:
    """Echo hlcore's warnings and errors on stderr besides the log file, so a failing live process
    is loud where it runs (each failed cycle, then the first success after failures)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(ConsoleFormatter(clock))
    root = logging.getLogger("hlcore")
    root.handlers = [h for h in root.handlers if not isinstance(h.formatter, ConsoleFormatter)]
    root.addHandler(handler)
    return handler


def release(handlers: list[logging.Handler]) -> None:
    """Detach and close the handlers a command installed: a command run in-process (tests, the
    dashboard's operator actions) must not leave a handler writing to a stream that is gone."""
    root = logging.getLogger("hlcore")
    for handler in handlers:
        root.removeHandler(handler)
        handler.close()


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
