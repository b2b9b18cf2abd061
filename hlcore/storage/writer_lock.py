"""One writer per system: the exclusive lock a process holds while it writes safety or order state.

Two copy-traders on one database each query an order the other is still sending, get NOT_FOUND
and send it again (issue 10); so `hlcore live` takes this lock before it touches the database and
keeps it for its life, and operator commands that write safety state take it for theirs. SQLite
gets an OS file lock (`flock`) on `<database>.lock` beside the file, which the kernel releases
when the holder dies (kill -9 included), so a crash never leaves a stale lock. The file records
who holds it (pid, host, since) so a refused process can name the holder. A PostgreSQL advisory
lock is the other implementation `WriterLock` is shaped for (it is wired by the PostgreSQL issue).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from hlcore.errors import HlcoreError


@dataclass(frozen=True)
class Holder:
    """Who holds a writer lock: enough for an operator to find and stop that process."""

    pid: int | None
    host: str | None
    since: str | None
    command: str | None = None

    def describe(self) -> str:
        return f"pid={self.pid} host={self.host} since={self.since} command={self.command}"


class WriterLockHeld(HlcoreError):
    """Another process holds the system's writer lock; nothing was touched (exit 2)."""

    exit_code = 2

    def __init__(self, what: str, holder: Holder):
        super().__init__(f"writer_lock_held: {what} is locked by another process "
                         f"({holder.describe()}); stop it first")
        self.holder = holder


class WriterLock(Protocol):
    """Exclusive, process-lifetime ownership of one system's state (SQLite file lock today; a
    PostgreSQL advisory lock later). `acquire` waits at most `wait_s`, then raises WriterLockHeld."""

    def acquire(self, *, wait_s: float = 0.0, since_ms: int | None = None, command: str = "") -> None: ...

    def release(self) -> None: ...

    def holder(self) -> Holder | None: ...


class FileWriterLock:
    """`flock(LOCK_EX)` on a file beside the SQLite database, holding pid/host/since as JSON.

    The lock belongs to the open file, not to the path: it is never deleted (deleting a lock file
    lets a third process lock a fresh inode while the second still holds the old one).
    """

    def __init__(self, path: Path, *, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic):
        self.path = path
        self._fd: int | None = None
        self._sleep = sleep
        self._monotonic = monotonic

    def __repr__(self) -> str:
        return f"FileWriterLock({str(self.path)!r}, held={self.held})"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, wait_s: float = 0.0, since_ms: int | None = None, command: str = "") -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = self._monotonic() + max(wait_s, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if self._monotonic() >= deadline:
                    holder = self.holder() or Holder(None, None, None)
                    os.close(fd)
                    raise WriterLockHeld(str(self.path), holder) from None
                self._sleep(0.05)
        self._fd = fd
        stamp = datetime.fromtimestamp((since_ms if since_ms is not None else time.time() * 1000) / 1000, UTC)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": stamp.isoformat(timespec="seconds").replace("+00:00", "Z"), "command": command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record, sort_keys=True).encode() + b"\n", 0)
        os.fsync(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a released lock names nobody
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def holder(self) -> Holder | None:
        """What the lock file says (the holder's record; None when nobody ever wrote one)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        return Holder(data.get("pid"), data.get("host"), data.get("since"), data.get("command"))


class ProcessLocalLock:
    """For an in-memory SQLite database: it exists only inside this process, so no other writer can
    reach it and there is nothing to lock."""

    def acquire(self, *, wait_s: float = 0.0, since_ms: int | None = None, command: str = "") -> None:
        return None

    def release(self) -> None:
        return None

    def holder(self) -> Holder | None:
        return None


def lock_path_for(database_file: Path, scope: str | None = None) -> Path:
    """`<database>.lock`, or `<database>.<scope>.lock` for one part of a system (a monitor job)."""
    return database_file.with_name(database_file.name + (f".{scope}" if scope else "") + ".lock")


class LockSet:
    """Several writer locks taken as one, in order (all or none): a monitor running every job
    holds each job's single-instance lock (monitor §5), so it excludes a lone `--job` of any of
    them, and two lone jobs of different kinds run side by side as the spec's processes do."""

    def __init__(self, locks: list[WriterLock]):
        self.locks = locks

    def acquire(self, *, wait_s: float = 0.0, since_ms: int | None = None, command: str = "") -> None:
        taken: list[WriterLock] = []
        try:
            for lock in self.locks:
                lock.acquire(wait_s=wait_s, since_ms=since_ms, command=command)
                taken.append(lock)
        except BaseException:
            for lock in reversed(taken):
                lock.release()
            raise

    def release(self) -> None:
        for lock in reversed(self.locks):
            lock.release()
