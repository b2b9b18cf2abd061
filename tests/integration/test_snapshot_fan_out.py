"""The snapshot job's fan-out is wiring: a drill or backtest runs the workers' fetches on the player's
thread (`SideBySide`), live runs them on threads (`ThreadFanOut`). Both are workers to the drill clock
(their retry waits do not move it), and a faulty window plays to the same outcome either way."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import backtest.exact as exact
from backtest.exact import Task, outcome_tables, run_exact
from backtest.history.synth import SynthSpec, synth
from hlcore.jobs.monitor.snapshots import ThreadFanOut
from hlcore.resources import resolve_policy_dir
from replay.runner import DrillClock, SideBySide

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def test_side_by_side_fetches_in_order_and_its_waits_do_not_move_the_clock() -> None:
    clock = DrillClock(START)
    seen: list[tuple[str, int, str]] = []

    def fetch(wallet: str) -> str:
        clock.sleep(1.5)  # a worker's retry wait
        seen.append((wallet, clock.now_ms(), threading.current_thread().name))
        return wallet.upper()

    assert SideBySide(clock)(fetch, ["a", "b", "c"], 8) == ["A", "B", "C"]
    assert [w for w, _, _ in seen] == ["a", "b", "c"]
    assert {t for _, t, _ in seen} == {START}
    assert {name for _, _, name in seen} == {threading.current_thread().name}
    clock.sleep(1.5)  # the player's own wait still moves it
    assert clock.now_ms() == START + 1500


def test_thread_fan_out_keeps_the_order_and_its_waits_do_not_move_the_clock() -> None:
    clock = DrillClock(START)
    fan_out = ThreadFanOut()

    def fetch(wallet: str) -> tuple[str, int]:
        clock.sleep(1.5)
        return wallet, clock.now_ms()

    assert fan_out(fetch, [str(i) for i in range(20)], 4) == [(str(i), START) for i in range(20)]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An hour of 12 wallets with fetch-fault episodes (retries), outages and dirty collapses."""
    out = tmp_path_factory.mktemp("fan-out") / "hist"
    synth(SynthSpec(days=1, wallets=12, seed=21, clusters_per_day=120, dirty_per_day=400, fault_episodes_per_day=96,
                    outages_per_day=12), out)
    return out


def test_threads_and_side_by_side_play_a_faulty_window_the_same(history: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    task = Task(str(history), str(resolve_policy_dir(None)), None, (("monitor.universe.size", 12),),
                until_ms=START + 2 * 3_600_000)
    inline = run_exact(task)
    monkeypatch.setattr(exact, "SideBySide", lambda _clock: ThreadFanOut())
    threaded = run_exact(task)
    assert inline.feed["failed"] > 0  # retried fetches: workers waited
    assert inline.run_status.get("partial", 0) + inline.run_status.get("failed", 0) > 0
    assert (json.dumps(outcome_tables(inline), sort_keys=True)
            == json.dumps(outcome_tables(threaded), sort_keys=True))
    assert inline.logs == threaded.logs and inline.feed == threaded.feed
