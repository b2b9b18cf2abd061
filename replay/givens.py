"""`given:` seeds shared by every app: `system_state` keys, persisted machine states (with their
`system_state` mirrors, as a real earlier run would have left them) and prior rows of any table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import BigInteger, insert

from hlcore.errors import BadInput
from hlcore.storage.repos import MachineStateStore, SystemState, dump_json
from hlcore.storage.schema import metadata
from replay.drill import ISO, iso_ms
from replay.registry import given


@given("system_state", {"type": "dict", "keysrules": {"type": "string"},
                        "valuesrules": {"type": ["string", "integer", "number", "boolean"]}},
       "`system_state` rows seeded before boot; an ISO UTC value becomes epoch ms.",
    example="system_state: {last_processed_timestamp_ms: 1769248800000}")
def _system_state(player: Any, value: Mapping[str, str]) -> None:
    SystemState(player.db).set_many({k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()},
                                    player.now())


@given("machines", {"type": "dict", "keysrules": {"type": "string"}, "valuesrules": {"type": "dict", "schema": {
    "state": {"type": "string", "required": True}, "reason": {"type": "string", "nullable": True},
    "instance": {"type": "string"}, "since": {"type": "integer"}, "vars": {"type": "dict"}}}},
       "Persisted machine states {MACHINE: {state, reason, instance?, since?, vars?}} (plus the machine's "
       "`system_state` mirror keys).",
    example="machines: {safety: {state: ARMED_SAFE, reason: BOOTSTRAP}}")
def _machines(player: Any, value: Mapping[str, Mapping[str, Any]]) -> None:
    now = player.now()
    policy = player.ws.policy
    rows, mirrors = [], {}
    for name, spec in sorted(value.items()):
        since = int(spec.get("since", now))
        rows.append({"machine": name, "instance": spec.get("instance", name), "state": spec["state"],
                     "reason": spec.get("reason"), "since_ms": since, "vars": dict(spec.get("vars") or {})})
        machine = policy.machines.get(name)
        mirror = (machine.mirror if machine is not None else None) or {}
        if "state" in mirror:
            mirrors[mirror["state"]] = spec["state"]
        if "reason" in mirror:
            mirrors[mirror["reason"]] = spec.get("reason") or ""
        if "since" in mirror:
            mirrors[mirror["since"]] = str(since)
    MachineStateStore(player.db).save(rows, now)
    if mirrors:
        SystemState(player.db).set_many(mirrors, now)


_TABLE = {"type": "string", "allowed": sorted(metadata.tables)}


@given("rows", {"type": "dict", "keysrules": _TABLE, "valuesrules": {"type": "list", "schema": {"type": "dict"}}},
       "Prior rows {TABLE: [{column: value}]}: an ISO UTC instant in an epoch-ms column becomes ms, dicts and "
       "lists are stored as JSON.",
    example="rows: {processed_txs: [{event_key: \"k\", state: DONE}]}")
def _rows(player: Any, value: Mapping[str, list[Mapping[str, Any]]]) -> None:
    with player.db.transaction() as conn:
        for name, rows in sorted(value.items()):
            table = metadata.tables[name]
            for row in rows:
                unknown = sorted(set(row) - set(table.c.keys()))
                if unknown:
                    raise BadInput(f"given rows: table {name} has no column(s) {unknown}")
                conn.execute(insert(table).values({k: _cell(table.c[k], v) for k, v in row.items()}))


def _cell(column: Any, value: Any) -> Any:
    if isinstance(value, str) and ISO.match(value) and isinstance(column.type, BigInteger):
        return iso_ms(value)
    return dump_json(value) if isinstance(value, dict | list) else value
