"""Writing a copy-trade history from fills that did not come with bars (fetched or exported).

`target_fills` rows are grouped by UTC day; the minute bars and exchangeInfo filters, which neither
`userFillsByTime` nor the copy-trader's database hold, come from the same downloaded files
`hlcore history import` reads, when given. Without them the manifest says what is missing, and
the backtest refuses the history with that message instead of running on no prices.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from backtest.history.dataset import EXCHANGE_INFO, KLINES, SCHEMAS, TARGET_FILLS, Writer, day_of
from backtest.history.importers import bars_by_day, read_exchange_info

MISSING_BARS = ("klines_1m and exchange_info are not in this history: pass --klines (Binance 1m kline CSVs) "
                "and --exchange-info (a saved /fapi/v1/exchangeInfo body) when writing it")


def fill_rows_to_tables(rows: list[dict[str, Any]]) -> dict[str, pa.Table]:
    """`target_fills` rows -> one table per UTC day, sorted by (time, tid)."""
    by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_day[day_of(int(r["time"]))].append(r)
    return {day: pa.Table.from_pylist(v, SCHEMAS[TARGET_FILLS]).sort_by([("time", "ascending"), ("tid", "ascending")])
            for day, v in sorted(by_day.items())}


def write_copy_history(writer: Writer, fills: dict[str, pa.Table], klines: list[Path],
                       exchange_info: Path | None) -> dict[str, Any]:
    """Write fills (and bars and filters when given); return the manifest's extra keys."""
    for day, table in fills.items():
        writer.write(TARGET_FILLS, day, table)
    bars = bars_by_day(klines)
    for day in sorted(bars):
        writer.write(KLINES, day, pa.table(dict(bars[day])).sort_by([("open_time", "ascending"),
                                                                     ("symbol", "ascending")]))
    writer.assets = sorted({s for d in bars.values() for s in d["symbol"]})
    if exchange_info is not None:
        first = min((min(d["open_time"]) for d in bars.values()), default=None)
        if first is None:
            first = min((int(t.column("time")[0].as_py()) for t in fills.values()), default=0)
        writer.write(EXCHANGE_INFO, day_of(first), pa.table(read_exchange_info(exchange_info, first)))
    missing = [t for t, present in ((KLINES, bool(bars)), (EXCHANGE_INFO, exchange_info is not None)) if not present]
    return {"missing": missing, **({"missing_note": MISSING_BARS} if missing else {})}
