"""The copy-trade backtest report: base vs. head, as text, md or json (html: `backtest.copytrade.html`).

Sections: headline per side, fills seen / mirrored / skipped by reason, orders by outcome, time in
each safety mode with the reasons of each entry, tracking error, slippage, P&L of the mirror vs.
the target scaled (per symbol, per day), and the assumptions the simulated venue makes.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from backtest.copytrade.exact import QUIET_CAP, RUN_SETTINGS, CopyOutcome

ASSUMPTIONS = [
    "fill model: a MARKET order fills whole at the next minute's open of klines_1m, moved against the order "
    "by the slippage setting (bps); no partial fills, no queue, no market impact",
    "rejections: the recorded exchange_info filters (LOT_SIZE step/min/max, MIN_NOTIONAL) as Binance applies them",
    "fees and funding are ignored on both sides (the target's and the mirror's P&L are gross)",
    "P&L is marked to market at each minute's close; the target's P&L is its fills at Hyperliquid prices x ratio",
    "tracking error = |mirrored - ratio x target| per symbol at each minute's end (base units and x close); "
    "'beyond warn' counts minutes with the error >= safety.warn_threshold",
    "the copy starts flat and armed: " + ", ".join(f"{k}={v}" for k, v in RUN_SETTINGS),
    f"quiet stretches (no fill due, idle tick, safety mode unchanged) are slept through on the loop's tick grid, "
    f"at most {QUIET_CAP:g} x ingest.backfill_window_ms; fills are seen on the same ticks as without this",
    "venue faults: only the episodes of --faults (drill fault kinds, armed when the clock reaches `at`); "
    "none otherwise",
]


def side_dict(o: CopyOutcome) -> dict[str, Any]:
    skipped = {k.split(" ", 1)[1]: v for k, v in o.events.items() if not k.startswith("DONE -")}
    d = asdict(o)
    for big in ("executions", "target_fills", "transitions"):
        d.pop(big)
    return {**d, "mirrored_orders": len(o.executions), "events_total": sum(o.events.values()),
            "skipped_by_reason": skipped,
            "headline": headline(o)}


def copy_metrics_flat(o: CopyOutcome) -> dict[str, float]:
    """The flat numbers a sweep compares (state and reason names are the policy's)."""
    m = o.metrics
    out: dict[str, float] = {"fills_seen": o.fills_seen, "events": sum(o.events.values()),
                             "orders_filled": len(o.executions), "rejected": sum(o.rejections.values()),
                             "pnl.mirror": m["pnl_total"]["mirror"],
                             "pnl.target_scaled": m["pnl_total"]["target_scaled"],
                             "slippage_usd": m["slippage_paid_usd"]}
    out.update({f"events.{k.replace(' ', '.')}": v for k, v in o.events.items()})
    out.update({f"orders.{k}": v for k, v in o.orders.items()})
    out.update({f"minutes.safety.{k}": v for k, v in o.safety_minutes.items()})
    for sym, t in m["tracking"].items():
        out.update({f"tracking.{sym}.p95": t["p95"], f"tracking.{sym}.max": t["max"]})
    return dict(sorted(out.items()))


def headline(o: CopyOutcome) -> str:
    days = (o.until_ms - o.since_ms) / 86_400_000
    pnl = o.metrics.get("pnl_total", {})
    return (f"{days:.3g} d: {o.fills_seen} target fills ({o.unmapped_fills} not mapped), {o.fills_ingested} "
            f"ingested, {sum(o.events.values())} events, {len(o.executions)} orders filled, "
            f"{sum(o.rejections.values())} rejected by the venue; "
            f"mirror P&L {pnl.get('mirror', 0):+.2f} vs target scaled {pnl.get('target_scaled', 0):+.2f} USDT")


def report_data(history: dict[str, Any], base: CopyOutcome, head: CopyOutcome | None,
                sides: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"app": "copytrader", "history": history, "sides": sides,
                            "base": side_dict(base), "assumptions": ASSUMPTIONS}
    if head is not None:
        data["head"] = side_dict(head)
    return data


def _table(header: list[str], rows: list[list[Any]], md: bool) -> list[str]:
    if md:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                *["| " + " | ".join(str(c) for c in r) + " |" for r in rows]]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    return ["  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]


def _merge(names: list[str], a: dict[str, Any], b: dict[str, Any] | None) -> list[list[Any]]:
    rows = []
    for k in sorted(set(a) | set(b or {})):
        rows.append([k, a.get(k, 0), *([b.get(k, 0), _delta(a.get(k, 0), b.get(k, 0))] if b is not None else [])])
    return rows


def _delta(a: Any, b: Any) -> str:
    try:
        d = float(b) - float(a)
    except (TypeError, ValueError):
        return ""
    return f"{d:+g}" if d else "="


def _counts(side: dict[str, Any]) -> dict[str, Any]:
    return {"target fills": side["fills_seen"], "not mapped (symbol_map)": side["unmapped_fills"],
            "ingested (mapped, deduplicated)": side["fills_ingested"],
            "events": side["events_total"], "orders filled (mirrored)": side["mirrored_orders"]}


def _money(side: dict[str, Any]) -> dict[str, Any]:
    m = side["metrics"]
    return {"mirror": m["pnl_total"]["mirror"], "target scaled": m["pnl_total"]["target_scaled"],
            "slippage paid": m["slippage_paid_usd"]}


def render_copy(data: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    md = fmt == "md"
    base, head = data["base"], data.get("head")
    cols = ["", "base", *(["head", "delta"] if head else [])]
    h = (lambda t: f"## {t}") if md else (lambda t: f"{t}:")
    out = [("# " if md else "") + f"Copy-trader backtest of {data['history']['path']} "
           f"({data['history']['span']['since']} .. {data['history']['span']['until']})", ""]
    for name, side in (("base", base), ("head", head)):
        if side is not None:
            label = (data["sides"].get(name) or {}).get("label", "")
            out.append(f"{'- ' if md else ''}{name} ({label}): {side['headline']}")
    sections: list[tuple[str, list[str], dict[str, Any], dict[str, Any] | None]] = [
        ("Fills and events", cols, _counts(base), None if head is None else _counts(head)),
        ("Events by state and reason (skips are the non-'DONE -' rows)", cols, base["events"],
         head["events"] if head else None),
        ("Orders by outcome", cols, base["orders"], head["orders"] if head else None),
        ("Venue rejections by Binance code", cols, base["rejections"], head["rejections"] if head else None),
        ("Minutes in each safety mode", cols, base["safety_minutes"], head["safety_minutes"] if head else None),
        ("Safety mode entries by reason", cols, base["safety_entries"], head["safety_entries"] if head else None),
        ("P&L, USDT (fees and funding ignored)", cols, _money(base), None if head is None else _money(head)),
    ]
    for title, header, a, b in sections:
        out += ["", h(title), *_table(header, _merge(header, a, b), md)]
    for name, side in (("base", base), ("head", head)):
        if side is None:
            continue
        trk = side["metrics"]["tracking"]
        out += ["", h(f"Tracking error, {name} (ratio {side['ratio']:g})"),
                *_table(["symbol", "p50", "p95", "max", "p50 USDT", "p95 USDT", "max USDT", "min beyond warn"],
                        [[s, v["p50"], v["p95"], v["max"], v["p50_usd"], v["p95_usd"], v["max_usd"],
                          v["minutes_beyond_warn"]] for s, v in trk.items()], md)]
        sym = side["metrics"]["pnl_by_symbol"]
        out += ["", h(f"P&L by symbol, {name}"),
                *_table(["symbol", "mirror", "target scaled", "difference"],
                        [[s, v["mirror"], v["target_scaled"], v["difference"]] for s, v in sym.items()], md)]
        days = side["metrics"]["pnl_by_day"]
        out += ["", h(f"P&L by day, {name}"),
                *_table(["day", "mirror", "target scaled"],
                        [[d, v["mirror"], v["target_scaled"]] for d, v in days.items()], md)]
    out += ["", h("Assumptions"), *[f"- {a}" for a in data["assumptions"]], ""]
    return "\n".join(out)  # html: backtest.copytrade.html.copy_page (plots, then this md)
