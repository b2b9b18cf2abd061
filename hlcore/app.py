"""What every long-running command and operator command opens: settings, policy, storage, runtime.

One function for live, replay and ops, so they cannot drift apart: only the clock (and, for the
venues, the HTTP transport) differs between them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from hlcore.config.settings import Settings
from hlcore.engine.clock import Clock
from hlcore.engine.runtime import Runtime
from hlcore.errors import BadInput, CheckFailed
from hlcore.storage.db import Database, create_sqlite_file, open_database, sqlite_url
from hlcore.storage.pg_lock import AdvisoryWriterLock
from hlcore.storage.writer_lock import (
    FileWriterLock,
    LockSet,
    ProcessLocalLock,
    WriterLock,
    WriterLockHeld,
    lock_path_for,
)
from hlcore.workspace import Workspace

APPS = ("copytrader", "monitor")
DATABASE_URL_ENV = "DATABASE_URL"  # overrides db_url / monitor.db_url for both apps
SERVICE_COMMAND = "live"  # how a running service names itself in the lock file (`live --mode …`)


def database_url(settings: Settings, app: str) -> str:
    """The app's database: DATABASE_URL from the environment (so a password-bearing URL never sits
    in a file), else `db_url`, else the SQLite `db_path`, which is relative to the config file's
    folder (never the working directory)."""
    prefix = "monitor." if app == "monitor" else ""
    url = os.environ.get(DATABASE_URL_ENV) or settings.get(f"{prefix}db_url")
    return url or sqlite_url(settings.path(f"{prefix}db_path"))


def database_file(url: str) -> Path | None:
    """The SQLite file behind `url` (None: in memory, or not SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser().resolve()


def writer_lock(url: str, app: str, scope: str | None = None) -> WriterLock:
    """The system's single-writer lock (DESIGN §7): a file lock beside a SQLite file, a session
    advisory lock (keyed by the app) on PostgreSQL, nothing for an in-memory database. `scope`
    narrows it to one part of the system (a monitor job's single-instance lock, monitor §5)."""
    path = database_file(url)
    if path is not None:
        return FileWriterLock(lock_path_for(path, scope))
    if make_url(url).get_backend_name() == "sqlite":
        return ProcessLocalLock()
    return AdvisoryWriterLock(url, f"{app}/{scope}" if scope else app)


def prepare_database(url: str, now_ms: int, *, allow_create: bool) -> bool:
    """Make sure a whole hlcore database is at `url` before the app opens it.

    Missing: created atomically (SQLite: built aside, linked into place) only with `allow_create`
    (`--allow-create-db`, first start), else refused naming the resolved path (exit 2): a database
    that is not there is never silently replaced by an empty one with the cursor at now.
    Half-made (a first boot killed in an older version): moved aside and re-created, with the flag.
    Returns whether it created one.
    """
    path = database_file(url)
    if path is None:
        return False  # in memory or PostgreSQL: open_app creates the schema in one transaction
    status = "missing"
    if path.exists():
        db = open_database(url)
        try:
            status = db.schema_status()
        finally:
            db.dispose()
    if status not in ("missing", "incomplete"):
        return False
    what = "no hlcore database" if status == "missing" else "a half-made hlcore database (an interrupted first boot)"
    if not allow_create:
        raise BadInput(f"db_missing: {what} at {path}; first start: add --allow-create-db "
                       f"(otherwise check db_path / db_url and the config file's folder)")
    if status == "incomplete":
        path.rename(path.with_name(f"{path.name}.half-made-{now_ms}"))
        for suffix in ("-wal", "-shm"):
            side = Path(f"{path}{suffix}")
            if side.exists():
                side.rename(side.with_name(f"{side.name}.half-made-{now_ms}"))
    create_sqlite_file(path, now_ms)
    return True


@dataclass
class AppContext:
    workspace: Workspace
    db: Database
    runtime: Runtime
    clock: Clock
    app: str
    lock: WriterLock = field(default_factory=ProcessLocalLock)

    @property
    def settings(self) -> Settings:
        return self.workspace.settings

    def close(self) -> None:
        self.db.dispose()
        self.lock.release()


def lock_system(workspace: Workspace, app: str, *, command: str, since_ms: int, url: str | None = None,
                wait_s: float | None = None, scopes: tuple[str, ...] = ()) -> WriterLock:
    """Take the system's writer lock (or each of `scopes`' locks) or raise WriterLockHeld naming
    the holder (exit 2). `wait_s` None: the operator wait of the settings
    (`orchestrator.writer_lock_wait_sec`)."""
    url = url or database_url(workspace.settings, app)
    lock: WriterLock = LockSet([writer_lock(url, app, s) for s in scopes]) if scopes else writer_lock(url, app)
    wait = float(workspace.settings.get("orchestrator.writer_lock_wait_sec")) if wait_s is None else wait_s
    lock.acquire(wait_s=wait, since_ms=since_ms, command=command)
    return lock


def operator_lock(workspace: Workspace, app: str, *, command: str, since_ms: int) -> WriterLock:
    """The lock an operator command that writes a system's state takes.

    Free: taken for the command's life. Held by another operator command (or anything but a running
    service): waited for up to `orchestrator.writer_lock_wait_sec`, then exit 2 naming the holder.
    Held by a running `hlcore live`: the command writes as that service's guest, through the
    audited operator path the service adopts at its next tick (`Runtime.announce` / `sync`), since
    the runbook promotes, unhalts and recovers orders of a running service and a boot always
    starts ARMED_SAFE (docs/decisions.md, issue 10). Commands that replace the database never come
    here: they use `lock_system` and are refused while the service runs.
    """
    lock = writer_lock(database_url(workspace.settings, app), app)
    try:
        lock.acquire(wait_s=0.0, since_ms=since_ms, command=command)
        return lock
    except WriterLockHeld as held:
        if (held.holder.command or "").startswith(SERVICE_COMMAND):
            return ProcessLocalLock()
    return lock_system(workspace, app, command=command, since_ms=since_ms)


def open_locked(workspace: Workspace, clock: Clock, app: str, *, command: str, allow_create: bool,
                url: str | None = None, scopes: tuple[str, ...] = ()) -> AppContext:
    """What a long-running writer (`hlcore live`) opens: the writer lock first (a second process
    exits 2 naming the holder, having touched nothing), then the database (created only with
    `allow_create`), held together until `close()`."""
    url = url or database_url(workspace.settings, app)
    lock = lock_system(workspace, app, command=command, since_ms=clock.now_ms(), url=url, wait_s=0.0, scopes=scopes)
    try:
        prepare_database(url, clock.now_ms(), allow_create=allow_create)
        # PostgreSQL: no file to build aside; the schema is created in one transaction by open_app
        return open_app(workspace, clock, app, url=url, lock=lock, create=allow_create)
    except BaseException:
        lock.release()
        raise


def open_app(workspace: Workspace, clock: Clock, app: str = "copytrader", *, create: bool = False,
             persist_start: bool = True, url: str | None = None, lock: WriterLock | None = None) -> AppContext:
    """Open storage and restore the engine. A missing database is refused unless `create`.
    `lock`, when given, is the writer lock the caller took; the context releases it on close."""
    url = url or database_url(workspace.settings, app)
    if create:
        prepare_database(url, clock.now_ms(), allow_create=True)
    db = open_database(url, busy_timeout_ms=5000)
    status = db.schema_status()
    if status in ("missing", "incomplete"):
        if not create:
            db.dispose()
            where = database_file(url) or make_url(url).render_as_string(hide_password=True)
            raise CheckFailed(f"db_missing: no hlcore database at {where} (first start: use --allow-create-db)")
        db.create_schema(clock.now_ms())
    runtime = Runtime(db, workspace.policy, workspace.settings, clock)
    runtime.start(persist=persist_start)
    return AppContext(workspace, db, runtime, clock, app, lock or ProcessLocalLock())
