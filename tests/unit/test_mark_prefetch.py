"""The mark prefetch (issue 12 item 6): replay's runner runs the fetch exactly where it is taken
(so journals keep their call order), live's starts it at once on a thread; either way an answer
is used once, by the symbol it was asked for, and an untaken one is never used."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlcore.jobs.copytrade.prefetch import MarkPrefetch, background_thread, run_when_taken


def test_replay_runner_fetches_where_taken_and_never_when_dropped() -> None:
    calls: list[str] = []
    prefetch = MarkPrefetch(run_when_taken)
    prefetch.start("BTCUSDT", lambda: calls.append("BTCUSDT") or "mark")
    assert calls == []  # nothing leaves before the decision asks
    assert prefetch.take("BTCUSDT") == (True, "mark")
    assert calls == ["BTCUSDT"]
    assert prefetch.take("BTCUSDT") == (False, None)  # used once
    prefetch.start("ETHUSDT", lambda: calls.append("ETHUSDT"))
    prefetch.drop()
    assert prefetch.take("ETHUSDT") == (False, None)
    assert calls == ["BTCUSDT"]  # a dropped fetch never ran: no request, no journal line


def test_another_symbol_is_not_served_and_drops_the_fetch() -> None:
    calls: list[str] = []
    prefetch = MarkPrefetch(run_when_taken)
    prefetch.start("BTCUSDT", lambda: calls.append("BTCUSDT"))
    assert prefetch.take("ETHUSDT") == (False, None)
    assert prefetch.take("BTCUSDT") == (False, None)
    assert calls == []


def test_live_runner_starts_at_once_on_another_thread() -> None:
    started = threading.Event()
    release = threading.Event()
    seen: list[str] = []

    def fetch() -> str:
        seen.append(threading.current_thread().name)
        started.set()
        release.wait(5)
        return "mark"

    prefetch = MarkPrefetch(background_thread)
    prefetch.start("BTCUSDT", fetch)
    assert started.wait(5)  # in flight before anyone takes it
    release.set()
    assert prefetch.take("BTCUSDT") == (True, "mark")
    assert seen and seen[0] != threading.current_thread().name


def test_live_drop_waits_for_the_fetch_in_flight_and_swallows_its_failure() -> None:
    ended = threading.Event()

    def fetch() -> Any:
        ended.wait(0.05)
        ended.set()
        raise RuntimeError("venue down")

    prefetch = MarkPrefetch(background_thread)
    prefetch.start("BTCUSDT", fetch)
    prefetch.drop()
    assert ended.is_set()  # the client is free again when drop returns


def test_live_take_hands_over_the_fetch_failure() -> None:
    def fetch() -> Any:
        raise RuntimeError("venue down")

    prefetch = MarkPrefetch(background_thread)
    prefetch.start("BTCUSDT", fetch)
    with pytest.raises(RuntimeError, match="venue down"):
        prefetch.take("BTCUSDT")


@given(st.lists(st.tuples(st.sampled_from(["start", "take", "drop"]), st.sampled_from(["A", "B"])), max_size=12))
def test_replay_runner_calls_equal_takes_of_the_started_symbol(ops: list[tuple[str, str]]) -> None:
    """Whatever the sequence, the replay runner makes exactly one request per successful take."""
    calls: list[str] = []
    prefetch = MarkPrefetch(run_when_taken)
    served = 0
    for op, symbol in ops:
        if op == "start":
            prefetch.start(symbol, lambda s=symbol: calls.append(s) or s)
        elif op == "take":
            taken, value = prefetch.take(symbol)
            if taken:
                served += 1
                assert value == symbol
        else:
            prefetch.drop()
    assert len(calls) == served
