"""Summaries of an outcome: time in state over the window, alert changes between sides, labels."""

from __future__ import annotations

from backtest.exact import Outcome
from backtest.report import volume_label
from backtest.summary import alert_changes, period_of, summarize, time_in_states

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z (a Thursday)
MIN = 60_000


def _t(minute: int, machine: str, frm: str, to: str, reason: str, instance: str | None = None) -> dict:
    return {"ts_ms": T0 + minute * MIN, "machine": machine, "instance": instance or machine, "from": frm, "to": to,
            "reason": reason}


def _a(minute: int, asset: str, suppressed: str | None = None, kind: str = "exit_cluster") -> dict:
    return {"alert_ts": T0 + minute * MIN + 45_000, "signal_ts": T0 + minute * MIN, "asset": asset,
            "alert_type": kind, "severity": "high", "suppressed": suppressed is not None,
            "suppressed_reason": suppressed}


def test_time_in_state_covers_the_window_and_sums_instances() -> None:
    o = Outcome("x", T0, T0 + 100 * MIN, "p", "h", transitions=[
        _t(10, "health", "STALE", "HEALTHY", "OK"), _t(40, "health", "HEALTHY", "DEGRADED", "PARTIAL"),
        _t(50, "exit_cluster", "INACTIVE", "ACTIVE", "FIRED", "exit_cluster/BTC"),
        _t(60, "exit_cluster", "INACTIVE", "ACTIVE", "FIRED", "exit_cluster/ETH")])
    spans = time_in_states(o)
    assert spans["health"] == {"DEGRADED": 60, "HEALTHY": 30, "STALE": 10}
    assert spans["exit_cluster"] == {"ACTIVE": 50 + 40}  # each instance counted from its first transition


def test_a_machine_that_never_moved_spent_the_window_in_its_initial_state() -> None:
    o = Outcome("x", T0, T0 + 30 * MIN, "p", "h", initial_states={"health": "STALE"})
    assert time_in_states(o) == {"health": {"STALE": 30}}


def test_summary_counts_and_breakdowns() -> None:
    o = Outcome("x", T0, T0 + 8 * 1440 * MIN, "p", "h",
                alerts=[_a(5, "BTC"), _a(30, "BTC", "cooldown"), _a(1440 * 5, "ETH"), _a(1440 * 5 + 5, "ETH",
                                                                                     "daily_cap")])
    s = summarize(o, "week")
    assert (s["alerts"], s["surfaced"]) == (4, 2)
    assert s["suppressed"] == {"cooldown": 1, "daily_cap": 1}
    assert s["alerts_by_asset"] == {"BTC": {"2026-W01": 1}, "ETH": {"2026-W02": 1}}  # ISO weeks
    assert period_of(T0, "day") == "2026-01-01" and period_of(T0, "week") == "2026-W01"


def test_alert_changes_added_removed_shifted_and_status() -> None:
    base = [_a(0, "BTC"), _a(100, "BTC"), _a(500, "ETH"), _a(900, "HYPE")]
    head = [_a(0, "BTC", "cooldown"), _a(130, "BTC"), _a(900, "HYPE"), _a(2000, "ETH")]
    ch = alert_changes(base, head, shift_ms=60 * MIN)
    assert ch["shifted"] == [{"asset": "BTC", "alert_type": "exit_cluster", "base_ts": T0 + 100 * MIN,
                              "head_ts": T0 + 130 * MIN, "shift_min": 30}]
    assert ch["removed"] == [["ETH", "exit_cluster", T0 + 500 * MIN]]
    assert ch["added"] == [["ETH", "exit_cluster", T0 + 2000 * MIN]]
    assert ch["status_changed"] == [{"key": ["BTC", "exit_cluster", T0], "base": None, "head": "cooldown"}]


def test_fewer_alerts_is_the_stricter_direction() -> None:
    assert (volume_label(-3), volume_label(0), volume_label(2)) == ("stricter", "neutral", "looser")
