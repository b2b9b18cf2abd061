"""The seam: recorded observations served where the monitor's jobs read the venue.

The monitor's jobs read Hyperliquid through two client methods, `clearinghouse_state(user,
assets)` (parsed positions, or a `VenueError`) and `leaderboard(url, window)` (a parsed
leaderboard). `HistoryFeed` answers both from a history dataset, at the scripted clock's instant,
so everything above that seam (retries, snapshot QA, dirty detection, health, signals, alerts, the
engine, the scheduler) is the monitor's own code. `Recorder` wraps a live or drill client and
keeps what it answered in the same shape, so a drill can be turned into history (parity test).

Fetch outcomes replay too: a wallet that failed in a minute fails every attempt in that minute
with its recorded error; one that needed k attempts fails the first k-1 with its recorded error.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from backtest.history.dataset import (
    DAY_MS,
    SNAPSHOTS,
    UNIVERSE_MEMBERS,
    UNIVERSE_RUNS,
    History,
    Writer,
    day_of,
)
from hlcore.adapters.http import API_ERROR, NETWORK_ERROR, VenueError
from hlcore.adapters.hyperliquid.parse import LeaderboardParse, LeaderboardRow, PositionRow
from hlcore.engine.clock import Clock

NOT_RECORDED = "wallet not in the history for this minute"


def _dec(value: Any) -> Decimal | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return Decimal(repr(float(value)))


# float -> `Decimal(repr(float))`, kept across minutes: a wallet's size, entry and margin mostly
# repeat minute after minute, and building the Decimal (repr, then parse) was most of a minute's
# slice. Zero is never kept (0.0 and -0.0 are equal keys with different reprs); bounded.
_DECIMALS: dict[float, Decimal] = {}
_DECIMALS_MAX = 65_536


def _decs(values: np.ndarray) -> list[Decimal | None]:
    """`_dec` over a column slice (NaN and None -> None), reading each cell as a Python value once."""
    out: list[Decimal | None] = []
    known = _DECIMALS
    for v in values.tolist():
        if v is None or v != v:
            out.append(None)
            continue
        d = known.get(v) if v else None
        if d is None:
            d = Decimal(repr(float(v)))
            if v:
                if len(known) >= _DECIMALS_MAX:
                    known.clear()
                known[v] = d
        out.append(d)
    return out


def _error(text: str | None, status: int | None) -> VenueError:
    code, _, message = (text or f"{NETWORK_ERROR}: failed").partition(": ")
    return VenueError(code, message or code, status=status)


@dataclass(frozen=True)
class Observation:
    """One wallet in one minute: its positions (None: the fetch failed), the error of the failed
    attempts, and how many attempts it took."""

    positions: Mapping[str, PositionRow] | None
    error: str | None
    http_status: int | None
    attempts: int
    latency_ms: int | None = None


class _Http:
    """What the jobs read from `client.http`: the sleep and chance they retry with, and the deadline."""

    def __init__(self, sleep: Any, rng: Any):
        self.sleep, self.rng, self.deadline_ms = sleep, rng, None


class HistoryFeed:
    """A `HyperliquidClient` stand-in over a history dataset (one day of snapshots in memory)."""

    def __init__(self, history: History, clock: Clock, sleep: Any, rng: Any, interval_ms: int = 60_000):
        self.history, self.clock, self.interval_ms = history, clock, interval_ms
        self.http = _Http(sleep, rng)
        self._lock = threading.Lock()
        self._day: str | None = None
        self._minutes: dict[int, dict[str, Observation]] = {}
        self._index: tuple[np.ndarray, Any] | None = None
        self._calls: dict[tuple[int, str], int] = {}
        runs = history.read_all(UNIVERSE_RUNS).sort_by([("as_of_ts", "ascending"), ("run_id", "ascending")])
        self._runs = runs.to_pylist()
        self._run_ts = [int(r["as_of_ts"]) for r in self._runs]
        members = history.read_all(UNIVERSE_MEMBERS).to_pylist()
        self._members: dict[str, list[dict[str, Any]]] = {}
        for m in members:
            self._members.setdefault(m["run_id"], []).append(m)
        self.stats: dict[str, int] = {"answers": 0, "failed": 0, "not_recorded": 0, "leaderboards": 0}

    # ------------------------------------------------------------------ snapshots
    def _load_day(self, day: str) -> None:
        table = self.history.read(SNAPSHOTS, day).sort_by([("snapshot_ts", "ascending"), ("wallet_id", "ascending"),
                                                            ("asset", "ascending")])
        cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
        self._day, self._minutes, self._index = day, {}, (cols["snapshot_ts"], cols)
        self._calls = {k: v for k, v in self._calls.items() if day_of(k[0]) == day}

    def _minute(self, slot: int) -> dict[str, Observation]:
        found = self._minutes.get(slot)  # asked once per wallet: a slot kept is of the loaded day
        if found is not None:
            return found
        day = day_of(slot)
        if day != self._day:
            self._load_day(day)
        assert self._index is not None
        ts, cols = self._index
        lo, hi = int(np.searchsorted(ts, slot, "left")), int(np.searchsorted(ts, slot, "right"))
        # the minute's slice as Python values once (not an element read per cell): ~600 rows a minute
        wallets, assets, errors = (cols[c][lo:hi].tolist() for c in ("wallet_id", "asset", "error"))
        statuses, attempts = cols["http_status"][lo:hi].tolist(), cols["attempts"][lo:hi].tolist()
        szi, entry, liq, margin, lev = (_decs(cols[c][lo:hi]) for c in ("position_szi", "entry_px", "liq_px",
                                                                         "margin_used", "leverage"))
        by_wallet: dict[str, Observation] = {}
        i, n = 0, hi - lo
        while i < n:
            wallet, j = wallets[i], i
            while j < n and wallets[j] == wallet:
                j += 1
            status = statuses[i]
            status = None if status is None or (isinstance(status, float) and status != status) else int(status)
            failed = status != 200
            positions = None if failed else {
                str(assets[k]): PositionRow(szi=szi[k], entry_px=entry[k], liquidation_px=liq[k],
                                            margin_used=margin[k], leverage=lev[k])
                for k in range(i, j)}
            by_wallet[str(wallet)] = Observation(positions, errors[i], status, int(attempts[i]))
            i = j
        self._minutes = {slot: by_wallet}  # one minute at a time: the job asks minute by minute
        return by_wallet

    def clearinghouse_state(self, user: str, assets: Iterable[str]) -> dict[str, PositionRow] | VenueError:
        now = self.clock.now_ms()
        slot = now - now % self.interval_ms
        with self._lock:
            obs = self._minute(slot).get(user)
            call = self._calls[(slot, user)] = self._calls.get((slot, user), 0) + 1
            self.stats["answers"] += 1
            if obs is None:
                self.stats["not_recorded"] += 1
            elif obs.positions is None or call < obs.attempts:
                self.stats["failed"] += 1
        if obs is None:
            return VenueError(API_ERROR, NOT_RECORDED, sent=False)
        if obs.positions is None or call < obs.attempts:
            return _error(obs.error, obs.http_status)
        positions = obs.positions  # a missing asset's row is built only when missing
        return {a: positions[a] if a in positions else PositionRow(szi=None, error="asset not in history")
                for a in assets}

    # ------------------------------------------------------------------ universe
    def leaderboard(self, url: str, window: str = "month") -> LeaderboardParse | VenueError:
        """The latest recorded leaderboard read at or before now (the earliest one before the first)."""
        self.stats["leaderboards"] += 1
        if not self._runs:
            return VenueError(API_ERROR, "no universe runs in the history", sent=False)
        i = max(0, bisect_right(self._run_ts, self.clock.now_ms()) - 1)
        run = self._runs[i]
        if run.get("error"):
            return _error(run["error"], None)
        rows = tuple(LeaderboardRow(str(m["wallet_id"]), Decimal(repr(float(m["month_pnl"] or 0.0))),
                                    _dec(m["month_roi"]), None, _dec(m["account_value"]), None, window)
                     for m in sorted(self._members.get(run["run_id"], []), key=lambda m: m["rank"]))
        schema_ok = bool(run.get("schema_ok", True) if run.get("schema_ok") is not None else True)
        return LeaderboardParse(rows, len(rows), int(run.get("n_invalid") or 0), schema_ok, window)


# --------------------------------------------------------------------------------------------------
# recording (a drill or a live client -> history)
# --------------------------------------------------------------------------------------------------


class Recorder:
    """Wraps a client; keeps per (minute, wallet) the last answer, the attempts and the last error."""

    def __init__(self, client: Any, clock: Clock, interval_ms: int = 60_000):
        self.client, self.clock, self.interval_ms = client, clock, interval_ms
        self.http = client.http
        self._lock = threading.Lock()
        self.snapshots: dict[tuple[int, str], dict[str, Any]] = {}
        self.boards: list[tuple[int, Any]] = []

    def clearinghouse_state(self, user: str, assets: Iterable[str]) -> Any:
        now = self.clock.now_ms()
        result = self.client.clearinghouse_state(user, assets)
        slot = now - now % self.interval_ms
        with self._lock:
            seen = self.snapshots.setdefault((slot, user), {"attempts": 0, "error": None, "status": None})
            seen["attempts"] += 1
            seen["observed_ts"] = self.clock.now_ms()
            if isinstance(result, VenueError):
                seen["error"], seen["status"], seen["result"] = f"{result.code}: {result.message}", result.status, None
            else:
                seen["status"], seen["result"] = 200, result
        return result

    def leaderboard(self, url: str, window: str = "month") -> Any:
        result = self.client.leaderboard(url, window)
        self.boards.append((self.clock.now_ms(), result))
        return result

    def write(self, writer: Writer, assets: list[str]) -> dict[str, Any]:
        """Write what was recorded as a history dataset (one file per table and day)."""
        rows: dict[str, list[dict[str, Any]]] = {}
        for (slot, user), seen in sorted(self.snapshots.items()):
            result = seen.get("result")
            for asset in assets:
                p = result.get(asset) if result is not None else None
                rows.setdefault(day_of(slot), []).append({
                    "snapshot_ts": slot, "observed_ts": seen["observed_ts"], "wallet_id": user, "asset": asset,
                    "position_szi": _f(p.szi if p else None), "entry_px": _f(p.entry_px if p else None),
                    "liq_px": _f(p.liquidation_px if p else None), "leverage": _f(p.leverage if p else None),
                    "margin_used": _f(p.margin_used if p else None), "http_status": seen["status"],
                    "error": seen["error"], "attempts": seen["attempts"], "latency_ms": None})
        for day, day_rows in sorted(rows.items()):
            writer.write(SNAPSHOTS, day, pa.Table.from_pylist(day_rows))
        runs: dict[str, list[dict[str, Any]]] = {}
        members: dict[str, list[dict[str, Any]]] = {}
        for n, (ts, board) in enumerate(self.boards):
            run_id = f"universe-{ts}-{n}"
            failed = isinstance(board, VenueError)
            runs.setdefault(day_of(ts), []).append({
                "as_of_ts": ts, "run_id": run_id, "status": None, "n_requested": None,
                "n_received": None if failed else board.n_received,
                "n_invalid": None if failed else board.n_invalid,
                "schema_ok": None if failed else board.schema_ok,
                "error": f"{board.code}: {board.message}" if failed else None})
            for rank, row in enumerate(() if failed else board.rows, start=1):
                members.setdefault(day_of(ts), []).append({
                    "as_of_ts": ts, "run_id": run_id, "wallet_id": row.wallet_id, "rank": rank,
                    "month_pnl": _f(row.pnl), "month_roi": _f(row.roi), "account_value": _f(row.account_value)})
        for day in sorted(runs):
            writer.write(UNIVERSE_RUNS, day, pa.Table.from_pylist(runs[day]))
        for day in sorted(members):
            writer.write(UNIVERSE_MEMBERS, day, pa.Table.from_pylist(members[day]))
        return writer.close()


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


__all__ = ["DAY_MS", "HistoryFeed", "Observation", "Recorder"]
