"""What every long-running command and operator command opens: settings, policy, storage, runtime.

One function for live, replay and ops, so they cannot drift apart: only the clock (and, for the
venues, the HTTP transport) differs between them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hlcore.config.settings import Settings
from hlcore.engine.clock import Clock
from hlcore.engine.runtime import Runtime
from hlcore.errors import CheckFailed
from hlcore.storage.db import Database, open_database, sqlite_url
from hlcore.workspace import Workspace

APPS = ("copytrader", "monitor")


def database_url(settings: Settings, app: str) -> str:
    """The app's database: `db_url` (or DATABASE_URL for the monitor) over the SQLite `db_path`."""
    if app == "monitor":
        url = os.environ.get("DATABASE_URL") or settings.get("monitor.db_url")
        return url or sqlite_url(Path(settings.get("monitor.db_path")))
    return settings.get("db_url") or sqlite_url(Path(settings.get("db_path")))


@dataclass
class AppContext:
    workspace: Workspace
    db: Database
    runtime: Runtime
    clock: Clock
    app: str

    @property
    def settings(self) -> Settings:
        return self.workspace.settings

    def close(self) -> None:
        self.db.dispose()


def open_app(workspace: Workspace, clock: Clock, app: str = "copytrader", *, create: bool = False,
             persist_start: bool = True, url: str | None = None) -> AppContext:
    """Open storage and restore the engine. A missing database is refused unless `create`."""
    db = open_database(url or database_url(workspace.settings, app),
                       busy_timeout_ms=5000)
    status = db.schema_status()
    if status == "missing":
        if not create:
            db.dispose()
            raise CheckFailed("db_missing: no hlcore database here (first start: use --allow-create-db)")
        db.create_schema(clock.now_ms())
    runtime = Runtime(db, workspace.policy, workspace.settings, clock)
    runtime.start(persist=persist_start)
    return AppContext(workspace, db, runtime, clock, app)
