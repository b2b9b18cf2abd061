"""Monitor drill seeds (monitor §9 "Defaults: universe 200 (all members ≥ 10 min), HEALTHY, 100%
coverage"): `default_universe` writes, before boot, what a monitor that has been running for a
while would have left in storage, so a drill starts in the default state at once instead of
simulating the ~11 minutes (universe refresh at boot, one snapshot cycle a minute, two clean runs
to release the first-start latch, ten minutes of windows for a signal slot) it takes to get there.

It writes: one successful universe refresh `joined` before the clock start (run, members, current,
ranked like the `leaderboard` world: wallet i at rank i), the universe cadence keys (the next
refresh is `refresh_hours` after it, so nothing is fetched at boot), `history` minutes of clean
`success` snapshot runs up to the minute before the start (three rows per wallet, sizes from the
drill's `positions`, 100% coverage, each followed by a HEALTHY `ingest_health` row), the persisted
machines of that state (health HEALTHY/OK, signal_lock OPEN/OK, dashboard_view NORMAL/OK) and,
with `signals: true`, one flat signal slot 5 minutes before the start so the dashboard is not
halted for want of a signal before the first live slot. Without a `leaderboard` given it also
serves the same wallets from the stats-data world. `earlier` replays trades made during the
history: a seeded run before `until` holds that item's sizes instead of the drill's `positions`
(which stay what the world, and the runs from `until` on, hold)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert

from hlcore.storage.monitor import MonitorState, Snapshots, Universe, UniverseMember, UniverseRun
from hlcore.storage.schema import ingest_health, ingest_runs, signals
from replay.drill import duration_ms
from replay.givens import _machines
from replay.registry import given, step
from replay.wallets import address
from replay.worlds.monitor import _POSITIONS, MonitorWorld, apply_positions, leaderboard_body

APP = "monitor"
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
SLOT_MS = 5 * MINUTE_MS
ASSETS = ("HYPE", "BTC", "ETH")
SEED_RUN_ID = "universe-seed"  # wallet_universe_runs.run_id of the seeded refresh (assert it is kept)

_OFFSET = {"type": "string", "regex": r"^-?(\d+h)?(\d+m)?(\d+s)?$"}


def _offset_ms(text: str) -> int:
    """`-15m` -> -900000 (an offset before the clock start; a bare `15m` means the same)."""
    return -(duration_ms(text.lstrip("-")) or 0)


def _szi(value: Any) -> tuple[float, float | None, float | None, float | None, float | None]:
    """(szi, entry_px, liq_px, leverage, margin_used) of a world position, as the parser stores it."""
    if isinstance(value, Mapping):
        pos = value.get("position", value)
        lev = pos.get("leverage")
        lev_value = lev.get("value") if isinstance(lev, Mapping) else lev
        liq = pos.get("liquidationPx")
        return (float(pos["szi"]), float(pos.get("entryPx", 100.0)), None if liq is None else float(liq),
                None if lev_value is None else float(lev_value), float(pos.get("marginUsed", 10.0)))
    return float(value), 100.0, 50.0, 5.0, 10.0


@given("default_universe", {"type": "dict", "schema": {
    "wallets": {"type": "integer", "min": 1},           # wallets 1..N, rank = number (default 200)
    "joined": _OFFSET,                                   # the refresh's as_of_ts before the start (-15m)
    "history": {"type": "string", "regex": r"^(\d+h)?(\d+m)?$"},  # clean runs before the start (10m)
    "healthy": {"type": "boolean"},                      # persist HEALTHY machines (default true)
    "signals": {"type": "boolean"},                      # one flat slot 5 min before the start (true)
    "earlier": {"type": "list", "schema": {"type": "dict", "schema": {   # sizes held before `until`
        "until": {**_OFFSET, "required": True}, **_POSITIONS["schema"]["schema"]}}},
}}, "The §9 default state before boot: universe of N wallets joined `joined` ago (-15m), `history` "
    "minutes of clean runs (10m), HEALTHY, a recent signal slot; `earlier: [{until, wallets, set}]`: sizes "
    "the runs before `until` held.", apps=(APP,),
    example="default_universe: {wallets: 200, joined: \"-10m30s\", history: 11m}")
def _default_universe(player: Any, value: Mapping[str, Any]) -> None:
    n = int(value.get("wallets", 200))
    start = player.now()
    joined = start + _offset_ms(str(value.get("joined", "-15m")))
    minutes = (duration_ms(str(value.get("history", "10m"))) or 0) // MINUTE_MS
    healthy = bool(value.get("healthy", True))
    db, settings = player.db, player.ws.settings

    # the stats-data world serves the same wallets unless the drill says otherwise
    if "leaderboard" not in player.run.given:
        player.world.leaderboard = leaderboard_body({"wallets": n})
    board = leaderboard_body(player.run.given.get("leaderboard") or {"wallets": n})
    pnl = {row["ethAddress"]: next(p["pnl"] for w, p in row["windowPerformances"] if w == "month")
           for row in board.get("leaderboardRows", []) if isinstance(row, Mapping)}

    # 1. one successful refresh `joined` ago: run + members + current, one transaction
    members = [UniverseMember(address(i), i, pnl.get(address(i), f"{5_000_000 - (i - 1) * 1000:.2f}"), 0.1,
                              "100000.0") for i in range(1, n + 1)]
    run = UniverseRun(SEED_RUN_ID, joined, "success", "stats-data", int(settings.get("monitor.universe.size")),
                      n, 0, n, 0, 0, None, 0, None)
    Universe(db).record_run(run, members, joined)
    refresh_ms = int(float(settings.get("monitor.universe.refresh_hours")) * HOUR_MS)
    keys: dict[str, Any] = {"monitor_first_start_ts": joined, "universe_next_attempt_ts": joined + refresh_ms,
                            "universe_fail_streak": 0, "job_heartbeat_universe": joined}

    # 2. `history` clean minutes up to the minute before the start, sizes from the drill's positions
    earlier = [(start + _offset_ms(str(item["until"])), item) for item in value.get("earlier") or []]
    books: dict[tuple[int, ...], MonitorWorld] = {}

    def world_at(ts: int) -> MonitorWorld:
        """The sizes of the run at `ts`: the drill's positions, then each `earlier` item still in force."""
        key = tuple(i for i, (until, _) in enumerate(earlier) if ts < until)
        if key not in books:
            books[key] = MonitorWorld(player.clock)
            items = list(player.run.given.get("positions") or []) + [earlier[i][1] for i in key]
            apply_positions(books[key], copy.deepcopy(items), len(pnl) or n)
        return books[key]

    last = (start - 1) - (start - 1) % MINUTE_MS  # the latest minute before the start (its run is done)
    slots = [last - k * MINUTE_MS for k in range(minutes - 1, -1, -1)]
    run_rows, snap_rows, health_rows = [], [], []
    for k, ts in enumerate(slots):
        scratch = world_at(ts)
        run_id = f"snapshots-{ts}"
        run_rows.append({"run_id": run_id, "snapshot_ts": ts, "status": "success", "wallets_expected": n,
                         "wallets_succeeded": n, "wallets_failed": 0, "rows_expected": 3 * n,
                         "rows_written": 3 * n, "coverage_pct": 100.0, "nonnull_pct_hype": 100.0,
                         "nonnull_pct_btc": 100.0, "nonnull_pct_eth": 100.0, "dirty_marked": 0,
                         "concurrency": int(settings.get("monitor.snapshots.max_concurrency")),
                         "rate_limited_count": 0, "universe_run_id": SEED_RUN_ID, "duration_ms": 2000,
                         "error": None, "created_at": ts + 2000})
        for i in range(1, n + 1):
            book = scratch.positions.get(address(i), {})
            for asset in ASSETS:
                szi, entry, liq, lev, margin = _szi(book[asset]) if asset in book else (0.0, None, None, None, None)
                snap_rows.append({"snapshot_ts": ts, "wallet_id": address(i), "asset": asset, "position_szi": szi,
                                  "entry_px": entry, "liq_px": liq, "leverage": lev, "margin_used": margin,
                                  "is_dirty": False, "dirty_reason": None, "ingest_run_id": run_id,
                                  "created_at": ts + 2000})
        if healthy:
            health_rows.append({"health_ts": ts + 5000, "last_success_snapshot_ts": ts, "snapshot_status": "success",
                                "coverage_pct": 100.0, "health_state": "HEALTHY", "health_reason": "OK",
                                "latched": False, "clean_streak": k + 1, "error": None, "created_at": ts + 5000})
    with db.transaction() as conn:
        if run_rows:
            conn.execute(insert(ingest_runs), run_rows)
            Snapshots(db).insert_rows(snap_rows, conn=conn)  # ~600 rows a seeded minute
        if health_rows:
            conn.execute(insert(ingest_health), health_rows)
        if slots:
            keys.update({"job_heartbeat_snapshots": slots[-1] + 2000, "job_heartbeat_health": slots[-1] + 5000})
        # 3. a flat signal slot: what the last live cycle before the start wrote
        # the latest slot whose cycle (at T + start_grace) ran before the start
        before = start - int(settings.get("monitor.signals.start_grace_sec")) * 1000 - 1
        slot = before - before % SLOT_MS
        if value.get("signals", True) and healthy:
            conn.execute(insert(signals), [{
                "signal_ts": slot, "asset": asset, "alignment_score": 50.0, "dispersion_index": 0.0,
                "exit_cluster_score": 0.0, "alignment_trend": "flat", "allowed_playbook": "No-trade",
                "risk_mode": "Defensive", "add_exposure": False, "tighten_stops": False, "wallet_count": n,
                "expected_count": n, "missing_count": 0, "dirty_count": 0, "dirty_rate_pct": 0.0,
                "snapshot_slots": 5, "is_degraded": False, "degraded_reason": None, "health_state": "HEALTHY",
                "computation_ms": 50, "created_at": slot + 45_000} for asset in ASSETS])
            keys.update({"job_heartbeat_signals": slot + 45_000, "job_heartbeat_alerts": slot + 45_000})
    MonitorState(db).set_many(keys, start)

    # 4. the machines of that state, as the last evaluation persisted them
    if healthy:
        machines: dict[str, Any] = {
            "health": {"state": "HEALTHY", "reason": "OK", "since": joined,
                       "vars": {"latched_since": None, "manual_halt": False}},
            "signal_lock": {"state": "OPEN", "reason": "OK", "since": joined},
        }
        if value.get("signals", True):
            machines["dashboard_view"] = {"state": "NORMAL", "reason": "OK", "since": joined}
        _machines(player, machines)


# ---------------------------------------------------------------------- jobs die / come back
def _jobs_schema() -> dict[str, Any]:
    from hlcore.jobs.monitor.service import JOBS

    return {"jobs": {"type": "list", "required": True, "empty": False,
                     "schema": {"type": "string", "allowed": list(JOBS)}}}


@step("stop_jobs", _jobs_schema(), "These monitor jobs die while the others keep their cadence (live each "
      "runs as its own process; runbook: `pkill -f src.ingest.fetch` stops ingestion only). `start_jobs` or "
      "the next boot brings them back.", apps=(APP,),
    example="{at: 0s, do: stop_jobs, jobs: [snapshots]}")
def _stop_jobs(player: Any, args: Mapping[str, Any]) -> None:
    scheduler = player.scheduler
    if scheduler is None:
        raise RuntimeError("stop_jobs: no running process (boot first)")
    stopped = getattr(player, "stopped_jobs", {})
    for job in [j for j in scheduler.jobs if j.name in set(args["jobs"])]:
        scheduler.jobs.remove(job)
        stopped[job.name] = (job, job.next_at % job.every_ms)  # its slot phase (e.g. second 0)
    player.stopped_jobs = stopped


@step("start_jobs", _jobs_schema(), "Jobs stopped by `stop_jobs` start again (runbook: restart ingestion); "
      "each runs at its next slot, never backfilling the ones it missed.", apps=(APP,),
    example="{at: 11m40s, do: start_jobs, jobs: [snapshots]}")
def _start_jobs(player: Any, args: Mapping[str, Any]) -> None:
    stopped = getattr(player, "stopped_jobs", {})
    if player.scheduler is None:
        raise RuntimeError("start_jobs: no running process (boot first)")
    now = player.now()
    for name in args["jobs"]:
        if name not in stopped:
            continue
        job, phase = stopped.pop(name)
        first = now - now % job.every_ms + phase
        job.next_at = first if first >= now else first + job.every_ms
        player.scheduler.jobs.append(job)
