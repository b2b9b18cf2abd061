"""What one side's outcome amounts to: counts, time in states, breakdowns (pure functions).

Every name here comes from the outcome rows (machines, states, reason codes, suppression reasons
are the policy's words); only the health machine's name is read, from the jobs' policy contract.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from backtest.exact import Outcome
from hlcore.jobs.monitor import HEALTH

MINUTE_MS = 60_000


def period_of(ts_ms: int, breakdown: str) -> str:
    day = datetime.fromtimestamp(ts_ms // 1000, UTC).date()
    if breakdown == "week":
        monday = day - timedelta(days=day.weekday())
        return f"{monday.isocalendar().year}-W{monday.isocalendar().week:02d}"
    return day.isoformat()


def alert_key(a: dict[str, Any]) -> tuple[str, str, int]:
    """An alert's identity across sides: asset, type, and the signal slot (or alert time)."""
    return (a["asset"] or "-", a["alert_type"], a["signal_ts"] if a["signal_ts"] is not None else a["alert_ts"])


def time_in_states(outcome: Outcome) -> dict[str, dict[str, int]]:
    """Minutes per state for every single-instance machine, over the window (per-asset machines
    are summed over their instances, each counted from its first transition)."""
    spans: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    current: dict[str, tuple[str, int]] = {}
    for t in outcome.transitions:
        inst = t["instance"] or t["machine"]
        if inst not in current:
            start = outcome.since_ms if inst == t["machine"] else t["ts_ms"]
            current[inst] = (t["from"], start)
        state, since = current[inst]
        spans[t["machine"]][state] += max(0, t["ts_ms"] - since)
        current[inst] = (t["to"], t["ts_ms"])
    for inst, (state, since) in current.items():
        machine = inst.split("/")[0]
        spans[machine][state] += max(0, outcome.until_ms - since)
    if HEALTH not in spans and HEALTH in outcome.initial_states:  # never moved: the whole window in one state
        spans[HEALTH][outcome.initial_states[HEALTH]] = outcome.until_ms - outcome.since_ms
    return {m: {s: round(ms / MINUTE_MS) for s, ms in sorted(states.items()) if ms}
            for m, states in sorted(spans.items())}


def summarize(outcome: Outcome, breakdown: str = "day") -> dict[str, Any]:
    fired = outcome.alerts
    surfaced = [a for a in fired if not a["suppressed"]]
    suppressed = Counter(a["suppressed_reason"] for a in fired if a["suppressed"])
    by_reason: dict[str, Counter[str]] = defaultdict(Counter)
    for t in outcome.transitions:
        by_reason[t["machine"]][f"{t['from']} -> {t['to']} {t['reason']}"] += 1
    by_period: dict[str, Counter[str]] = defaultdict(Counter)
    for a in surfaced:
        by_period[a["asset"] or "(system)"][period_of(a["alert_ts"], breakdown)] += 1
    by_type = Counter(a["alert_type"] for a in fired)
    return {
        "label": outcome.label, "policy_hash": outcome.policy_hash,
        "alerts": len(fired), "surfaced": len(surfaced),
        "suppressed": dict(sorted(suppressed.items())),
        "alerts_by_type": dict(sorted(by_type.items())),
        "transitions": len(outcome.transitions),
        "time_in_state_min": time_in_states(outcome),
        "transitions_by_reason": {m: dict(sorted(c.items())) for m, c in sorted(by_reason.items())},
        "alerts_by_asset": {a: dict(sorted(c.items())) for a, c in sorted(by_period.items())},
        "snapshot_runs": outcome.run_status,
        "logs": outcome.logs,
    }


def headline(summary: dict[str, Any], days: float, health: str) -> str:
    """`30 d: 41 alerts would fire, 29 surfaced; suppressed by cooldown 7, daily_cap 3; health: ...`."""
    parts = [f"{days:g} d: {summary['alerts']} alerts would fire, {summary['surfaced']} surfaced"]
    if summary["suppressed"]:
        parts.append("suppressed by " + ", ".join(f"{r} {n}" for r, n in summary["suppressed"].items()))
    states = summary["time_in_state_min"].get(health)
    if states:
        parts.append(f"{health}: " + ", ".join(f"{s} {m} min" for s, m in states.items()))
    return "; ".join(parts)


def alert_changes(base: list[dict[str, Any]], head: list[dict[str, Any]], shift_ms: int) -> dict[str, list[Any]]:
    """Alerts added / removed between the sides, and those that moved by at most `shift_ms`
    (same asset and type) or kept their slot but changed surfaced <-> suppressed."""
    b = {alert_key(a): a for a in base}
    h = {alert_key(a): a for a in head}
    changed = [{"key": list(k), "base": b[k]["suppressed_reason"], "head": h[k]["suppressed_reason"]}
               for k in sorted(set(b) & set(h)) if b[k]["suppressed"] != h[k]["suppressed"]
               or b[k]["suppressed_reason"] != h[k]["suppressed_reason"]]
    only_b = sorted(set(b) - set(h))
    only_h = sorted(set(h) - set(b))
    shifted, used = [], set()
    for kb in only_b:
        match = next((kh for kh in only_h if kh not in used and kh[:2] == kb[:2] and abs(kh[2] - kb[2]) <= shift_ms),
                     None)
        if match is not None:
            used.add(match)
            shifted.append({"asset": kb[0], "alert_type": kb[1], "base_ts": kb[2], "head_ts": match[2],
                            "shift_min": (match[2] - kb[2]) // MINUTE_MS})
    moved_b = {(s["asset"], s["alert_type"], s["base_ts"]) for s in shifted}
    return {"added": [list(k) for k in only_h if k not in used],
            "removed": [list(k) for k in only_b if k not in moved_b],
            "shifted": shifted, "status_changed": changed}
