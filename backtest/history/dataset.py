"""The history dataset on disk: one parquet file per table and UTC day, and a manifest.

Layout: `DIR/manifest.json` and `DIR/<table>/date=YYYY-MM-DD/part-0.parquet`. Writers stream one
day at a time (a 30-day, 200-wallet month is ~26 M snapshot rows; no day is held twice), readers
load one day at a time. The manifest's `content_hash` is a sha256 over every data file's bytes,
so a cached feature set or a sweep result can name exactly which history it came from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hlcore.errors import BadInput, Problem

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
DAY_MS = 86_400_000

SNAPSHOTS = "wallet_snapshots"
INGEST_RUNS = "ingest_runs"
UNIVERSE_RUNS = "universe_runs"
UNIVERSE_MEMBERS = "universe_members"
# copy-trader tables (issue 17): the target wallet's fills, the venue's minute bars and filters
TARGET_FILLS = "target_fills"
KLINES = "klines_1m"
EXCHANGE_INFO = "exchange_info"

SCHEMAS: dict[str, pa.Schema] = {
    # One row per (minute, wallet, asset) with the fetch outcome of that wallet in that minute, so
    # fetch faults replay too: a failed fetch has NULL sizes, its error and http_status.
    SNAPSHOTS: pa.schema([
        ("snapshot_ts", pa.int64()), ("observed_ts", pa.int64()), ("wallet_id", pa.string()),
        ("asset", pa.string()), ("position_szi", pa.float64()), ("entry_px", pa.float64()),
        ("liq_px", pa.float64()), ("leverage", pa.float64()), ("margin_used", pa.float64()),
        ("http_status", pa.int32()), ("error", pa.string()), ("attempts", pa.int32()),
        ("latency_ms", pa.int32()),
    ]),
    # What the recording system judged each minute (informational: the backtest re-judges).
    INGEST_RUNS: pa.schema([
        ("snapshot_ts", pa.int64()), ("run_id", pa.string()), ("status", pa.string()),
        ("wallets_expected", pa.int32()), ("wallets_succeeded", pa.int32()), ("coverage_pct", pa.float64()),
        ("error", pa.string()),
    ]),
    UNIVERSE_RUNS: pa.schema([
        ("as_of_ts", pa.int64()), ("run_id", pa.string()), ("status", pa.string()),
        ("n_requested", pa.int32()), ("n_received", pa.int32()), ("n_invalid", pa.int32()),
        ("schema_ok", pa.bool_()), ("error", pa.string()),
    ]),
    UNIVERSE_MEMBERS: pa.schema([
        ("as_of_ts", pa.int64()), ("run_id", pa.string()), ("wallet_id", pa.string()), ("rank", pa.int32()),
        ("month_pnl", pa.float64()), ("month_roi", pa.float64()), ("account_value", pa.float64()),
    ]),
    # Every field of a Hyperliquid fill (`userFillsByTime` / node_fills), when it was seen, and from where.
    TARGET_FILLS: pa.schema([
        ("time", pa.int64()), ("observed_ts", pa.int64()), ("coin", pa.string()), ("px", pa.string()),
        ("sz", pa.string()), ("side", pa.string()), ("start_position", pa.string()), ("dir", pa.string()),
        ("closed_pnl", pa.string()), ("hash", pa.string()), ("oid", pa.int64()), ("crossed", pa.bool_()),
        ("fee", pa.string()), ("tid", pa.int64()), ("fee_token", pa.string()), ("twap_id", pa.int64()),
        ("source", pa.string()),
    ]),
    # Binance USD-M 1-minute bars of the mirrored symbols (the simulated venue's prices).
    KLINES: pa.schema([
        ("open_time", pa.int64()), ("symbol", pa.string()), ("open", pa.float64()), ("high", pa.float64()),
        ("low", pa.float64()), ("close", pa.float64()), ("volume", pa.float64()),
    ]),
    # exchangeInfo filters per symbol as recorded at `as_of` (the venue's rejections come from these).
    EXCHANGE_INFO: pa.schema([
        ("as_of", pa.int64()), ("symbol", pa.string()), ("step_size", pa.string()), ("tick_size", pa.string()),
        ("min_qty", pa.string()), ("max_qty", pa.string()), ("min_notional", pa.string()),
    ]),
}
TS_COLUMN = {SNAPSHOTS: "snapshot_ts", INGEST_RUNS: "snapshot_ts", UNIVERSE_RUNS: "as_of_ts",
             UNIVERSE_MEMBERS: "as_of_ts", TARGET_FILLS: "time", KLINES: "open_time", EXCHANGE_INFO: "as_of"}


def day_of(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms // 1000, UTC).strftime("%Y-%m-%d")


def day_start(day: str) -> int:
    return int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp() * 1000)


def iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(text: str, what: str) -> int:
    """`2026-01-24`, `2026-01-24T10:00:00Z` or epoch ms -> epoch ms (UTC); else one clear error."""
    try:
        if text.isdigit():
            return int(text)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(Problem(what, "", f"expected an ISO date or instant (2026-01-24T10:00:00Z), got '{text}'"
                               )) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


class Writer:
    """Streams tables into the dataset, one (table, day) file at a time; `close` writes the manifest."""

    def __init__(self, root: Path, *, source: str, app: str = "monitor", assets: list[str] | None = None):
        self.root = root
        self.source, self.app, self.assets = source, app, assets or []
        self.days: set[str] = set()
        self.span: list[int] = []
        self.wallets: set[str] = set()
        root.mkdir(parents=True, exist_ok=True)
        if (root / MANIFEST).exists() or any(root.iterdir()):
            raise BadInput(Problem(str(root), "", "--out: the folder exists and is not empty (refusing to overwrite)"))

    def write(self, table: str, day: str, data: pa.Table) -> None:
        """Write one day of `table` (sorted by the caller; an empty table writes nothing)."""
        if data.num_rows == 0:
            return
        data = data.cast(SCHEMAS[table])
        folder = self.root / table / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "part-0.parquet"
        if target.exists():  # a second batch for the same day: append by rewriting (export streams by day)
            data = pa.concat_tables([pq.read_table(target), data])
        pq.write_table(data, target, compression="zstd")
        self.days.add(day)
        ts = data.column(TS_COLUMN[table])
        self.span += [pc.min(ts).as_py(), pc.max(ts).as_py()]
        if table == SNAPSHOTS:
            self.wallets.update(pc.unique(data.column("wallet_id")).to_pylist())

    def close(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        rows = {t: pq.ParquetDataset(self.root / t).read(columns=[TS_COLUMN[t]]).num_rows
                for t in SCHEMAS if (self.root / t).is_dir()}
        since, until = (min(self.span), max(self.span)) if self.span else (0, 0)
        manifest = {
            "schema_version": SCHEMA_VERSION, "app": self.app, "source": self.source,
            "span": {"since": iso(since), "until": iso(until), "since_ms": since, "until_ms": until},
            "days": sorted(self.days), "assets": self.assets, "universe_size": len(self.wallets),
            "rows": rows, "content_hash": content_hash(self.root), **(extra or {}),
        }
        (self.root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return manifest


def content_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.parquet")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class History:
    """A dataset opened for reading: its manifest and day-at-a-time table access."""

    root: Path
    manifest: dict[str, Any]

    @property
    def since_ms(self) -> int:
        return int(self.manifest["span"]["since_ms"])

    @property
    def until_ms(self) -> int:
        return int(self.manifest["span"]["until_ms"])

    @property
    def content_hash(self) -> str:
        return str(self.manifest["content_hash"])

    @property
    def assets(self) -> list[str]:
        return list(self.manifest.get("assets") or [])

    def days(self, since_ms: int | None = None, until_ms: int | None = None) -> list[str]:
        lo = day_of(since_ms) if since_ms is not None else ""
        hi = day_of(until_ms) if until_ms is not None else "9999"
        return [d for d in self.manifest["days"] if lo <= d <= hi]

    def read(self, table: str, day: str, columns: list[str] | None = None) -> pa.Table:
        path = self.root / table / f"date={day}" / "part-0.parquet"
        if not path.is_file():
            return SCHEMAS[table].empty_table() if columns is None else \
                pa.schema([SCHEMAS[table].field(c) for c in columns]).empty_table()
        return pq.read_table(path, columns=columns)

    def read_all(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """A small table whole (universe runs and members; never the snapshots)."""
        parts = [self.read(table, d, columns) for d in self.manifest["days"]]
        return pa.concat_tables(parts) if parts else SCHEMAS[table].empty_table()

    def iter_days(self, table: str, since_ms: int | None = None, until_ms: int | None = None,
                  columns: list[str] | None = None) -> Iterator[tuple[str, pa.Table]]:
        for day in self.days(since_ms, until_ms):
            yield day, self.read(table, day, columns)


def open_history(root: Path) -> History:
    """Open `root`; a missing or foreign manifest is one clear error line."""
    path = root / MANIFEST
    if not path.is_file():
        raise BadInput(Problem(str(root), "", f"--history: no {MANIFEST} here (expected a folder written by "
                                              "`hlcore history synth` or `hlcore history export`)"))
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BadInput(Problem(str(path), "", f"not JSON: {exc.msg}", exc.lineno)) from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != SCHEMA_VERSION:
        raise BadInput(Problem(str(path), "schema_version", f"expected {SCHEMA_VERSION}, got {version!r}"))
    for key in ("span", "days", "content_hash"):
        if key not in manifest:
            raise BadInput(Problem(str(path), key, "missing"))
    return History(root, manifest)
