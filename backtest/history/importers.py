"""`hlcore history import`: a copy-trade history from files a user can download.

- Binance's public 1-minute kline CSVs (data.binance.vision `futures/um/daily/klines/SYMBOL/1m`,
  `SYMBOL-1m-YYYY-MM-DD.csv` or its `.zip`): 12 columns, open_time .. ignore, with or without the
  header row newer archives carry.
- Hyperliquid node `node_fills` JSON lines: each line `[user, fill]`, or a block line
  `{"events": [[user, fill], ...], ...}` (`node_fills_by_block`); only the given wallet's fills are kept.
- exchangeInfo: the JSON body of `GET /fapi/v1/exchangeInfo` saved to a file (its filters per symbol).

Bad input is one clear error naming the file, the line and what was expected.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from backtest.history.dataset import EXCHANGE_INFO, KLINES, TARGET_FILLS, Writer, day_of
from hlcore.errors import BadInput, Problem

KLINE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
                 "taker_buy_volume", "taker_buy_quote_volume", "ignore")
_KLINE_NAME = re.compile(r"^([A-Z0-9]+)-1m-")
_FILL_KEYS = ("coin", "px", "sz", "side", "time", "startPosition", "dir", "closedPnl", "hash", "oid", "crossed",
              "fee", "tid")


def _kline_text(path: Path) -> str:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(".csv")]
            if not names:
                raise BadInput(Problem(str(path), "", "expected a zip holding one kline .csv"))
            return z.read(names[0]).decode("utf-8")
    return path.read_text(encoding="utf-8")


def read_klines(path: Path) -> dict[str, list[Any]]:
    """One Binance 1m kline file -> columns of `klines_1m` (symbol from the file name)."""
    match = _KLINE_NAME.match(path.name)
    if not match:
        raise BadInput(Problem(str(path), "", "expected a Binance kline file named SYMBOL-1m-YYYY-MM-DD.csv"))
    symbol = match.group(1)
    out: dict[str, list[Any]] = {k: [] for k in ("open_time", "symbol", "open", "high", "low", "close", "volume")}
    for lineno, row in enumerate(csv.reader(io.StringIO(_kline_text(path))), start=1):
        if not row or (lineno == 1 and row[0] == "open_time"):
            continue
        if len(row) != 12:
            raise BadInput(Problem(str(path), "", f"expected 12 columns ({', '.join(KLINE_COLUMNS)}), got {len(row)}",
                                   lineno))
        try:
            open_time = int(row[0])
            if open_time > 10**14:  # archives since 2025 carry microseconds
                open_time //= 1000
            values = [float(x) for x in row[1:6]]
        except ValueError:
            raise BadInput(Problem(str(path), "", "expected an integer open_time and numeric OHLCV", lineno)) from None
        out["open_time"].append(open_time)
        out["symbol"].append(symbol)
        for name, value in zip(("open", "high", "low", "close", "volume"), values, strict=True):
            out[name].append(value)
    return out


def read_node_fills(path: Path, wallet: str) -> list[dict[str, Any]]:
    """The wallet's fills from one node_fills (or node_fills_by_block) JSON-lines file."""
    wallet = wallet.lower()
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInput(Problem(str(path), "", f"not JSON: {exc.msg}", lineno)) from None
            pairs = data.get("events") if isinstance(data, dict) else [data]
            if not isinstance(pairs, list):
                raise BadInput(Problem(str(path), "", "expected [user, fill] or {\"events\": [[user, fill], ...]}",
                                       lineno))
            for pair in pairs:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], dict)):
                    raise BadInput(Problem(str(path), "", "expected [user, fill] pairs", lineno))
                user, fill = pair
                if str(user).lower() != wallet:
                    continue
                missing = [k for k in _FILL_KEYS if k not in fill]
                if missing:
                    raise BadInput(Problem(str(path), "", f"fill without {', '.join(missing)}", lineno))
                rows.append({"time": int(fill["time"]), "observed_ts": int(fill["time"]), "coin": str(fill["coin"]),
                             "px": str(fill["px"]), "sz": str(fill["sz"]), "side": str(fill["side"]),
                             "start_position": str(fill["startPosition"]), "dir": str(fill["dir"]),
                             "closed_pnl": str(fill["closedPnl"]), "hash": str(fill["hash"]), "oid": int(fill["oid"]),
                             "crossed": bool(fill["crossed"]), "fee": str(fill["fee"]), "tid": int(fill["tid"]),
                             "fee_token": str(fill.get("feeToken", "USDC")), "twap_id": fill.get("twapId"),
                             "source": f"node_fills:{path.name}"})
    return rows


def read_exchange_info(path: Path, as_of: int) -> dict[str, list[Any]]:
    """Filters per symbol from a saved `GET /fapi/v1/exchangeInfo` body."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        out: dict[str, list[Any]] = defaultdict(list)
        for s in body["symbols"]:
            f = {x["filterType"]: x for x in s["filters"]}
            out["as_of"].append(as_of)
            out["symbol"].append(s["symbol"])
            out["step_size"].append(f["LOT_SIZE"]["stepSize"])
            out["tick_size"].append(f["PRICE_FILTER"]["tickSize"])
            out["min_qty"].append(f["LOT_SIZE"]["minQty"])
            out["max_qty"].append(f["LOT_SIZE"]["maxQty"])
            out["min_notional"].append(f["MIN_NOTIONAL"]["notional"])
    except json.JSONDecodeError as exc:
        raise BadInput(Problem(str(path), "", f"not JSON: {exc.msg}", exc.lineno)) from None
    except (KeyError, TypeError) as exc:
        raise BadInput(Problem(str(path), "symbols", f"expected Binance exchangeInfo (missing {exc})")) from None
    return dict(out)


def bars_by_day(klines: list[Path]) -> dict[str, dict[str, list[Any]]]:
    """The kline files' rows as columns per UTC day of their open time."""
    bars: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for path in klines:
        cols = read_klines(path)
        for i, ts in enumerate(cols["open_time"]):
            day = bars[day_of(ts)]
            for k, v in cols.items():
                day[k].append(v[i])
    return bars


def import_copytrade(klines: list[Path], node_fills: list[Path], exchange_info: Path, wallet: str,
                     out: Path) -> dict[str, Any]:
    """Write the dataset (one partition per UTC day) from the downloaded files."""
    bars = bars_by_day(klines)
    fills: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in node_fills:
        for row in read_node_fills(path, wallet):
            fills[day_of(row["time"])].append(row)
    if not bars:
        raise BadInput(Problem("--klines", "", "no kline rows in the given files"))
    writer = Writer(out, source="import:binance-klines+node_fills", app="copytrader",
                    assets=sorted({s for d in bars.values() for s in d["symbol"]}))
    first = min(min(d["open_time"]) for d in bars.values())
    for day in sorted(set(bars) | set(fills)):
        if day in bars:
            writer.write(KLINES, day, pa.table(dict(bars[day])).sort_by([("open_time", "ascending"),
                                                                         ("symbol", "ascending")]))
        if day in fills:
            writer.write(TARGET_FILLS, day, pa.Table.from_pylist(fills[day]).sort_by([("time", "ascending"),
                                                                                      ("tid", "ascending")]))
    writer.write(EXCHANGE_INFO, day_of(first), pa.table(read_exchange_info(exchange_info, first)))
    return writer.close({"target_wallet": wallet.lower()})
