"""The simulated venue of the copy-trade backtest: the drills' copy-trade world, driven by history.

It sits behind the same HTTP seam as the drills (`replay.transport.DrillTransport`), so the
copy-trader's adapters, ingest, decide, execute and reconcile run unchanged. Only the world's
answers differ: the target's fills come from `target_fills`, marks from `klines_1m` (the current
minute's open), exchangeInfo from the recorded `exchange_info`, and a MARKET order fills at the
*next* minute's open moved against the order by `slippage_bps`. An order the recorded filters forbid
is rejected as Binance rejects it (error code and message).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np

from backtest.history.dataset import EXCHANGE_INFO, KLINES, TARGET_FILLS, History
from replay.cassettes import SIGNING_FIELDS
from replay.transport import Reply
from replay.worlds.copytrade import CopytradeWorld

MINUTE_MS = 60_000


def fill_row_to_api(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored fill as `userFillsByTime` returns it (the stored row keeps every field). A field the
    source did not have (an exported fill's fee, a tid-less fill's tid) is left out, as the venue
    leaves out what it does not send; a missing `oid` (the database does not keep it) is served as 0."""
    out = {"coin": row["coin"], "px": row["px"], "sz": row["sz"], "side": row["side"], "time": int(row["time"]),
           "startPosition": row["start_position"], "dir": row["dir"], "closedPnl": row["closed_pnl"],
           "hash": row["hash"], "oid": int(row["oid"] or 0), "crossed": row["crossed"], "fee": row["fee"],
           "tid": row["tid"], "feeToken": row["fee_token"], "twapId": row.get("twap_id")}
    return {k: (int(v) if k in ("tid", "twapId") else v) for k, v in out.items() if v is not None}


class Bars:
    """Minute opens per symbol as arrays (a 90-day, 3-symbol history is ~390 k bars)."""

    def __init__(self, history: History, since: int, until: int):
        times: dict[str, list[np.ndarray]] = {}
        opens: dict[str, list[np.ndarray]] = {}
        closes: dict[str, list[np.ndarray]] = {}
        for _day, t in history.iter_days(KLINES, since - MINUTE_MS, until + MINUTE_MS):
            sym = np.asarray(t.column("symbol").to_pylist(), dtype=object)
            ot = t.column("open_time").to_numpy()
            op, cl = t.column("open").to_numpy(), t.column("close").to_numpy()
            for s in sorted(set(sym.tolist())):
                mask = sym == s
                times.setdefault(s, []).append(ot[mask])
                opens.setdefault(s, []).append(op[mask])
                closes.setdefault(s, []).append(cl[mask])
        self.times = {s: np.concatenate(v) for s, v in times.items()}
        self.opens = {s: np.concatenate(opens[s]) for s in times}
        self.closes = {s: np.concatenate(closes[s]) for s in times}

    def open_at(self, symbol: str, ts_ms: int, after: bool = False) -> float | None:
        """The open of the minute holding `ts_ms` (or of the next minute when `after`)."""
        times = self.times.get(symbol)
        if times is None or len(times) == 0:
            return None
        minute = ts_ms - ts_ms % MINUTE_MS + (MINUTE_MS if after else 0)
        i = int(np.searchsorted(times, minute, side="right")) - 1
        if after:  # the first bar at or after the next minute
            i = int(np.searchsorted(times, minute, side="left"))
            if i >= len(times):
                return None
        return float(self.opens[symbol][max(i, 0)])


class KlineVenue(CopytradeWorld):
    """`CopytradeWorld` whose prices, fills and filters are the history's; it records every execution."""

    def __init__(self, clock: Any, history: History, since: int, until: int, slippage_bps: float, wallet: str):
        super().__init__(clock)
        self.wallet = wallet
        self.slippage_bps = slippage_bps
        self.bars = Bars(history, since, until)
        rows: list[dict[str, Any]] = []
        for _day, t in history.iter_days(TARGET_FILLS, since, until):
            rows += [r for r in t.to_pylist() if since <= r["time"] < until]
        rows.sort(key=lambda r: (r["time"], r["tid"] or 0))
        self.fill_rows = rows
        self.fills = [fill_row_to_api(r) for r in rows]
        self._times = [f["time"] for f in self.fills]
        info: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for _day, t in history.iter_days(EXCHANGE_INFO, None, until):
            for r in t.to_pylist():
                info.setdefault(r["symbol"], []).append((int(r["as_of"]), r))
        self.info = {s: sorted(v, key=lambda x: x[0]) for s, v in info.items()}
        self.executions: list[dict[str, Any]] = []  # every fill the venue gave us
        self.rejections: dict[str, int] = {}

    # ---------------------------------------------------------------- Hyperliquid: bisect, not a scan
    def _info(self, payload: Any) -> Reply:
        if not isinstance(payload, dict) or payload.get("type") != "userFillsByTime":
            return Reply(422, raw=b"Failed to deserialize the JSON body into the target type")
        if str(payload.get("user", "")).lower() != self.wallet:
            return Reply(200, [])
        now = self.clock.now_ms()
        start, end = int(payload["startTime"]), min(int(payload.get("endTime") or now), now)
        lo, hi = bisect.bisect_left(self._times, start), bisect.bisect_right(self._times, end)
        return Reply(200, self.fills[lo:min(hi, lo + 2000)])

    def next_fill_after(self, now_ms: int) -> int | None:
        """When the next target fill happens (the harness's pacing only; the app never sees this)."""
        i = bisect.bisect_right(self._times, now_ms)
        return self._times[i] if i < len(self._times) else None

    # ---------------------------------------------------------------- Binance: recorded filters, kline fills
    def _filters(self, symbol: str) -> dict[str, Any] | None:
        rows = self.info.get(symbol) or []
        now = self.clock.now_ms()
        current = [r for at, r in rows if at <= now] or [r for _at, r in rows[:1]]
        return current[-1] if current else None

    def _binance(self, method: str, path: str, params: Mapping[str, str]) -> Reply:
        now = self.clock.now_ms()
        for symbol in self.bars.times:
            mark = self.bars.open_at(symbol, now)
            if mark is not None:
                self.account.marks[symbol] = Decimal(f"{mark:.2f}")
        if path == "/fapi/v1/exchangeInfo":
            symbols = []
            for s in sorted(self.info):
                f = self._filters(s)
                assert f is not None
                symbols.append({"symbol": s, "pair": s, "contractType": "PERPETUAL", "status": "TRADING",
                                "baseAsset": s[:-4], "quoteAsset": "USDT", "marginAsset": "USDT",
                                "pricePrecision": 2, "quantityPrecision": 3, "orderTypes": ["LIMIT", "MARKET"],
                                "timeInForce": ["GTC", "IOC", "FOK", "GTX"], "filters": [
                                    {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "10000000",
                                     "tickSize": f["tick_size"]},
                                    {"filterType": "LOT_SIZE", "minQty": f["min_qty"], "maxQty": f["max_qty"],
                                     "stepSize": f["step_size"]},
                                    {"filterType": "MARKET_LOT_SIZE", "minQty": f["min_qty"],
                                     "maxQty": f["max_qty"], "stepSize": f["step_size"]},
                                    {"filterType": "MIN_NOTIONAL", "notional": f["min_notional"]}]})
            return Reply(200, {"timezone": "UTC", "serverTime": now, "futuresType": "U_MARGINED", "symbols": symbols})
        if path == "/fapi/v1/order" and method == "POST":
            return self._post(params)
        return super()._binance(method, path, params)

    def _reject(self, code: int, msg: str) -> Reply:
        self.rejections[str(code)] = self.rejections.get(str(code), 0) + 1
        return Reply(400, {"code": code, "msg": msg})

    def _post(self, params: Mapping[str, str]) -> Reply:
        acct, now = self.account, self.clock.now_ms()
        cid, symbol = params.get("newClientOrderId", ""), params.get("symbol", "")
        if cid in acct.orders:
            return Reply(400, {"code": -4116, "msg": "ClientOrderId is duplicated."})
        qty = Decimal(params.get("quantity", "0"))
        f = self._filters(symbol)
        fill_px = self.bars.open_at(symbol, now, after=True)
        if f is None or fill_px is None:
            return self._reject(-1121, "Invalid symbol.")
        step, min_qty, max_qty = Decimal(f["step_size"]), Decimal(f["min_qty"]), Decimal(f["max_qty"])
        if qty < min_qty or qty > max_qty or (qty % step) != 0:
            return self._reject(-1013, "Filter failure: LOT_SIZE")
        side = params.get("side", "")
        reduce_only = params.get("reduceOnly", "false") == "true"
        if not reduce_only and qty * Decimal(str(fill_px)) < Decimal(f["min_notional"]):
            return self._reject(-4164, f"Order's notional must be no smaller than {f['min_notional']}")
        acct.posts.append({k: v for k, v in params.items() if k not in SIGNING_FIELDS})
        acct.next_order_id += 1
        sign = 1 if side == "BUY" else -1
        price = fill_px * (1 + sign * self.slippage_bps / 10_000)
        order = {"orderId": acct.next_order_id, "symbol": symbol, "status": "FILLED", "clientOrderId": cid,
                 "qty": params.get("quantity", "0"), "executed": str(qty), "tif": params.get("timeInForce", "GTC"),
                 "reduceOnly": params.get("reduceOnly", "false"), "side": side, "updated": now}
        acct.orders[cid] = order
        acct.positions[symbol] = acct.positions.get(symbol, Decimal(0)) + (qty if sign > 0 else -qty)
        self.executions.append({"ts_ms": now, "symbol": symbol, "side": side, "qty": float(qty), "px": price,
                                "open_px": fill_px, "reduce_only": reduce_only})
        body = self._order_body(order)
        body["avgPrice"] = f"{price:.8f}"
        body["cumQuote"] = f"{float(qty) * price:.5f}"
        return Reply(200, body)
