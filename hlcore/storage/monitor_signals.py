"""The signal and alert side of the monitor's storage (spec/monitor.md §4.5, §4.6, §6).

Reads what a signal cycle measures (universe membership at a time, the latest clean row per
wallet per window, ε history, dirty counts, usable runs, stored CAS/trend of earlier slots) and
writes what it produces: `signals`, `signal_contributors`, `asset_positioning` in one caller
transaction, and `alerts` / `alert_state` for the alert writer.

Guarantees owned here:

- a cycle's three tables are written by one call inside the caller's transaction
  (`SignalStore.write_cycle`), so a crash or a closed lock before the commit leaves nothing;
- `signals` and its two companions are upserts on `(signal_ts, asset)`: a rerun of a slot
  replaces, never duplicates;
- an `alerts` row is inserted at most once per `(asset, alert_type, signal_ts)` (UNIQUE), and a
  system alert (asset and signal_ts NULL, which UNIQUE cannot dedup) at most once per activation
  time (`AlertStore.insert`).

Status words, states and reasons are arguments (house rule 4); times are arguments (`now_ms`,
`*_ts`), never read from a clock (house rule 8). Every method takes an optional `conn` to join the
caller's transaction. The ingestion tables (`wallet_snapshots`, `wallet_universe_*`,
`ingest_runs`) are read with SQLAlchemy Core directly; their writers live in storage/monitor.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, func, select, true

from hlcore.storage.db import Database, insert_ignore, upsert
from hlcore.storage.repos import dump_json, load_json
from hlcore.storage.schema import (
    alert_state,
    alerts,
    asset_positioning,
    ingest_runs,
    signal_contributors,
    signals,
    system_state,
    wallet_snapshots,
    wallet_universe_current,
    wallet_universe_members,
    wallet_universe_runs,
)

FIRST_START_KEY = "monitor_first_start_ts"
"""The `system_state` key of the first start (§6), the System Stale age reference without data."""

SYSTEM_ASSET = "SYSTEM"
"""`alert_state.asset` of the system alert row (§6: asset ∈ {HYPE, BTC, ETH, SYSTEM})."""

CYCLE_KEYS = ("signal_ts", "asset")


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


SlotRows = dict[str, float | None]
"""One slot's rows of one asset as stored: wallet → szi (None for a NULL size)."""


@dataclass
class _SealedSlots:
    """The stored slots of one asset in `(lo, hi]`, every one of them sealed (see `clean_slots`),
    each as its non-NULL sizes (a NULL size is never clean, so it is dropped once, when sealed)."""

    lo: int
    hi: int
    slots: dict[int, dict[str, float]] = field(default_factory=dict)
    marked: dict[int, tuple[frozenset[str], dict[str, float]]] = field(default_factory=dict)  # clean rows of
    # a sealed slot with dirty marks, by the marks: the same object while the marks stay (LookbackBook)


class SignalStore:
    """What a signal cycle reads and writes."""

    def __init__(self, db: Database):
        self.db = db
        self._sealed: dict[str, _SealedSlots] = {}

    # ------------------------------------------------------------------ universe
    def universe_at(self, ts_ms: int, *, conn: Connection | None = None) -> frozenset[str]:
        """The wallets of the universe in force at `ts_ms`: the members of the latest successful
        refresh (error NULL, §4.1) with `as_of_ts <= ts_ms`. When that run's members are gone
        (retention) the current universe stands in, if it was already in force then."""
        with self.db.begin_or_join(conn) as c:
            run_id = c.execute(_UNIVERSE_RUN_AT, {"ts": ts_ms}).scalar_one_or_none()
            if run_id is not None:
                members = c.execute(_RUN_MEMBERS, {"run_id": run_id}).scalars().all()
                if members:
                    return frozenset(members)
            return frozenset(c.execute(_CURRENT_AT, {"ts": ts_ms}).scalars().all())

    # ------------------------------------------------------------------ snapshots
    def latest_clean(self, asset: str, after_ms: int, up_to_ms: int, *,
                     conn: Connection | None = None) -> dict[str, float]:
        """Per wallet, the szi of its latest row in `(after_ms, up_to_ms]` that is not dirty and not
        NULL (§4.5 Rows)."""
        s = wallet_snapshots
        with self.db.begin_or_join(conn) as c:
            rows = c.execute(
                select(s.c.wallet_id, s.c.position_szi)
                .where(s.c.asset == asset, s.c.snapshot_ts > after_ms, s.c.snapshot_ts <= up_to_ms,
                       s.c.is_dirty.is_(False), s.c.position_szi.is_not(None))
                .order_by(s.c.wallet_id, s.c.snapshot_ts)
            ).all()
        return {wallet: float(szi) for wallet, szi in rows}  # ordered by time: the last one wins

    def clean_slots(self, asset: str, after_ms: int, up_to_ms: int, *,
                    conn: Connection | None = None) -> list[tuple[int, dict[str, float]]]:
        """Per stored slot in `(after_ms, up_to_ms]`, oldest first, the non-dirty, non-NULL szi of
        each wallet: what `latest_clean` and `clean_history` read, from one read of the slots this
        store has not seen sealed yet plus the window's dirty marks (issue 12 item 3).

        A slot is sealed once a later slot of the asset is stored: the snapshot job writes a slot's
        rows in one transaction, never rewrites them (a slot runs once, nothing is backfilled), and
        flags S6 collapses at T − 60 s in the transaction that writes T; retention deletes only
        days older than the lookback. So a sealed slot's sizes are kept here, and the only later
        change, a dirty flag, is read afresh every call from the dirty rows (a partial index).

        The dicts returned are read-only, and a sealed slot's is the same object from call to call
        while its dirty marks stay the same (copying ~200 sizes per slot of a 24 h lookback was most
        of a signal cycle; `LookbackBook` tells a changed slot by a changed object)."""
        s = wallet_snapshots
        cache = self._sealed.get(asset)
        if cache is None or not cache.lo <= after_ms <= cache.hi:
            cache = self._sealed[asset] = _SealedSlots(after_ms, after_ms)
        elif after_ms > cache.lo:
            for ts in [ts for ts in cache.slots if ts <= after_ms]:
                del cache.slots[ts]
                cache.marked.pop(ts, None)
            cache.lo = after_ms
        fresh: dict[int, SlotRows] = {}
        with self.db.begin_or_join(conn) as c:
            if up_to_ms > cache.hi:
                for ts, wallet, szi in c.execute(
                    select(s.c.snapshot_ts, s.c.wallet_id, s.c.position_szi)
                    .where(s.c.asset == asset, s.c.snapshot_ts > cache.hi, s.c.snapshot_ts <= up_to_ms)
                ):
                    fresh.setdefault(int(ts), {})[wallet] = _num(szi)
            dirty: dict[int, set[str]] = {}
            for ts, wallet in c.execute(
                select(s.c.snapshot_ts, s.c.wallet_id)
                .where(s.c.asset == asset, s.c.is_dirty == true(), s.c.snapshot_ts > after_ms,
                       s.c.snapshot_ts <= up_to_ms)
            ):
                dirty.setdefault(int(ts), set()).add(wallet)
        sizes = {ts: {w: v for w, v in rows.items() if v is not None} for ts, rows in fresh.items()}
        if len(fresh) > 1:  # all but the newest slot read have a later slot stored: sealed
            newest = max(fresh)
            for ts in sorted(fresh):
                if ts != newest:
                    cache.slots[ts] = sizes[ts]
            cache.hi = max(cache.hi, max(ts for ts in fresh if ts != newest))
        out: list[tuple[int, dict[str, float]]] = []
        for ts in sorted({*(t for t in cache.slots if t <= up_to_ms), *fresh}):
            rows = cache.slots[ts] if ts in cache.slots else sizes[ts]
            marked = dirty.get(ts)
            if marked is None:
                out.append((ts, rows))
            elif ts in cache.slots:
                kept = cache.marked.get(ts)
                if kept is None or kept[0] != marked:
                    kept = cache.marked[ts] = (frozenset(marked), {w: v for w, v in rows.items() if w not in marked})
                out.append((ts, kept[1]))
            else:
                out.append((ts, {w: v for w, v in rows.items() if w not in marked}))
        return out

    def clean_history(self, asset: str, after_ms: int, up_to_ms: int, *,
                      conn: Connection | None = None) -> dict[str, list[float]]:
        """Per wallet, every non-dirty, non-NULL szi in `(after_ms, up_to_ms]` (the ε lookback)."""
        s = wallet_snapshots
        out: dict[str, list[float]] = {}
        with self.db.begin_or_join(conn) as c:
            for wallet, szi in c.execute(
                select(s.c.wallet_id, s.c.position_szi)
                .where(s.c.asset == asset, s.c.snapshot_ts > after_ms, s.c.snapshot_ts <= up_to_ms,
                       s.c.is_dirty.is_(False), s.c.position_szi.is_not(None))
            ):
                out.setdefault(wallet, []).append(float(szi))
        return out

    def dirty_counts(self, asset: str, after_ms: int, up_to_ms: int, *,
                     conn: Connection | None = None) -> tuple[int, int]:
        """(dirty rows, all rows) of `asset` in `(after_ms, up_to_ms]` (§4.4 Dirty rate)."""
        with self.db.begin_or_join(conn) as c:
            dirty, total = c.execute(_DIRTY_COUNTS, {"asset": asset, "after": after_ms, "up_to": up_to_ms}).one()
        return int(dirty), int(total)

    # ------------------------------------------------------------------ ingest runs
    def count_runs(self, after_ms: int, up_to_ms: int, statuses: Iterable[str], *,
                   conn: Connection | None = None) -> int:
        """Runs in `(after_ms, up_to_ms]` whose status is one of `statuses` (G2 usable runs)."""
        with self.db.begin_or_join(conn) as c:
            return int(c.execute(_COUNT_RUNS, {"after": after_ms, "up_to": up_to_ms,
                                               "statuses": sorted(statuses)}).scalar_one())

    def last_run_ts(self, statuses: Iterable[str], *, at_or_before: int | None = None,
                    conn: Connection | None = None) -> int | None:
        """`snapshot_ts` of the latest run with one of `statuses` (the age reference, §2)."""
        r = ingest_runs
        stmt = select(func.max(r.c.snapshot_ts)).where(r.c.status.in_(sorted(statuses)))
        if at_or_before is not None:
            stmt = stmt.where(r.c.snapshot_ts <= at_or_before)
        with self.db.begin_or_join(conn) as c:
            value = c.execute(stmt).scalar_one_or_none()
        return None if value is None else int(value)

    def first_start_ts(self, *, conn: Connection | None = None) -> int | None:
        with self.db.begin_or_join(conn) as c:
            raw = c.execute(
                select(system_state.c.value).where(system_state.c["key"] == FIRST_START_KEY)
            ).scalar_one_or_none()
        return int(raw) if raw not in (None, "") else None

    # ------------------------------------------------------------------ signals
    def stored_scores(self, asset: str, slots: Iterable[int], *,
                      conn: Connection | None = None) -> dict[int, tuple[float | None, str | None]]:
        """(alignment_score, alignment_trend) of `asset` at each stored slot among `slots`."""
        wanted = sorted(set(slots))
        if not wanted:
            return {}
        s = signals
        with self.db.begin_or_join(conn) as c:
            rows = c.execute(
                select(s.c.signal_ts, s.c.alignment_score, s.c.alignment_trend)
                .where(s.c.asset == asset, s.c.signal_ts.in_(wanted))
            ).all()
        return {int(ts): (_num(cas), trend) for ts, cas, trend in rows}

    def assets_at(self, signal_ts: int, *, conn: Connection | None = None) -> set[str]:
        """Assets with a committed `signals` row at `signal_ts`."""
        with self.db.begin_or_join(conn) as c:
            return set(c.execute(select(signals.c.asset).where(signals.c.signal_ts == signal_ts)).scalars().all())

    def latest_signal_ts(self, asset: str, *, conn: Connection | None = None) -> int | None:
        """The newest committed slot of `asset` (what its alert machines last evaluated)."""
        with self.db.begin_or_join(conn) as c:
            value = c.execute(
                select(func.max(signals.c.signal_ts)).where(signals.c.asset == asset)
            ).scalar_one_or_none()
        return None if value is None else int(value)

    def latest_signal_ts_by_asset(self, assets: Iterable[str], *,
                                  conn: Connection | None = None) -> dict[str, int | None]:
        """`latest_signal_ts` of each of `assets` in one query."""
        wanted = sorted(set(assets))
        with self.db.begin_or_join(conn) as c:
            found = dict(c.execute(_LATEST_SIGNAL_TS, {"assets": wanted}).all())
        return {a: None if found.get(a) is None else int(found[a]) for a in wanted}

    def signal_row(self, signal_ts: int, asset: str, *, conn: Connection | None = None) -> dict[str, Any] | None:
        with self.db.begin_or_join(conn) as c:
            row = c.execute(
                select(signals).where(signals.c.signal_ts == signal_ts, signals.c.asset == asset)
            ).mappings().first()
        return dict(row) if row is not None else None

    def rows(self, table_name: str, *, signal_ts: int | None = None,
             conn: Connection | None = None) -> list[dict[str, Any]]:
        """Every row of `signals`, `signal_contributors` or `asset_positioning` (optionally of one
        slot), ordered by slot and asset: for reports and tests."""
        table = {t.name: t for t in (signals, signal_contributors, asset_positioning)}[table_name]
        stmt = select(table).order_by(table.c.signal_ts, table.c.asset)
        if signal_ts is not None:
            stmt = stmt.where(table.c.signal_ts == signal_ts)
        with self.db.begin_or_join(conn) as c:
            return [dict(r) for r in c.execute(stmt).mappings()]

    def write_cycle(self, signal_rows: Sequence[Mapping[str, Any]],
                    contributor_rows: Sequence[Mapping[str, Any]],
                    positioning_rows: Sequence[Mapping[str, Any]], *, conn: Connection) -> None:
        """Upsert one cycle's rows. `conn` is required: the cycle is one transaction (§4.5), and
        the caller re-checks the lock inside it before committing."""
        for table, rows in ((signals, signal_rows), (signal_contributors, contributor_rows),
                            (asset_positioning, positioning_rows)):
            unknown = sorted({k for r in rows for k in r} - set(table.c.keys()))
            if unknown:
                raise ValueError(f"{table.name}: unknown column(s) {', '.join(unknown)}")
            upsert(conn, table, list(rows), keys=CYCLE_KEYS, keep=("created_at",))


class AlertStore:
    """`alerts` rows (insert-once) and the seven `alert_state` rows."""

    def __init__(self, db: Database):
        self.db = db

    def insert(self, row: Mapping[str, Any], *, conn: Connection | None = None) -> bool:
        """Insert an alert row; False if it was already stored (UNIQUE (asset, alert_type,
        signal_ts), or for a system alert the same type at the same `alert_ts`)."""
        record = dict(row)
        if isinstance(record.get("signal_snapshot"), Mapping):
            record["signal_snapshot"] = dump_json(record["signal_snapshot"])
        unknown = sorted(set(record) - set(alerts.c.keys()))
        if unknown:
            raise ValueError(f"alerts: unknown column(s) {', '.join(unknown)}")
        with self.db.begin_or_join(conn) as c:
            if record.get("asset") is None or record.get("signal_ts") is None:
                seen = c.execute(
                    select(func.count()).where(alerts.c.alert_type == record["alert_type"],
                                               alerts.c.asset.is_(None) if record.get("asset") is None
                                               else alerts.c.asset == record["asset"],
                                               alerts.c.alert_ts == record["alert_ts"])
                ).scalar_one()
                if seen:
                    return False
                c.execute(alerts.insert().values(**record))
                return True
            return insert_ignore(c, alerts, record, ("asset", "alert_type", "signal_ts"))

    def surfaced_count(self, asset: str, after_ms: int, *, conn: Connection | None = None) -> int:
        """Non-suppressed alerts of `asset` with `alert_ts > after_ms` (A5's rolling count)."""
        with self.db.begin_or_join(conn) as c:
            return int(c.execute(
                select(func.count()).where(alerts.c.asset == asset, alerts.c.suppressed.is_(False),
                                           alerts.c.alert_ts > after_ms)
            ).scalar_one())

    def surfaced_counts(self, assets: Iterable[str], after_ms: int, *,
                        conn: Connection | None = None) -> dict[str, int]:
        """`surfaced_count` of each of `assets` in one query."""
        wanted = sorted(set(assets))
        with self.db.begin_or_join(conn) as c:
            found = dict(c.execute(_SURFACED_COUNTS, {"assets": wanted, "after": after_ms}).all())
        return {a: int(found.get(a, 0)) for a in wanted}

    def latest_ts(self, alert_type: str, asset: str | None, *, surfaced_only: bool = True,
                  conn: Connection | None = None) -> int | None:
        """`alert_ts` of the newest `alert_type` row of `asset` (None = the system row)."""
        stmt = _LATEST_ALERT_TS[(asset is None, surfaced_only)]
        with self.db.begin_or_join(conn) as c:
            params = {"alert_type": alert_type} if asset is None else {"alert_type": alert_type, "asset": asset}
            value = c.execute(stmt, params).scalar_one_or_none()
        return None if value is None else int(value)

    def all(self, *, conn: Connection | None = None) -> list[dict[str, Any]]:
        """Every alert row, oldest first, with `signal_snapshot` decoded."""
        with self.db.begin_or_join(conn) as c:
            rows = [dict(r) for r in c.execute(select(alerts).order_by(alerts.c.id)).mappings()]
        for r in rows:
            r["signal_snapshot"] = load_json(r["signal_snapshot"])
        return rows

    def upsert_state(self, rows: Sequence[Mapping[str, Any]], *, conn: Connection | None = None) -> None:
        """Write `alert_state` rows, keyed by (asset, alert_type)."""
        if not rows:
            return
        with self.db.begin_or_join(conn) as c:
            upsert(c, alert_state, list(rows), keys=("asset", "alert_type"))

    def state(self, *, conn: Connection | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        with self.db.begin_or_join(conn) as c:
            return {(r["asset"], r["alert_type"]): dict(r)
                    for r in c.execute(select(alert_state).order_by(alert_state.c.asset,
                                                                     alert_state.c.alert_type)).mappings()}


__all__ = ["FIRST_START_KEY", "SYSTEM_ASSET", "AlertStore", "SignalStore"]


# Statements run several times a simulated minute (the dashboard's `alert_state` refresh), built
# once with bound parameters: building a `select` and its cache key cost more than SQLite running
# it. Same SQL as the inline form (an IN list is an expanding parameter either way).
_LATEST_SIGNAL_TS = (select(signals.c.asset, func.max(signals.c.signal_ts))
                     .where(signals.c.asset.in_(bindparam("assets", expanding=True))).group_by(signals.c.asset))
_SURFACED_COUNTS = (select(alerts.c.asset, func.count())
                    .where(alerts.c.asset.in_(bindparam("assets", expanding=True)), alerts.c.suppressed.is_(False),
                           alerts.c.alert_ts > bindparam("after", type_=alerts.c.alert_ts.type))
                    .group_by(alerts.c.asset))


def _latest_alert_ts(system_row: bool, surfaced_only: bool) -> Any:
    where = [alerts.c.alert_type == bindparam("alert_type", type_=alerts.c.alert_type.type),
             alerts.c.asset.is_(None) if system_row
             else alerts.c.asset == bindparam("asset", type_=alerts.c.asset.type)]
    if surfaced_only:
        where.append(alerts.c.suppressed.is_(False))
    return select(func.max(alerts.c.alert_ts)).where(and_(*where))


# (asset is None, surfaced_only) -> `latest_ts`'s statement
_LATEST_ALERT_TS = {(system, surfaced): _latest_alert_ts(system, surfaced) for system in (True, False)
                    for surfaced in (True, False)}

# The signal cycle's reads (`universe_at`, `dirty_counts`, `count_runs`), built once likewise.
_TS = wallet_snapshots.c.snapshot_ts.type
_UNIVERSE_RUN_AT = (select(wallet_universe_runs.c.run_id)
                    .where(wallet_universe_runs.c.error.is_(None),
                           wallet_universe_runs.c.as_of_ts <= bindparam("ts", type_=_TS))
                    .order_by(wallet_universe_runs.c.as_of_ts.desc(), wallet_universe_runs.c.run_id.desc())
                    .limit(1))
_RUN_MEMBERS = select(wallet_universe_members.c.wallet_id).where(
    wallet_universe_members.c.run_id == bindparam("run_id", type_=wallet_universe_members.c.run_id.type))
_CURRENT_AT = select(wallet_universe_current.c.wallet_id).where(
    wallet_universe_current.c.as_of_ts <= bindparam("ts", type_=wallet_universe_current.c.as_of_ts.type))
_DIRTY_COUNTS = (select(func.coalesce(func.sum(case((wallet_snapshots.c.is_dirty.is_(True), 1), else_=0)), 0),
                        func.count())
                 .where(wallet_snapshots.c.asset == bindparam("asset", type_=wallet_snapshots.c.asset.type),
                        wallet_snapshots.c.snapshot_ts > bindparam("after", type_=_TS),
                        wallet_snapshots.c.snapshot_ts <= bindparam("up_to", type_=_TS)))
_COUNT_RUNS = select(func.count()).where(
    ingest_runs.c.snapshot_ts > bindparam("after", type_=ingest_runs.c.snapshot_ts.type),
    ingest_runs.c.snapshot_ts <= bindparam("up_to", type_=ingest_runs.c.snapshot_ts.type),
    ingest_runs.c.status.in_(bindparam("statuses", expanding=True)))
