"""The wallet monitor's repositories: universe, snapshots, anomalies, ingest runs, ingest health and
the monitor's `system_state` keys (spec/monitor.md §4.1–4.4, §6).

This module owns the storage half of the monitor's ingestion guarantees:

- a successful universe refresh writes its run, its members and the new current universe in one
  transaction (`Universe.record_run`); a failed one writes its run row only, so the last good
  universe stays current (§4.1);
- a snapshot cycle writes at most one `ingest_runs` row per `snapshot_ts` (UNIQUE), and its rows are
  upserted on `(snapshot_ts, wallet_id, asset)` (§4.2);
- a dirty mark touches `is_dirty` and `dirty_reason` only, never `position_szi` or any other raw
  field, and marks each row at most once (§4.4 "raw rows are never deleted or otherwise altered");
- `ingest_health` is append-only (§4.3).

Status words, error codes and health states are arguments: the policy's verdict effects own those
names (house rule 4). Times are arguments too (`now_ms`), never read from a clock (house rule 8).
Writers take an optional `conn` to join a caller's transaction. Quantities go in as Decimal (or
float) through the schema's Numeric columns and come back as float.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from enum import StrEnum
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, case, delete, func, insert, or_, select, update

from hlcore.storage.db import Database, _conflict_statement, insert_ignore, upsert
from hlcore.storage.repos import TypedState, dump_json, load_json
from hlcore.storage.schema import (
    ingest_health,
    ingest_runs,
    snapshot_anomalies,
    wallet_snapshots,
    wallet_universe_current,
    wallet_universe_members,
    wallet_universe_runs,
)

MINUTE_MS = 60_000
DIRTY_RATE_WINDOW_MS = 10 * MINUTE_MS
"""The dirty-rate window `(T−10 min, T]` of a signal cycle (§4.4 Dirty rate; fixed by the spec)."""


# --------------------------------------------------------------------------------------------------
# system_state keys
# --------------------------------------------------------------------------------------------------


class MonitorKey(StrEnum):
    """The monitor's `system_state` keys (spec §6), so no caller spells one by hand.

    Per-asset and per-job keys (`dirty_streak_<asset>`, `job_heartbeat_<job>`) are built by
    `dirty_streak_key` and `heartbeat_key`; the members below are the ones the spec lists.
    """

    SCHEMA_VERSION = "schema_version"
    MONITOR_FIRST_START_TS = "monitor_first_start_ts"
    HEALTH_LATCHED = "health_latched"
    HEALTH_LATCHED_SINCE = "health_latched_since"
    HEALTH_LATCH_REASON = "health_latch_reason"
    MANUAL_HALT = "manual_halt"
    MANUAL_HALT_REASON = "manual_halt_reason"
    MANUAL_HALT_SINCE = "manual_halt_since"
    SNAPSHOT_CONCURRENCY = "snapshot_concurrency"
    UNIVERSE_NEXT_ATTEMPT_TS = "universe_next_attempt_ts"
    UNIVERSE_FAIL_STREAK = "universe_fail_streak"
    JOB_HEARTBEAT_UNIVERSE = "job_heartbeat_universe"
    JOB_HEARTBEAT_SNAPSHOTS = "job_heartbeat_snapshots"
    JOB_HEARTBEAT_HEALTH = "job_heartbeat_health"
    JOB_HEARTBEAT_SIGNALS = "job_heartbeat_signals"
    JOB_HEARTBEAT_ALERTS = "job_heartbeat_alerts"
    JOB_HEARTBEAT_DASHBOARD = "job_heartbeat_dashboard"


def heartbeat_key(job: str) -> str:
    """`job_heartbeat_<job>` (§5: every job writes it every cycle; `status` shows STOPPED beyond 2× cadence)."""
    return f"job_heartbeat_{job}"


def dirty_streak_key(asset: str) -> str:
    """`dirty_streak_<asset>` (§6)."""
    return f"dirty_streak_{asset}"


class MonitorState(TypedState):
    """Typed access to the monitor's `system_state` keys."""

    def first_start_ts(self, *, conn: Connection | None = None) -> int | None:
        return self.get_int(MonitorKey.MONITOR_FIRST_START_TS, conn=conn)

    def ensure_first_start(self, now_ms: int, *, conn: Connection | None = None) -> int:
        """Record `monitor_first_start_ts` once (the System Stale grace of a fresh install, §4.3)."""
        with self.db.begin_or_join(conn) as c:
            stored = self.first_start_ts(conn=c)
            if stored is not None:
                return stored
            self.set_many({MonitorKey.MONITOR_FIRST_START_TS: now_ms}, now_ms, conn=c)
            return now_ms

    def heartbeat(self, job: str, now_ms: int, *, conn: Connection | None = None) -> None:
        self.set_many({heartbeat_key(job): now_ms}, now_ms, conn=conn)

    def snapshot_concurrency(self, *, conn: Connection | None = None) -> int | None:
        return self.get_int(MonitorKey.SNAPSHOT_CONCURRENCY, conn=conn)

    def universe_next_attempt_ts(self, *, conn: Connection | None = None) -> int | None:
        return self.get_int(MonitorKey.UNIVERSE_NEXT_ATTEMPT_TS, conn=conn)


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    """A stored quantity or percentage as float (None stays None)."""
    return None if value is None else float(value)




# --------------------------------------------------------------------------------------------------
# wallet_universe_current / _runs / _members
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UniverseMember:
    """One ranked wallet of a universe (a `wallet_universe_members` / `_current` row)."""

    wallet_id: str
    rank: int
    month_pnl: Decimal | float | None
    month_roi: Decimal | float | None = None
    account_value: Decimal | float | None = None
    display_name: str | None = None


@dataclass(frozen=True)
class UniverseRun:
    """One `wallet_universe_runs` row: every refresh attempt writes exactly one (§4.1).

    `status` and `error` are the policy's verdict, passed through; `error` is None iff the verdict
    carried none (the success verdict)."""

    run_id: str
    as_of_ts: int
    status: str
    source: str
    n_requested: int
    n_received: int
    n_invalid: int
    entered_count: int
    exited_count: int
    churn_warning_count: int
    churn_pct: float | None
    duration_ms: int | None
    error: str | None
    created_at: int | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> UniverseRun:
        m = row._mapping
        return cls(**{k: m[k] for k in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Universe:
    """The leaderboard universe: current members, refresh runs and their members (§4.1, §6)."""

    def __init__(self, db: Database):
        self.db = db

    def current(self, *, conn: Connection | None = None) -> list[UniverseMember]:
        """The current universe, by rank."""
        t = wallet_universe_current
        query = select(t).order_by(t.c.rank)
        with self.db.begin_or_join(conn) as c:
            rows = c.execute(query).all()
        return [
            UniverseMember(
                r.wallet_id, int(r.rank), _num(r.month_pnl), _num(r.month_roi), _num(r.account_value), r.display_name
            )
            for r in rows
        ]

    def current_ids(self, *, conn: Connection | None = None) -> list[str]:
        """Current wallet ids, by rank: the wallets a snapshot cycle asks about."""
        t = wallet_universe_current
        with self.db.begin_or_join(conn) as c:
            return list(c.execute(select(t.c.wallet_id).order_by(t.c.rank)).scalars())

    def stalest_first(self, *, conn: Connection | None = None) -> list[str]:
        """Current wallet ids, the ones whose last good snapshot is oldest (or missing) first, then
        by rank. When every wallet is covered every minute this is rank order; when the weight
        budget cannot cover everyone, each cycle starts where the previous one had to stop."""
        t, s = wallet_universe_current, wallet_snapshots
        with self.db.begin_or_join(conn) as c:
            ranked = list(c.execute(_RANKED).scalars())
            # The usual minute: every current wallet has a good row at the newest good slot, so all
            # tie there and rank decides; that reads one slot, not the whole table grouped.
            newest = c.execute(_NEWEST_GOOD_SLOT).scalar()  # walks the key backwards
            if newest is not None:
                good = set(c.execute(_GOOD_AT_SLOT, {"slot": newest}).scalars())
                if good.issuperset(ranked):
                    return ranked
        last = (select(s.c.wallet_id, func.max(s.c.snapshot_ts).label("last_ts"))
                .where(s.c.position_szi.is_not(None)).group_by(s.c.wallet_id).subquery())
        query = (select(t.c.wallet_id).outerjoin(last, last.c.wallet_id == t.c.wallet_id)
                 .order_by(func.coalesce(last.c.last_ts, -1), t.c.rank))
        with self.db.begin_or_join(conn) as c:
            return list(c.execute(query).scalars())

    def current_run_id(self, *, conn: Connection | None = None) -> str | None:
        """The refresh run the current universe came from (None when there is none)."""
        t = wallet_universe_current
        with self.db.begin_or_join(conn) as c:
            return c.execute(select(t.c.run_id).order_by(t.c.rank).limit(1)).scalar_one_or_none()

    def record_run(
        self,
        run: UniverseRun,
        members: Sequence[UniverseMember] | None,
        now_ms: int,
        *,
        conn: Connection | None = None,
    ) -> None:
        """Write one refresh attempt; with `members`, also its members and the new current universe.

        All in one transaction (§4.1 "Success, in one transaction: run + members + replace current").
        `members=None` (a failed attempt) leaves `wallet_universe_current` untouched: the last good
        universe stays current. The caller decides which by the policy's verdict.
        """
        if members is not None and run.error is not None:
            raise ValueError(f"universe run {run.run_id}: an applied refresh cannot carry error {run.error!r}")
        row = run.to_dict()
        row["created_at"] = now_ms
        with self.db.begin_or_join(conn) as c:
            c.execute(wallet_universe_runs.insert().values(**row))
            if members is None:
                return
            if members:
                c.execute(
                    wallet_universe_members.insert(),
                    [
                        {
                            "run_id": run.run_id,
                            "wallet_id": m.wallet_id,
                            "rank": m.rank,
                            "month_pnl": m.month_pnl,
                            "month_roi": _num(m.month_roi),
                            "account_value": m.account_value,
                            "created_at": now_ms,
                        }
                        for m in members
                    ],
                )
            c.execute(delete(wallet_universe_current))
            if members:
                c.execute(
                    wallet_universe_current.insert(),
                    [
                        {
                            "wallet_id": m.wallet_id,
                            "rank": m.rank,
                            "month_pnl": m.month_pnl,
                            "month_roi": _num(m.month_roi),
                            "account_value": m.account_value,
                            "display_name": m.display_name,
                            "as_of_ts": run.as_of_ts,
                            "run_id": run.run_id,
                            "updated_at": now_ms,
                        }
                        for m in members
                    ],
                )

    def runs(self, limit: int | None = None, *, conn: Connection | None = None) -> list[UniverseRun]:
        """Refresh runs, newest first (by `as_of_ts`, then run id)."""
        t = wallet_universe_runs
        query = select(t).order_by(t.c.as_of_ts.desc(), t.c.run_id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.db.begin_or_join(conn) as c:
            return [UniverseRun.from_row(r) for r in c.execute(query)]

    def last_applied_run(self, *, conn: Connection | None = None) -> UniverseRun | None:
        """The newest run without an error (the last refresh that replaced the universe)."""
        t = wallet_universe_runs
        query = select(t).where(t.c.error.is_(None)).order_by(t.c.as_of_ts.desc(), t.c.run_id.desc()).limit(1)
        with self.db.begin_or_join(conn) as c:
            row = c.execute(query).first()
        return None if row is None else UniverseRun.from_row(row)

    def members(self, run_id: str, *, conn: Connection | None = None) -> list[UniverseMember]:
        t = wallet_universe_members
        query = select(t).where(t.c.run_id == run_id).order_by(t.c.rank)
        with self.db.begin_or_join(conn) as c:
            rows = c.execute(query).all()
        return [UniverseMember(r.wallet_id, int(r.rank), _num(r.month_pnl), _num(r.month_roi), _num(r.account_value))
                for r in rows]


# --------------------------------------------------------------------------------------------------
# wallet_snapshots and snapshot_anomalies
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotRow:
    """One wallet/asset position at a slot. `position_szi` None is explicit missing data (a failed
    wallet or an unreadable position, §4.2 Rows); 0 is a known flat position."""

    wallet_id: str
    asset: str
    position_szi: Decimal | float | None
    entry_px: Decimal | float | None = None
    liq_px: Decimal | float | None = None
    leverage: Decimal | float | None = None
    margin_used: Decimal | float | None = None


@dataclass(frozen=True)
class StoredSnapshot:
    """A `wallet_snapshots` row as read back."""

    snapshot_ts: int
    wallet_id: str
    asset: str
    position_szi: float | None
    entry_px: float | None
    liq_px: float | None
    leverage: float | None
    margin_used: float | None
    is_dirty: bool
    dirty_reason: str | None
    ingest_run_id: str | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> StoredSnapshot:
        m = row._mapping
        return cls(
            snapshot_ts=int(m["snapshot_ts"]), wallet_id=m["wallet_id"], asset=m["asset"],
            position_szi=_num(m["position_szi"]), entry_px=_num(m["entry_px"]), liq_px=_num(m["liq_px"]),
            leverage=_num(m["leverage"]), margin_used=_num(m["margin_used"]), is_dirty=bool(m["is_dirty"]),
            dirty_reason=m["dirty_reason"], ingest_run_id=m["ingest_run_id"],
        )


@dataclass(frozen=True)
class DirtyRate:
    """Dirty rows ÷ all rows of one asset in `(T − window, T]` × 100 (§4.4 Dirty rate); 0 rows → 0."""

    asset: str
    signal_ts: int
    dirty_rows: int
    total_rows: int

    @property
    def pct(self) -> float:
        return 0.0 if self.total_rows == 0 else self.dirty_rows / self.total_rows * 100


class Snapshots:
    """`wallet_snapshots` (raw positions, dirty flags) and `snapshot_anomalies` (§4.2, §4.4)."""

    def __init__(self, db: Database):
        self.db = db

    def upsert(
        self,
        snapshot_ts: int,
        rows: Sequence[SnapshotRow],
        ingest_run_id: str | None,
        now_ms: int,
        *,
        conn: Connection | None = None,
    ) -> int:
        """Upsert rows on `(snapshot_ts, wallet_id, asset)` (§4.2 Rows); returns how many were written.

        Raw fields and the run id are replaced; `is_dirty`, `dirty_reason` and `created_at` are kept
        on update, so re-writing a slot never clears a dirty mark."""
        ordered = sorted(rows, key=lambda r: (r.wallet_id, r.asset))
        with self.db.begin_or_join(conn) as c:
            fast = _sqlite_many(c, "upsert", _snapshot_upsert, wallet_snapshots, _SNAPSHOT_COLUMNS) if ordered else None
            if fast is not None:
                # The statement `upsert` runs, compiled once, with the values its bind processors
                # would send: no per-row parameter construction (~1/3 of the 600-row write).
                sql, procs = fast
                values = _processed(([snapshot_ts, r.wallet_id, r.asset, r.position_szi, r.entry_px, r.liq_px,
                                      _num(r.leverage), r.margin_used, ingest_run_id, now_ms] for r in ordered), procs)
                c.exec_driver_sql(sql, values)
                return len(values)
        prepared = [
            {
                "snapshot_ts": snapshot_ts,
                "wallet_id": r.wallet_id,
                "asset": r.asset,
                "position_szi": r.position_szi,
                "entry_px": r.entry_px,
                "liq_px": r.liq_px,
                "leverage": _num(r.leverage),
                "margin_used": r.margin_used,
                "ingest_run_id": ingest_run_id,
                "created_at": now_ms,
            }
            for r in ordered
        ]
        with self.db.begin_or_join(conn) as c:
            upsert(c, wallet_snapshots, prepared, keys=_SNAPSHOT_KEYS, keep=["created_at"])
        return len(prepared)

    def insert_rows(self, rows: Sequence[Mapping[str, Any]], *, conn: Connection | None = None) -> None:
        """Plain INSERT of whole rows (every row the same columns): seeding a history, e.g. a drill's
        hours of clean minutes before its start (tens of thousands of rows). On SQLite the compiled
        `insert(wallet_snapshots)` runs with each value through its column's bind processor, as
        `Connection.execute` would send it, without SQLAlchemy's per-row parameter construction."""
        if not rows:
            return
        columns = tuple(rows[0])
        with self.db.begin_or_join(conn) as c:
            fast = _sqlite_many(c, "insert", lambda: insert(wallet_snapshots), wallet_snapshots, columns)
            if fast is None:
                c.execute(insert(wallet_snapshots), [dict(r) for r in rows])
                return
            sql, procs = fast
            get = itemgetter(*columns)
            values = [get(r) for r in rows] if len(columns) > 1 else [(r[columns[0]],) for r in rows]
            c.exec_driver_sql(sql, _processed(values, procs))

    def at(self, snapshot_ts: int, asset: str | None = None, *, conn: Connection | None = None) -> list[StoredSnapshot]:
        """Rows of one slot, by (wallet, asset)."""
        t = wallet_snapshots
        query = select(t).where(t.c.snapshot_ts == snapshot_ts).order_by(t.c.wallet_id, t.c.asset)
        if asset is not None:
            query = query.where(t.c.asset == asset)
        with self.db.begin_or_join(conn) as c:
            return [StoredSnapshot.from_row(r) for r in c.execute(query)]

    def szi_at(
        self, slots: Iterable[int], *, conn: Connection | None = None
    ) -> dict[tuple[str, str], dict[int, float | None]]:
        """`{(wallet_id, asset): {snapshot_ts: szi}}` for the rows at `slots` (a missing row is absent
        from the inner dict, a NULL szi is present as None)."""
        wanted = sorted(set(slots))
        t = wallet_snapshots
        out: dict[tuple[str, str], dict[int, float | None]] = {}
        with self.db.begin_or_join(conn) as c:
            rows = c.execute(
                select(t.c.wallet_id, t.c.asset, t.c.snapshot_ts, t.c.position_szi)
                .where(t.c.snapshot_ts.in_(wanted))
                .order_by(t.c.wallet_id, t.c.asset, t.c.snapshot_ts)
            ).all()
        for wallet_id, asset, ts, szi in rows:
            out.setdefault((wallet_id, asset), {})[int(ts)] = _num(szi)
        return out

    def collapse_candidates(
        self, t0: int, t1: int, *, conn: Connection | None = None
    ) -> dict[tuple[str, str], dict[int, float | None]]:
        """`szi_at((t0, t1))` narrowed to the pairs that can have collapsed at t1: a non-zero size
        at t0 and, at t1, a NULL or a smaller absolute size (the caller judges them exactly; a
        collapse ratio above 1 or a negative ε needs `szi_at` instead)."""
        out: dict[tuple[str, str], dict[int, float | None]] = {}
        with self.db.begin_or_join(conn) as c:
            rows = c.execute(_COLLAPSE_CANDIDATES, {"t0": t0, "t1": t1}).all()
        for wallet_id, asset, s0, s1 in rows:
            out[(wallet_id, asset)] = {t0: _num(s0), t1: _num(s1)}
        return out

    def mark_dirty(
        self, snapshot_ts: int, wallet_id: str, asset: str, reason: str, *, conn: Connection | None = None
    ) -> bool:
        """Flag one row dirty with `reason`; True if it was clean before (each row is marked once).

        Only `is_dirty` and `dirty_reason` change: the raw position is never altered (§4.4 Action)."""
        t = wallet_snapshots
        stmt = (
            update(t)
            .where(
                and_(
                    t.c.snapshot_ts == snapshot_ts,
                    t.c.wallet_id == wallet_id,
                    t.c.asset == asset,
                    t.c.is_dirty.is_(False),
                )
            )
            .values(is_dirty=True, dirty_reason=reason)
        )
        with self.db.begin_or_join(conn) as c:
            return c.execute(stmt).rowcount == 1

    def add_anomaly(
        self,
        detected_at: int,
        snapshot_ts: int,
        wallet_id: str,
        asset: str,
        anomaly_type: str,
        details: Mapping[str, Any],
        *,
        conn: Connection | None = None,
    ) -> int:
        """Append one `snapshot_anomalies` row (details as canonical JSON); returns its id."""
        row = {
            "detected_at": detected_at,
            "snapshot_ts": snapshot_ts,
            "wallet_id": wallet_id,
            "asset": asset,
            "anomaly_type": anomaly_type,
            "details": dump_json(dict(details)),
        }
        with self.db.begin_or_join(conn) as c:
            return int(c.execute(snapshot_anomalies.insert().values(**row)).inserted_primary_key[0])

    def anomalies(self, since_ms: int | None = None, *, conn: Connection | None = None) -> list[dict[str, Any]]:
        """Anomaly rows in write order (details decoded), optionally detected at or after `since_ms`."""
        t = snapshot_anomalies
        query = select(t).order_by(t.c.id)
        if since_ms is not None:
            query = query.where(t.c.detected_at >= since_ms)
        with self.db.begin_or_join(conn) as c:
            out = [dict(r._mapping) for r in c.execute(query)]
        for row in out:
            row["details"] = load_json(row["details"])
        return out

    def dirty_rate(
        self, asset: str, signal_ts: int, *, window_ms: int = DIRTY_RATE_WINDOW_MS, conn: Connection | None = None
    ) -> DirtyRate:
        """Dirty rows ÷ all rows (NULL-szi rows included) of `asset` in `(T − window, T]` (§4.4)."""
        t = wallet_snapshots
        query = select(func.count(), func.coalesce(func.sum(case((t.c.is_dirty, 1), else_=0)), 0)).where(
            and_(t.c.asset == asset, t.c.snapshot_ts > signal_ts - window_ms, t.c.snapshot_ts <= signal_ts)
        )
        with self.db.begin_or_join(conn) as c:
            total, dirty = c.execute(query).one()
        return DirtyRate(asset, signal_ts, int(dirty), int(total))


def dirty_rate(db: Database, asset: str, signal_ts: int, *, window_ms: int = DIRTY_RATE_WINDOW_MS,
               conn: Connection | None = None) -> float:
    """The dirty rate in percent of `asset` at signal slot `signal_ts` (§4.4; the signal job's G4 input)."""
    return Snapshots(db).dirty_rate(asset, signal_ts, window_ms=window_ms, conn=conn).pct


# --------------------------------------------------------------------------------------------------
# ingest_runs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestRun:
    """One `ingest_runs` row: one snapshot cycle (§4.2, §6). `nonnull_pct` maps asset → percent."""

    run_id: str
    snapshot_ts: int
    status: str
    wallets_expected: int
    wallets_succeeded: int
    wallets_failed: int
    rows_expected: int
    rows_written: int
    coverage_pct: float
    nonnull_pct: Mapping[str, float | None]
    dirty_marked: int = 0
    concurrency: int | None = None
    rate_limited_count: int = 0
    universe_run_id: str | None = None
    duration_ms: int | None = None
    error: str | None = None
    created_at: int | None = None

    @property
    def min_nonnull_pct(self) -> float | None:
        """The lowest per-asset non-null rate (None when none is stored)."""
        values = [v for v in self.nonnull_pct.values() if v is not None]
        return min(values) if values else None

    @classmethod
    def from_row(cls, row: Row[Any]) -> IngestRun:
        m = row._mapping
        nonnull = {
            col.removeprefix(_NONNULL_PREFIX).upper(): _num(m[col])
            for col in ingest_runs.c.keys()  # noqa: SIM118 - column names
            if col.startswith(_NONNULL_PREFIX)
        }
        return cls(
            run_id=m["run_id"], snapshot_ts=int(m["snapshot_ts"]), status=m["status"],
            wallets_expected=m["wallets_expected"], wallets_succeeded=m["wallets_succeeded"],
            wallets_failed=m["wallets_failed"], rows_expected=m["rows_expected"], rows_written=m["rows_written"],
            coverage_pct=_num(m["coverage_pct"]), nonnull_pct=nonnull,  # type: ignore[arg-type]
            dirty_marked=m["dirty_marked"] or 0, concurrency=m["concurrency"],
            rate_limited_count=m["rate_limited_count"] or 0, universe_run_id=m["universe_run_id"],
            duration_ms=m["duration_ms"], error=m["error"], created_at=m["created_at"],
        )


_NONNULL_PREFIX = "nonnull_pct_"


def _nonnull_column(asset: str) -> str:
    column = f"{_NONNULL_PREFIX}{asset.lower()}"
    if column not in ingest_runs.c:
        raise ValueError(f"ingest_runs has no non-null column for asset {asset!r}")
    return column


class IngestRuns:
    """`ingest_runs`: one row per snapshot cycle, `snapshot_ts` UNIQUE (§4.2, §6)."""

    def __init__(self, db: Database):
        self.db = db

    def insert(self, run: IngestRun, now_ms: int, *, conn: Connection | None = None) -> None:
        """Write a cycle's row; a second row for the same `snapshot_ts` is an IntegrityError (S4)."""
        row: dict[str, Any] = {
            "run_id": run.run_id,
            "snapshot_ts": run.snapshot_ts,
            "status": run.status,
            "wallets_expected": run.wallets_expected,
            "wallets_succeeded": run.wallets_succeeded,
            "wallets_failed": run.wallets_failed,
            "rows_expected": run.rows_expected,
            "rows_written": run.rows_written,
            "coverage_pct": run.coverage_pct,
            "dirty_marked": run.dirty_marked,
            "concurrency": run.concurrency,
            "rate_limited_count": run.rate_limited_count,
            "universe_run_id": run.universe_run_id,
            "duration_ms": run.duration_ms,
            "error": run.error,
            "created_at": now_ms,
        }
        for asset, pct in run.nonnull_pct.items():
            row[_nonnull_column(asset)] = pct
        with self.db.begin_or_join(conn) as c:
            c.execute(ingest_runs.insert().values(**row))

    def set_dirty_marked(self, run_id: str, count: int, *, conn: Connection | None = None) -> None:
        with self.db.begin_or_join(conn) as c:
            c.execute(update(ingest_runs).where(ingest_runs.c.run_id == run_id).values(dirty_marked=count))

    def get(self, snapshot_ts: int, *, conn: Connection | None = None) -> IngestRun | None:
        with self.db.begin_or_join(conn) as c:
            row = c.execute(select(ingest_runs).where(ingest_runs.c.snapshot_ts == snapshot_ts)).first()
        return None if row is None else IngestRun.from_row(row)

    def exists(self, snapshot_ts: int, *, conn: Connection | None = None) -> bool:
        with self.db.begin_or_join(conn) as c:
            found = c.execute(
                select(ingest_runs.c.run_id).where(ingest_runs.c.snapshot_ts == snapshot_ts)
            ).first()
        return found is not None

    def latest(self, *, at_or_before: int | None = None, statuses: Iterable[str] | None = None,
               conn: Connection | None = None) -> IngestRun | None:
        """The newest run by `snapshot_ts` (optionally at or before a time, optionally among `statuses`)."""
        query = _LATEST_RUN[(at_or_before is not None, statuses is not None)]
        params: dict[str, Any] = {}
        if at_or_before is not None:
            params["at"] = at_or_before
        if statuses is not None:
            params["statuses"] = sorted(set(statuses))
        with self.db.begin_or_join(conn) as c:
            row = c.execute(query, params).first()
        return None if row is None else IngestRun.from_row(row)

    def newest_first(self, *, at_or_before: int | None = None, limit: int | None = None,
                     conn: Connection | None = None) -> list[IngestRun]:
        """Runs newest first (e.g. `status`'s last five, or a streak count)."""
        t = ingest_runs
        query = select(t).order_by(t.c.snapshot_ts.desc())
        if at_or_before is not None:
            query = query.where(t.c.snapshot_ts <= at_or_before)
        if limit is not None:
            query = query.limit(limit)
        with self.db.begin_or_join(conn) as c:
            return [IngestRun.from_row(r) for r in c.execute(query)]

    def count_in(self, after_ms: int, up_to_ms: int, statuses: Iterable[str], *,
                 conn: Connection | None = None) -> int:
        """Runs with `snapshot_ts` in `(after_ms, up_to_ms]` among `statuses` (G2 usable runs per window)."""
        t = ingest_runs
        query = select(func.count()).where(
            and_(t.c.snapshot_ts > after_ms, t.c.snapshot_ts <= up_to_ms, t.c.status.in_(sorted(set(statuses))))
        )
        with self.db.begin_or_join(conn) as c:
            return int(c.execute(query).scalar_one())


# --------------------------------------------------------------------------------------------------
# ingest_health
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthRecord:
    """One `ingest_health` row: one health evaluation (§4.3, §6). State and reason come from the
    policy's `health` machine after the evaluation."""

    health_ts: int
    last_success_snapshot_ts: int | None
    snapshot_status: str | None
    coverage_pct: float | None
    health_state: str
    health_reason: str | None
    latched: bool
    clean_streak: int
    error: str | None = None
    created_at: int | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> HealthRecord:
        m = row._mapping
        return cls(**{k: m[k] for k in cls.__dataclass_fields__})


class IngestHealth:
    """Append-only `ingest_health`."""

    def __init__(self, db: Database):
        self.db = db

    def append(self, record: HealthRecord, now_ms: int, *, conn: Connection | None = None) -> bool:
        """Append one evaluation; False (nothing written) if a row for that `health_ts` exists:
        rows are never replaced."""
        row = asdict(record)
        row["created_at"] = now_ms
        with self.db.begin_or_join(conn) as c:
            return insert_ignore(c, ingest_health, row, ("health_ts",))

    def latest(self, *, conn: Connection | None = None) -> HealthRecord | None:
        with self.db.begin_or_join(conn) as c:
            row = c.execute(_LATEST_HEALTH).first()
        return None if row is None else HealthRecord.from_row(row)

    def rows(self, *, conn: Connection | None = None) -> list[HealthRecord]:
        t = ingest_health
        with self.db.begin_or_join(conn) as c:
            return [HealthRecord.from_row(r) for r in c.execute(select(t).order_by(t.c.health_ts))]


__all__ = [
    "DIRTY_RATE_WINDOW_MS",
    "DirtyRate",
    "HealthRecord",
    "IngestHealth",
    "IngestRun",
    "IngestRuns",
    "MonitorKey",
    "MonitorState",
    "SnapshotRow",
    "Snapshots",
    "StoredSnapshot",
    "Universe",
    "UniverseMember",
    "UniverseRun",
    "dirty_rate",
    "dirty_streak_key",
    "heartbeat_key",
]


# `Universe.stalest_first`'s usual-minute reads, built once (run every simulated minute).
_RANKED = select(wallet_universe_current.c.wallet_id).order_by(wallet_universe_current.c.rank)
_NEWEST_GOOD_SLOT = (select(wallet_snapshots.c.snapshot_ts).where(wallet_snapshots.c.position_szi.is_not(None))
                     .order_by(wallet_snapshots.c.snapshot_ts.desc()).limit(1))
_GOOD_AT_SLOT = select(wallet_snapshots.c.wallet_id).where(
    wallet_snapshots.c.snapshot_ts == bindparam("slot", type_=wallet_snapshots.c.snapshot_ts.type),
    wallet_snapshots.c.position_szi.is_not(None))



def _latest_run(bounded: bool, among: bool) -> Any:
    """`IngestRuns.latest`'s statement: with `at_or_before` (`:at`), with `statuses` (`:statuses`)."""
    t = ingest_runs
    query = select(t).order_by(t.c.snapshot_ts.desc()).limit(1)
    if bounded:
        query = query.where(t.c.snapshot_ts <= bindparam("at", type_=t.c.snapshot_ts.type))
    if among:
        query = query.where(t.c.status.in_(bindparam("statuses", expanding=True)))
    return query


# (at_or_before given, statuses given) -> statement; the health meter asks several times a minute
_LATEST_RUN = {(b, a): _latest_run(b, a) for b in (False, True) for a in (False, True)}
_LATEST_HEALTH = select(ingest_health).order_by(ingest_health.c.health_ts.desc()).limit(1)


# `Snapshots.upsert`'s columns, in the order its fast path binds them.
_SNAPSHOT_COLUMNS = ("snapshot_ts", "wallet_id", "asset", "position_szi", "entry_px", "liq_px", "leverage",
                     "margin_used", "ingest_run_id", "created_at")
_SNAPSHOT_KEYS = ["snapshot_ts", "wallet_id", "asset"]


def _snapshot_upsert() -> Any:
    """The statement `db.upsert` runs for a snapshot write (the same cached conflict statement)."""
    update = tuple(c for c in _SNAPSHOT_COLUMNS if c not in _SNAPSHOT_KEYS and c != "created_at")
    return _conflict_statement("sqlite", wallet_snapshots, tuple(_SNAPSHOT_KEYS), update, returning=False)


_SQLITE_MANY: dict[tuple[str, str, tuple[str, ...]], tuple[str, list[tuple[int, Any]]] | None] = {}


def _sqlite_many(conn: Connection, kind: str, statement: Callable[[], Any], table: Any,
                 columns: tuple[str, ...]) -> tuple[str, list[tuple[int, Any]]] | None:
    """On SQLite (qmark parameters): the SQL text of `statement()` compiled as SQLAlchemy compiles it
    for an executemany of `columns`, and the bind processors of its parameters by position, built once
    per (kind, table, columns); None elsewhere (PostgreSQL keeps the generic path), or if the compiled
    parameters are not exactly `columns` in this order."""
    dialect = conn.dialect
    if dialect.name != "sqlite" or dialect.paramstyle != "qmark":
        return None
    key = (kind, table.name, columns)
    if key not in _SQLITE_MANY:
        compiled = statement().compile(dialect=dialect, column_keys=list(columns), for_executemany=True)
        built: tuple[str, list[tuple[int, Any]]] | None = None
        if tuple(compiled.positiontup or ()) == columns:
            procs = [(i, table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
                     for i, name in enumerate(columns)]
            built = (str(compiled), [(i, p) for i, p in procs if p is not None])
        _SQLITE_MANY[key] = built
    return _SQLITE_MANY[key]


def _processed(rows: Iterable[Sequence[Any]], procs: list[tuple[int, Any]]) -> list[tuple[Any, ...]]:
    """Each row's values as its columns' bind processors send them (what `Connection.execute` would)."""
    if not procs:
        return [tuple(r) for r in rows]
    out = []
    for r in rows:
        v = list(r)
        for i, proc in procs:
            v[i] = proc(v[i])
        out.append(tuple(v))
    return out


def _collapse_candidates() -> Any:
    """`Snapshots.collapse_candidates`'s join (`:t0`, `:t1`), built once: it runs every simulated minute."""
    a, b = wallet_snapshots.alias("t0"), wallet_snapshots.alias("t1")
    ts = wallet_snapshots.c.snapshot_ts.type
    return (select(b.c.wallet_id, b.c.asset, a.c.position_szi, b.c.position_szi)
            .join(a, and_(a.c.wallet_id == b.c.wallet_id, a.c.asset == b.c.asset,
                          a.c.snapshot_ts == bindparam("t0", type_=ts)))
            .where(b.c.snapshot_ts == bindparam("t1", type_=ts), a.c.position_szi.is_not(None),
                   a.c.position_szi != 0,
                   or_(b.c.position_szi.is_(None), func.abs(b.c.position_szi) < func.abs(a.c.position_szi))))


_COLLAPSE_CANDIDATES = _collapse_candidates()
