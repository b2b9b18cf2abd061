"""`hlcore history export --app copytrader`: the fills a copy-trader database ingested (a drill's
kept database), streamed into a copy-trade history, then backtested with imported bars."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from backtest.history.dataset import open_history
from hlcore_cli import app
from tests.integration.test_backtest_copytrader import write_inputs

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def drill_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The database `fill_aggregation_split` leaves (one order split into many fills of one hash)."""
    keep = tmp_path_factory.mktemp("keep")
    r = runner.invoke(app, ["replay", str(ROOT / "fixtures" / "fill_aggregation_split"), "--keep-db", str(keep)])
    assert r.exit_code == 0, r.output
    return keep / "base" / "copytrader.db"


def test_export_streams_the_ingested_fills(tmp_path: Path, drill_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with sqlite3.connect(drill_db) as conn:
        want = conn.execute("select tid, tx_hash, coin, side, sz, px, start_position, time_ms from ingested_fills "
                            "order by time_ms, tid").fetchall()
    assert len(want) >= 10
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{drill_db}")  # the default database, as in production
    r = runner.invoke(app, ["history", "export", "--app", "copytrader", "--out", str(tmp_path / "h")])
    assert r.exit_code == 0, r.output
    assert f"{len(want)} target fills" in r.output and "pass --klines" in r.output
    m = open_history(tmp_path / "h").manifest
    assert m["app"] == "copytrader" and m["rows"] == {"target_fills": len(want)} and m["exported_fills"] == len(want)
    assert m["missing"] == ["klines_1m", "exchange_info"]
    assert any("oid, fee, closedPnl" in a for a in m["assumptions"])
    got = pq.ParquetDataset(tmp_path / "h" / "target_fills").read().sort_by([("time", "ascending"),
                                                                             ("tid", "ascending")]).to_pylist()
    assert [(g["tid"], g["hash"], g["coin"], g["side"], float(g["sz"]), float(g["px"]), float(g["start_position"]),
             g["time"]) for g in got] == [tuple(w) for w in want]
    assert got[0]["dir"] == "Open Long" and got[0]["oid"] is None and got[0]["fee"] is None
    # no bars: the backtest refuses it with the manifest's note, one line, exit 2
    r = runner.invoke(app, ["backtest", "--app", "copytrader", "--history", str(tmp_path / "h"), "--policy",
                            str(ROOT)])
    assert r.exit_code == 2 and "no minute bars" in r.output and "pass --klines" in r.output, r.output


def test_exported_with_bars_backtests(tmp_path: Path, drill_db: Path) -> None:
    klines, _nf, info = write_inputs(tmp_path)
    out = tmp_path / "h"
    r = runner.invoke(app, ["history", "export", "--app", "copytrader", "--db", f"sqlite:///{drill_db}",
                            "--since", "2026-01-24", "--klines", str(klines), "--exchange-info", str(info),
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    m = open_history(out).manifest
    assert m["missing"] == [] and m["rows"]["klines_1m"] == 40 and m["rows"]["exchange_info"] == 1
    r = runner.invoke(app, ["backtest", "--app", "copytrader", "--history", str(out), "--format", "json",
                            "--policy", str(ROOT)])
    assert r.exit_code == 0, r.output
    side = json.loads(r.output)["base"]
    assert side["fills_seen"] == m["rows"]["target_fills"] and side["fills_ingested"] == side["fills_seen"]
    assert side["events_total"] == 1  # one order split into many fills: aggregated by hash into one event


def test_export_errors_are_one_line(tmp_path: Path, drill_db: Path) -> None:
    r = runner.invoke(app, ["history", "export", "--app", "copytrader", "--db", f"sqlite:///{tmp_path / 'none.db'}",
                            "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "no hlcore copy-trader database there" in r.output
    r = runner.invoke(app, ["history", "export", "--app", "copytrader", "--db", f"sqlite:///{drill_db}",
                            "--since", "2030-01-01", "--out", str(tmp_path / "y")])
    assert r.exit_code == 2 and "no ingested fills there" in r.output
    r = runner.invoke(app, ["history", "export", "--out", str(tmp_path / "z")])
    assert r.exit_code == 2 and "--since and --until: required" in r.output


def test_export_from_postgresql(tmp_path: Path, drill_db: Path, pg_url: str,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The same rows in a PostgreSQL copy-trader database (DATABASE_URL) export to the same fills."""
    from sqlalchemy import insert, select

    from hlcore.storage.db import open_database
    from hlcore.storage.schema import ingested_fills

    src, dst = open_database(f"sqlite:///{drill_db}"), open_database(pg_url)
    dst.create_schema(1)
    with src.transaction() as a, dst.transaction() as b:
        rows = [dict(r) for r in a.execute(select(ingested_fills)).mappings()]
        b.execute(insert(ingested_fills), rows)
    src.dispose()
    dst.dispose()
    monkeypatch.setenv("DATABASE_URL", pg_url)
    r = runner.invoke(app, ["history", "export", "--app", "copytrader", "--out", str(tmp_path / "pg")])
    assert r.exit_code == 0, r.output
    r2 = runner.invoke(app, ["history", "export", "--app", "copytrader", "--db", f"sqlite:///{drill_db}",
                             "--out", str(tmp_path / "lite")])
    assert r2.exit_code == 0, r2.output
    a_rows = pq.ParquetDataset(tmp_path / "pg" / "target_fills").read().drop(["source"]).to_pylist()
    b_rows = pq.ParquetDataset(tmp_path / "lite" / "target_fills").read().drop(["source"]).to_pylist()
    assert a_rows == b_rows and len(a_rows) == len(rows)
