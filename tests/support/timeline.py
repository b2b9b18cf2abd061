"""Per-test timeline of a pytest run (issue 12: where a CI worker's core sits idle).

Loaded with `-p tests.support.timeline` and `HLCORE_TEST_TIMELINE=<folder>`: each process (the
xdist controller and every worker) appends one JSON line per test to `<folder>/<worker>.jsonl` —
wall start/end, the process's own CPU (all threads), its reaped children's CPU, and the main
thread's scheduler figures (/proc/thread-self/schedstat: ns on a CPU, ns runnable but waiting for
one). Wall minus both is time the worker slept or was blocked (subprocess, socket, sleep, fsync),
which the machine's load does not inflate. Not loaded by `.ci/run`; `tests/support/timeline_report.py`
draws the figures.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import IO, Any

import pytest

_OUT: IO[str] | None = None


def _schedstat() -> tuple[int, int]:
    """(ns run, ns waiting on a run queue) of the calling thread; zeros where /proc lacks it."""
    try:
        run, wait, _ = Path("/proc/thread-self/schedstat").read_text().split()
    except (OSError, ValueError):
        return 0, 0
    return int(run), int(wait)


def _sample() -> dict[str, float]:
    times = os.times()
    run, wait = _schedstat()
    return {"t": time.time(), "cpu": times.user + times.system,
            "child": times.children_user + times.children_system,
            "run": run / 1e9, "wait": wait / 1e9}


def _write(kind: str, name: str, start: dict[str, float], end: dict[str, float]) -> None:
    if _OUT is None:
        return
    row: dict[str, Any] = {"kind": kind, "id": name, "t0": start["t"], "t1": end["t"]}
    for key in ("cpu", "child", "run", "wait"):
        row[key] = round(end[key] - start[key], 4)
    _OUT.write(json.dumps(row) + "\n")
    _OUT.flush()


def pytest_configure(config: pytest.Config) -> None:
    global _OUT
    folder = os.environ.get("HLCORE_TEST_TIMELINE")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    _OUT = open(Path(folder) / f"{worker}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
    config._timeline_start = _sample()  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session: pytest.Session) -> Generator[None, None, None]:
    start = _sample()
    yield
    _write("collect", "", start, _sample())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    start = _sample()
    yield
    _write("test", item.nodeid, start, _sample())


def pytest_unconfigure(config: pytest.Config) -> None:
    global _OUT
    start = getattr(config, "_timeline_start", None)
    if start is not None:
        _write("session", "", start, _sample())
    if _OUT is not None:
        _OUT.close()
        _OUT = None
