"""`hlcore dashboard`: check the options, then hand the process over to `streamlit run` on the
dashboard script (the options travel in the environment; see hlcore/dashboard/session.py)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path

from hlcore.dashboard.session import ENV_CONFIG, ENV_DB, ENV_NOW, ENV_POLICY, db_url_of, parse_instant
from hlcore.errors import BadInput
from hlcore.storage.db import StorageUnavailable, open_read_only
from hlcore.workspace import open_workspace

SCRIPT = Path(__file__).with_name("app.py")


def streamlit_command(port: int, address: str) -> list[str]:
    """The `streamlit run` argv: headless, no telemetry, no file watcher (a served page, not a dev loop)."""
    return [sys.executable, "-m", "streamlit", "run", str(SCRIPT), "--server.port", str(port),
            "--server.address", address, "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--global.developmentMode", "false",
            "--client.toolbarMode", "viewer"]


def prepare(port: int, address: str, config: Path | None, policy: Path | None, db: str | None,
            now: str | None) -> tuple[list[str], dict[str, str]]:
    """Validate everything the page needs before Streamlit starts (bad input: exit 2, one line)."""
    if not 1 <= port <= 65535:
        raise BadInput(f"--port: expected 1-65535, got {port}")
    if importlib.util.find_spec("streamlit") is None:
        raise BadInput("hlcore dashboard needs Streamlit: pip install 'hlcore[dashboard]'")
    open_workspace(policy, config)  # settings and policy errors, located, before the server starts
    env = dict(os.environ)
    for key, value in ((ENV_CONFIG, config), (ENV_POLICY, policy)):
        if value is not None:
            env[key] = str(value.resolve())
    if db is not None:
        with contextlib.suppress(StorageUnavailable):  # a malformed URL is bad input; an unreachable one is HALT
            open_read_only(db_url_of(db)).dispose()
        env[ENV_DB] = db
    if now is not None:
        parse_instant(now)
        env[ENV_NOW] = now
    return streamlit_command(port, address), env


def run(port: int, address: str, config: Path | None, policy: Path | None, db: str | None, now: str | None) -> None:
    argv, env = prepare(port, address, config, policy, db, now)
    sys.stdout.flush()
    os.execve(argv[0], argv, env)  # streamlit owns the process (its signals, its exit code)
