"""The copy report as one self-contained HTML page: tables plus inline SVG plots (no script, no CDN).

Plots per side: the safety mode's timeline strip (the monitor report's `timeline`), the mirrored
position against ratio x the target's per symbol over time (step lines from the venue's executions
and the target's fills), and P&L per day (mirror vs. target scaled, bars either side of zero). The
two-parameter sweep's heatmaps are `sweep_heatmaps`. Drawing only: every number is the report's.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from backtest.copytrade.exact import CopyOutcome
from backtest.copytrade.report import render_copy
from backtest.history.dataset import iso
from backtest.html import PALETTE, STYLE, heatmap, timeline
from backtest.report import escape

SAFETY = "safety"  # the copy-trader's safety machine (the same name exact.py reads its mode from)
MIRROR, TARGET = PALETTE[3], PALETTE[1]


def _steps(events: list[tuple[int, float]], since: int, until: int) -> list[tuple[int, float]]:
    """(time, position) corners of a step function starting flat at `since`."""
    pos, out = 0.0, [(since, 0.0)]
    for ts, delta in sorted(events, key=lambda e: e[0]):
        if ts < since or ts >= until:
            continue
        out.append((ts, pos))
        pos += delta
        out.append((ts, pos))
    out.append((until, pos))
    return out


def positions_plot(o: CopyOutcome, symbol: str, coin: str, width: int = 1000, height: int = 150) -> str:
    """Mirrored position (base units) vs. ratio x the target's, one symbol, over the window."""
    target = _steps([(f["time"], o.ratio * (f["sz"] if f["side"] == "B" else -f["sz"]))
                     for f in o.target_fills if f["coin"] == coin], o.since_ms, o.until_ms)
    mirror = _steps([(e["ts_ms"], e["qty"] if e["side"] == "BUY" else -e["qty"])
                     for e in o.executions if e["symbol"] == symbol], o.since_ms, o.until_ms)
    values = [v for _, v in target + mirror]
    lo, hi = min(0.0, *values), max(0.0, *values)
    span_y, span_x = (hi - lo) or 1.0, max(1, o.until_ms - o.since_ms)
    pad, plot_h = 4, height - 20

    def xy(ts: int, v: float) -> str:
        return f"{(ts - o.since_ms) * width / span_x:.1f},{pad + (hi - v) * (plot_h - 2 * pad) / span_y:.1f}"

    zero = pad + hi * (plot_h - 2 * pad) / span_y
    lines = [f'<line x1="0" x2="{width}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#bbb"/>']
    for name, pts, color, dash in (("ratio x target", target, TARGET, ' stroke-dasharray="5,3"'),
                                   ("mirrored", mirror, MIRROR, "")):
        lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} '
                     f'points="{" ".join(xy(t, v) for t, v in pts)}"><title>{escape(name)}</title></polyline>')
    labels = (f'<text x="2" y="12" font-size="10">{hi:g}</text><text x="2" y="{plot_h}" font-size="10">{lo:g}</text>'
              f'<text x="0" y="{height - 4}" font-size="9">{escape(iso(o.since_ms))}</text>'
              f'<text x="{width - 120}" y="{height - 4}" font-size="9">{escape(iso(o.until_ms))}</text>')
    legend = (f'<span style="color:{MIRROR}">&#9632; mirrored</span> '
              f'<span style="color:{TARGET}">&#9632; ratio {o.ratio:g} x target</span>')
    return (f'<svg class="positions" width="{width}" height="{height}">{"".join(lines)}{labels}</svg>'
            f"<div>{legend}</div>")


def pnl_plot(pnl_by_day: dict[str, dict[str, float]], width: int = 1000, height: int = 180) -> str:
    """P&L per day, mirror and target scaled side by side, bars up (gain) or down (loss) from zero."""
    days = sorted(pnl_by_day)
    if not days:
        return "<p>(no P&amp;L)</p>"
    series = (("mirror", MIRROR), ("target_scaled", TARGET))
    top = max(1e-9, *(abs(pnl_by_day[d][k]) for d in days for k, _ in series))
    group, mid = width / len(days), (height - 16) / 2
    bar = group / 3
    parts = [f'<line x1="0" x2="{width}" y1="{mid:.1f}" y2="{mid:.1f}" stroke="#bbb"/>']
    for i, day in enumerate(days):
        for j, (key, color) in enumerate(series):
            v = pnl_by_day[day][key]
            h = abs(v) * (mid - 2) / top
            y = mid - h if v >= 0 else mid
            parts.append(f'<rect x="{i * group + j * bar:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{color}"><title>{escape(key)} {escape(day)}: {v:+.2f}</title></rect>')
        if len(days) <= 40 or i % 5 == 0:
            parts.append(f'<text x="{i * group:.1f}" y="{height - 3}" font-size="9">{escape(day[5:])}</text>')
    legend = (f'<span style="color:{MIRROR}">&#9632; mirror</span> <span style="color:{TARGET}">&#9632; target '
              f"scaled</span> (USDT per day, largest |bar| {top:.2f})")
    return f'<svg class="pnl" width="{width}" height="{height}">{"".join(parts)}</svg><div>{legend}</div>'


def _safety_strip(o: CopyOutcome) -> str:
    initial, moves = o.initial_safety, []
    for t in o.transitions:
        if t["machine"] == SAFETY and t["from"] is None:  # the boot's entry: where the strip starts
            initial = t["to"]
        elif t["machine"] == SAFETY:
            moves.append(t)
    view = SimpleNamespace(since_ms=o.since_ms, until_ms=o.until_ms, transitions=moves,
                           initial_states={SAFETY: initial})
    return timeline(view, SAFETY)


def copy_page(data: dict[str, Any], base: CopyOutcome, head: CopyOutcome | None) -> str:
    """The whole page: headline, plots per side, then the md report's tables as preformatted text."""
    h = data["history"]
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>hlcore copy-trader backtest</title>"
           f"<style>{STYLE}</style></head><body><h1>Copy-trader backtest</h1>",
           f"<p>History <code>{escape(h.get('path', ''))}</code>: {escape(h.get('source'))}, "
           f"<code>{escape(str(h.get('content_hash', ''))[:12])}</code></p><ul>"]
    sides = [(name, o) for name, o in (("base", base), ("head", head)) if o is not None]
    for name, o in sides:
        out.append(f"<li><b>{escape(name)}</b> ({escape(o.label)}): {escape(data[name]['headline'])}</li>")
    out.append("</ul><h2>Safety mode timeline</h2>")
    for name, o in sides:
        out.append(f"<p>{escape(name)}</p>{_safety_strip(o)}")
    for name, o in sides:
        out.append(f"<h2>Positions, {escape(name)}: mirrored vs ratio x target</h2>")
        traded = {f["coin"] for f in o.target_fills}
        for coin, symbol in sorted(o.symbol_map.items(), key=lambda kv: kv[1]):
            if coin in traded or any(e["symbol"] == symbol for e in o.executions):
                out.append(f"<h3>{escape(symbol)} ({escape(coin)})</h3>{positions_plot(o, symbol, coin)}")
        out.append(f"<h2>P&amp;L per day, {escape(name)}</h2>{pnl_plot(data[name]['metrics']['pnl_by_day'])}")
    out.append("<h2>Report</h2><pre>" + escape(render_copy(data, "md")) + "</pre></body></html>\n")
    return "".join(out)


def sweep_heatmaps(rows: list[dict[str, Any]], x: str, y: str) -> str:
    """One heatmap per headline metric of a two-parameter copy sweep (mirror P&L, tracking p95)."""
    names = sorted({m for r in rows for m in r["metrics"]})
    wanted = ["pnl.mirror", *[n for n in names if n.startswith("tracking.") and n.endswith(".p95")]]
    parts = []
    for metric in [m for m in wanted if m in names]:
        flat = [{**r["params"], metric: r["metrics"].get(metric, 0)} for r in rows]
        parts.append(heatmap(flat, x, y, metric))
    return "".join(parts)
