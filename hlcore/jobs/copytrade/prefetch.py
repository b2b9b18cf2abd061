"""The reference (mark) price asked for while the ingest commits, so its round trip can overlap
the fill's storage instead of following it on the way to the order (issue 12 item 6).

Jobs start one fetch (`MarkPrefetch.start`) as soon as a fetch has shown a new event, and the next
decision of that symbol takes it (`take`); whatever is not taken is dropped. *When* the request
physically leaves is the wiring's business, like the clock and the HTTP session: the default
(`run_when_taken`: `hlcore live`, replay, backtests, tests) runs it inline at the moment it is
taken, exactly where the request was made before, so journals, call counts and their order are
unchanged; `background_thread` starts it at once on a worker thread. The thread runner is not
wired into `hlcore live`: measured on this project's busy 2-core machine it made fill -> order
slower (GIL hand-offs between the worker and the loop thread, see docs/decisions.md, Round 4 —
latency); `benchmarks/copytrade_latency.py --prefetch thread` measures it. An answer is used at
most once and only by the tick that asked for it, and its age is judged against
`decision.price_max_stale_ms` like any other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol


class Pending(Protocol):
    """A started piece of work: `result()` waits for it (or runs it, when deferred); `discard()`
    forgets it (waits for it to end if it is running, so nothing else runs alongside)."""

    def result(self) -> Any: ...

    def discard(self) -> None: ...


Runner = Callable[[Callable[[], Any]], Pending]
"""How background work runs: live hands it to a thread, replay defers it to its first `result()`."""


class _Deferred:
    """Runs nothing until asked, then runs once, on the asking thread (replay: same order as inline)."""

    def __init__(self, work: Callable[[], Any]):
        self._work: Callable[[], Any] | None = work
        self._value: Any = None

    def result(self) -> Any:
        if self._work is not None:
            work, self._work = self._work, None
            self._value = work()
        return self._value

    def discard(self) -> None:
        self._work = None  # never run: no request, no journal line


def run_when_taken(work: Callable[[], Any]) -> Pending:
    """The deterministic runner (replay, backtest, tests): the work runs where its result is taken."""
    return _Deferred(work)


class _Threaded:
    """Work running on a daemon thread; its outcome (value or exception) is handed to `result()`."""

    def __init__(self, work: Callable[[], Any]):
        self._future: Future[Any] = Future()
        threading.Thread(target=self._run, args=(work,), name="hlcore-mark-prefetch", daemon=True).start()

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self._future.set_result(work())
        except BaseException as exc:  # handed to whoever takes it, never lost on the thread
            self._future.set_exception(exc)

    def result(self) -> Any:
        return self._future.result()

    def discard(self) -> None:
        self._future.exception()  # waits; an answer nobody uses, its failure reported by the next fetch


def background_thread(work: Callable[[], Any]) -> Pending:
    """The live runner: the work starts at once on its own daemon thread (at most one is in flight:
    `MarkPrefetch` settles the previous one before starting another)."""
    return _Threaded(work)


class MarkPrefetch:
    """At most one mark-price fetch in flight, for one symbol. Single-threaded use by the jobs:
    `start` / `take` / `drop` are called from the loop's thread only; the HTTP client is not used
    by the loop while a fetch is in flight (`drop` waits for it before any other venue call)."""

    def __init__(self, runner: Runner):
        self._runner = runner
        self._pending: tuple[str, Pending] | None = None

    def start(self, symbol: str, fetch: Callable[[], Any]) -> None:
        """Begin fetching `symbol`'s mark (waits for any earlier fetch first)."""
        self.drop()
        self._pending = (symbol, self._runner(fetch))

    def take(self, symbol: str) -> tuple[bool, Any]:
        """(True, answer) if a fetch for `symbol` was started: its answer, waited for; else (False, None)
        after waiting for any other fetch, so the caller may use the venue at once."""
        if self._pending is None or self._pending[0] != symbol:
            self.drop()
            return False, None
        _symbol, pending = self._pending
        self._pending = None
        return True, pending.result()

    def drop(self) -> None:
        """Forget the fetch in flight (live: wait for it to end; replay: it never runs)."""
        if self._pending is not None:
            _symbol, pending = self._pending
            self._pending = None
            pending.discard()
