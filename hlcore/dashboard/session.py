"""What one dashboard server holds between refreshes: the workspace, a read-only monitor database,
the compiled view selector and the clock. `hlcore dashboard` passes its options to the Streamlit
script through the environment (the names below), so `streamlit run` and `AppTest` build the same
session.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hlcore.dashboard.copytrader import CopytraderPage, copytrader_page, load_copytrader
from hlcore.dashboard.state import StoredState, load_state
from hlcore.dashboard.view import View, ViewSelector, view
from hlcore.engine.clock import Clock, ManualClock, SystemClock
from hlcore.errors import BadInput
from hlcore.storage.db import Database, StorageUnavailable, open_read_only
from hlcore.workspace import Workspace, open_workspace

ENV_CONFIG = "HLCORE_DASHBOARD_CONFIG"
ENV_POLICY = "HLCORE_DASHBOARD_POLICY"
ENV_DB = "HLCORE_DASHBOARD_DB"    # the monitor database (a SQLite file or a URL); else DATABASE_URL / settings
# (resolved like hlcore.app.database_url, without creating the SQLite file's folder: a reader never writes)
ENV_NOW = "HLCORE_DASHBOARD_NOW"  # a fixed instant (ISO UTC): review a drill's database as of then


def parse_instant(text: str) -> int:
    """`2026-01-24T10:12:00Z` as epoch ms (bad input names the variable and the format)."""
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError as exc:
        raise BadInput(f"{ENV_NOW} / --now: expected an ISO UTC instant like 2026-01-24T10:12:00Z, got {text!r}") \
            from exc


def db_url_of(value: str) -> str:
    """A database option: a URL as given, a file path as its SQLite URL."""
    return value if "://" in value else f"sqlite:///{Path(value).expanduser().resolve()}"


@dataclass
class Session:
    workspace: Workspace
    db: Database | None  # None: the database could not even be opened (`open_error`)
    selector: ViewSelector
    clock: Clock
    open_error: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Session:
        env = dict(os.environ if env is None else env)
        config, policy = env.get(ENV_CONFIG), env.get(ENV_POLICY)
        ws = open_workspace(Path(policy) if policy else None, Path(config) if config else None)
        url = db_url_of(env[ENV_DB] if env.get(ENV_DB) else env.get("DATABASE_URL")
                        or ws.settings.get("monitor.db_url") or str(ws.settings.get("monitor.db_path")))
        clock: Clock = ManualClock(parse_instant(env[ENV_NOW])) if env.get(ENV_NOW) else SystemClock()
        try:
            db: Database | None = open_read_only(url)
            error = None
        except StorageUnavailable as exc:  # e.g. no driver for the URL: the halt view, like any outage
            db, error = None, str(exc)
        return cls(ws, db, ViewSelector(ws.policy, ws.settings), clock, error)

    def monitor(self) -> View:
        now = self.clock.now_ms()
        policy, settings = self.workspace.policy, self.workspace.settings
        stored = StoredState(now, False, self.open_error) if self.db is None else \
            load_state(self.db, policy, settings, now)
        return view(stored, policy, settings, self.selector)

    def copytrader(self) -> CopytraderPage:
        now = self.clock.now_ms()
        return copytrader_page(load_copytrader(self.workspace, now), self.workspace, now)


__all__ = ["ENV_CONFIG", "ENV_DB", "ENV_NOW", "ENV_POLICY", "Session", "db_url_of", "parse_instant"]
