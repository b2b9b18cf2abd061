"""Local positions kept incrementally (copytrader §4.7 step 4): the active baseline plus every
filled result since it, folded in one result at a time as results are written, instead of
re-reading every filled order since the baseline on each decision (which grew without bound).

A result row changes only through `Orders.upsert_result`, which always stamps `updated_at_ms`,
so each read folds in just the rows stamped at or after the last one seen. The whole sum is
rebuilt when the baseline or the operator revision changes, or the clock is behind what was seen;
reconcile compares it with `Baselines.local_positions` (the full recomputation) every run.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, bindparam, select

from hlcore.engine.runtime import OPS_REVISION
from hlcore.storage.copytrade import POSITION_DUST, Baselines, normalise_symbol, signed_fill
from hlcore.storage.db import Database
from hlcore.storage.repos import SystemState
from hlcore.storage.schema import order_intents, order_results


def _fold_query(since: bool, stamped: bool) -> Select[Any]:
    i, r = order_intents, order_results
    query = (select(r.c.correlation_id, r.c.filled_qty, i.c.intent_payload, r.c.updated_at_ms)
             .select_from(r.join(i, i.c.correlation_id == r.c.correlation_id)))
    if since:
        query = query.where(r.c.created_at_ms >= bindparam("since_ms"))
    if stamped:
        query = query.where(r.c.updated_at_ms >= bindparam("stamped_from"))
    return query


_FOLD = {(since, stamped): _fold_query(since, stamped) for since in (False, True) for stamped in (False, True)}
"""The four shapes of the fold's query, built once (issue 12: building one costs more than running it)."""


class LocalBook:
    """One process's running sum of local positions over one database."""

    def __init__(self, db: Database, dust: Decimal = POSITION_DUST):
        self.db = db
        self.dust = dust
        self._key: tuple[object, ...] | None = None
        self._parts: dict[str, tuple[str, Decimal]] = {}  # correlation id -> (symbol, signed filled qty)
        self._totals: dict[str, Decimal] = {}
        self._seen_ms = 0  # the newest `updated_at_ms` folded in

    def positions(self, now_ms: int, *, conn: Connection | None = None) -> dict[str, Decimal]:
        """What `Baselines.local_positions()` returns, reading only the results written since the last call."""
        with self.db.begin_or_join(conn) as c:
            base = Baselines(self.db).active(conn=c)
            key = (None if base is None else (base.baseline_id, base.created_at_ms, tuple(base.positions.items())),
                   SystemState(self.db).get(OPS_REVISION, conn=c))
            if key != self._key or now_ms < self._seen_ms:
                self._rebuild(key, base, c)
            else:
                self._fold(base.created_at_ms if base is not None else None, c, self._seen_ms)
        return {sym: qty for sym, qty in sorted(self._totals.items()) if abs(qty) > self.dust}

    def forget(self) -> None:
        """Drop the running sum: the next read rebuilds it (reconcile saw it disagree)."""
        self._key = None

    def _rebuild(self, key: tuple[object, ...], base: object, c: Connection) -> None:
        self._key, self._parts, self._totals, self._seen_ms = key, {}, {}, 0
        created = getattr(base, "created_at_ms", None)
        for symbol, qty in (getattr(base, "positions", None) or {}).items():
            norm = normalise_symbol(symbol)
            self._totals[norm] = self._totals.get(norm, Decimal(0)) + qty
        self._fold(created, c, None)

    def _fold(self, since_ms: int | None, c: Connection, stamped_from: int | None) -> None:
        query = _FOLD[(since_ms is not None, stamped_from is not None)]
        for correlation_id, filled, payload_text, stamped in c.execute(query, {"since_ms": since_ms,
                                                                               "stamped_from": stamped_from}):
            old = self._parts.pop(correlation_id, None)
            if old is not None:
                self._totals[old[0]] -= old[1]
            if filled is not None and Decimal(str(filled)) > 0:
                part = self._parts[correlation_id] = signed_fill(correlation_id, filled, payload_text)
                self._totals[part[0]] = self._totals.get(part[0], Decimal(0)) + part[1]
            if stamped is not None and stamped > self._seen_ms:
                self._seen_ms = stamped
