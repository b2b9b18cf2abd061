"""`hlcore history export` reads a monitor database day by day into the dataset the feed serves."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from backtest.feed import HistoryFeed
from backtest.history.dataset import SNAPSHOTS, open_history
from hlcore.adapters.http import VenueError
from hlcore.engine.clock import ManualClock
from hlcore.storage.db import open_database, sqlite_url
from hlcore.storage.schema import ingest_runs, wallet_snapshots, wallet_universe_members, wallet_universe_runs
from hlcore_cli import app

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000


def _database(path: Path) -> str:
    url = sqlite_url(path)
    db = open_database(url)
    db.create_schema(T0)
    with db.transaction() as conn:
        conn.execute(wallet_universe_runs.insert(), [{"run_id": "u1", "as_of_ts": T0, "status": "success",
                                                      "n_requested": 2, "n_received": 2, "n_invalid": 0}])
        conn.execute(wallet_universe_members.insert(), [
            {"run_id": "u1", "wallet_id": w, "rank": r, "month_pnl": p, "month_roi": 0.1, "account_value": 1e6}
            for w, r, p in (("0xa", 1, 9.0), ("0xb", 2, 5.0))])
        for day in (0, 1):
            for minute in range(3):
                ts = T0 + day * DAY + minute * 60_000
                conn.execute(ingest_runs.insert(), [{"run_id": f"ingest-{ts}", "snapshot_ts": ts, "status": "partial",
                                                     "wallets_expected": 2, "wallets_succeeded": 1,
                                                     "wallets_failed": 1}])
                conn.execute(wallet_snapshots.insert(), [
                    {"snapshot_ts": ts, "wallet_id": w, "asset": a, "position_szi": szi, "is_dirty": False,
                     "ingest_run_id": f"ingest-{ts}", "created_at": ts + 700}
                    for w, szi in (("0xa", 1.25), ("0xb", None)) for a in ("BTC", "ETH")])
    db.dispose()
    return url


def test_export_streams_days_and_infers_failed_fetches(tmp_path: Path) -> None:
    url = _database(tmp_path / "monitor.db")
    out = tmp_path / "hist"
    result = CliRunner().invoke(app, ["history", "export", "--db", url, "--since", "2026-01-01", "--until",
                                      "2026-01-03", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    h = open_history(out)
    assert h.manifest["days"] == ["2026-01-01", "2026-01-02"]
    assert h.manifest["rows"] == {"wallet_snapshots": 24, "ingest_runs": 6, "universe_runs": 1, "universe_members": 2}
    assert h.assets == ["BTC", "ETH"]
    day1 = h.read(SNAPSHOTS, "2026-01-02").to_pylist()
    assert {r["http_status"] for r in day1 if r["wallet_id"] == "0xa"} == {200}
    assert {r["error"] for r in day1 if r["wallet_id"] == "0xb"} == {"NETWORK_ERROR: exported: no size recorded"}
    feed = HistoryFeed(h, ManualClock(T0 + DAY + 60_000), lambda _s: None, None)
    ok = feed.clearinghouse_state("0xa", ["BTC", "ETH"])
    assert not isinstance(ok, VenueError) and ok["ETH"].szi == Decimal("1.25")
    assert isinstance(feed.clearinghouse_state("0xb", ["BTC"]), VenueError)


def test_export_of_a_missing_database_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["history", "export", "--db", sqlite_url(tmp_path / "none.db"), "--since",
                                      "2026-01-01", "--until", "2026-01-02", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no hlcore monitor database" in result.stderr
