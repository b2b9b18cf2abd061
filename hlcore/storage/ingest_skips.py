"""`ingest_skips`: venue items the ingest dropped, each stored once with its reason (issue 11 §2),
so an operator can count what never became an event (`ops status`) and why."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, func, select

from hlcore.storage.db import Database, insert_ignore
from hlcore.storage.schema import ingest_skips


class IngestSkips:
    def __init__(self, db: Database):
        self.db = db

    def record(self, rows: Iterable[Mapping[str, Any]], now_ms: int, *,
               conn: Connection | None = None) -> list[dict[str, Any]]:
        """Insert-or-ignore on `skip_key`; returns the rows that were new (to log and count once)."""
        new = []
        with self.db.begin_or_join(conn) as c:
            for row in rows:
                stored = {**row, "recorded_at_ms": now_ms}
                if insert_ignore(c, ingest_skips, stored, ("skip_key",)):
                    new.append(stored)
        return new

    def counts_since(self, since_ms: int, *, conn: Connection | None = None) -> dict[str, int]:
        """Skips recorded at or after `since_ms`, per reason (sorted by reason)."""
        t = ingest_skips
        query = select(t.c.reason, func.count()).where(t.c.recorded_at_ms >= since_ms).group_by(t.c.reason)
        with self.db.begin_or_join(conn) as c:
            return {str(reason): int(n) for reason, n in sorted(c.execute(query).all())}
