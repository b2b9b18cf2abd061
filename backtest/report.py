"""The backtest report: headline per side, deltas, detail tables, assumptions; text, md, json, html.

The json form is stable for scripts (sorted keys, no wall-clock figures); text and md read top
down: the headline answers the reviewer's question, the tables back it up. Setting and policy
changes between the sides carry `hlcore diff`'s labels (stricter / looser / neutral).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any

from backtest.exact import Outcome
from backtest.summary import alert_changes, headline, summarize
from hlcore.diff.semantic import LOOSER, NEUTRAL, STRICTER, Change
from hlcore.jobs.monitor import HEALTH

FORMATS = ("text", "md", "json", "html")
MINUTE_MS = 60_000
DAY_MS = 86_400_000


def volume_label(delta: int) -> str:
    """Fewer alerts reaching the operator is the direction the alert settings call safer (their
    `meta.safer` in config/schema.yaml: a higher fire threshold, a longer cooldown, a lower cap)."""
    return NEUTRAL if delta == 0 else (STRICTER if delta < 0 else LOOSER)


@dataclass
class BacktestReport:
    history: dict[str, Any]
    base: Outcome
    head: Outcome | None
    changes: list[Change] = field(default_factory=list)
    breakdown: str = "day"
    shift_ms: int = 60 * MINUTE_MS
    sides: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        days = (self.base.until_ms - self.base.since_ms) / DAY_MS
        sides = {"base": summarize(self.base, self.breakdown)}
        if self.head is not None:
            sides["head"] = summarize(self.head, self.breakdown)
        out: dict[str, Any] = {
            "history": self.history, "breakdown": self.breakdown,
            "window": {"since_ms": self.base.since_ms, "until_ms": self.base.until_ms, "days": round(days, 3)},
            "sides": {k: {**v, **self.sides.get(k, {})} for k, v in sides.items()},
            "headline": {k: headline(v, round(days, 2), HEALTH) for k, v in sides.items()},
            "changes": [c.to_dict() for c in self.changes],
            "assumptions": assumptions(self.base, self.history),
        }
        if self.head is not None:
            b, h = sides["base"], sides["head"]
            deltas = [_delta("alerts that would fire", b["alerts"], h["alerts"], volume_label),
                      _delta("alerts surfaced", b["surfaced"], h["surfaced"], volume_label)]
            for reason in sorted(set(b["suppressed"]) | set(h["suppressed"])):
                deltas.append(_delta(f"suppressed: {reason}", b["suppressed"].get(reason, 0),
                                     h["suppressed"].get(reason, 0), lambda _d: NEUTRAL))
            hb, hh = b["time_in_state_min"].get(HEALTH, {}), h["time_in_state_min"].get(HEALTH, {})
            for state in sorted(set(hb) | set(hh)):
                deltas.append(_delta(f"{HEALTH} {state} minutes", hb.get(state, 0), hh.get(state, 0),
                                     lambda _d: NEUTRAL))
            deltas.append(_delta("transitions", b["transitions"], h["transitions"], lambda _d: NEUTRAL))
            out["deltas"] = deltas
            out["alert_changes"] = alert_changes(self.base.alerts, self.head.alerts, self.shift_ms)
        return out


def _delta(metric: str, base: int, head: int, label: Any) -> dict[str, Any]:
    return {"metric": metric, "base": base, "head": head, "delta": head - base, "label": label(head - base)}


def assumptions(outcome: Outcome, history: dict[str, Any]) -> list[str]:
    """What this history cannot show, and how the run stood in for the venue."""
    notes = ["Observations replay at the client seam: every recorded answer arrives at once (latency is "
             "recorded, not replayed); a wallet that failed in a minute fails every retry in that minute.",
             "Storage never fails and the process never restarts during a backtest (drills cover those).",
             "'Surfaced' means stored unsuppressed; delivery to a channel is not exercised.",
             "The first signal slots have no lookback yet (warm-up): their QA reports missing data."]
    if outcome.path == "fast":
        notes.append("Fast path: the measuring half (universe and snapshot jobs, snapshot QA, S6 dirty marks, the "
                     "signal job's measurements) ran once and was cached; health, the signal lock, the signal "
                     "verdicts and the alert gates ran per side through the monitor's own code (--exact runs "
                     "every job per simulated minute).")
    else:
        notes.append("Exact path: every monitor job ran per simulated minute.")
    feed = outcome.feed
    if feed and not feed.get("failed"):
        notes.append("No fetch fault was replayed in this window (reconstructed or exported history may have "
                     "none): ingestion faults and the alerts they raise cannot show here.")
    if feed.get("not_recorded"):
        notes.append(f"{feed['not_recorded']} wallet-minute reads were not in the history (universe differs "
                     "from the recorded one); each counted as a failed fetch.")
    size = outcome.settings.get("monitor.universe.size")
    recorded = history.get("universe_size")
    if size is not None and recorded is not None and int(recorded) < int(size):
        notes.append(f"The history records {recorded} wallets but monitor.universe.size is {size}: universe "
                     "refreshes will fail completeness (use --set monitor.universe.size=N).")
    return notes


# ------------------------------------------------------------------ rendering


def render(report: BacktestReport, fmt: str) -> str:
    data = report.to_dict()
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
    if fmt == "html":
        from backtest.html import page

        return page(data, report)
    return _markdown(data) if fmt == "md" else _text(data)


def _rows_text(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]


def _rows_md(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def sections(data: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """(title, header, rows) for every detail table, shared by text and md."""
    sides = data["sides"]
    names = list(sides)
    out: list[tuple[str, list[str], list[list[Any]]]] = []
    if data["changes"]:
        out.append(("Setting and policy changes (hlcore diff)", ["label", "subject", "before", "after", "why"],
                    [[c["label"], c["subject"], c["before"], c["after"], c["why"]] for c in data["changes"]]))
    if "deltas" in data:
        out.append(("Base -> head", ["metric", "base", "head", "delta", "label"],
                    [[d["metric"], d["base"], d["head"], f"{d['delta']:+d}", d["label"]] for d in data["deltas"]]))
    machines = sorted({m for s in sides.values() for m in s["time_in_state_min"]})
    rows = []
    for m in machines:
        states = sorted({st for s in sides.values() for st in s["time_in_state_min"].get(m, {})})
        rows += [[m, st, *[sides[n]["time_in_state_min"].get(m, {}).get(st, 0) for n in names]] for st in states]
    out.append(("Time in state (minutes)", ["machine", "state", *names], rows))
    rows = []
    for m in sorted({m for s in sides.values() for m in s["transitions_by_reason"]}):
        keys = sorted({k for s in sides.values() for k in s["transitions_by_reason"].get(m, {})})
        rows += [[m, k, *[sides[n]["transitions_by_reason"].get(m, {}).get(k, 0) for n in names]] for k in keys]
    out.append(("Transitions by reason", ["machine", "transition", *names], rows))
    rows = []
    for asset in sorted({a for s in sides.values() for a in s["alerts_by_asset"]}):
        periods = sorted({p for s in sides.values() for p in s["alerts_by_asset"].get(asset, {})})
        rows += [[asset, p, *[sides[n]["alerts_by_asset"].get(asset, {}).get(p, 0) for n in names]] for p in periods]
    out.append((f"Alerts surfaced by asset x {data['breakdown']}", ["asset", data["breakdown"], *names], rows))
    if "alert_changes" in data:
        ch = data["alert_changes"]
        rows = [["added", *k] for k in ch["added"]] + [["removed", *k] for k in ch["removed"]]
        rows += [["shifted", s["asset"], s["alert_type"], f"{s['base_ts']} -> {s['head_ts']} ({s['shift_min']:+d} min)"]
                 for s in ch["shifted"]]
        rows += [["status", *c["key"][:2], f"{c['key'][2]}: {c['base']} -> {c['head']}"] for c in ch["status_changed"]]
        out.append(("Alerts added / removed / shifted", ["change", "asset", "type", "slot"], rows))
    rows = [[n, st, c] for n in names for st, c in sides[n]["snapshot_runs"].items()]
    out.append(("Snapshot runs by status", ["side", "status", "runs"], rows))
    return out


def _text(data: dict[str, Any]) -> str:
    h = data["history"]
    lines = [f"history {h.get('path', '')} ({h.get('source')}; {h.get('universe_size')} wallets; "
             f"hash {str(h.get('content_hash', ''))[:12]})"]
    for name, text in data["headline"].items():
        lines.append(f"{name}: {text}")
    for title, header, rows in sections(data):
        lines += ["", f"-- {title}"] + (_rows_text(header, rows) if rows else ["(none)"])
    lines += ["", "-- Assumptions"] + [f"- {a}" for a in data["assumptions"]]
    return "\n".join(lines) + "\n"


def _markdown(data: dict[str, Any]) -> str:
    h = data["history"]
    lines = ["## Backtest", "", f"History `{h.get('path', '')}`: {h.get('source')}, {h.get('universe_size')} wallets, "
             f"`{str(h.get('content_hash', ''))[:12]}`", ""]
    lines += [f"- **{name}**: {text}" for name, text in data["headline"].items()]
    for title, header, rows in sections(data):
        lines += ["", f"### {title}", ""] + (_rows_md(header, rows) if rows else ["(none)"])
    lines += ["", "### Assumptions", ""] + [f"- {a}" for a in data["assumptions"]]
    return "\n".join(lines) + "\n"


def escape(text: Any) -> str:
    return html.escape(str(text))
