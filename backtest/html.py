"""One self-contained HTML page: the report's tables plus inline SVG plots (no script, no CDN).

Plots: a state-timeline strip of the health machine per side, surfaced alerts per day (base vs
head), and for a two-parameter sweep a heatmap of one metric over the grid.
"""

from __future__ import annotations

from typing import Any

from backtest.report import BacktestReport, escape, sections
from hlcore.jobs.monitor import HEALTH

PALETTE = ("#4caf50", "#ff9800", "#f44336", "#2196f3", "#9c27b0", "#607d8b", "#795548")
STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}"
         "td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px}th{background:#eee}"
         ".stricter{color:#1b5e20}.looser{color:#b71c1c}")


def timeline(outcome: Any, machine: str, width: int = 1000, height: int = 22) -> str:
    """Coloured segments, one per stay in a state, over the window."""
    span = max(1, outcome.until_ms - outcome.since_ms)
    moves = [t for t in outcome.transitions if t["machine"] == machine and (t["instance"] or machine) == machine]
    state = moves[0]["from"] if moves else outcome.initial_states.get(machine, "?")
    states: list[str] = sorted({state, *(t["to"] for t in moves)})
    start, parts = outcome.since_ms, []
    for t in [*moves, {"ts_ms": outcome.until_ms, "to": None}]:
        x0, x1 = (start - outcome.since_ms) * width / span, (t["ts_ms"] - outcome.since_ms) * width / span
        color = PALETTE[states.index(state) % len(PALETTE)]
        parts.append(f'<rect x="{x0:.1f}" y="0" width="{max(0.5, x1 - x0):.1f}" height="{height}" fill="{color}">'
                     f"<title>{escape(state)}</title></rect>")
        start, state = t["ts_ms"], t["to"]
    legend = " ".join(f'<span style="color:{PALETTE[i % len(PALETTE)]}">&#9632; {escape(s)}</span>'
                      for i, s in enumerate(states))
    return f'<svg width="{width}" height="{height}">{"".join(parts)}</svg><div>{legend}</div>'


def bars(series: dict[str, dict[str, int]], width: int = 1000, height: int = 160) -> str:
    """Grouped bars: one group per period, one bar per side."""
    periods = sorted({p for s in series.values() for p in s})
    if not periods:
        return "<p>(no alerts)</p>"
    top = max(1, *(v for s in series.values() for v in s.values()))
    group = width / len(periods)
    bar = group / (len(series) + 1)
    parts = []
    for i, p in enumerate(periods):
        for j, (name, s) in enumerate(series.items()):
            v = s.get(p, 0)
            h = v * (height - 20) / top
            parts.append(f'<rect x="{i * group + j * bar:.1f}" y="{height - 20 - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{PALETTE[j + 3]}"><title>{escape(name)} {p}: {v}</title></rect>')
        if len(periods) <= 40 or i % 5 == 0:
            parts.append(f'<text x="{i * group:.1f}" y="{height - 4}" font-size="9">{escape(p[5:])}</text>')
    legend = " ".join(f'<span style="color:{PALETTE[j + 3]}">&#9632; {escape(n)}</span>' for j, n in enumerate(series))
    return f'<svg width="{width}" height="{height}">{"".join(parts)}</svg><div>{legend}</div>'


def heatmap(grid: list[dict[str, Any]], x: str, y: str, metric: str, cell: int = 48) -> str:
    """`grid` rows hold x, y and metric values; darker = larger."""
    xs = sorted({r[x] for r in grid}, key=str)
    ys = sorted({r[y] for r in grid}, key=str)
    values = {(r[x], r[y]): r[metric] for r in grid}
    top, low = max([1, *values.values()]), min([0, *values.values()])  # a P&L can be negative
    parts = []
    for i, xv in enumerate(xs):
        parts.append(f'<text x="{80 + i * cell + 4}" y="14" font-size="10">{escape(xv)}</text>')
        for j, yv in enumerate(ys):
            v = values.get((xv, yv), 0)
            shade = int(255 - 200 * (v - low) / (top - low))
            parts.append(f'<rect x="{80 + i * cell}" y="{20 + j * cell}" width="{cell}" height="{cell}" '
                         f'fill="rgb({shade},{shade},255)"/><text x="{80 + i * cell + 6}" y="{20 + j * cell + 28}" '
                         f'font-size="11">{v}</text>')
    for j, yv in enumerate(ys):
        parts.append(f'<text x="0" y="{20 + j * cell + 28}" font-size="10">{escape(yv)}</text>')
    w, h = 90 + len(xs) * cell, 30 + len(ys) * cell
    return (f"<p>{escape(metric)} over {escape(x)} (columns) x {escape(y)} (rows)</p>"
            f'<svg width="{w}" height="{h}">{"".join(parts)}</svg>')


def table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="{escape(c)}">{escape(c)}</td>' for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(data: dict[str, Any], report: BacktestReport, extra: str = "") -> str:
    h = data["history"]
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>hlcore backtest</title><style>{STYLE}</style>"
           "</head><body><h1>Backtest</h1>",
           f"<p>History <code>{escape(h.get('path', ''))}</code>: {escape(h.get('source'))}, "
           f"{escape(h.get('universe_size'))} wallets, <code>{escape(str(h.get('content_hash', ''))[:12])}</code></p>",
           "<ul>" + "".join(f"<li><b>{escape(n)}</b>: {escape(t)}</li>" for n, t in data["headline"].items()) + "</ul>"]
    out.append(f"<h2>{escape(HEALTH)} timeline</h2>")
    for outcome in (report.base, report.head):
        if outcome is not None:
            out.append(f"<p>{escape(outcome.label)}</p>{timeline(outcome, HEALTH)}")
    per_side = {n: _per_day(s["alerts_by_asset"]) for n, s in data["sides"].items()}
    out.append("<h2>Alerts surfaced per period</h2>" + bars(per_side))
    out.append(extra)
    for title, header, rows in sections(data):
        out.append(f"<h2>{escape(title)}</h2>" + (table(header, rows) if rows else "<p>(none)</p>"))
    out.append("<h2>Assumptions</h2><ul>" + "".join(f"<li>{escape(a)}</li>" for a in data["assumptions"]) + "</ul>")
    out.append("</body></html>\n")
    return "".join(out)


def _per_day(by_asset: dict[str, dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for periods in by_asset.values():
        for p, n in periods.items():
            total[p] = total.get(p, 0) + n
    return total
