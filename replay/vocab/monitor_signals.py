"""Monitor drill vocabulary for the health / signal / alert drills (monitor §9 drills 8-14).

Steps act on the running monitor's own jobs (live each runs as its own process, §5 `monitor run
--job J`; `stop_jobs` in monitor_base stops some of them): `job_runs` makes one run
at the step's exact instant (how a drill pins an evaluation on a boundary age such as 600.001 s;
`signals` computes the latest slot, as a restarted signal job does, §5), and `slow_computation`
makes one asset's measurement take time, so the lock can close between two assets (drill 9).
The `stored` check reads any table with ISO instants for time columns."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import and_, select

from hlcore.errors import BadInput
from hlcore.jobs.monitor.formulas import Trend
from hlcore.storage.schema import metadata
from replay.checks import column_equals
from replay.drill import DURATION, ISO, Expectation, iso_ms
from replay.registry import check, step

APP = "monitor"
_SCALARS = {"type": "dict", "keysrules": {"type": "string"},
            "valuesrules": {"type": ["string", "integer", "number", "boolean"], "nullable": True}}


def _jobs(player: Any) -> Any:
    """The running monitor's `MonitorJobs` (the owner of the scheduler's bound job methods)."""
    from hlcore.jobs.monitor.service import MonitorJobs

    for job in (player.scheduler.jobs if player.scheduler is not None else ()):
        owner = getattr(job.run, "__self__", None)
        if isinstance(owner, MonitorJobs):
            return owner
    raise RuntimeError("no running monitor process (boot first)")


@step("job_runs", {"job": {"type": "string", "required": True, "allowed": ["health", "signals", "dashboard"]}},
      "The running monitor's job runs once at exactly this instant: `health` evaluates, `dashboard` "
      "re-derives its view, `signals` computes the latest 5-minute slot (skipped if it has rows, §5).",
      apps=(APP,),
    example="{at: 2m30s, do: job_runs, job: health}")
def _job_runs(player: Any, args: Mapping[str, Any]) -> None:
    jobs = _jobs(player)
    now = player.now()
    if args["job"] == "health":
        jobs.health_cycle(now)
    elif args["job"] == "dashboard":
        jobs.dashboard_cycle(now)
    else:
        interval = int(player.ws.settings.get("monitor.signals.interval_sec")) * 1000
        jobs.signal_cycle(now - now % interval)


@step("slow_computation", {"asset": {"type": "string", "required": True, "allowed": ["HYPE", "BTC", "ETH"]},
                           "takes": {"type": ["string", "integer"], "required": True}},
      "The next signal cycle's computation of `asset` is slow (a stalled query): the clock moves on by "
      "`takes` while it runs, once.", apps=(APP,),
    example="{at: 10m10s, do: slow_computation, asset: HYPE, takes: 20s}")
def _slow_computation(player: Any, args: Mapping[str, Any]) -> None:
    from replay.drill import duration_ms

    signals = _jobs(player).signals
    measure = signals.measure
    delay = duration_ms(args["takes"]) or 0
    armed = [True]

    def slow(asset: str, slot_ts: int) -> Any:
        result = measure(asset, slot_ts)
        if asset == args["asset"] and armed[0]:
            armed[0] = False
            player.clock.advance(delay)
        return result

    signals.measure = slow


# the signals columns a drill may pin -> the measured field behind each (monitor §4.5)
_PINNABLE = {"alignment_score": "cas", "exit_cluster_score": "ec", "dispersion_index": "di",
             "alignment_trend": "trend"}


@step("set_signal_inputs", {
    "asset": {"type": "string", "required": True, "allowed": ["HYPE", "BTC", "ETH"]},
    "slot": {**DURATION},
    "set": {"type": "dict", "required": True, "schema": {
        "alignment_score": {"type": "number", "min": 0, "max": 100},
        "exit_cluster_score": {"type": "number", "min": 0, "max": 100},
        "dispersion_index": {"type": "number", "min": 0},
        "alignment_trend": {"type": "string", "allowed": [t.value for t in Trend]}}},
}, "Pin what the signal job measures for `asset` (the scores the policy then judges: `alignment_score`, "
   "`exit_cluster_score`, `dispersion_index`, `alignment_trend`) at the 5-minute slot `slot` (offset from "
   "the clock start), or, without `slot`, at every slot from now on (`set: {}` ends that); it survives "
   "restarts. A boundary row (EC exactly 25.01) without 10,000 wallets.", apps=(APP,),
   example="{at: 0s, do: set_signal_inputs, asset: BTC, slot: 15m, set: {exit_cluster_score: 25.01}}")
def _set_signal_inputs(player: Any, args: Mapping[str, Any]) -> None:
    from replay.drill import duration_ms

    slot = None if "slot" not in args else player.start_ms + (duration_ms(args["slot"]) or 0)
    interval = int(player.ws.settings.get("monitor.signals.interval_sec")) * 1000
    if slot is not None and slot % interval:
        raise BadInput(f"set_signal_inputs slot {args['slot']}: the clock start plus it is not a signal slot "
                       f"(every {interval // 1000} s on the clock)")
    pins = [p for p in getattr(player, "signal_pins", []) if slot is not None or p[:2] != (args["asset"], None)]
    player.signal_pins = [*pins, (args["asset"], slot, dict(args["set"]))]
    if player.scheduler is not None:
        pin_signal_inputs(player)


def pin_signal_inputs(player: Any) -> None:
    """Wrap the running signal job's `measure` so the drill's pins replace what it measured (once
    per process: the driver calls it again after each boot)."""
    signals = _jobs(player).signals
    if getattr(signals.measure, "pinned", False):
        return
    measure = signals.measure

    def pinned(asset: str, slot_ts: int) -> Any:
        m = measure(asset, slot_ts)
        for pin_asset, slot, values in getattr(player, "signal_pins", []):
            if pin_asset == asset and slot in (None, slot_ts):
                m = replace(m, **{_PINNABLE[k]: Trend(v) if k == "alignment_trend" else float(v)
                                  for k, v in values.items()})
        return m

    pinned.pinned = True  # type: ignore[attr-defined]
    signals.measure = pinned


def _value(v: Any) -> Any:
    return iso_ms(v) if isinstance(v, str) and ISO.match(v) else v


def _same(got: Any, want: Any) -> bool:
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, bool) or isinstance(got, bool):
        return bool(got) == bool(want)
    if isinstance(want, int | float) and isinstance(got, int | float):
        return math.isclose(float(got), float(want), rel_tol=0, abs_tol=1e-6)
    return got == want


@check("stored", {"stored": {"type": "string", "required": True, "allowed": sorted(metadata.tables)},
                  "where": _SCALARS, "count": {"type": "integer", "min": 0}, "is": _SCALARS},
       "TABLE holds exactly `count` (default 1) rows matching `where`, and each of them has the `is` column "
       "values (ISO UTC instants stand for epoch-ms time columns; numbers compare to 1e-6).", apps=(APP,),
    example="{at: 1m15s, stored: signals, where: {asset: BTC}, is: {exit_cluster_score: 25.0}}")
def _stored(player: Any, exp: Expectation) -> list[str]:
    spec = exp.spec
    table = metadata.tables[spec["stored"]]
    conds = []
    for col, want in sorted((spec.get("where") or {}).items()):
        if col not in table.c:
            return [f"table {table.name} has no column {col}"]
        value = _value(want)
        conds.append(column_equals(table.c[col], value))
    for col in spec.get("is") or {}:
        if col not in table.c:
            return [f"table {table.name} has no column {col}"]
    query = select(table)
    if conds:
        query = query.where(and_(*conds))
    with player.db.transaction() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings().all()]
    out = []
    want_n = spec.get("count", 1)
    if len(rows) != want_n:
        out.append(f"{len(rows)} matching row(s), expected {want_n}")
    for row in rows:
        for col, want in sorted((spec.get("is") or {}).items()):
            if not _same(row[col], _value(want)):
                out.append(f"{col} is {row[col]!r}" + (f" (row {row.get('asset')})" if "asset" in row else ""))
    return sorted(set(out))
