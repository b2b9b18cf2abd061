"""`view(stored, now)`: every row of monitor §3.5 (which view) and §4.7 (D1–D4), boundaries included,
from hand-built `StoredState` snapshots (no database: the view model is pure)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from hlcore.config.settings import Settings
from hlcore.dashboard.state import Health, StoredState, current_health
from hlcore.dashboard.view import (
    DEGRADED_BANNER,
    HALT_TITLE,
    HaltBox,
    View,
    ViewSelector,
    truncate_pct,
    view,
)
from hlcore.policy.model import Policy

T0 = 1_769_248_800_000  # 2026-01-24T10:00:00Z
MIN = 60_000
HEALTH_TS = T0 + 30_000


def health_row(state: str, reason: str, at: int = HEALTH_TS) -> dict[str, Any]:
    return {"health_ts": at, "health_state": state, "health_reason": reason}


def signal(asset: str, **over: Any) -> dict[str, Any]:
    row = {"signal_ts": T0, "asset": asset, "alignment_score": 78.5, "dispersion_index": 22.0,
           "exit_cluster_score": 6.0, "alignment_trend": "flat", "allowed_playbook": "Long-only",
           "risk_mode": "Reduced", "add_exposure": False, "tighten_stops": False}
    return {**row, **over}


def positioning(asset: str, long_pct: float, short_pct: float, flat_pct: float, top10: float = 5.0) -> dict[str, Any]:
    return {"signal_ts": T0, "asset": asset, "net_szi": 10.0, "long_pct": long_pct, "short_pct": short_pct,
            "flat_pct": flat_pct, "top10_share_pct": top10}


def alert(i: int, at: int, asset: str | None, severity: str, message: str) -> dict[str, Any]:
    return {"id": i, "alert_ts": at, "asset": asset, "alert_type": "x", "severity": severity, "message": message}


def stored(now: int = T0 + MIN, *, health: tuple[str, str] | None = ("HEALTHY", "OK"), signals: Any = None,
           coverage: float | None = 100.0, **over: Any) -> StoredState:
    sig = {a: signal(a) for a in ("HYPE", "BTC", "ETH")} if signals is None else signals
    base: dict[str, Any] = {
        "now_ms": now, "storage_ok": True,
        "health_row": None if health is None else health_row(*health),
        "latest_run": None if coverage is None else {"snapshot_ts": T0, "coverage_pct": coverage},
        "latest_usable_ts": T0, "signal_ts": T0 if sig else None, "slot": sig,
        "history": [{"signal_ts": T0 - k * 5 * MIN, "asset": a, "alignment_score": 50.0 + k,
                     "dispersion_index": 20.0, "exit_cluster_score": 5.0} for k in (300, 100, 10, 0)
                    for a in sig],
        "positioning": {a: positioning(a, 100.0, 0.0, 0.0) for a in sig},
    }
    base.update(over)
    return StoredState(**base)


@pytest.fixture(scope="module")
def selector(default_policy: Policy, default_settings: Settings) -> ViewSelector:
    return ViewSelector(default_policy, default_settings)


@pytest.fixture
def show(default_policy: Policy, default_settings: Settings, selector: ViewSelector) -> Any:
    def make(state: StoredState) -> View:
        return view(state, default_policy, default_settings, selector)
    return make


# --------------------------------------------------------------------------------------------- §3.5 views


def test_healthy_with_a_fresh_signal_is_the_full_view(show: Any) -> None:
    v = show(stored())
    assert (v.name, v.reason, v.header.icon) == ("NORMAL", "OK", "✅")
    assert v.halt is None and v.surface is not None and v.surface.banner is None
    assert [p.title for p in v.surface.panels] == ["HYPE", "BTC", "ETH"]


@pytest.mark.parametrize("reason", ["AGE_STALE", "COVERAGE_STALE", "RECOVERING", "MANUAL_HALT", "NO_DATA"])
def test_stale_health_halts_with_the_health_code(show: Any, reason: str) -> None:
    v = show(stored(health=("STALE", reason)))
    assert (v.name, v.reason, v.header.icon) == ("HALT", reason, "🚨")
    assert v.surface is None and v.halt is not None and v.halt.reason == reason


def test_degraded_health_shows_everything_marked(show: Any) -> None:
    v = show(stored(health=("DEGRADED", "COVERAGE_DEGRADED"), coverage=85.0))
    assert (v.name, v.reason, v.header.icon) == ("DEGRADED", "COVERAGE_DEGRADED", "⚠️")
    assert v.surface is not None and v.surface.banner == DEGRADED_BANNER
    assert [p.title for p in v.surface.panels] == ["HYPE (degraded)", "BTC (degraded)", "ETH (degraded)"]
    assert all(p.degraded for p in v.surface.panels)
    assert {c.border for c in v.surface.charts} == {"yellow"}


def test_signal_exactly_600_s_old_is_shown_601_is_halted(show: Any) -> None:
    assert show(stored(now=T0 + 600_000)).name == "NORMAL"
    late = show(stored(now=T0 + 600_001))
    assert (late.name, late.reason) == ("HALT", "SIGNALS_STALE") and late.surface is None


def test_no_signal_at_all_is_signals_stale(show: Any) -> None:
    v = show(stored(signals={}))
    assert (v.name, v.reason) == ("HALT", "SIGNALS_STALE")
    assert v.header.last_signal == "N/A"


def test_storage_unreachable_halts_with_storage_unavailable(show: Any) -> None:
    v = show(StoredState(T0, storage_ok=False, storage_error="disk I/O error"))
    assert (v.name, v.reason) == ("HALT", "STORAGE_UNAVAILABLE")
    assert v.surface is None and v.halt is not None and v.storage_error == "disk I/O error"
    assert v.header.last_success == "N/A" and v.header.coverage is None


def test_storage_outage_wins_over_a_last_known_healthy_state(show: Any) -> None:
    show(stored())  # the selector's engine last saw HEALTHY
    assert show(StoredState(T0, storage_ok=False)).reason == "STORAGE_UNAVAILABLE"


def test_view_is_rederived_each_refresh_without_hysteresis(show: Any) -> None:
    assert show(stored(health=("STALE", "AGE_STALE"))).name == "HALT"
    assert show(stored()).name == "NORMAL"


# --------------------------------------------------------------------------------------------- mask


DECISION_WORDS = {"panels", "charts", "positioning", "playbook", "score", "contributors", "surface", "alerts"}


def test_halt_view_carries_no_decision_surface_field(show: Any) -> None:
    v = show(stored(health=("STALE", "AGE_STALE")))
    assert v.surface is None
    box_fields = {f.name for f in dataclasses.fields(HaltBox)}
    assert box_fields.isdisjoint(DECISION_WORDS - {"alerts"})
    assert "system_alerts" in box_fields
    text = v.text()
    for word in ("Long-only", "CAS", "Dispersion", "positioning", "HYPE"):
        assert word not in text


def test_halt_box_texts_gap_reason_and_hints(show: Any) -> None:
    v = show(stored(now=T0 + 12 * MIN + 30_000, health=("STALE", "AGE_STALE")))
    assert v.halt is not None
    lines = v.lines()
    assert HALT_TITLE in lines
    assert {"SYSTEM HALT", "DATA STALE", "Signals and alerts are suppressed until ingestion resumes."} <= set(lines)
    assert v.halt.gap_min == 12 and "Gap: 12 min" in lines and "Reason: AGE_STALE" in lines
    assert len(v.halt.hints) == 4
    assert v.header.last_success == "10:00 UTC (12 min ago)"


def test_halt_lists_system_alerts_only_while_the_episode_is_active(show: Any) -> None:
    rows = [alert(1, T0, None, "critical", "[SYSTEM] Data Stale: Ingestion has not succeeded for 10 minutes."),
            alert(2, T0 + 1000, "BTC", "high", "[BTC] Smart Money De-risking")]
    active = ({"machine": "system_stale", "instance": "system_stale", "state": "ACTIVE", "reason": None,
               "since_ms": T0},)
    v = show(stored(health=("STALE", "AGE_STALE"), recent_alerts=rows, machines=active, system_alert=rows[0]))
    assert v.halt is not None
    assert [a.line() for a in v.halt.system_alerts] == ["🚨 [SYSTEM] Data Stale: Ingestion has not succeeded f"]
    quiet = show(stored(health=("STALE", "SIGNALS_STALE"), recent_alerts=rows, system_alert=rows[0]))
    assert quiet.halt is not None and quiet.halt.system_alerts == ()  # no open episode: nothing "active"
    old = show(stored(now=T0 + 30 * 60 * MIN, health=("STALE", "AGE_STALE"), machines=active, system_alert=rows[0]))
    assert old.halt is not None and len(old.halt.system_alerts) == 1  # 30 h into the episode: still shown


# --------------------------------------------------------------------------------------------- D1 header


@pytest.mark.parametrize(("coverage", "shown"), [(79.99, "79.9%"), (80.0, "80.0%"), (89.99, "89.9%"),
                                                 (100.0, "100.0%"), (85.05, "85.0%")])
def test_coverage_is_truncated_never_rounded_up(coverage: float, shown: str) -> None:
    assert truncate_pct(coverage) == shown


def test_header_times_and_ages(show: Any) -> None:
    v = show(stored(now=T0 + 90_000))
    assert v.header.refreshed == "Refreshed 10:01:30 UTC · every 30 s"  # monitor.dashboard.refresh_sec
    assert v.header.last_success == "10:00 UTC (1 min ago)"
    assert v.header.last_signal == "10:00 UTC (1 min ago)"
    assert v.header.coverage == "100.0%"


# --------------------------------------------------------------------------------------------- D4 panels


def test_missing_asset_shows_no_signal_never_an_older_row(show: Any) -> None:
    v = show(stored(signals={"HYPE": signal("HYPE"), "BTC": signal("BTC")}))
    assert v.surface is not None
    assert [p.text() for p in v.surface.panels][2] == "ETH: No signal this cycle"
    assert [c.asset for c in v.surface.charts if c.hours == 6] == ["HYPE", "BTC"]


@pytest.mark.parametrize(("playbook", "colour"), [("Long-only", "#2d5f2e"), ("Short-only", "#5f2d2e"),
                                                  ("No-trade", "#4a4a4a")])
def test_panel_colour_per_playbook(show: Any, playbook: str, colour: str) -> None:
    v = show(stored(signals={"HYPE": signal("HYPE", allowed_playbook=playbook)}))
    assert v.surface is not None and v.surface.panels[0].signal is not None
    assert v.surface.panels[0].signal.colour == colour


@pytest.mark.parametrize(("trend", "arrow"), [("rising", "↑"), ("flat", "→"), ("falling", "↓")])
def test_cas_arrow(show: Any, trend: str, arrow: str) -> None:
    v = show(stored(signals={"HYPE": signal("HYPE", alignment_trend=trend, alignment_score=78.9)}))
    assert v.surface is not None and f"CAS 78 {arrow}" in v.surface.panels[0].text()


@pytest.mark.parametrize(("di", "band", "flag"), [(39.99, "Low", False), (40.0, "Medium", False),
                                                  (59.99, "Medium", False), (60.0, "High", True)])
def test_dispersion_bands(show: Any, di: float, band: str, flag: bool) -> None:
    v = show(stored(signals={"HYPE": signal("HYPE", dispersion_index=di)}))
    s = v.surface.panels[0].signal if v.surface else None
    assert s is not None and s.dispersion == band and ("High Disagreement" in s.flags) is flag


@pytest.mark.parametrize(("ec", "band", "flag"), [(15.99, "Low", False), (16.0, "Medium", False),
                                                  (25.0, "Medium", False), (25.01, "High", True)])
def test_exit_bands_and_de_risking(show: Any, ec: float, band: str, flag: bool) -> None:
    v = show(stored(signals={"HYPE": signal("HYPE", exit_cluster_score=ec)}))
    s = v.surface.panels[0].signal if v.surface else None
    assert s is not None and s.exit == band and ("DE-RISKING" in s.flags) is flag


def test_recent_alerts_system_first_then_newest_five_cut_to_50(show: Any) -> None:
    long = "[ETH] Smart Money De-risking: Exit Cluster elevated (31.0%). Stop adding exposure."
    rows = [alert(1, T0 - 20 * 60 * MIN, None, "critical", "[SYSTEM] Data Stale")]
    rows += [alert(10 + k, T0 - k * MIN, "ETH", "medium" if k % 2 else "high", f"{k} {long}") for k in range(6)]
    v = show(stored(recent_alerts=rows))
    assert v.surface is not None
    lines = [a.line() for a in v.surface.alerts]
    assert len(lines) == 5
    assert lines[0] == "🚨 [SYSTEM] Data Stale"
    assert [a.text[0] for a in v.surface.alerts[1:]] == ["0", "1", "2", "3"]
    assert all(len(a.text) <= 50 for a in v.surface.alerts)
    assert lines[1].startswith("🔴 ") and lines[2].startswith("⚠️ ")


def test_charts_per_window_with_threshold_lines_and_last_value(show: Any) -> None:
    v = show(stored(signals={"HYPE": signal("HYPE")}))
    assert v.surface is not None
    six, day = (c for c in v.surface.charts if c.asset == "HYPE")
    assert (six.hours, day.hours) == (6, 24)
    cas6 = next(s for s in six.series if s.metric == "alignment_score")
    cas24 = next(s for s in day.series if s.metric == "alignment_score")
    assert len(cas6.points) == 2 and len(cas24.points) == 3  # 25 h ago in neither, 8 h 20 min ago in 24 h only
    assert cas6.lines == (25.0, 75.0) and cas6.last == 50.0
    lines = {s.metric: s.lines for s in six.series}
    assert lines == {"alignment_score": (25.0, 75.0), "dispersion_index": (40.0, 60.0),
                     "exit_cluster_score": (20.0, 25.0)}


@pytest.mark.parametrize(("long_pct", "short_pct", "flat_pct", "colour"), [
    (30.0, 9.0, 61.0, "#404040"),   # flat > 60
    (35.0, 5.0, 60.0, "#404040"),   # flat exactly 60 (not > 60), long 35, no side > 60: still neutral
    (40.0, 30.0, 30.0, "#404040"),  # 40 <= long <= 60
    (60.0, 10.0, 30.0, "#404040"),
    (60.1, 10.0, 29.9, "#2d5016"),  # long > 60
    (10.0, 61.0, 29.0, "#5c1a1a"),  # short > 60
])
def test_positioning_colours(show: Any, long_pct: float, short_pct: float, flat_pct: float, colour: str) -> None:
    state = stored(signals={"HYPE": signal("HYPE")},
                   positioning={"HYPE": positioning("HYPE", long_pct, short_pct, flat_pct)})
    v = show(state)
    assert v.surface is not None and v.surface.positioning[0].colour == colour
    assert v.surface.positioning_caption == "Context only – not a playbook signal"


@pytest.mark.parametrize(("top10", "flag"), [(70.0, False), (70.01, True)])
def test_high_concentration(show: Any, top10: float, flag: bool) -> None:
    state = stored(signals={"HYPE": signal("HYPE")},
                   positioning={"HYPE": positioning("HYPE", 100.0, 0.0, 0.0, top10)})
    v = show(state)
    assert v.surface is not None and v.surface.positioning[0].concentrated is flag
    assert ("High concentration" in v.text()) is flag


# --------------------------------------------------------------------------------------------- health source


def test_current_health_takes_the_newer_of_row_and_machine(default_policy: Policy) -> None:
    halted = ({"machine": "health", "instance": "health", "state": "STALE", "reason": "MANUAL_HALT",
               "since_ms": HEALTH_TS + 1000},)
    assert current_health(stored(machines=halted), default_policy) == Health("STALE", "MANUAL_HALT", HEALTH_TS + 1000)
    older = ({**halted[0], "since_ms": HEALTH_TS - 1000},)
    assert current_health(stored(machines=older), default_policy) == Health("HEALTHY", "OK", HEALTH_TS)


def test_current_health_with_nothing_stored_is_the_initial_state(default_policy: Policy) -> None:
    assert current_health(stored(health=None), default_policy) == Health("STALE", "NO_DATA", None)
