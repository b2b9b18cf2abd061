"""History dataset, synth and the feed seam: determinism, realism, fault replay, clear errors."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from backtest.feed import NOT_RECORDED, HistoryFeed
from backtest.history.dataset import SNAPSHOTS, UNIVERSE_MEMBERS, UNIVERSE_RUNS, Writer, open_history
from backtest.history.synth import SynthSpec, synth
from hlcore.adapters.http import API_ERROR, RATE_LIMITED, VenueError
from hlcore.engine.clock import ManualClock
from hlcore.errors import BadInput

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def test_synth_is_deterministic_per_seed(tmp_path: Path) -> None:
    a = synth(SynthSpec(days=1, wallets=8, seed=5), tmp_path / "a")
    b = synth(SynthSpec(days=1, wallets=8, seed=5), tmp_path / "b")
    c = synth(SynthSpec(days=1, wallets=8, seed=6), tmp_path / "c")
    assert a["content_hash"] == b["content_hash"]
    assert a["content_hash"] != c["content_hash"]
    assert a["rows"]["wallet_snapshots"] == 1440 * 8 * 3
    assert a["span"]["since"] == "2026-01-01T00:00:00Z" and a["days"] == ["2026-01-01"]


def test_synth_history_has_the_features_a_backtest_needs(tmp_path: Path) -> None:
    spec = SynthSpec(days=2, wallets=40, seed=11, fault_episodes_per_day=3, outages_per_day=1, dirty_per_day=60)
    synth(spec, tmp_path / "h")
    h = open_history(tmp_path / "h")
    t = pa.concat_tables([h.read(SNAPSHOTS, d) for d in h.manifest["days"]]).to_pandas()
    failed = t[t.http_status.isna() | (t.http_status != 200)]
    assert len(failed) > 0 and failed.position_szi.isna().all() and failed.error.notna().all()
    assert set(failed.error.str.split(":").str[0]) <= {"RATE_LIMITED", "TIMEOUT", "NETWORK_ERROR"}
    ok = t[t.http_status == 200].sort_values(["wallet_id", "asset", "snapshot_ts"])
    szi = ok.pivot_table(index="snapshot_ts", columns=["wallet_id", "asset"], values="position_szi").to_numpy()
    changes = np.abs(np.diff(np.nan_to_num(szi), axis=0)) > 0
    assert changes.any(axis=1).sum() > 100  # positions move
    flat_now = (np.nan_to_num(szi[1:-1]) == 0) & (np.nan_to_num(szi[:-2]) != 0) & (np.nan_to_num(szi[2:]) != 0)
    assert flat_now.sum() > 10  # transient collapses (dirty)
    members = h.read_all(UNIVERSE_MEMBERS)
    assert members.num_rows == 2 * 4 * 40  # a leaderboard every 6 h


def test_open_history_refuses_a_folder_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as exc:
        open_history(tmp_path)
    assert "no manifest.json" in str(exc.value)
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 99}), encoding="utf-8")
    with pytest.raises(BadInput, match="schema_version: expected 1, got 99"):
        open_history(tmp_path)


def test_writer_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("", encoding="utf-8")
    with pytest.raises(BadInput, match="not empty"):
        Writer(tmp_path, source="test")


def _history(tmp_path: Path) -> Path:
    w = Writer(tmp_path / "h", source="test", assets=["BTC", "ETH"])
    rows = []
    for wallet, status, error, attempts, szi in [("0xa", 200, None, 1, 1.5), ("0xb", 429, "RATE_LIMITED: slow down", 4,
                                                                           None), ("0xc", 200, "TIMEOUT: t", 2, -2.0)]:
        for asset in ("BTC", "ETH"):
            rows.append({"snapshot_ts": T0, "observed_ts": T0 + 5, "wallet_id": wallet, "asset": asset,
                         "position_szi": szi if asset == "BTC" else (0.0 if szi is not None else None),
                         "entry_px": 100.0 if szi and asset == "BTC" else None, "liq_px": None, "leverage": None,
                         "margin_used": None, "http_status": status, "error": error, "attempts": attempts,
                         "latency_ms": 5})
    w.write(SNAPSHOTS, "2026-01-01", pa.Table.from_pylist(rows))
    w.write(UNIVERSE_RUNS, "2026-01-01", pa.Table.from_pylist([
        {"as_of_ts": T0, "run_id": "u1", "status": None, "n_requested": 2, "n_received": 2, "n_invalid": 0,
         "schema_ok": True, "error": None},
        {"as_of_ts": T0 + 3_600_000, "run_id": "u2", "status": None, "n_requested": 2, "n_received": None,
         "n_invalid": None, "schema_ok": None, "error": "TIMEOUT: leaderboard"}]))
    w.write(UNIVERSE_MEMBERS, "2026-01-01", pa.Table.from_pylist([
        {"as_of_ts": T0, "run_id": "u1", "wallet_id": w_, "rank": r, "month_pnl": p, "month_roi": 0.1,
         "account_value": 1e6} for w_, r, p in (("0xa", 1, 9.0), ("0xc", 2, 5.0))]))
    w.close()
    return tmp_path / "h"


def test_feed_replays_positions_and_fetch_faults(tmp_path: Path) -> None:
    clock = ManualClock(T0 + 1_000)
    feed = HistoryFeed(open_history(_history(tmp_path)), clock, lambda _s: None, None)
    ok = feed.clearinghouse_state("0xa", ["BTC", "ETH"])
    assert not isinstance(ok, VenueError)
    assert ok["BTC"].szi == Decimal("1.5") and ok["BTC"].entry_px == Decimal("100.0") and ok["ETH"].szi == 0
    for _ in range(5):  # a failed wallet fails every attempt of that minute, with its recorded error
        failed = feed.clearinghouse_state("0xb", ["BTC", "ETH"])
        assert isinstance(failed, VenueError) and failed.code == RATE_LIMITED and failed.status == 429
    first = feed.clearinghouse_state("0xc", ["BTC"])  # needed two attempts: the first fails
    second = feed.clearinghouse_state("0xc", ["BTC"])
    assert isinstance(first, VenueError) and first.code == "TIMEOUT"
    assert not isinstance(second, VenueError) and second["BTC"].szi == Decimal("-2.0")
    missing = feed.clearinghouse_state("0xd", ["BTC"])
    assert isinstance(missing, VenueError) and missing.code == API_ERROR and missing.message == NOT_RECORDED
    assert not missing.retryable
    assert feed.stats == {"answers": 9, "failed": 6, "not_recorded": 1, "leaderboards": 0}


def test_feed_serves_the_latest_leaderboard_at_or_before_now(tmp_path: Path) -> None:
    clock = ManualClock(T0 - 5_000)  # before the first run: the first run
    feed = HistoryFeed(open_history(_history(tmp_path)), clock, lambda _s: None, None)
    board = feed.leaderboard("url")
    assert not isinstance(board, VenueError)
    assert [r.wallet_id for r in board.rows] == ["0xa", "0xc"] and board.schema_ok and board.n_received == 2
    clock.set(T0 + 3_600_000)
    failed = feed.leaderboard("url")
    assert isinstance(failed, VenueError) and failed.code == "TIMEOUT"
