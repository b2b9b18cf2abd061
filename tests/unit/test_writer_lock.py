"""The single-writer lock (issue 10): exclusive, names its holder, waits boundedly, dies with its
holder (kill -9 included), and is released on close."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hlcore.storage.writer_lock import FileWriterLock, WriterLockHeld, lock_path_for

T0 = 1_769_248_800_000


def test_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    path = lock_path_for(tmp_path / "ct.db")
    first = FileWriterLock(path)
    first.acquire(since_ms=T0, command="live --mode live")
    with pytest.raises(WriterLockHeld) as exc:
        FileWriterLock(path).acquire(since_ms=T0 + 1, command="live --mode live")
    holder = exc.value.holder
    assert (holder.since, holder.command) == ("2026-01-24T10:00:00Z", "live --mode live")
    assert holder.pid is not None and holder.host
    assert exc.value.exit_code == 2
    assert f"pid={holder.pid}" in str(exc.value) and str(path) in str(exc.value)
    first.release()
    assert FileWriterLock(path).holder() is None  # a released lock names nobody


def test_release_frees_it_and_a_waiter_gets_it_within_its_wait(tmp_path: Path) -> None:
    path = tmp_path / "ct.db.lock"
    first = FileWriterLock(path)
    first.acquire(since_ms=T0, command="ops promote")
    threading.Timer(0.2, first.release).start()
    second = FileWriterLock(path)
    started = time.monotonic()
    second.acquire(wait_s=5.0, since_ms=T0, command="ops unhalt")
    assert second.held and time.monotonic() - started < 5.0
    assert second.holder() is not None and second.holder().command == "ops unhalt"  # type: ignore[union-attr]
    second.release()


def test_a_bounded_wait_ends_in_the_refusal(tmp_path: Path) -> None:
    path = tmp_path / "ct.db.lock"
    first = FileWriterLock(path)
    first.acquire(since_ms=T0)
    started = time.monotonic()
    with pytest.raises(WriterLockHeld):
        FileWriterLock(path).acquire(wait_s=0.3, since_ms=T0)
    assert time.monotonic() - started >= 0.3
    first.release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "ct.db.lock"
    code = (f"import sys, time; sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r}); "
            "from pathlib import Path; from hlcore.storage.writer_lock import FileWriterLock; "
            f"FileWriterLock(Path({str(path)!r})).acquire(since_ms=0, command='live'); "
            "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(WriterLockHeld) as exc:
            FileWriterLock(path).acquire(since_ms=T0)
        assert exc.value.holder.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    lock = FileWriterLock(path)
    lock.acquire(since_ms=T0)  # the kernel dropped the dead holder's lock
    lock.release()


def test_monitor_jobs_lock_one_instance_each_and_all_jobs_lock_every_one(tmp_path: Path) -> None:
    """Monitor §5: each job is single-instance; two different jobs run side by side (the spec's
    separate processes), and a process running every job excludes a lone job of any kind."""
    from hlcore.app import writer_lock
    from hlcore.jobs.monitor.service import JOBS
    from hlcore.storage.writer_lock import LockSet

    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    snapshots = writer_lock(url, "monitor", "snapshots")
    snapshots.acquire(since_ms=T0, command="live --app monitor --job snapshots")
    signals = writer_lock(url, "monitor", "signals")
    signals.acquire(since_ms=T0, command="live --app monitor --job signals")  # another job: allowed
    with pytest.raises(WriterLockHeld) as exc:
        writer_lock(url, "monitor", "snapshots").acquire(since_ms=T0, command="live --app monitor --job snapshots")
    assert exc.value.holder.command == "live --app monitor --job snapshots"
    every = LockSet([writer_lock(url, "monitor", job) for job in JOBS])
    with pytest.raises(WriterLockHeld):
        every.acquire(since_ms=T0, command="live --app monitor --job all")
    health = writer_lock(url, "monitor", "health")
    health.acquire(since_ms=T0)  # all or none: the refused set released what it had taken
    health.release()
    snapshots.release()
    signals.release()
    every.acquire(since_ms=T0, command="live --app monitor --job all")
    with pytest.raises(WriterLockHeld):
        writer_lock(url, "monitor", "dashboard").acquire(since_ms=T0, command="live --app monitor --job dashboard")
    every.release()
