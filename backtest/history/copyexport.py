"""`hlcore history export --app copytrader`: the target fills a copy-trader database ingested, as a history.

Streams `ingested_fills` (SQLite or PostgreSQL, `stream_results`, one UTC day in memory at a time)
in time order into `target_fills`. What the database cannot give is said in the manifest's
`assumptions`: it keeps the fields the ingest dedups on (tid, tx hash, coin, side, size, price,
start position, time), not `oid`, fee, closed P&L, `crossed` or the fee token (null here; the
backtest's venue serves oid 0 and omits the rest, none of which the copy-trader reads); `dir` is
derived from start position, side and size; hourly retention keeps only the last
`ingest.dedup_ttl_seconds` of fills; minute bars and filters must be imported separately.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select

from backtest.history.copyrows import fill_rows_to_tables, write_copy_history
from backtest.history.dataset import Writer, day_of
from backtest.history.export import open_source
from hlcore.adapters.hyperliquid.parse import SYNTHETIC_TID_BASE
from hlcore.errors import BadInput, Problem
from hlcore.storage.schema import ingested_fills
from replay.worlds.copytrade import fill_direction

BATCH = 10_000
ASSUMPTIONS = [
    "target_fills are the fills the copy-trader ingested (table ingested_fills): hourly retention keeps only "
    "the last ingest.dedup_ttl_seconds of them, and unmapped coins were never ingested",
    "the database keeps tid, hash, coin, side, sz, px, startPosition and time; oid, fee, closedPnl, crossed and "
    "feeToken are not stored (null here; the backtest serves oid 0); dir is derived",
    "fills without a venue tid (synthetic ids) are exported without tid, as the venue sent them",
    "observed_ts is the fill time: the database does not keep when each fill was seen",
]


def _fmt(value: Any) -> str | None:
    return None if value is None else repr(float(value))


def _rows(db: Any, since_ms: int | None, until_ms: int | None) -> Iterator[dict[str, Any]]:
    query = select(ingested_fills).order_by(ingested_fills.c.time_ms, ingested_fills.c.tid)
    if since_ms is not None:
        query = query.where(ingested_fills.c.time_ms >= since_ms)
    if until_ms is not None:
        query = query.where(ingested_fills.c.time_ms < until_ms)
    with db.engine.connect() as conn:
        for r in conn.execution_options(stream_results=True, yield_per=BATCH).execute(query).mappings():
            start, sz, side = r["start_position"], float(r["sz"]), str(r["side"])
            tid = int(r["tid"])
            yield {"time": int(r["time_ms"]), "observed_ts": int(r["time_ms"]), "coin": r["coin"],
                   "px": _fmt(r["px"]), "sz": _fmt(sz), "side": side, "start_position": _fmt(start),
                   "dir": None if start is None else fill_direction(float(start), side,
                                                                    float(start) + (sz if side == "B" else -sz)),
                   "closed_pnl": None, "hash": r["tx_hash"], "oid": None, "crossed": None, "fee": None,
                   "tid": None if tid >= SYNTHETIC_TID_BASE else tid, "fee_token": None, "twap_id": None,
                   "source": "export:ingested_fills"}


def export_copytrader(url: str, since_ms: int | None, until_ms: int | None, out: Path,
                      klines: list[Path] | None = None, exchange_info: Path | None = None) -> dict[str, Any]:
    """Stream the database's ingested fills, one UTC day at a time, into a copy-trade history."""
    db = open_source(url, "copy-trader")
    writer = Writer(out, source=f"export {db.engine.url.get_backend_name()}", app="copytrader")
    try:
        day, batch, count = "", [], 0
        for row in _rows(db, since_ms, until_ms):
            d = day_of(row["time"])
            if d != day and batch:
                write_copy_history(writer, fill_rows_to_tables(batch), [], None)
                batch = []
            day = d
            batch.append(row)
            count += 1
        if batch:
            write_copy_history(writer, fill_rows_to_tables(batch), [], None)
        if count == 0:
            raise BadInput(Problem("--db", "", "no ingested fills there (in the window): nothing to export"))
        extra = write_copy_history(writer, {}, klines or [], exchange_info)
    finally:
        db.engine.dispose()
    return writer.close({"target_wallet": None, "exported_fills": count, "assumptions": ASSUMPTIONS, **extra})
