"""The single-writer lock on PostgreSQL: a session advisory lock held on a connection of its own.

The server releases a session lock when its connection ends, so a killed holder (kill -9, lost
host) never leaves a stale lock, as `flock` does for SQLite. Who holds it travels in that
connection's `application_name` (pid, since, host, command), read back from `pg_locks` joined with
`pg_stat_activity`, so no table is needed and a refused process can still name the holder. The
lock key is derived from the system's name, so the copy-trader and the monitor sharing one
database (one DATABASE_URL) lock independently.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from hlcore.config.hashing import redact_url
from hlcore.storage.db import StorageUnavailable, driver_missing, driver_url
from hlcore.storage.writer_lock import Holder, WriterLockHeld

_NAME_MAX = 63  # PostgreSQL truncates application_name (NAMEDATALEN - 1)
_PREFIX = "hlcore"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for `name` (the same in every process and release)."""
    return int.from_bytes(hashlib.sha256(f"hlcore-writer:{name}".encode()).digest()[:8], "big", signed=True)


def holder_tag(pid: int, host: str, since: str, command: str) -> str:
    """`application_name` naming the holder: `hlcore|pid|since|host|command`, cut to 63 characters
    (the command comes last: its first word, e.g. `live`, is what callers compare)."""
    return f"{_PREFIX}|{pid}|{since}|{host}|{command}"[:_NAME_MAX]


def parse_tag(tag: str | None, backend_pid: int | None) -> Holder:
    """A `Holder` from an `application_name` written by `holder_tag` (else the server pid only)."""
    parts = (tag or "").split("|", 4)
    if len(parts) == 5 and parts[0] == _PREFIX and parts[1].isdigit():
        return Holder(int(parts[1]), parts[3], parts[2], parts[4])
    return Holder(None, None, None, f"postgres backend pid {backend_pid} ({tag or 'no application_name'})")


class AdvisoryWriterLock:
    """`pg_try_advisory_lock` on a dedicated connection kept open while the lock is held."""

    def __init__(self, url: str, name: str, *, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic):
        self.url = url
        self.name = name
        self.key = lock_key(name)
        self._conn: Connection | None = None
        self._sleep = sleep
        self._monotonic = monotonic

    def __repr__(self) -> str:
        return f"AdvisoryWriterLock({redact_url(self.url)!r}, {self.name!r}, held={self.held})"

    @property
    def held(self) -> bool:
        return self._conn is not None

    def _connect(self, application_name: str) -> Connection:
        parsed = driver_url(self.url)
        try:
            engine = create_engine(parsed, poolclass=NullPool, connect_args={"application_name": application_name})
        except (ImportError, NoSuchModuleError) as exc:  # the environment: one line, exit 2
            raise driver_missing(parsed.drivername, exc) from None
        try:
            return engine.connect()
        except DBAPIError as exc:
            raise StorageUnavailable(f"storage unavailable while taking the writer lock on "
                                     f"{redact_url(self.url)}: {exc.orig}", exc) from exc

    def acquire(self, *, wait_s: float = 0.0, since_ms: int | None = None, command: str = "") -> None:
        if self._conn is not None:
            return
        stamp = datetime.fromtimestamp((since_ms if since_ms is not None else time.time() * 1000) / 1000, UTC)
        since = stamp.isoformat(timespec="seconds").replace("+00:00", "Z")
        conn = self._connect(holder_tag(os.getpid(), socket.gethostname(), since, command))
        deadline = self._monotonic() + max(wait_s, 0.0)
        try:
            while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar_one():
                conn.rollback()
                if self._monotonic() >= deadline:
                    holder = self._holder(conn) or Holder(None, None, None)
                    raise WriterLockHeld(f"{self.name} on {redact_url(self.url)}", holder)
                self._sleep(0.05)
            conn.commit()  # a session lock outlives the transaction; nothing stays open on this connection
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def release(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            conn.commit()
        except DBAPIError:
            pass  # the connection is gone, and the server released the lock with it
        finally:
            conn.close()

    def holder(self) -> Holder | None:
        """Who holds the lock now (None: nobody)."""
        conn = self._conn or self._connect(f"{_PREFIX}|holder-query")
        try:
            return self._holder(conn)
        finally:
            if conn is not self._conn:
                conn.close()

    def _holder(self, conn: Connection) -> Holder | None:
        row = conn.execute(text(
            "SELECT a.application_name, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid::bigint = :hi AND l.objid::bigint = :lo"),
            {"hi": (self.key >> 32) & 0xFFFFFFFF, "lo": self.key & 0xFFFFFFFF}).first()
        conn.rollback()
        return None if row is None else parse_tag(row[0], row[1])
