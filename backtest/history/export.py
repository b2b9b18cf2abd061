"""`hlcore history export`: the monitor's recorded tables -> a history dataset, one day at a time.

Streams each UTC day's rows from the database (SQLite or PostgreSQL, through SQLAlchemy with
`stream_results`), so a long span is never in memory at once. The database keeps sizes, not
per-wallet fetch outcomes: a wallet-minute whose every size is NULL is exported as a failed
fetch (error "exported: no size recorded"); a minute whose run wrote no rows has no observation
(the backtest then counts those wallets as not recorded, and says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import select

from backtest.history.dataset import (
    DAY_MS,
    INGEST_RUNS,
    SCHEMAS,
    SNAPSHOTS,
    UNIVERSE_MEMBERS,
    UNIVERSE_RUNS,
    Writer,
    day_of,
)
from hlcore.errors import BadInput, Problem
from hlcore.storage.db import Database, StorageUnavailable, open_database
from hlcore.storage.schema import ingest_runs, wallet_snapshots, wallet_universe_members, wallet_universe_runs

NO_SIZE = "NETWORK_ERROR: exported: no size recorded"
BATCH = 50_000


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def open_source(url: str, app: str) -> Database:
    """The database an export reads; a missing or unreadable one is one clear error."""
    try:
        db = open_database(url)
        status = db.schema_status()
    except StorageUnavailable as exc:
        raise BadInput(Problem("--db", "", f"cannot open the {app} database: {exc}")) from None
    if status == "missing":
        raise BadInput(Problem("--db", "", f"no hlcore {app} database there"))
    return db


def export(url: str, since_ms: int, until_ms: int, out: Path) -> dict[str, Any]:
    db = open_source(url, "monitor")
    assets: set[str] = set()
    writer = Writer(out, source=f"export {db.engine.url.get_backend_name()}")
    try:
        day0 = since_ms - since_ms % DAY_MS
        for start in range(day0, until_ms, DAY_MS):
            lo, hi = max(start, since_ms), min(start + DAY_MS, until_ms)
            day = day_of(start)
            with db.engine.connect() as conn:
                snaps = conn.execution_options(stream_results=True, yield_per=BATCH).execute(
                    select(wallet_snapshots).where(wallet_snapshots.c.snapshot_ts >= lo,
                                                   wallet_snapshots.c.snapshot_ts < hi)
                    .order_by(wallet_snapshots.c.snapshot_ts, wallet_snapshots.c.wallet_id,
                              wallet_snapshots.c.asset)).mappings()
                rows = [dict(r) for r in snaps]
                runs = conn.execute(select(ingest_runs).where(ingest_runs.c.snapshot_ts >= lo,
                                                              ingest_runs.c.snapshot_ts < hi)
                                    .order_by(ingest_runs.c.snapshot_ts)).mappings().all()
                uruns = conn.execute(select(wallet_universe_runs).where(wallet_universe_runs.c.as_of_ts >= lo,
                                                                        wallet_universe_runs.c.as_of_ts < hi)
                                     .order_by(wallet_universe_runs.c.as_of_ts)).mappings().all()
                ids = [r["run_id"] for r in uruns]
                members = conn.execute(select(wallet_universe_members).where(
                    wallet_universe_members.c.run_id.in_(ids)).order_by(
                    wallet_universe_members.c.run_id, wallet_universe_members.c.rank)).mappings().all() if ids else []
            assets.update(r["asset"] for r in rows)
            writer.write(SNAPSHOTS, day, _snapshots(rows))
            writer.write(INGEST_RUNS, day, pa.Table.from_pylist([
                {"snapshot_ts": r["snapshot_ts"], "run_id": r["run_id"], "status": r["status"],
                 "wallets_expected": r["wallets_expected"], "wallets_succeeded": r["wallets_succeeded"],
                 "coverage_pct": r["coverage_pct"], "error": r["error"]} for r in runs], SCHEMAS[INGEST_RUNS]))
            as_of = {r["run_id"]: r["as_of_ts"] for r in uruns}
            writer.write(UNIVERSE_RUNS, day, pa.Table.from_pylist([
                {"as_of_ts": r["as_of_ts"], "run_id": r["run_id"], "status": r["status"],
                 "n_requested": r["n_requested"], "n_received": r["n_received"], "n_invalid": r["n_invalid"],
                 "schema_ok": None, "error": r["error"]} for r in uruns], SCHEMAS[UNIVERSE_RUNS]))
            writer.write(UNIVERSE_MEMBERS, day, pa.Table.from_pylist([
                {"as_of_ts": as_of[m["run_id"]], "run_id": m["run_id"], "wallet_id": m["wallet_id"],
                 "rank": m["rank"], "month_pnl": _f(m["month_pnl"]), "month_roi": _f(m["month_roi"]),
                 "account_value": _f(m["account_value"])} for m in members], SCHEMAS[UNIVERSE_MEMBERS]))
    finally:
        db.dispose()
    writer.assets = sorted(assets)
    return writer.close({"export": {"since_ms": since_ms, "until_ms": until_ms}})


def _snapshots(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of one day; the fetch outcome is inferred per wallet-minute (all sizes NULL = failed)."""
    failed: dict[tuple[int, str], bool] = {}
    for r in rows:
        key = (r["snapshot_ts"], r["wallet_id"])
        failed[key] = failed.get(key, True) and r["position_szi"] is None
    out = []
    for r in rows:
        bad = failed[(r["snapshot_ts"], r["wallet_id"])]
        out.append({"snapshot_ts": r["snapshot_ts"], "observed_ts": r["created_at"] or r["snapshot_ts"],
                    "wallet_id": r["wallet_id"], "asset": r["asset"], "position_szi": _f(r["position_szi"]),
                    "entry_px": _f(r["entry_px"]), "liq_px": _f(r["liq_px"]), "leverage": _f(r["leverage"]),
                    "margin_used": _f(r["margin_used"]), "http_status": None if bad else 200,
                    "error": NO_SIZE if bad else None, "attempts": 1, "latency_ms": None})
    return pa.Table.from_pylist(out, SCHEMAS[SNAPSHOTS])
