"""Copy-trader position checks (copytrader §4.7): the local position the service counts from (active
baseline plus its filled orders) per symbol, and the drifts the last reconcile reported, so a drill
can say "local BTCUSDT is 0.002" or "the reconcile saw a 0.001 drift" without reading tables."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select

from hlcore.storage.copytrade import Baselines, ReconcileRuns
from hlcore.storage.repos import load_json
from hlcore.storage.schema import reconcile_runs
from replay.drill import Expectation
from replay.registry import check

APP = ("copytrader",)
_QTYS = {"type": "dict", "keysrules": {"type": "string", "regex": r"^[A-Z0-9]+$"},
         "valuesrules": {"type": ["string", "number"]}}
_SYMBOLS = {"type": "list", "schema": {"type": "string"}}


def _dec(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@check("position", {"position": {**_QTYS, "required": True}},
       "The local position (active baseline plus filled orders, what reconcile compares) holds these "
       "quantities {SYMBOL: qty}, compared as decimals; a symbol with no position is 0.", apps=APP,
       example="{at: 2m, position: {BTCUSDT: 0.002, ETHUSDT: 0}}")
def _position(player: Any, exp: Expectation) -> list[str]:
    local = Baselines(player.db).local_positions()
    out = []
    for symbol, want in sorted(exp.spec["position"].items()):
        got = local.get(symbol, Decimal(0))
        if got != _dec(want):
            out.append(f"local {symbol} is {got}, expected {want}")
    return out


@check("drift", {"drift": {**_QTYS, "required": True}, "result": {"type": "string"},
                 "missing_local": _SYMBOLS, "missing_exchange": _SYMBOLS},
       "The last reconcile report up to `at` saw these drifts {SYMBOL: |local − exchange|} (`{}`: none "
       "checked), with raw `result` (the reconcile machine's state) and exactly these `missing_local` / "
       "`missing_exchange` symbols when given.", apps=APP,
       example="{at: 1m30s, drift: {BTCUSDT: 0.001}, result: WARN, missing_exchange: []}")
def _drift(player: Any, exp: Expectation) -> list[str]:
    spec = exp.spec
    if exp.at_ms is None:
        report = ReconcileRuns(player.db).last()
    else:
        t = reconcile_runs
        with player.db.transaction() as conn:
            row = conn.execute(select(t).where(t.c.ts_ms <= player.start_ms + exp.at_ms)
                               .order_by(t.c.ts_ms.desc(), t.c.id.desc()).limit(1)).mappings().first()
        report = None if row is None else {**row, **{c: load_json(row[c]) for c in ReconcileRuns.JSON_COLUMNS}}
    if report is None:
        return ["no reconcile report"]
    drifts = report["drifts"] or {}
    out = [f"drift {symbol} is {drifts.get(symbol, '0')}, expected {want}"
           for symbol, want in sorted(spec["drift"].items()) if _dec(drifts.get(symbol, "0")) != _dec(want)]
    if "result" in spec and report["raw_result"] != spec["result"]:
        out.append(f"result is {report['raw_result']}")
    for key in ("missing_local", "missing_exchange"):
        if key in spec and sorted(report[key] or []) != sorted(spec[key]):
            out.append(f"{key} is {report[key]}")
    return out
