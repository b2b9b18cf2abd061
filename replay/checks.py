"""Expectations shared by every app. Each returns the messages of what did not hold; a timed
check sees the world after everything due at its time has run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Boolean, and_, func, select

from hlcore.storage.repos import MachineStateStore, SystemState
from hlcore.storage.schema import metadata
from replay.drill import DURATION, Expectation, duration_ms
from replay.registry import check, modifier

_NAMES = {"type": "dict", "keysrules": {"type": "string"}, "valuesrules": {"type": "string"}}
_SCALARS = {"type": "dict", "keysrules": {"type": "string"},
            "valuesrules": {"type": ["string", "integer", "number", "boolean"], "nullable": True}}
_REASON = {"type": "string", "nullable": True}


def fmt(ms: int) -> str:
    return f"+{ms // 1000}.{ms % 1000:03d}s"


def machine_state(player: Any, name: str, instance: str | None = None) -> tuple[str | None, str | None]:
    inst = instance or name
    if player.ctx is not None:
        engine = player.ctx.runtime.engine
        if instance is None:
            return engine.state(name), engine.reason(name)
    for row in MachineStateStore(player.db).load():
        if row["machine"] == name and row["instance"] == inst:
            return row["state"], row["reason"]
    return None, None


@check("state", {"state": {**_NAMES, "required": True}, "reason": _REASON, "instance": {"type": "string"}},
       "MACHINE is in STATE (and `reason`), read from the running engine or, with no process, from storage.",
    example="{at: 0s, state: {safety: ARMED_LIVE}, reason: OK}")
def _state(player: Any, exp: Expectation) -> list[str]:
    spec, out = exp.spec, []
    for name, want in sorted(spec["state"].items()):
        got, got_reason = machine_state(player, name, spec.get("instance"))
        if got != want or ("reason" in spec and got_reason != spec["reason"]):
            out.append(f"{name} is {got}/{got_reason}")
    return out


def transitions(player: Any, machine: str) -> list[dict[str, Any]]:
    return [e for _, _, e in player.entries if e["kind"] == "transition" and e["machine"] == machine]


@check("transition", {"transition": {**_NAMES, "required": True}, "reason": _REASON, "from": {"type": "string"},
                      "within": {"type": ["string", "integer"]}, "instance": {"type": "string"}},
       "An audit row moved MACHINE to STATE at exactly `at` (or within `within` after it).",
    example="{at: 6s, transition: {order: FILLED}, from: PARTIALLY_FILLED, within: 1s}")
def _transition(player: Any, exp: Expectation) -> list[str]:
    spec, out = exp.spec, []
    lo = player.start_ms + (exp.at_ms or 0)
    hi = lo + (duration_ms(spec.get("within", 0)) or 0)
    for name, want in sorted(spec["transition"].items()):
        seen = transitions(player, name)
        hits = [e for e in seen if lo <= e["ts_ms"] <= hi and e["to"] == want
                and ("reason" not in spec or e["reason"] == spec["reason"])
                and ("from" not in spec or e["from"] == spec["from"])
                and ("instance" not in spec or e["instance"] == spec["instance"])]
        if not hits:
            desc = "; ".join(f"{e['t']} {e['from']}->{e['to']}/{e['reason']}" for e in seen) or "none"
            out.append(f"no such {name} transition (saw: {desc})")
    return out


@check("never_state", {"never_state": {**_NAMES, "required": True}, "reason": _REASON,
                       "instance": {"type": "string"}},
       "Over the whole run (or up to `at`) MACHINE never entered STATE (with `reason`; of `instance` only, "
       "e.g. one asset's machine).",
       example="{never_state: {regime_change: ACTIVE}, instance: regime_change/BTC}")
def _never_state(player: Any, exp: Expectation) -> list[str]:
    out = []
    end = None if exp.at_ms is None else player.start_ms + exp.at_ms
    for name, want in sorted(exp.spec["never_state"].items()):
        hits = [e for e in transitions(player, name) if e["to"] == want and (end is None or e["ts_ms"] <= end)
                and ("reason" not in exp.spec or e["reason"] == exp.spec["reason"])
                and ("instance" not in exp.spec or e["instance"] == exp.spec["instance"])]
        if hits:
            out.append(f"{name} entered {want}/{hits[0]['reason']} at {hits[0]['t']}")
    return out


@check("system_state", {"system_state": {**_SCALARS, "required": True}},
       "Each `system_state` key holds VALUE (null: the key is absent).",
    example="{at: 0s, system_state: {last_processed_timestamp_ms: 1769248801000}}")
def _system_state(player: Any, exp: Expectation) -> list[str]:
    have = SystemState(player.db).all()
    out = []
    for key, want in sorted(exp.spec["system_state"].items()):
        expected = None if want is None else (str(want).lower() if isinstance(want, bool) else str(want))
        if have.get(key) != expected:
            out.append(f"{key} is {have.get(key)!r}")
    return out


def column_equals(column: Any, value: Any) -> Any:
    """`column = value`, with a drill's 0/1 for a boolean column read as false/true (PostgreSQL has
    no boolean = integer operator; SQLite stores booleans as 0/1 either way)."""
    if value is None:
        return column.is_(None)
    if isinstance(column.type, Boolean) and isinstance(value, int):
        value = bool(value)
    return column == value


def count_rows(player: Any, table_name: str, where: Mapping[str, Any] | None) -> int | str:
    table = metadata.tables.get(table_name)
    if table is None:
        return f"unknown table {table_name}"
    conds = []
    for col, value in sorted((where or {}).items()):
        if col not in table.c:
            return f"table {table_name} has no column {col}"
        conds.append(column_equals(table.c[col], value))
    query = select(func.count()).select_from(table)
    if conds:
        query = query.where(and_(*conds))
    with player.db.transaction() as conn:
        return int(conn.execute(query).scalar_one())


@check("rows", {"rows": {"type": "dict", "required": True, "keysrules": {"type": "string"},
                         "valuesrules": {"type": "integer", "min": 0}}, "where": _SCALARS},
       "TABLE holds exactly N rows (matching `where`, column = value).",
    example="{at: 6s, rows: {processed_txs: 1}, where: {state: DONE}}")
def _rows(player: Any, exp: Expectation) -> list[str]:
    out = []
    for name, want in sorted(exp.spec["rows"].items()):
        got = count_rows(player, name, exp.spec.get("where"))
        if isinstance(got, str):
            out.append(got)
        elif got != want:
            out.append(f"{name} has {got} matching rows")
    return out


def calls_matching(player: Any, what: str, end_ms: int | None = None, start_ms: int | None = None) -> list[Any]:
    return [c for c in player.transport.calls
            if what in (c.op, f"{c.method} {c.path}", c.path, c.venue)
            and (end_ms is None or c.ts_ms <= end_ms) and (start_ms is None or c.ts_ms >= start_ms)]


@check("never", {"never": {"type": "string", "required": True, "empty": False}},
       "Over the whole run (or up to `at`): `order_submitted` (no `POST /fapi/v1/order`), `intent` (no "
       "`order_intents` row), or no venue call matching a Hyperliquid type, `METHOD /path`, `/path` or venue.",
    example="{never: order_submitted}")
def _never(player: Any, exp: Expectation) -> list[str]:
    what = exp.spec["never"]
    if what == "intent":
        got = count_rows(player, "order_intents", None)
        return [f"{got} order intent(s) written"] if got else []
    if what == "order_submitted":
        what = "POST /fapi/v1/order"
    end = None if exp.at_ms is None else player.start_ms + exp.at_ms
    match = calls_matching(player, what, end)
    return [f"{len(match)} call(s), first at {fmt(match[0].ts_ms - player.start_ms)}"] if match else []


@check("calls", {"calls": {"type": "dict", "required": True, "keysrules": {"type": "string"},
                           "valuesrules": {"type": "integer", "min": 0}},
                 "since": {"type": ["string", "integer"]}},
       "Venue calls matching each key (as for `never`) number exactly N, up to `at` (from `since`).",
    example="{at: 70s, calls: {\"POST /fapi/v1/order\": 1, \"GET /fapi/v1/order\": 2}}")
def _calls(player: Any, exp: Expectation) -> list[str]:
    end = None if exp.at_ms is None else player.start_ms + exp.at_ms
    start = None if "since" not in exp.spec else player.start_ms + (duration_ms(exp.spec["since"]) or 0)
    out = []
    for what, want in sorted(exp.spec["calls"].items()):
        got = calls_matching(player, what, end, start)
        if len(got) != want:
            out.append(f"{what}: {len(got)} call(s) at " + ", ".join(fmt(c.ts_ms - player.start_ms) for c in got[:8]))
    return out


@check("operator", {"operator": {"type": "dict", "required": True, "schema": {
    "exit": {"type": "integer"}, "says": {"type": "list", "schema": {"type": "string"}},
    "not_says": {"type": "list", "schema": {"type": "string"}}}}},
       "The last operator command up to `at` exited with `exit` and its output contains each `says` text.",
    example="{at: 5s, operator: {exit: 0, says: [\"config_hash=\"]}}")
def _operator(player: Any, exp: Expectation) -> list[str]:
    end = None if exp.at_ms is None else player.start_ms + exp.at_ms
    ran = [r for r in player.operator_results if end is None or r["at_ms"] <= end]
    if not ran:
        return ["no operator command ran"]
    last, spec, out = ran[-1], exp.spec["operator"], []
    if "exit" in spec and last["exit"] != spec["exit"]:
        out.append(f"`{last['command']}` exited {last['exit']}: {' | '.join(last['output'][-6:])}")
    text = "\n".join(last["output"])
    out += [f"`{last['command']}` output lacks {s!r}" for s in spec.get("says") or () if s not in text]
    out += [f"`{last['command']}` output has {s!r}" for s in spec.get("not_says") or () if s in text]
    return out


@check("process", {"process": {"type": "string", "required": True, "regex": r"^(running|stopped|exit \d+)$"}},
       "The process is `running`, `stopped` (crashed or killed) or ended with `exit N` (e.g. exit 2 on "
       "missing environment).",
    example="{at: 0s, process: exit 2}")
def _process(player: Any, exp: Expectation) -> list[str]:
    want = exp.spec["process"]
    if player.ctx is not None:
        got = "running"
    elif player.exit_code is not None:
        got = f"exit {player.exit_code}"
    else:
        got = "stopped"
    return [] if got == want else [f"process is {got}"]


@check("log", {"log": {"type": "string", "required": True, "empty": False}, "count": {"type": "integer", "min": 0},
               "since": {"type": ["string", "integer"]}},
       "A WARNING+ log line containing the text was written (exactly `count` times when given), up to `at`.",
    example="{at: 42s, log: \"slow tick\", count: 1}")
def _log(player: Any, exp: Expectation) -> list[str]:
    end = None if exp.at_ms is None else player.start_ms + exp.at_ms
    start = None if "since" not in exp.spec else player.start_ms + (duration_ms(exp.spec["since"]) or 0)
    player.flush()
    hits = [e for _, _, e in player.entries if e["kind"] == "log" and exp.spec["log"] in e["message"]
            and (end is None or e["ts_ms"] <= end) and (start is None or e["ts_ms"] >= start)]
    want = exp.spec.get("count")
    if want is None:
        return [] if hits else ["no such log line"]
    return [] if len(hits) == want else [f"{len(hits)} such log line(s)"]


@modifier("each", {"each": {"type": "dict", "required": True, "schema": {
    "every": {**DURATION, "required": True},
    "times": {"type": "integer", "min": 1, "required": True}}}},
    "On a timed expectation: check it `times` times, `every` apart, from its `at` (a `since` moves along "
    "with it, so `calls` counts each period's own calls); a failure names the occurrence's time.",
    example="{at: 12m30s, each: {every: 5m, times: 12}, state: {playbook: No-trade}, instance: playbook/BTC}")
def _each(exp: Expectation, value: Mapping[str, Any]) -> list[Expectation]:
    every = duration_ms(value["every"])
    if not every:
        raise ValueError(f"every: expected a positive duration like 5m, got {value['every']!r}")
    out = []
    for k in range(int(value["times"])):
        spec = dict(exp.spec)
        if "since" in spec:
            spec["since"] = (duration_ms(spec["since"]) or 0) + k * every
        spec["at"] = (exp.at_ms or 0) + k * every
        out.append(Expectation((exp.at_ms or 0) + k * every, exp.kind, spec, exp.line))
    return out
