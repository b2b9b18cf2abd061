"""Parity: a monitor drill replayed over HTTP cassettes and worlds, and the same drill fed the
observations it recorded, written to and read back from a parquet history, give one journal.

The history side makes no HTTP call, so venue-call entries (and the cassette report) are the only
lines allowed to differ; every transition, stored row, step and check outcome must be equal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import hlcore.jobs.monitor.service as service
from backtest.feed import HistoryFeed, Recorder
from backtest.history.dataset import Writer, open_history
from replay.runner import replay
from tests.conftest import ROOT

# alerts and hysteresis; per-wallet 5xx fetch faults (DEGRADED); a leaderboard refresh
DRILLS = ("exit_cluster_hysteresis", "ingestion_partial_degraded", "universe_refresh_success")
NOT_COMPARED = ("venue_call", "cassettes")


def comparable(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("kind") not in NOT_COMPARED]


@pytest.mark.parametrize("name", DRILLS)
def test_drill_and_history_give_the_same_journal(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drill = ROOT / "fixtures" / name
    real = service.build_client
    recorders: list[Recorder] = []

    def recording(*args: Any, **kwargs: Any) -> Recorder:
        rec = Recorder(real(*args, **kwargs), kwargs["clock"])
        recorders.append(rec)
        return rec  # type: ignore[return-value]

    monkeypatch.setattr(service, "build_client", recording)
    over_http = replay(drill)
    assert over_http.verdict == "pass", over_http.failures
    assert len(recorders) == 1 and (recorders[0].snapshots or recorders[0].boards)  # one boot, and it read

    folder = tmp_path / "history"
    recorders[0].write(Writer(folder, source=f"drill {name}", assets=["HYPE", "BTC", "ETH"]),
                       ["HYPE", "BTC", "ETH"])
    history = open_history(folder)
    assert history.manifest["rows"].get("wallet_snapshots", 0) == 3 * len(recorders[0].snapshots)

    def feed(*_args: Any, **kwargs: Any) -> HistoryFeed:
        return HistoryFeed(history, kwargs["clock"], kwargs["sleep"], kwargs["rng"])

    monkeypatch.setattr(service, "build_client", feed)
    from_history = replay(drill)
    # every expectation holds but those counting HTTP calls (the history side makes none)
    assert all(": calls=" in f for f in from_history.failures), from_history.failures
    assert any(e.get("kind") == "venue_call" for e in over_http.entries)
    assert not any(e.get("kind") == "venue_call" for e in from_history.entries)
    assert comparable(from_history.entries) == comparable(over_http.entries)
