"""Copy-trade figures from one run: tracking error, slippage, P&L of the mirror vs. the target scaled.

Pure arithmetic over the run's executions, the target's fills and the minute bars; no rule lives
here (the mirror's positions are what the copy-trader's own orders produced).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backtest.copytrade.venue import MINUTE_MS, Bars
from backtest.history.dataset import day_of


def _positions(times: np.ndarray, events_ts: list[int], deltas: list[float]) -> np.ndarray:
    """Position at the end of each minute of `times` from signed deltas at `events_ts`."""
    if not events_ts:
        return np.zeros(len(times))
    order = np.argsort(np.asarray(events_ts), kind="stable")
    ts = np.asarray(events_ts)[order]
    cum = np.cumsum(np.asarray(deltas, dtype=float)[order])
    idx = np.searchsorted(ts, times + MINUTE_MS, side="left") - 1
    return np.where(idx >= 0, cum[np.clip(idx, 0, None)], 0.0)


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


def copy_metrics(outcome: Any, bars: Bars) -> dict[str, Any]:
    """Tracking error per symbol, slippage paid, P&L per symbol and per day (mark-to-market at closes)."""
    ratio = outcome.ratio
    coin_of = {sym: coin for coin, sym in outcome.symbol_map.items()}
    tracking: dict[str, Any] = {}
    pnl_symbol: dict[str, Any] = {}
    pnl_day: dict[str, dict[str, float]] = {}
    for symbol in sorted(s for s in bars.times if s in coin_of):
        times, closes = bars.times[symbol], bars.closes[symbol]
        window = (times >= outcome.since_ms) & (times < outcome.until_ms)
        times, closes = times[window], closes[window]
        if len(times) == 0:
            continue
        tf = [f for f in outcome.target_fills if f["coin"] == coin_of[symbol]]
        t_delta = [(f["sz"] if f["side"] == "B" else -f["sz"]) for f in tf]
        ex = [e for e in outcome.executions if e["symbol"] == symbol]
        m_delta = [(e["qty"] if e["side"] == "BUY" else -e["qty"]) for e in ex]
        target = _positions(times, [f["time"] for f in tf], t_delta)
        mirror = _positions(times, [e["ts_ms"] for e in ex], m_delta)
        err = np.abs(mirror - ratio * target)
        notional = err * closes
        tracking[symbol] = {"minutes": len(times), "p50": round(_pct(err, 50), 6), "p95": round(_pct(err, 95), 6),
                            "max": round(float(err.max()), 6), "p50_usd": round(_pct(notional, 50), 2),
                            "p95_usd": round(_pct(notional, 95), 2), "max_usd": round(float(notional.max()), 2),
                            "minutes_beyond_warn": int((err >= outcome.warn_threshold).sum())}
        # cash flows: buying spends, selling earns; value = cash + position x close
        t_cash = _positions(times, [f["time"] for f in tf], [-d * f["px"] for d, f in zip(t_delta, tf, strict=True)])
        m_cash = _positions(times, [e["ts_ms"] for e in ex], [-d * e["px"] for d, e in zip(m_delta, ex, strict=True)])
        t_value = ratio * (t_cash + target * closes)
        m_value = m_cash + mirror * closes
        pnl_symbol[symbol] = {"mirror": round(float(m_value[-1]), 2), "target_scaled": round(float(t_value[-1]), 2),
                              "difference": round(float(m_value[-1] - t_value[-1]), 2)}
        days = np.asarray([day_of(int(t)) for t in times[::1440]]) if len(times) else np.asarray([])
        prev_m = prev_t = 0.0
        for k, day in enumerate(days):
            end = min((k + 1) * 1440, len(times)) - 1
            row = pnl_day.setdefault(str(day), {"mirror": 0.0, "target_scaled": 0.0})
            row["mirror"] = round(row["mirror"] + float(m_value[end]) - prev_m, 2)
            row["target_scaled"] = round(row["target_scaled"] + float(t_value[end]) - prev_t, 2)
            prev_m, prev_t = float(m_value[end]), float(t_value[end])
    slippage = sum(e["qty"] * abs(e["px"] - e["open_px"]) for e in outcome.executions)
    return {"tracking": tracking, "pnl_by_symbol": pnl_symbol, "pnl_by_day": dict(sorted(pnl_day.items())),
            "slippage_paid_usd": round(slippage, 2),
            "pnl_total": {"mirror": round(sum(v["mirror"] for v in pnl_symbol.values()), 2),
                          "target_scaled": round(sum(v["target_scaled"] for v in pnl_symbol.values()), 2)}}


def time_in_state(transitions: list[dict[str, Any]], machine: str, initial: str, since: int, until: int
                  ) -> tuple[dict[str, int], dict[str, int]]:
    """Minutes per state of one machine over the window, and entries into each state by reason."""
    minutes: dict[str, float] = {}
    reasons: dict[str, int] = {}
    state, at = initial, since
    for t in transitions:
        if t["machine"] != machine or t["ts_ms"] < since:
            continue
        minutes[state] = minutes.get(state, 0) + (t["ts_ms"] - at) / MINUTE_MS
        state, at = t["to"], t["ts_ms"]
        key = f"{t['to']} {t['reason'] or '-'}"
        reasons[key] = reasons.get(key, 0) + 1
    minutes[state] = minutes.get(state, 0) + (until - at) / MINUTE_MS
    return {k: round(v) for k, v in sorted(minutes.items())}, dict(sorted(reasons.items()))
