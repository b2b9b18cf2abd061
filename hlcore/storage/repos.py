"""Small repositories over the schema: the few reads and writes the engine and ops need.

Each takes a `Database`. Every method that stamps a time takes it as an argument (`now_ms`,
`ts_ms`): storage never reads the wall clock, so replay writes the same rows as live (house rule 8).
Writers accept an optional `conn` so a caller can put several writes (a transition's state row and
its audit row) in one transaction; without it each call is its own transaction.
JSON columns hold canonical JSON (sorted keys, no spaces) so identical inputs give identical bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, func, select

from hlcore.storage.db import Database, upsert
from hlcore.storage.schema import audit_log, engine_tallies, machine_states, ops_events, system_state


def _json_default(value: Any) -> Any:
    # Venue parsers produce Decimals; keep their exact digits rather than a float approximation.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dump_json(value: Any) -> str:
    """Canonical JSON: sorted keys, compact separators, UTF-8 kept; Decimals become strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def load_json(text: str | None) -> Any:
    """Decode a JSON column; NULL stays None."""
    return None if text is None else json.loads(text)


def _check_columns(table: Table, record: Mapping[str, Any]) -> None:
    unknown = sorted(set(record) - set(table.c.keys()))
    if unknown:
        raise ValueError(f"{table.name}: unknown column(s) {', '.join(unknown)}")


_GET_VALUE = select(system_state.c.value).where(system_state.c["key"] == bindparam("key"))
"""Built once: constructing a statement costs more than running it (issue 12)."""


class SystemState:
    """The shared `system_state` key/value rows (both specs' §6 key lists)."""

    def __init__(self, db: Database):
        self.db = db

    def get(self, key: str, *, conn: Connection | None = None) -> str | None:
        with self.db.begin_or_join(conn) as c:
            return c.execute(_GET_VALUE, {"key": key}).scalar_one_or_none()

    def set(self, key: str, value: str, now_ms: int, *, conn: Connection | None = None) -> None:
        self.set_many({key: value}, now_ms, conn=conn)

    def set_many(self, values: Mapping[str, str], now_ms: int, *, conn: Connection | None = None) -> None:
        """Upsert several keys atomically, so a reader never sees half of a mode change."""
        rows = [{"key": k, "value": values[k], "updated_at_ms": now_ms} for k in sorted(values)]
        with self.db.begin_or_join(conn) as c:
            upsert(c, system_state, rows, keys=["key"])

    def all(self, *, conn: Connection | None = None) -> dict[str, str]:
        with self.db.begin_or_join(conn) as c:
            result = c.execute(
                select(system_state.c["key"], system_state.c.value).order_by(system_state.c["key"])
            )
            return {k: v for k, v in result}


def int_value(key: str, raw: str | None) -> int | None:
    """A `system_state` value read as an integer: absent or empty is None, a non-integer value is a bug."""
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"system_state[{key!s}] = {raw!r} is not an integer") from exc


class TypedState:
    """Typed access to one app's `system_state` keys (a key enum's members or plain strings)."""

    def __init__(self, db: Database):
        self.db = db
        self._kv = SystemState(db)

    def get(self, key: str, *, conn: Connection | None = None) -> str | None:
        return self._kv.get(str(key), conn=conn)

    def get_int(self, key: str, *, conn: Connection | None = None) -> int | None:
        """An integer key (ms stamps, counters); absent or empty is None, a non-integer value is a bug."""
        return int_value(key, self.get(key, conn=conn))

    def set_many(self, values: Mapping[str, str | int], now_ms: int, *, conn: Connection | None = None) -> None:
        """Upsert several keys in one transaction; integers are stored as their decimal text."""
        self._kv.set_many({str(k): str(v) for k, v in values.items()}, now_ms, conn=conn)


class AuditLog:
    """Append-only `audit_log`: one row per decision, the journal's source (DESIGN §2.4)."""

    JSON_COLUMNS = ("facts", "metadata")

    def __init__(self, db: Database):
        self.db = db

    def write(self, record: Mapping[str, Any], *, conn: Connection | None = None) -> int:
        """Insert a row whose keys are column names; returns its id. Unknown keys are a bug."""
        _check_columns(audit_log, record)
        row = dict(record)
        for col in self.JSON_COLUMNS:
            if row.get(col) is not None and not isinstance(row[col], str):
                row[col] = dump_json(row[col])
        with self.db.begin_or_join(conn) as c:
            result = c.execute(audit_log.insert(), row)  # values bound at execution: one compiled statement
            return int(result.inserted_primary_key[0])

    def rows(
        self, category: str | None = None, limit: int | None = None, *, conn: Connection | None = None
    ) -> list[dict[str, Any]]:
        """Rows in write order (by id), JSON columns decoded."""
        query = select(audit_log).order_by(audit_log.c.id)
        if category is not None:
            query = query.where(audit_log.c.category == category)
        if limit is not None:
            query = query.limit(limit)
        with self.db.begin_or_join(conn) as c:
            out = [dict(r._mapping) for r in c.execute(query)]
        for row in out:
            for col in self.JSON_COLUMNS:
                row[col] = load_json(row[col])
        return out

    def count(self, *, conn: Connection | None = None) -> int:
        with self.db.begin_or_join(conn) as c:
            return int(c.execute(select(func.count()).select_from(audit_log)).scalar_one())


class MachineStateStore:
    """Current state of every machine instance, so HALT (or any state) survives a restart."""

    FIELDS = ("machine", "instance", "state", "reason", "since_ms", "vars")

    def __init__(self, db: Database):
        self.db = db

    def save(self, rows: list[Mapping[str, Any]], now_ms: int, *, conn: Connection | None = None) -> None:
        """Upsert rows with keys machine, instance, state, reason, since_ms, vars (a dict)."""
        prepared = []
        for r in rows:
            missing = [f for f in ("machine", "instance", "state", "since_ms") if f not in r]
            if missing:
                raise ValueError(f"machine_states row lacks {', '.join(missing)}")
            prepared.append(
                {
                    "machine": r["machine"],
                    "instance": r["instance"],
                    "state": r["state"],
                    "reason": r.get("reason"),
                    "since_ms": r["since_ms"],
                    "vars": dump_json(r.get("vars") or {}),
                    "updated_at_ms": now_ms,
                }
            )
        prepared.sort(key=lambda p: (p["machine"], p["instance"]))
        with self.db.begin_or_join(conn) as c:
            upsert(c, machine_states, prepared, keys=["machine", "instance"])

    _ONE = select(*(machine_states.c[f] for f in FIELDS)).where(
        machine_states.c.machine == bindparam("m"), machine_states.c.instance == bindparam("i"))

    def load_one(self, machine: str, instance: str, *, conn: Connection | None = None) -> dict[str, Any] | None:
        """One saved row (as `load` gives it), or None: how the engine restores an evicted instance."""
        with self.db.begin_or_join(conn) as c:
            found = c.execute(self._ONE, {"m": machine, "i": instance}).first()
        if found is None:
            return None
        row = dict(found._mapping)
        row["vars"] = load_json(row["vars"]) or {}
        return row

    def load(self, *, conn: Connection | None = None) -> list[dict[str, Any]]:
        """Saved rows ordered by (machine, instance), with the same keys `save` takes."""
        cols = [machine_states.c[f] for f in self.FIELDS]
        query = select(*cols).order_by(machine_states.c.machine, machine_states.c.instance)
        with self.db.begin_or_join(conn) as c:
            out = [dict(r._mapping) for r in c.execute(query)]
        for row in out:
            row["vars"] = load_json(row["vars"]) or {}
        return out


class TallyStore:
    """Timestamped observations behind rolling-window counts (retry budgets, daily caps)."""

    def __init__(self, db: Database):
        self.db = db

    def add(
        self, name: str, instance: str, ts_ms: int, value: float = 1.0, *, conn: Connection | None = None
    ) -> None:
        with self.db.begin_or_join(conn) as c:
            c.execute(engine_tallies.insert().values(name=name, instance=instance, ts_ms=ts_ms, value=value))

    def load(self, since_ms: int, *, conn: Connection | None = None) -> list[dict[str, Any]]:
        """Observations at or after `since_ms`, ordered by (name, instance, ts_ms, insertion)."""
        t = engine_tallies
        query = (
            select(t.c.name, t.c.instance, t.c.ts_ms, t.c.value)
            .where(t.c.ts_ms >= since_ms)
            .order_by(t.c.name, t.c.instance, t.c.ts_ms, t.c.id)
        )
        with self.db.begin_or_join(conn) as c:
            return [dict(r._mapping) for r in c.execute(query)]

    def prune(self, before_ms: int, *, conn: Connection | None = None) -> int:
        """Delete observations older than `before_ms` (outside every window); returns how many."""
        with self.db.begin_or_join(conn) as c:
            return int(c.execute(delete(engine_tallies).where(engine_tallies.c.ts_ms < before_ms)).rowcount)


class OpsEvents:
    """The monitor's `ops_events`: who ran which operator command, why, and what it changed."""

    def __init__(self, db: Database):
        self.db = db

    def write(
        self,
        ts_ms: int,
        command: str,
        operator: str | None,
        reason: str | None,
        before: Mapping[str, Any],
        after: Mapping[str, Any],
        *,
        conn: Connection | None = None,
    ) -> int:
        """Append one operator act; returns its id."""
        row = {
            "ts": ts_ms,
            "command": command,
            "operator": operator,
            "reason": reason,
            "before": dump_json(dict(before)),
            "after": dump_json(dict(after)),
        }
        with self.db.begin_or_join(conn) as c:
            return int(c.execute(ops_events.insert().values(**row)).inserted_primary_key[0])
