"""Copy-trader backtest: downloaded-format files imported and backtested through the copy-trader's own path."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backtest.history.dataset import open_history
from backtest.history.importers import read_klines
from hlcore.errors import BadInput
from hlcore_cli import app

T0 = 1769248800000  # 2026-01-24T10:00:00Z
WALLET = "0x" + "ab" * 20
OTHER = "0x" + "11" * 20
runner = CliRunner()


def _open(i: int) -> float:
    return 60000.0 + 10 * i


def write_inputs(folder: Path) -> tuple[Path, Path, Path]:
    """A Binance 1m kline CSV (12 columns, with the header newer archives carry), a node_fills file
    ([user, fill] lines, another user's fill among them) and a saved exchangeInfo body."""
    lines = ["open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
             "taker_buy_quote_volume,ignore"]
    for i in range(40):
        o = _open(i)
        lines.append(f"{T0 + i * 60000},{o:.1f},{o + 8:.1f},{o - 3:.1f},{o + 5:.1f},12.5,{T0 + i * 60000 + 59999},"
                     f"750000.0,120,6.1,366000.0,0")
    csv_path = folder / "BTCUSDT-1m-2026-01-24.csv"
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    zipped = folder / "BTCUSDT-1m-2026-01-24.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.write(csv_path, csv_path.name)

    def fill(tid: int, t: int, side: str, sz: str, start: str, d: str) -> dict[str, object]:
        return {"coin": "BTC", "px": "60050.0", "sz": sz, "side": side, "time": t, "startPosition": start, "dir": d,
                "closedPnl": "0.0", "hash": "0x" + f"{tid:064x}", "oid": 900 + tid, "crossed": True, "fee": "1.2",
                "tid": tid, "feeToken": "USDC"}

    fills = [[WALLET, fill(1, T0 + 310_000, "B", "2.0", "0.0", "Open Long")],
             [OTHER, fill(2, T0 + 400_000, "B", "9.0", "0.0", "Open Long")],
             [WALLET, fill(3, T0 + 1_210_000, "A", "2.0", "2.0", "Close Long")]]
    nf = folder / "node_fills_20260124_10"
    nf.write_text("".join(json.dumps(x) + "\n" for x in fills), encoding="utf-8")
    info = folder / "exchangeInfo.json"
    info.write_text(json.dumps({"symbols": [{"symbol": "BTCUSDT", "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "556.80", "maxPrice": "4529764", "tickSize": "0.10"},
        {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
        {"filterType": "MIN_NOTIONAL", "notional": "100"}]}]}), encoding="utf-8")
    return zipped, nf, info


def test_import_and_backtest_downloaded_formats(tmp_path: Path) -> None:
    klines, nf, info = write_inputs(tmp_path)
    out = tmp_path / "hist"
    r = runner.invoke(app, ["history", "import", "--klines", str(klines), "--node-fills", str(nf),
                            "--exchange-info", str(info), "--wallet", WALLET.upper().replace("0X", "0x"),
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    hist = open_history(out)
    assert hist.manifest["app"] == "copytrader"
    assert hist.manifest["rows"] == {"exchange_info": 1, "klines_1m": 40, "target_fills": 2}  # the other user dropped
    r = runner.invoke(app, ["backtest", "--app", "copytrader", "--history", str(out), "--format", "json",
                            "--policy", str(Path(__file__).resolve().parents[2]), "--slippage-bps", "2"])
    assert r.exit_code == 0, r.output
    again = runner.invoke(app, ["backtest", "--app", "copytrader", "--history", str(out), "--format", "json",
                                "--policy", str(Path(__file__).resolve().parents[2]), "--slippage-bps", "2"])
    assert again.output == r.output  # same history + policy => the same report, byte for byte
    side = json.loads(r.output)["base"]
    assert side["fills_seen"] == 2 and side["fills_ingested"] == 2
    assert side["orders"] == {"FILLED": 2} and side["mirrored_orders"] == 2
    # open seen on the +6 min tick, filled at minute 7's open + 2 bps; close seen at +21 min, minute 22's open - 2 bps
    buy, sell = _open(7) * 1.0002, _open(22) * 0.9998
    assert side["metrics"]["pnl_by_symbol"]["BTCUSDT"]["mirror"] == pytest.approx(0.002 * (sell - buy), abs=0.01)
    assert side["metrics"]["slippage_paid_usd"] == pytest.approx(0.002 * (_open(7) + _open(22)) * 0.0002, abs=0.01)
    # the target scaled: 0.001 x (2.0 BTC bought and sold at 60050) = 0
    assert side["metrics"]["pnl_total"]["target_scaled"] == pytest.approx(0.0, abs=0.01)
    assert side["safety_minutes"]["HALT"] == 0 and side["unmapped_fills"] == 0  # every state listed


def test_base_vs_head_on_synth(tmp_path: Path) -> None:
    out = tmp_path / "hist"
    r = runner.invoke(app, ["history", "synth", "--app", "copytrader", "--days", "1", "--seed", "3",
                            "--fills-per-day", "30", "--out", str(out)])
    assert r.exit_code == 0, r.output
    again = tmp_path / "again"
    runner.invoke(app, ["history", "synth", "--app", "copytrader", "--days", "1", "--seed", "3",
                        "--fills-per-day", "30", "--out", str(again)])
    assert open_history(out).content_hash == open_history(again).content_hash  # deterministic per seed
    r = runner.invoke(app, ["backtest", "--app", "copytrader", "--history", str(out), "--format", "json",
                            "--policy", str(Path(__file__).resolve().parents[2]),
                            "--set", "decision.sizing.proportional_ratio=0.003"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["base"]["ratio"] == 0.001 and data["head"]["ratio"] == 0.003
    assert data["head"]["mirrored_orders"] > data["base"]["mirrored_orders"]
    assert data["head"]["fills_seen"] == data["base"]["fills_seen"] > data["base"]["unmapped_fills"] > 0  # ETH, SOL


def test_kline_csv_with_wrong_columns_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "ETHUSDT-1m-2026-01-24.csv"
    bad.write_text(f"{T0},3000,3001,2999,3000.5,1.0\n", encoding="utf-8")
    with pytest.raises(BadInput) as exc:
        read_klines(bad)
    assert "expected 12 columns" in str(exc.value) and "ETHUSDT-1m-2026-01-24.csv" in str(exc.value)


def test_backtest_refuses_a_monitor_history_for_the_copytrader(tmp_path: Path) -> None:
    out = tmp_path / "mon"
    assert runner.invoke(app, ["history", "synth", "--days", "1", "--wallets", "3", "--seed", "1",
                               "--out", str(out)]).exit_code == 0
    r = runner.invoke(app, ["backtest", "--app", "copytrader", "--history", str(out)])
    assert r.exit_code == 2 and "expected a copytrader history" in r.output


def imported_history(tmp_path: Path) -> Path:
    """`hlcore history import` of the generated kline CSV, node_fills and exchangeInfo files."""
    klines, nf, info = write_inputs(tmp_path)
    out = tmp_path / "hist"
    assert runner.invoke(app, ["history", "import", "--klines", str(klines), "--node-fills", str(nf),
                               "--exchange-info", str(info), "--wallet", WALLET, "--out", str(out)]).exit_code == 0
    return out


def test_sweep_over_the_ratio_scales_the_mirror(tmp_path: Path) -> None:
    out = imported_history(tmp_path)
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid:\n  decision.sizing.proportional_ratio: [0.001, 0.003]\n", encoding="utf-8")
    r = runner.invoke(app, ["backtest", "--app", "copytrader", "--history", str(out), "--sweep", str(grid),
                            "--format", "json", "--out", str(tmp_path / "res"),
                            "--policy", str(Path(__file__).resolve().parents[2])])
    assert r.exit_code == 0, r.output
    rows = {v["variant"]: v for v in json.loads(r.output)["variants"]}
    assert rows["v000"]["metrics"]["orders_filled"] == rows["v001"]["metrics"]["orders_filled"] == 2
    assert rows["v001"]["metrics"]["pnl.mirror"] == pytest.approx(3 * rows["v000"]["metrics"]["pnl.mirror"], abs=0.02)
    assert (tmp_path / "res" / "metrics.parquet").is_file()


def test_fault_overlay_rate_limits_the_open(tmp_path: Path) -> None:
    """A declared episode of 429s on order POSTs around the open: the open is not mirrored as before."""
    out = imported_history(tmp_path)
    faults = tmp_path / "faults.yaml"
    faults.write_text("faults:\n  - {at: '2026-01-24T10:05:30Z', kind: '429', match: POST /fapi/v1/order, "
                      "for: 3m, retry_after: 60}\n", encoding="utf-8")
    policy = str(Path(__file__).resolve().parents[2])
    r = runner.invoke(app, ["backtest", "--app", "copytrader", "--history", str(out), "--format", "json",
                            "--policy", policy, "--faults", str(faults)])
    assert r.exit_code == 0, r.output
    side = json.loads(r.output)["base"]
    # the open met the 429s and never reached the book: parked UNKNOWN, then settled as never placed
    # once the venue keeps answering NOT_FOUND (stored REJECTED / ORDER_NEVER_PLACED, issue 10)
    assert side["orders"] == {"REJECTED": 1} and side["mirrored_orders"] == 0
    assert side["events"].get("DONE missing_local_position") == 1  # so the close that followed had nothing to close
    bad = tmp_path / "bad.yaml"
    bad.write_text("faults:\n  - {at: '2026-01-24T10:05:30Z', kind: crash}\n", encoding="utf-8")
    r = runner.invoke(app, ["backtest", "--app", "copytrader", "--history", str(out), "--policy", policy,
                            "--faults", str(bad)])
    assert r.exit_code == 2 and "faults[0].kind" in r.output and "expected one of" in r.output
