"""Monitor drill vocabulary for the alert-cap, dashboard, storage, halt and crash drills (monitor §9
drills 15-20).

- `prior_alerts` seeds alerts an earlier run surfaced (or suppressed), with what that run left
  beside them: the daily-cap tally and the delivery state (cooldown, last trigger) (§4.6 A4/A5).
- The `dashboard` check builds the dashboard's real `View` (hlcore/dashboard: `load_state` then
  `view()`, exactly what `hlcore dashboard` draws) at the check's instant and compares it and its
  text; each check also journals the model and the page text as a `dashboard` entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert

from hlcore.dashboard.state import load_state
from hlcore.dashboard.view import View, ViewSelector, view
from hlcore.jobs.monitor.alerts import DELIVERY
from hlcore.storage.repos import MachineStateStore, dump_json
from hlcore.storage.schema import alerts, engine_tallies
from replay.drill import ISO, Expectation, duration_ms, iso_ms
from replay.registry import check, given

APP = "monitor"
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
_OFFSET = {"type": "string", "regex": r"^-(\d+h)?(\d+m)?(\d+s)?$"}


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


def dashboard_view(player: Any) -> View:
    """The dashboard's real `View` now: storage as the running process sees it (a scripted outage
    included) read by the dashboard's own `load_state`, then `view()`; one selector per run."""
    ws = player.ws
    selector = getattr(player, "dashboard_selector", None)
    if selector is None or selector.policy is not ws.policy:
        selector = ViewSelector(ws.policy, ws.settings)
        player.dashboard_selector = selector
    db = player.ctx.db if player.ctx is not None else player.db
    return view(load_state(db, ws.policy, ws.settings, player.now()), ws.policy, ws.settings, selector)


def dashboard_model(v: View) -> dict[str, Any]:
    """The drill keys of a View: what the page shows, read off the View and its text."""
    surface, halt = v.surface, v.halt
    alerts = halt.system_alerts if halt is not None else surface.alerts if surface is not None else ()
    degraded = surface is not None and any(p.degraded for p in surface.panels)
    borders = "none"
    if degraded and surface is not None:
        chart_border = next((c.border for c in surface.charts if c.border), None)
        borders = "panels 2px orange" + (f", charts {chart_border}" if chart_border else "")
    return {
        "view": v.name, "reason": v.reason, "icon": v.header.icon, "last_success": v.header.last_success,
        "last_signal": v.header.last_signal, "coverage": v.header.coverage, "halt_box": halt is not None,
        "gap_min": None if halt is None else halt.gap_min, "banner": bool(surface and surface.banner),
        "borders": borders, "panels": [p.text() for p in surface.panels] if surface else [],
        "charts": list(dict.fromkeys(c.asset for c in surface.charts)) if surface else [],
        "positioning": [p.asset for p in surface.positioning] if surface else [],
        "alerts": [a.line() for a in alerts], "behavioural_alerts": sum(1 for a in alerts if not a.system),
    }


_DASHBOARD_KEYS = {
    "view": {"type": "string"}, "reason": {"type": "string", "nullable": True}, "icon": {"type": "string"},
    "last_success": {"type": "string"}, "last_signal": {"type": "string"},
    "coverage": {"type": "string", "nullable": True}, "halt_box": {"type": "boolean"},
    "gap_min": {"type": "integer", "nullable": True}, "banner": {"type": "boolean"}, "borders": {"type": "string"},
    "panels": {"type": "list", "schema": {"type": "string"}}, "charts": {"type": "list", "schema": {"type": "string"}},
    "positioning": {"type": "list", "schema": {"type": "string"}},
    "alerts": {"type": "list", "schema": {"type": "string"}}, "behavioural_alerts": {"type": "integer"},
    "shows": {"type": "list", "schema": {"type": "string"}},   # each is part of the page's text
    "hides": {"type": "list", "schema": {"type": "string"}},   # none is anywhere in it
}


@check("dashboard", {"dashboard": {"type": "dict", "required": True, "schema": _DASHBOARD_KEYS}},
       "What the dashboard page shows now — the real `View` (hlcore/dashboard/view.py) built from storage at "
       "this instant, and its text: `view`/`reason`, header `icon`, `last_success`/`last_signal` "
       "(\"HH:MM UTC (N min ago)\"), `coverage` (truncated), `halt_box` and `gap_min` (HALT), `banner`/`borders` "
       "(DEGRADED), `panels`/`charts`/`positioning` (none in HALT), `alerts` lines (icon + text cut to "
       "alert_text_chars; system first), `behavioural_alerts`; `shows`/`hides`: texts the page must / must not "
       "contain. Each check journals the model and the page text as a `dashboard` entry.",
       apps=(APP,),
       example="{at: 1m30s, dashboard: {view: NORMAL, reason: OK, banner: false, shows: [\"HEALTHY\"]}}")
def _dashboard(player: Any, exp: Expectation) -> list[str]:
    v = dashboard_view(player)
    model = dashboard_model(v)
    text = v.text()
    player.add(player.now(), {"kind": "dashboard", **model, "text": v.lines()})
    want = exp.spec["dashboard"]
    problems = [f"{key} is {model[key]!r}" for key in sorted(want) if key in model and model[key] != want[key]]
    problems += [f"the page does not show {s!r}" for s in want.get("shows", ()) if s not in text]
    problems += [f"the page shows {s!r}" for s in want.get("hides", ()) if s in text]
    return problems
