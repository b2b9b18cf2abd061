"""Monitor drill vocabulary for the alert-cap, dashboard, storage, halt and crash drills (monitor §9
drills 15-20).

- `prior_alerts` seeds alerts an earlier run surfaced (or suppressed), with what that run left
  beside them: the daily-cap tally and the delivery state (cooldown, last trigger) (§4.6 A4/A5).
- The `dashboard` check reads what the dashboard would show (§3.5, §4.7 D1-D5; the HTML is not
  built yet): the view the policy's `dashboard_view` machine selected and the data that view
  renders from storage alone (header, halt box figures, panels, alert lines). Check it at a
  refresh instant (the dashboard job re-derives its view every `refresh_sec`); each check also
  journals the whole model as a `dashboard` entry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from hlcore.jobs.monitor import RunStatuses
from hlcore.jobs.monitor.alerts import DELIVERY
from hlcore.storage.monitor import IngestRuns
from hlcore.storage.repos import MachineStateStore, dump_json
from hlcore.storage.schema import alerts, engine_tallies, signals
from replay.checks import machine_state
from replay.drill import ISO, Expectation, duration_ms, iso_ms
from replay.registry import check, given

APP = "monitor"
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
_OFFSET = {"type": "string", "regex": r"^-(\d+h)?(\d+m)?(\d+s)?$"}
_VIEW_ICON = {"HALT": "🚨", "DEGRADED": "⚠️", "NORMAL": "✅"}  # D1 header icon per view
_SEVERITY_ICON = {"medium": "⚠️", "high": "🔴", "critical": "🚨"}  # D4 alert line icons
_TREND_ARROW = {"rising": "↑", "flat": "→", "falling": "↓"}


def _before(player: Any, when: str) -> int:
    """An ISO UTC instant, or `-23h`: the clock start minus 23 hours; in ms."""
    if ISO.match(when):
        return iso_ms(when)
    return player.start_ms - (duration_ms(when.lstrip("-")) or 0)


# ---------------------------------------------------------------------------------------------- seeds


@given("prior_alerts", {"type": "list", "schema": {"type": "dict", "schema": {
    "at": {"type": "string", "required": True,               # alert_ts: ISO, or before the clock start (-23h)
           "regex": f"{_OFFSET['regex']}|{ISO.pattern}"},
    "asset": {"type": "string", "nullable": True, "allowed": ["HYPE", "BTC", "ETH"]},  # null: system
    "alert_type": {"type": "string", "required": True},
    "severity": {"type": "string", "required": True, "allowed": ["medium", "high", "critical"]},
    "message": {"type": "string", "required": True},
    "cooldown": {"type": "string"},                          # surfaced behavioural: cooldown_until = at + it
    "suppressed": {"type": "string", "allowed": ["health_degraded", "degraded_signal", "cooldown", "daily_cap"]},
}}}, "Alerts an earlier run stored at `at` (ISO, or `-23h` before the clock start): `alerts` rows "
    "(signal_ts = the 5-minute slot of `at`; NULL for a system alert) plus what that run left beside a "
    "surfaced behavioural one: the daily-cap tally and the delivery state (last trigger, cooldown_until = "
    "at + `cooldown`).", apps=(APP,),
    example="prior_alerts: [{at: \"-23h\", asset: BTC, alert_type: exit_cluster, severity: high, message: \"x\"}]")
def _prior_alerts(player: Any, value: list[Mapping[str, Any]]) -> None:
    policy = player.ws.policy
    slot_ms = int(player.ws.settings.get("monitor.signals.interval_sec")) * 1000
    tallies = sorted({r["tally"] for t in policy.tables if t.machine == DELIVERY for row in t.rows
                      for r in (row.then.get("record") or ()) if isinstance(r, Mapping) and "tally" in r})
    rows, tally_rows, delivery = [], [], {}
    for item in sorted(value, key=lambda i: _before(player, i["at"])):
        at = _before(player, item["at"])
        asset = item.get("asset")
        cooldown = duration_ms(item["cooldown"]) if item.get("cooldown") else None
        surfaced = not item.get("suppressed")
        rows.append({"alert_ts": at, "signal_ts": None if asset is None else at - at % slot_ms, "asset": asset,
                     "alert_type": item["alert_type"], "severity": item["severity"], "message": item["message"],
                     "signal_snapshot": dump_json({"seeded": True}),
                     "cooldown_until": None if cooldown is None else at + cooldown,
                     "suppressed": not surfaced, "suppressed_reason": item.get("suppressed"), "created_at": at})
        if surfaced and asset is not None:
            tally_rows += [{"name": name, "instance": asset, "ts_ms": at, "value": 1.0} for name in tallies]
            delivery[(asset, item["alert_type"])] = {"cooldown_until": None if cooldown is None else at + cooldown,
                                                     "last_triggered_ts": at, "since": at}
    with player.db.transaction() as conn:
        conn.execute(insert(alerts), rows)
        if tally_rows:
            conn.execute(insert(engine_tallies), tally_rows)
    MachineStateStore(player.db).save([
        {"machine": DELIVERY, "instance": f"{DELIVERY}/{asset}/{alert_type}", "state": "SURFACED",
         "reason": "ALERT_SURFACED", "since_ms": d["since"],
         "vars": {"cooldown_until": d["cooldown_until"], "last_triggered_ts": d["last_triggered_ts"]}}
        for (asset, alert_type), d in sorted(delivery.items())], player.now())


# ---------------------------------------------------------------------------------------------- dashboard


def _hhmm(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M UTC")


def _band(value: float, guards: Mapping[str, Any], low: str, medium: str) -> str:
    """Low / Medium / High from the playbook table's own band guards (policy, not literals)."""
    lo, mid = guards[low], guards[medium]
    if value < float(lo["lt"]):
        return "Low"
    edge = mid.get("lt", mid.get("lte"))
    return "Medium" if (value < float(edge) if "lt" in mid else value <= float(edge)) else "High"


def dashboard_model(player: Any) -> dict[str, Any]:
    """What the dashboard shows now (§3.5, §4.7), from the `dashboard_view` machine and storage."""
    settings, policy = player.ws.settings, player.ws.policy
    now = player.now()
    view, reason = machine_state(player, "dashboard_view")
    surface = "dashboard.decision_surface" in policy.machines["dashboard_view"].states[view].allows
    statuses = RunStatuses.from_policy(policy)
    runs = IngestRuns(player.db)
    latest, usable = runs.latest(at_or_before=now), runs.latest(at_or_before=now, statuses=statuses.usable)
    assets = list(settings.get("monitor.assets"))
    with player.db.transaction() as conn:
        sig_ts = conn.execute(select(signals.c.signal_ts).where(signals.c.signal_ts <= now)
                              .order_by(signals.c.signal_ts.desc()).limit(1)).scalar()
        slot = {} if sig_ts is None else {r["asset"]: dict(r) for r in conn.execute(
            select(signals).where(signals.c.signal_ts == sig_ts)).mappings()}
        recent = [dict(r) for r in conn.execute(
            select(alerts).where(alerts.c.alert_ts > now - 24 * HOUR_MS, alerts.c.alert_ts <= now,
                                 alerts.c.suppressed.is_(False))).mappings()]
    system_active, _ = machine_state(player, "system_stale")
    limit, chars = int(settings.get("monitor.dashboard.recent_alerts_limit")), \
        int(settings.get("monitor.dashboard.alert_text_chars"))
    if surface:  # D4: system first, then newest
        shown = sorted(recent, key=lambda r: (r["asset"] is not None, -r["alert_ts"], r["id"]))[:limit]
    else:  # D2: the active system alerts only
        initial = policy.machines["system_stale"].initial
        shown = sorted((r for r in recent if r["asset"] is None and system_active != initial),
                       key=lambda r: (-r["alert_ts"], r["id"]))[:limit]
    guards = policy.guards
    panels = []
    suffix = " (degraded)" if view == "DEGRADED" else ""
    for asset in assets if surface else ():
        row = slot.get(asset)
        if row is None:
            panels.append(f"{asset}{suffix}: No signal this cycle")
            continue
        di, ec = float(row["dispersion_index"]), float(row["exit_cluster_score"])
        arrow = _TREND_ARROW.get(row["alignment_trend"], "?")
        panels.append(f"{asset}{suffix}: {row['allowed_playbook']} / {row['risk_mode']}, "
                      f"CAS {math.floor(float(row['alignment_score']))} {arrow}, "
                      f"Dispersion {_band(di, guards, 'di_low', 'di_medium')}, "
                      f"Exit {_band(ec, guards, 'ec_low', 'ec_medium')}")
    coverage = None if latest is None or latest.coverage_pct is None else \
        f"{math.floor(float(latest.coverage_pct) * 10) / 10:.1f}%"  # truncated, never rounded up (D1)
    return {
        "view": view,
        "reason": reason,
        "icon": _VIEW_ICON.get(view or "", "?"),
        "last_success": "N/A" if usable is None else
        f"{_hhmm(usable.snapshot_ts)} ({(now - usable.snapshot_ts) // MINUTE_MS} min ago)",
        "last_signal": "N/A" if sig_ts is None else f"{_hhmm(sig_ts)} ({(now - sig_ts) // MINUTE_MS} min ago)",
        "coverage": coverage,
        "halt_box": not surface,
        "gap_min": None if surface or usable is None else (now - usable.snapshot_ts) // MINUTE_MS,
        "banner": view == "DEGRADED",
        "borders": "panels 2px orange, charts yellow" if view == "DEGRADED" else "none",
        "panels": panels,
        "charts": [a for a in assets if a in slot] if surface else [],
        "positioning": [a for a in assets if a in slot] if surface else [],
        "alerts": [f"{_SEVERITY_ICON.get(r['severity'], '')} {(r['message'] or '')[:chars]}" for r in shown],
        "behavioural_alerts": sum(1 for r in shown if r["asset"] is not None),
    }


_DASHBOARD_KEYS = {
    "view": {"type": "string"}, "reason": {"type": "string", "nullable": True}, "icon": {"type": "string"},
    "last_success": {"type": "string"}, "last_signal": {"type": "string"},
    "coverage": {"type": "string", "nullable": True}, "halt_box": {"type": "boolean"},
    "gap_min": {"type": "integer", "nullable": True}, "banner": {"type": "boolean"}, "borders": {"type": "string"},
    "panels": {"type": "list", "schema": {"type": "string"}}, "charts": {"type": "list", "schema": {"type": "string"}},
    "positioning": {"type": "list", "schema": {"type": "string"}},
    "alerts": {"type": "list", "schema": {"type": "string"}}, "behavioural_alerts": {"type": "integer"},
}


@check("dashboard", {"dashboard": {"type": "dict", "required": True, "schema": _DASHBOARD_KEYS}},
       "What the dashboard shows now (check at a refresh instant): `view`/`reason` (dashboard_view), header "
       "`icon`, `last_success`/`last_signal` (\"HH:MM UTC (N min ago)\"), `coverage` (truncated), `halt_box` and "
       "`gap_min` (HALT), `banner`/`borders` (DEGRADED), `panels`/`charts`/`positioning` (none in HALT), "
       "`alerts` lines (icon + text cut to alert_text_chars; system first) and `behavioural_alerts` shown.",
       apps=(APP,),
    example="{at: 1m30s, dashboard: {view: NORMAL, reason: OK, banner: false}}")
def _dashboard(player: Any, exp: Expectation) -> list[str]:
    model = dashboard_model(player)
    player.add(player.now(), {"kind": "dashboard", **model})
    return [f"{key} is {model[key]!r}" for key, want in sorted(exp.spec["dashboard"].items()) if model[key] != want]
