"""Where the copy-trader's database is, and the operator commands on its files (copytrader §6, §8):
`ops backup` and `ops rebuild-db`, plus the read-only opening every report uses.

Read-only commands must not create a database by looking at it, so `DbTarget` names the database
without creating a folder or a file (unlike `hlcore.app.database_url`, which prepares a first
start), and `open_read_only` refuses a missing one before connecting.

SQLite copies use the `sqlite3` online backup API, so a copy taken while the service runs is a
consistent snapshot (WAL content included). A copy is verified by reading `system_state` from it.
PostgreSQL backups need `pg_dump` on PATH (exit 2 without it); rebuild is SQLite only.

The "service holds the database" check of `rebuild-db` is best effort (there is no lock file):
it refuses when the loop's last tick (`loop_last_tick_ms`) is more recent than the longest the
loop can stay silent (`loop_max_idle_sleep_sec` + `loop_tick_warn_sec`), or when an exclusive
SQLite lock cannot be taken at once. Stop the service first; a process that stopped less than
that long ago makes the command refuse until the time has passed.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import URL, make_url

from hlcore.app import DATABASE_URL_ENV, AppContext, open_app
from hlcore.config.hashing import redact_url
from hlcore.config.settings import Settings
from hlcore.engine.clock import Clock
from hlcore.errors import BadInput, CheckFailed
from hlcore.storage.copytrade import CopytradeKey
from hlcore.storage.db import Database, create_sqlite_file, open_database, sqlite_url
from hlcore.storage.repos import AuditLog
from hlcore.storage.schema import (
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    audit_log,
    metadata,
    order_intents,
    order_results,
    system_state,
)
from hlcore.workspace import Workspace

OPS_CATEGORY = "ops"  # audit_log.category of operator commands (copytrader §6)
REBUILD_COUNTED = (audit_log, order_intents, order_results)  # what §8 says a rebuilt DB prints as zero
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
BUSY_TIMEOUT_S = 5.0  # the §6 busy_timeout_ms that hlcore.app.open_app also uses (not a setting)


def minute_stamp(now_ms: int) -> str:
    """`YYYYMMDD-HHMM` in UTC: the backup file names of the runbook."""
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y%m%d-%H%M")


def utc_iso(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_path(path: Path) -> Path:
    """`path`, or `path-2`, `path-3`… (before the suffix) when taken: a copy never overwrites one."""
    if not path.exists():
        return path
    n = 2
    while True:
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}") if path.suffix == ".db" else \
            path.with_name(f"{path.name}-{n}")
        if not candidate.exists():
            return candidate
        n += 1


@dataclass(frozen=True)
class DbTarget:
    """The copy-trader database named by the settings: `db_url` over the SQLite `db_path`."""

    url: str
    path: Path | None  # the SQLite file; None for PostgreSQL

    @classmethod
    def of(cls, settings: Settings) -> DbTarget:
        url = os.environ.get(DATABASE_URL_ENV) or settings.get("db_url")  # as hlcore.app.database_url
        if url:
            backend = make_url(url).get_backend_name()
            if backend == "sqlite":
                database = make_url(url).database
                return cls(url, Path(database).expanduser().resolve() if database else None)
            return cls(url, None)
        path = settings.path("db_path").resolve()  # relative to the config file's folder
        return cls(f"sqlite:///{path}", path)

    @property
    def is_sqlite(self) -> bool:
        return self.path is not None

    @property
    def display(self) -> str:
        """The URL with credentials redacted: what outputs and evidence may show."""
        return redact_url(self.url)

    def scrub(self, text: str) -> str:
        """`text` (a driver error, a tool's stderr) with this URL's password masked."""
        password = make_url(self.url).password
        return text.replace(str(password), "***") if password else text

    def file_missing(self) -> bool:
        return self.path is not None and not self.path.is_file()

    def creatable_url(self) -> str:
        """The URL with the SQLite folder created (first start only)."""
        return sqlite_url(self.path) if self.path is not None else self.url


def open_read_only(ws: Workspace, clock: Clock) -> AppContext:
    """Open an existing database without writing: no file is created, the engine is restored but
    not persisted. A missing database raises `CheckFailed` (`db_missing`)."""
    target = DbTarget.of(ws.settings)
    if target.file_missing():
        raise CheckFailed(f"db_missing: no database at {target.display}")
    return open_app(ws, clock, persist_start=False, url=target.url)


def table_count(db: Database, table: Any) -> int | None:
    """Rows in `table`, or None when it cannot be read (absent in an old schema)."""
    try:
        with db.transaction() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    except Exception:  # StorageUnavailable or an old/foreign schema: reported as unknown, not fatal
        return None


# --------------------------------------------------------------------------------------------------
# SQLite file copies
# --------------------------------------------------------------------------------------------------


def sqlite_copy(source: Path, dest: Path, *, timeout_s: float) -> None:
    """Online copy with the `sqlite3` backup API (consistent even while the service writes)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=timeout_s)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def read_system_state(path: Path) -> dict[str, str]:
    """`system_state` of a SQLite copy, read with a plain connection (the verification step)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {str(k): str(v) for k, v in conn.execute(f"SELECT key, value FROM {system_state.name}")}
    finally:
        conn.close()


@dataclass
class CommandResult:
    """Lines to print and, when refused, the refusal code (exit 1)."""

    body: list[str] = field(default_factory=list)
    refused: str | None = None

    def add(self, key: str, value: Any) -> None:
        self.body.append(f"{key}={'' if value is None else value}")

    @property
    def lines(self) -> list[str]:
        return [*self.body, *([f"refused={self.refused}"] if self.refused else [])]


# --------------------------------------------------------------------------------------------------
# ops backup
# --------------------------------------------------------------------------------------------------


def backup(ws: Workspace, clock: Clock, *, which: Callable[[str], str | None] = shutil.which,
           run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> CommandResult:
    """`backup-YYYYMMDD-HHMM.db` beside `db_path`, verified by reading `system_state` from the copy.

    PostgreSQL: `pg_dump --format=custom` to `backup-YYYYMMDD-HHMM.dump` beside `db_path`, verified
    with `pg_restore --list` (the archive must hold `system_state` data). No `pg_dump` → BadInput.
    """
    target = DbTarget.of(ws.settings)
    result = CommandResult()
    result.add("db", target.display)
    stamp = minute_stamp(clock.now_ms())
    if not target.is_sqlite:
        return _pg_backup(ws, target, stamp, result, which, run)
    assert target.path is not None
    if target.file_missing():
        raise CheckFailed(f"db_missing: no database at {target.display}")
    dest = free_path(target.path.parent / f"backup-{stamp}.db")
    sqlite_copy(target.path, dest, timeout_s=BUSY_TIMEOUT_S)
    try:
        state = read_system_state(dest)
    except sqlite3.Error as exc:
        result.add("backup_path", dest)
        result.add("verified", "false")
        result.refused = f"backup_unverified: {exc}"
        return result
    result.add("backup_path", dest)
    result.add("backup_bytes", dest.stat().st_size)
    result.add("backup_schema_version", state.get(SCHEMA_VERSION_KEY))
    result.add("backup_system_state_keys", len(state))
    result.add("verified", "true")
    return result


def _pg_backup(ws: Workspace, target: DbTarget, stamp: str, result: CommandResult,
               which: Callable[[str], str | None], run: Callable[..., subprocess.CompletedProcess[str]]
               ) -> CommandResult:
    pg_dump = which("pg_dump")
    if pg_dump is None:
        raise BadInput("ops backup: the database is PostgreSQL (db_url); a PostgreSQL backup needs pg_dump "
                       "(postgresql-client) on PATH. Install it, or run: pg_dump --format=custom "
                       f"--file=backup-{stamp}.dump '{target.display}'")
    url = make_url(target.url)
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)  # never on the command line (process list)
    dsn = URL.create("postgresql", username=url.username, host=url.host, port=url.port, database=url.database,
                     query=url.query).render_as_string(hide_password=False)
    folder = ws.settings.path("db_path").resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    dest = free_path(folder / f"backup-{stamp}.dump")
    done = run([pg_dump, "--format=custom", f"--file={dest}", f"--dbname={dsn}"], env=env,
               capture_output=True, text=True, check=False)
    result.add("backup_path", dest)
    if done.returncode != 0:
        result.add("verified", "false")
        result.refused = f"pg_dump_failed: exit {done.returncode}: {target.scrub(done.stderr.strip())}"
        return result
    pg_restore = which("pg_restore")
    listing = run([pg_restore, "--list", str(dest)], capture_output=True, text=True, check=False) \
        if pg_restore else None
    verified = listing is not None and listing.returncode == 0 and \
        any(system_state.name in line and "TABLE DATA" in line for line in listing.stdout.splitlines())
    result.add("verified", "true" if verified else "false")
    if not verified:
        result.refused = "backup_unverified: pg_restore --list shows no system_state data"
    return result


# --------------------------------------------------------------------------------------------------
# ops rebuild-db
# --------------------------------------------------------------------------------------------------


def service_holds(ws: Workspace, target: DbTarget, now_ms: int) -> str | None:
    """Best-effort "the service has this database open" (module docstring); None when free."""
    assert target.path is not None
    try:
        state = read_system_state(target.path)
    except sqlite3.Error:
        state = {}
    last_tick = state.get(CopytradeKey.LOOP_LAST_TICK_MS)
    s = ws.settings
    quiet_ms = int((float(s.get("orchestrator.loop_max_idle_sleep_sec"))
                    + float(s.get("orchestrator.loop_tick_warn_sec"))) * 1000)
    if last_tick is not None and last_tick.lstrip("-").isdigit() and now_ms - int(last_tick) <= quiet_ms:
        return f"service_running: last loop tick {now_ms - int(last_tick)} ms ago (stop the service first)"
    conn = sqlite3.connect(target.path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        return f"db_locked: {exc} (stop the service first)"
    finally:
        conn.close()
    return None


def rebuild(ws: Workspace, clock: Clock, *, force: bool, backup_first: bool, operator: str,
            reason_message: str | None, dry_run: bool = False) -> CommandResult:
    """Copy to `<db>.bak-YYYYMMDD-HHMM`, delete, recreate at this release's schema (copytrader §6, §8, drill 3).

    Refused without `--force`, without `--backup` (hlcore never rebuilds without a verified copy),
    for PostgreSQL, for a missing database, and while the service holds it. The `ops` audit row is
    written into the old database just before it is copied, so the backup records its own rebuild;
    the new database starts with empty tables, as the post-check expects.
    """
    target = DbTarget.of(ws.settings)
    result = CommandResult()
    result.add("command", "rebuild-db")
    result.add("db", target.display)
    if not force:
        result.refused = "force_required"
        return result
    if not backup_first:
        result.refused = "backup_required"
        return result
    if not target.is_sqlite:
        raise BadInput("ops rebuild-db: SQLite only; for PostgreSQL take a pg_dump, then drop and recreate the "
                       "database and let the first start create the schema")
    assert target.path is not None
    if target.file_missing():
        result.refused = "db_missing"
        return result
    now = clock.now_ms()
    held = service_holds(ws, target, now)
    if held:
        result.refused = held
        return result
    old = open_database(target.url)
    try:
        before_version = old.stored_schema_version()
        before_status = old.schema_status()
        counts_before = {t.name: table_count(old, t) for t in REBUILD_COUNTED}
    finally:
        old.dispose()
    dest = free_path(target.path.with_name(f"{target.path.name}.bak-{minute_stamp(now)}"))
    result.add("before_schema_version", before_version)
    result.add("before_schema_status", before_status)
    for name, n in counts_before.items():
        result.add(f"before_{name}_count", n)
    result.add("backup_path", dest)
    if dry_run:
        result.add("dry_run", "true (nothing written)")
        return result
    result.add("audit", _audit_into_old(target, now, operator, reason_message, before_version, dest))
    sqlite_copy(target.path, dest, timeout_s=BUSY_TIMEOUT_S)
    try:
        read_system_state(dest)
    except sqlite3.Error as exc:
        result.refused = f"backup_unverified: {exc} (database left as it was)"
        return result
    result.add("backup_verified", "true")
    for suffix in ("", *SQLITE_SIDE_FILES):
        side = target.path.with_name(target.path.name + suffix)
        if side.exists():
            side.unlink()
    create_sqlite_file(target.path, now)  # built aside and linked into place: never half-made
    fresh = open_database(target.url)
    try:
        status = fresh.schema_status()
        result.add("schema_version", fresh.stored_schema_version())
        result.add("schema_status", status)
        for t in REBUILD_COUNTED:
            result.add(f"{t.name}_count", table_count(fresh, t))
    finally:
        fresh.dispose()
    if status != "ok":
        result.refused = f"schema_status_{status}"
        return result
    result.add("db_rebuilt", "ok")
    return result


def _audit_into_old(target: DbTarget, now: int, operator: str, reason_message: str | None,
                    before_version: str | None, dest: Path) -> str:
    db = open_database(target.url)
    try:
        AuditLog(db).write({
            "timestamp_ms": now, "category": OPS_CATEGORY, "entity_id": "database", "event": "rebuild-db",
            "event_id": "rebuild-db", "from_state": before_version, "reason_message": reason_message,
            "metadata": {"operator": operator, "backup_path": str(dest)}})
        return "written_to_backup"
    except Exception as exc:  # an old schema without a compatible audit_log: say so, do not block
        return f"skipped ({type(exc).__name__})"
    finally:
        db.dispose()


# --------------------------------------------------------------------------------------------------
# ops migrate
# --------------------------------------------------------------------------------------------------


def migrate_db(ws: Workspace, clock: Clock, *, dry_run: bool) -> CommandResult:
    """Upgrade the copy-trader database in place to this code's schema_version, after a verified
    backup (SQLite: file copy; PostgreSQL: pg_dump), in one transaction; every row is kept.
    `dry_run` prints the steps and touches nothing."""
    from hlcore.storage.migrations import MigrationError, migrate, plan

    target = DbTarget.of(ws.settings)
    result = CommandResult()
    result.add("command", "migrate")
    result.add("db", target.display)
    if target.file_missing():
        result.refused = "db_missing"
        return result
    db = open_database(target.url)
    try:
        stored = db.stored_schema_version()
        result.add("from_schema_version", stored)
        result.add("to_schema_version", SCHEMA_VERSION)
        try:
            steps = plan(stored)
        except MigrationError as exc:
            result.refused = f"no_migration: {exc}"
            return result
        for step in steps:
            result.add(f"step_{step.version}_to_{step.version + 1}", step.summary)
        if not steps:
            result.add("migrated", "nothing_to_do")
            return result
        if dry_run:
            result.add("dry_run", "true")
            return result
        saved = backup(ws, clock)
        result.body += [line for line in saved.body if line.startswith(("backup_path=", "verified="))]
        if saved.refused:
            result.refused = f"backup_failed: {saved.refused}"
            return result
        before = _row_counts(db)
        migrate(db, steps, clock.now_ms())
        after = _row_counts(db)
        result.add("schema_version", db.stored_schema_version())
        result.add("rows_kept", "true" if before == after else "false")
        result.add("migrated", "ok")
        if before != after:
            result.refused = "rows_changed"
    finally:
        db.dispose()
    return result


def _row_counts(db: Database) -> dict[str, int]:
    with db.transaction() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in metadata.sorted_tables}
