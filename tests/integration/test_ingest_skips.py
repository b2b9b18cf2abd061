"""Issue 11 §2 acceptance: a fill page whose time/tid/oid are strings is ingested; a HIP-3 builder
coin (`xyz:ABC`) is skipped with `ingest_unmapped_symbol`, once, and visible in the log, the
metrics log and `ops status`. Issue 10 §2: the same fill served without and then with `tid` is
one event."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from hlcore.engine.clock import ManualClock
from hlcore.jobs.copytrade.service import Wiring, start
from hlcore.ops.reports import status_report
from hlcore.storage.schema import ingest_skips, processed_txs
from hlcore.workspace import open_workspace
from replay.worlds.copytrade import WALLET, hl_fill
from tests.support.fakes import copytrade_venues

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_769_248_800_000
ENV = {"HYPERLIQUID_TARGET_WALLET": WALLET, "BINANCE_API_KEY": "K" * 64, "BINANCE_API_SECRET": "S" * 64}


class Live:
    """The copy-trader as `hlcore live --mode dry-run` runs it, ticking by hand on a manual clock."""

    def __init__(self, tmp_path: Path, config: dict[str, Any] | None = None):
        settings = {"db_path": str(tmp_path / "ct.db"), "metrics_log_path": str(tmp_path / "metrics.log"),
                    **(config or {})}
        path = tmp_path / "settings.yaml"
        path.write_text(yaml.safe_dump(settings), encoding="utf-8")
        self.ws = open_workspace(ROOT, path)
        self.metrics = tmp_path / "metrics.log"
        self.clock = ManualClock(T0)
        self.transport, self.world = copytrade_venues(self.clock)
        wiring = Wiring(self.clock, lambda s: self.clock.advance(int(s * 1000)), random.Random(3),
                        lambda _venue: self.transport.session(), ENV)
        self.ctx, self.jobs, _scheduler, self.loop, code = start(self.ws, "dry-run", wiring, metrics_path=self.metrics,
                                                                     allow_create_db=True)
        assert code == 0

    def tick(self, advance_ms: int = 2_000) -> None:
        self.clock.advance(advance_ms)
        self.loop.tick(self.clock.now_ms())

    def rows(self, table: Any) -> list[dict[str, Any]]:
        with self.ctx.db.transaction() as conn:
            return [dict(r) for r in conn.execute(select(table)).mappings().all()]

    def metric(self, name: str) -> list[dict[str, Any]]:
        lines = [json.loads(line.removeprefix("[METRICS] ")) for line in self.metrics.read_text().splitlines()]
        return [m for m in lines if m["name"] == name]


@pytest.fixture
def live(tmp_path: Path) -> Any:
    rig = Live(tmp_path)
    yield rig
    rig.ctx.close()


def test_ids_and_times_sent_as_strings_are_ingested(live: Live) -> None:
    fill = hl_fill({"tid": 11, "sz": "2.0", "startPosition": "0.0", "side": "B", "time": T0 + 1_000})
    live.world.fills = [{**fill, "time": str(fill["time"]), "tid": str(fill["tid"]), "oid": str(fill["oid"])}]
    live.tick()
    (event,) = live.rows(processed_txs)
    assert (event["event_index"], event["timestamp_ms"], event["action_type"]) == (11, T0 + 1_000, "INCREASE")
    assert live.rows(ingest_skips) == []


def test_a_builder_dex_coin_is_skipped_once_and_shown_everywhere(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    live.world.fills = [hl_fill({"tid": 21, "sz": "1.0", "startPosition": "0.0", "side": "B", "time": T0 + 1_000,
                                 "coin": "xyz:ABC"}),
                        hl_fill({"tid": 22, "sz": "2.0", "startPosition": "0.0", "side": "B", "time": T0 + 1_500})]
    with caplog.at_level(logging.WARNING, logger="hlcore.copytrade"):
        live.tick()
        live.tick()  # the overlap refetch sees the skipped fill again: not a second skip
    assert len(live.rows(processed_txs)) == 1  # the BTC fill still makes its event
    (skip,) = live.rows(ingest_skips)
    assert (skip["reason"], skip["coin"], skip["skip_key"]) == ("ingest_unmapped_symbol", "xyz:ABC", "fill:21")
    logged = [r.getMessage() for r in caplog.records if "ingest skipped" in r.getMessage()]
    assert logged == [f"ingest skipped ingest_unmapped_symbol: builder-dex coin xyz:ABC (tx {skip['tx_hash']}, "
                      "coin xyz:ABC)"]
    counts = live.metric("ingest_skip_count")
    assert [(m["value"], m["tags"]) for m in counts] == [(1, {"reason": "ingest_unmapped_symbol"})] * 2
    report = status_report(live.ws, live.clock.now_ms())
    assert "ingest_skips_since_boot=1" in report.lines
    assert "ingest_skips_ingest_unmapped_symbol=1" in report.lines


def test_an_unreadable_fill_is_skipped_with_its_reason(live: Live) -> None:
    good = hl_fill({"tid": 31, "sz": "2.0", "startPosition": "0.0", "side": "B", "time": T0 + 1_000})
    live.world.fills = [good, {**good, "tid": 32, "px": "garbage"}]
    live.tick()
    live.tick()
    (skip,) = live.rows(ingest_skips)
    assert skip["reason"] == "ingest_fill_invalid" and "px: 'garbage' is not a decimal" in skip["detail"]
    assert "ingest_skips_ingest_fill_invalid=1" in status_report(live.ws, live.clock.now_ms()).lines


def test_one_fill_served_without_then_with_tid_is_one_event(live: Live) -> None:
    fill = hl_fill({"tid": 41, "sz": "2.0", "startPosition": "0.0", "side": "B", "time": T0 + 1_000})
    live.world.fills = [{**fill, "tid": None}]
    live.tick()
    live.world.fills = [fill]  # the venue now adds the tid (the same fill)
    live.tick()
    (event,) = live.rows(processed_txs)
    assert event["event_index"] >= 2**62  # the first sighting's synthetic id; the second made no event
