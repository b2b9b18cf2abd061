"""The monitor dashboard's view model: `view(stored, now) -> View` (monitor §3.5, §4.7 D1–D5).

Everything the page shows is computed here, from a `StoredState` snapshot and the policy; the
Streamlit script only draws a `View` (D5). Which view is shown comes from the policy: the health
verdict (`state.current_health`) and the latest signal's age are observed as a `dashboard_refresh`
fact by an in-memory engine whose `dashboard_view` machine picks HALT / DEGRADED / NORMAL; nothing
is written back.

The mask is structural: a view whose state does not allow `dashboard.decision_surface` gets a
`View` whose `surface` is None — there is no field left that could carry a playbook, score, panel,
chart, positioning or behavioural alert — and its `halt` box lists system alerts only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from hlcore.dashboard.state import HEALTH, Health, StoredState, current_health
from hlcore.engine.core import Engine
from hlcore.jobs.monitor import MONITOR_APP
from hlcore.policy.model import Policy

MACHINE = "dashboard_view"
FACT = "dashboard_refresh"
STORAGE_FACT = "storage_failed"  # the fact every monitor job observes when storage fails (H6)
SURFACE_GATE = "dashboard.decision_surface"
MARKINGS_GATE = "dashboard.degraded_markings"
SYSTEM_STALE = "system_stale"  # the machine whose ACTIVE episode makes system alerts "active" (§3.4)
MINUTE_MS = 60_000

# Presentation (§4.7 texts and colours): words and glyphs, no policy.
HALT_TITLE = "SYSTEM HALT: DATA STALE"
HALT_BOX = ("SYSTEM HALT", "DATA STALE", "Signals and alerts are suppressed until ingestion resumes.")
HALT_HINTS = (
    "Check the ingestion job is running and its log (runbook 1): hlcore ops monitor-status",
    "Check the latest ingest_runs rows for failed / partial runs and their error",
    "Check database connectivity and disk space (runbook 7): hlcore ops db-check",
    "Check the Hyperliquid API status; do not trade until two clean runs release the halt",
)
DEGRADED_BANNER = "Data quality degraded. Coverage or freshness below optimal. Signals may be less reliable."
DEGRADED_SUFFIX = " (degraded)"
NO_SIGNAL = "No signal this cycle"
POSITIONING_CAPTION = "Context only – not a playbook signal"
ICONS = {"halt": "🚨", "degraded": "⚠️", "full": "✅"}
SEVERITY_ICONS = {"medium": "⚠️", "high": "🔴", "critical": "🚨"}
TREND_ARROWS = {"rising": "↑", "flat": "→", "falling": "↓"}
POSITIONING_COLOURS = {"neutral": "#404040", "long": "#2d5016", "short": "#5c1a1a"}
PANEL_BORDER = "2px solid orange"
CHART_BORDER = "yellow"
METRICS = (("alignment_score", "CAS"), ("dispersion_index", "Dispersion"), ("exit_cluster_score", "Exit cluster"))


@dataclass(frozen=True)
class Header:
    """D1, always shown."""

    icon: str
    view: str
    reason: str | None
    last_success: str  # "HH:MM UTC (N min ago)" or "N/A"
    last_signal: str
    coverage: str | None  # truncated to one decimal: 79.99 -> "79.9%"
    refreshed: str = ""  # "Refreshed HH:MM:SS UTC · every N s": the page is live, not a stale tab

    def lines(self) -> list[str]:
        return [f"{self.icon} {self.view} · {self.reason or ''}".rstrip(),
                f"Last success: {self.last_success}", f"Last signal: {self.last_signal}",
                f"Coverage: {self.coverage or 'N/A'}", self.refreshed]


@dataclass(frozen=True)
class AlertLine:
    icon: str
    text: str  # cut to alert_text_chars
    system: bool

    def line(self) -> str:
        return f"{self.icon} {self.text}"


@dataclass(frozen=True)
class HaltBox:
    """D2: the halt view's only body. It has no room for decision-surface data."""

    title: str
    box: tuple[str, ...]
    last_success: str
    gap_min: int | None
    reason: str | None
    hints: tuple[str, ...]
    system_alerts: tuple[AlertLine, ...]

    def lines(self) -> list[str]:
        gap = "N/A" if self.gap_min is None else f"{self.gap_min} min"
        return [self.title, *self.box, f"Last success: {self.last_success}", f"Gap: {gap}",
                f"Reason: {self.reason or ''}", *self.hints, *(a.line() for a in self.system_alerts)]


@dataclass(frozen=True)
class Contributors:
    add_long: float
    add_short: float
    reducers: float
    flat: float
    total: int

    def line(self) -> str:
        return (f"Adders long {self.add_long:.1f}% · Adders short {self.add_short:.1f}% · "
                f"Reducers {self.reducers:.1f}% · Flat {self.flat:.1f}% (n={self.total})")


@dataclass(frozen=True)
class PanelSignal:
    playbook: str
    risk_mode: str
    colour: str
    cas: int
    arrow: str
    dispersion: str  # Low / Medium / High
    exit: str
    flags: tuple[str, ...]  # DE-RISKING, High Disagreement
    add_exposure: bool
    tighten_stops: bool
    contributors: Contributors | None


@dataclass(frozen=True)
class Panel:
    """One D4 asset panel; `signal` None: the asset has no row at the latest slot."""

    asset: str
    title: str
    degraded: bool
    signal: PanelSignal | None

    def text(self) -> str:
        s = self.signal
        if s is None:
            return f"{self.title}: {NO_SIGNAL}"
        return (f"{self.title}: {s.playbook} / {s.risk_mode}, CAS {s.cas} {s.arrow}, "
                f"Dispersion {s.dispersion}, Exit {s.exit}")

    def lines(self) -> list[str]:
        s = self.signal
        if s is None:
            return [self.text()]
        extra = [*s.flags, f"Add exposure: {'yes' if s.add_exposure else 'no'}",
                 f"Tighten stops: {'yes' if s.tighten_stops else 'no'}"]
        return [self.text(), *extra, *([s.contributors.line()] if s.contributors else [])]


@dataclass(frozen=True)
class Series:
    metric: str
    label: str
    points: tuple[tuple[int, float], ...]  # (signal_ts ms, value)
    lines: tuple[float, ...]               # threshold lines
    last: float | None                     # the right-edge value label


@dataclass(frozen=True)
class Chart:
    asset: str
    hours: int
    series: tuple[Series, ...]
    border: str | None  # yellow in the degraded view

    def line(self) -> str:
        last = ", ".join(f"{s.label} {s.last:.0f}" for s in self.series if s.last is not None)
        return f"{self.asset} {self.hours} h: {last}"


@dataclass(frozen=True)
class Positioning:
    asset: str
    long_pct: float
    short_pct: float
    flat_pct: float
    net_szi: float
    top10_share_pct: float
    colour: str
    concentrated: bool

    def line(self) -> str:
        text = (f"{self.asset} positioning: long {self.long_pct:.1f}% · short {self.short_pct:.1f}% · "
                f"flat {self.flat_pct:.1f}% · net {self.net_szi:g} · top-10 {self.top10_share_pct:.1f}%")
        return text + (" · High concentration" if self.concentrated else "")


@dataclass(frozen=True)
class Surface:
    """The decision surface (§2): only a view that allows it has one."""

    banner: str | None
    panels: tuple[Panel, ...]
    charts: tuple[Chart, ...]
    positioning: tuple[Positioning, ...]
    positioning_caption: str
    alerts: tuple[AlertLine, ...]  # recent alerts, system first, then newest

    def lines(self) -> list[str]:
        out = [self.banner] if self.banner else []
        for panel in self.panels:
            out += panel.lines()
        out += [a.line() for a in self.alerts]
        out += [c.line() for c in self.charts]
        out += [p.line() for p in self.positioning]
        return [*out, self.positioning_caption] if self.positioning else out


@dataclass(frozen=True)
class View:
    """What the page shows. Exactly one of `halt` and `surface` is set."""

    name: str
    reason: str | None
    header: Header
    halt: HaltBox | None
    surface: Surface | None
    refresh_sec: int
    storage_error: str | None = None

    def lines(self) -> list[str]:
        """The page's text, in drawing order (drills and tests read it)."""
        body = self.halt.lines() if self.halt is not None else self.surface.lines() if self.surface else []
        return [*self.header.lines(), *body]

    def text(self) -> str:
        return "\n".join(self.lines())


# ---------------------------------------------------------------------------------------------- helpers


def hhmm_age(ts_ms: int | None, now_ms: int) -> str:
    """`HH:MM UTC (N min ago)`, or N/A."""
    if ts_ms is None:
        return "N/A"
    at = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%H:%M UTC")
    return f"{at} ({max(0, now_ms - ts_ms) // MINUTE_MS} min ago)"


def truncate_pct(value: float | None) -> str | None:
    """One decimal, truncated (never rounded up): 79.99 -> 79.9%, never 80%."""
    if value is None:
        return None
    return f"{Decimal(str(value)).quantize(Decimal('0.1'), rounding=ROUND_DOWN)}%"


def band(value: float, guards: Mapping[str, Any], low: str, medium: str) -> str:
    """Low / Medium / High from the playbook's own band guards (policy, not literals)."""
    lo, mid = guards[low], guards[medium]
    if value < float(lo["lt"]):
        return "Low"
    if "lt" in mid:
        return "Medium" if value < float(mid["lt"]) else "High"
    return "Medium" if value <= float(mid["lte"]) else "High"


def cut(text: str | None, chars: int) -> str:
    return (text or "")[:chars]


class _Instant:
    """The instant a view is built for: set per refresh, in any order (a page may be asked for
    an earlier instant than the last one; a ManualClock refuses to go back)."""

    def __init__(self) -> None:
        self.ms = 0

    def now_ms(self) -> int:
        return self.ms


class ViewSelector:
    """The policy's `dashboard_view` machine run in memory (never persisted): one compiled engine
    per process, re-seeded with the health verdict at each refresh (no hysteresis of its own)."""

    def __init__(self, policy: Policy, settings: Any):
        self.policy = policy
        self.clock = _Instant()
        self.engine = Engine(policy, settings, self.clock)

    def select(self, health: Health, storage_ok: bool, signal_age_ms: int | None,
               now_ms: int) -> tuple[str, str | None]:
        self.clock.ms = now_ms
        m = self.policy.machines[MACHINE]
        h = self.policy.machines[HEALTH]
        state, reason = (health.state, health.reason) if storage_ok and health.state else (h.initial, h.initial_reason)
        self.engine.start([
            {"machine": MACHINE, "instance": MACHINE, "state": m.initial, "reason": m.initial_reason,
             "since_ms": now_ms, "vars": {}},
            {"machine": HEALTH, "instance": HEALTH, "state": state, "reason": reason,
             "since_ms": health.at_ms or now_ms, "vars": {}}])
        if not storage_ok:  # H6: the policy's own verdict on an outage (what the jobs observe too)
            self.engine.observe(STORAGE_FACT, {"app": MONITOR_APP, "operation": "read"})
        self.engine.drain_changed()
        self.engine.observe(FACT, {"signal_age_ms": signal_age_ms, "storage_ok": storage_ok})
        self.engine.drain_changed()
        return self.engine.state(MACHINE), self.engine.reason(MACHINE)


# ---------------------------------------------------------------------------------------------- view


def _alert_lines(rows: Any, limit: int, chars: int) -> tuple[AlertLine, ...]:
    ordered = sorted(rows, key=lambda r: (r["asset"] is not None, -int(r["alert_ts"]), -int(r["id"])))[:limit]
    return tuple(AlertLine(SEVERITY_ICONS.get(r["severity"] or "", ""), cut(r["message"], chars), r["asset"] is None)
                 for r in ordered)


def _panel(asset: str, row: Mapping[str, Any] | None, contrib: Mapping[str, Any] | None, degraded: bool,
           policy: Policy, settings: Any) -> Panel:
    title = asset + (DEGRADED_SUFFIX if degraded else "")
    if row is None:
        return Panel(asset, title, degraded, None)
    guards = policy.guards
    di, ec = float(row["dispersion_index"]), float(row["exit_cluster_score"])
    dispersion = band(di, guards, "di_low", "di_medium")
    exit_band = band(ec, guards, "ec_low", "ec_medium")
    flags = (("DE-RISKING",) if exit_band == "High" else ()) + (("High Disagreement",) if dispersion == "High" else ())
    colours = settings.get("monitor.dashboard.playbook_colours")
    contributors = None if contrib is None else Contributors(
        float(contrib["pct_add_long"] or 0), float(contrib["pct_add_short"] or 0), float(contrib["pct_reducers"] or 0),
        float(contrib["pct_flat"] or 0), int(contrib["total_wallets"] or 0))
    return Panel(asset, title, degraded, PanelSignal(
        row["allowed_playbook"], row["risk_mode"], colours.get(row["allowed_playbook"], "#4a4a4a"),
        int(float(row["alignment_score"])), TREND_ARROWS.get(row["alignment_trend"] or "", "?"),
        dispersion, exit_band, flags, bool(row["add_exposure"]), bool(row["tighten_stops"]), contributors))


def _charts(stored: StoredState, assets: list[str], degraded: bool, settings: Any) -> tuple[Chart, ...]:
    lines = settings.get("monitor.dashboard.chart_lines")
    charts = []
    for asset in assets:
        rows = [r for r in stored.history if r["asset"] == asset]
        for hours in settings.get("monitor.dashboard.history_hours"):
            since = stored.now_ms - int(hours) * 3_600_000
            window = [r for r in rows if int(r["signal_ts"]) > since]
            series = tuple(Series(col, label, tuple((int(r["signal_ts"]), float(r[col])) for r in window
                                                    if r[col] is not None),
                                  tuple(float(v) for v in lines.get(col, ())),
                                  float(window[-1][col]) if window and window[-1][col] is not None else None)
                           for col, label in METRICS)
            charts.append(Chart(asset, int(hours), series, CHART_BORDER if degraded else None))
    return tuple(charts)


def _positioning(row: Mapping[str, Any], settings: Any) -> Positioning:
    cfg = settings.get("monitor.dashboard.positioning")
    long_pct, short_pct, flat_pct = (float(row[c] or 0) for c in ("long_pct", "short_pct", "flat_pct"))
    lo, hi = (float(v) for v in cfg["neutral_long_pct"])
    if flat_pct > float(cfg["flat_grey_pct"]) or lo <= long_pct <= hi:
        colour = POSITIONING_COLOURS["neutral"]
    elif long_pct > float(cfg["side_pct"]):
        colour = POSITIONING_COLOURS["long"]
    elif short_pct > float(cfg["side_pct"]):
        colour = POSITIONING_COLOURS["short"]
    else:
        colour = POSITIONING_COLOURS["neutral"]
    top10 = float(row["top10_share_pct"] or 0)
    return Positioning(row["asset"], long_pct, short_pct, flat_pct, float(row["net_szi"] or 0), top10, colour,
                       top10 > float(cfg["concentration_pct"]))


def view(stored: StoredState, policy: Policy, settings: Any, selector: ViewSelector | None = None) -> View:
    """The page at `stored.now_ms`: a pure function of the stored snapshot, the policy and the settings."""
    now = stored.now_ms
    selector = selector or ViewSelector(policy, settings)
    health = current_health(stored, policy) if stored.storage_ok else Health(None, None)
    age = None if stored.signal_ts is None else now - int(stored.signal_ts)
    name, reason = selector.select(health, stored.storage_ok, age, now)
    state = policy.machines[MACHINE].states[name]
    surface_allowed = SURFACE_GATE in state.allows
    degraded = MARKINGS_GATE in state.allows
    icon = ICONS["halt" if not surface_allowed else "degraded" if degraded else "full"]
    run = stored.latest_run
    refresh = int(settings.get("monitor.dashboard.refresh_sec"))
    refreshed = f"Refreshed {datetime.fromtimestamp(now / 1000, UTC).strftime('%H:%M:%S UTC')} · every {refresh} s"
    header = Header(icon, name, reason, hhmm_age(stored.latest_usable_ts, now), hhmm_age(stored.signal_ts, now),
                    truncate_pct(None if run is None else run["coverage_pct"]), refreshed)
    limit = int(settings.get("monitor.dashboard.recent_alerts_limit"))
    chars = int(settings.get("monitor.dashboard.alert_text_chars"))
    if not surface_allowed:
        stale = stored.machine(SYSTEM_STALE)
        active = stale is not None and stale["state"] != policy.machines[SYSTEM_STALE].initial
        # the open episode's alert (one row per activation: the latest), even when older than 24 h
        system = [stored.system_alert] if active and stored.system_alert is not None else []
        gap = None if stored.latest_usable_ts is None else (now - int(stored.latest_usable_ts)) // MINUTE_MS
        halt = HaltBox(HALT_TITLE, HALT_BOX, header.last_success, gap, reason, HALT_HINTS,
                       _alert_lines(system, limit, chars))
        return View(name, reason, header, halt, None, refresh, stored.storage_error)
    assets = list(settings.get("monitor.assets"))
    panels = tuple(_panel(a, stored.slot.get(a), stored.contributors.get(a), degraded, policy, settings)
                   for a in assets)
    present = [a for a in assets if a in stored.slot]
    surface = Surface(DEGRADED_BANNER if degraded else None, panels, _charts(stored, present, degraded, settings),
                      tuple(_positioning(stored.positioning[a], settings) for a in present if a in stored.positioning),
                      POSITIONING_CAPTION, _alert_lines(stored.recent_alerts, limit, chars))
    return View(name, reason, header, None, surface, refresh, None)


__all__ = ["Chart", "HaltBox", "Header", "Panel", "Surface", "View", "ViewSelector", "truncate_pct", "view"]
