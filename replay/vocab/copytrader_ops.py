"""Checks for the copy-trader boot and operator drills (copytrader §9 drills 1-4, 6, 7): the stored
config hash against the drill's current settings, and files an operator command leaves behind
(evidence bundles, database backups), read from the run's working folder."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hlcore.storage.repos import SystemState
from replay.drill import Expectation, deep_merge
from replay.registry import check, given

APP = "copytrader"
_SCALARS = {"type": "dict", "keysrules": {"type": "string"}, "valuesrules": {"type": "string"}}


@check("config_hash", {"config_hash": {"type": "string", "required": True, "allowed": ["current", "not_current"]}},
       "`system_state.config_hash` is (`current`) or is not (`not_current`) the hash of the drill's settings "
       "as they are now (what `hlcore hash` prints).", apps=(APP,),
    example="{at: 0s, config_hash: current}")
def _config_hash(player: Any, exp: Expectation) -> list[str]:
    stored = SystemState(player.db).all().get("config_hash")
    current = player.open_workspace().config_hash
    if exp.spec["config_hash"] == "current" and stored != current:
        return [f"config_hash is {stored!r}, the current settings hash to {current!r}"]
    if exp.spec["config_hash"] == "not_current" and stored == current:
        return [f"config_hash is the current hash {current!r}"]
    return []


def _matches(player: Any, pattern: str) -> list[Path]:
    return sorted(p for p in Path(player.tmp).glob(pattern) if p.is_file())


@check("file", {"file": {"type": "string", "required": True, "empty": False},
                "count": {"type": "integer", "min": 0},
                "says": {"type": "list", "schema": {"type": "string"}},
                "not_says": {"type": "list", "schema": {"type": "string"}},
                "sqlite_system_state": _SCALARS},
       "Files matching the glob (relative to the run's working folder, where `data/` and evidence land) "
       "exist (exactly `count` when given); in the newest, a line starts with each `says` text (`key=value`) "
       "and no `not_says` text appears anywhere; `sqlite_system_state` opens it as SQLite and compares "
       "`system_state` keys.", apps=(APP,),
    example="{at: 3m, file: \"ops_validation_run.txt\", count: 1, says: [\"result=PASS\"]}")
def _file(player: Any, exp: Expectation) -> list[str]:
    spec = exp.spec
    found = _matches(player, spec["file"])
    if "count" in spec and len(found) != spec["count"]:
        return [f"{len(found)} file(s) match: {[p.name for p in found]}"]
    if not found:
        return [] if spec.get("count") == 0 else ["no such file"]
    path, out = found[-1], []
    if "says" in spec or "not_says" in spec:
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = text.splitlines()
        out += [f"{path.name} has no line starting {s!r}" for s in spec.get("says") or ()
                if not any(line.startswith(s) for line in lines)]
        out += [f"{path.name} has {s!r}" for s in spec.get("not_says") or () if s in text]
    if "sqlite_system_state" in spec:
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                state = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM system_state")}
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return [*out, f"{path.name} is not a readable database: {exc}"]
        out += [f"{path.name}: {k} is {state.get(k)!r}" for k, v in sorted(spec["sqlite_system_state"].items())
                if state.get(k) != v]
    return out


@check("boot_problem", {"boot_problem": {"type": "string", "required": True, "empty": False},
                        "not_says": {"type": "list", "schema": {"type": "string"}}},
       "The last failed boot (exit 2, bad input) up to `at` printed a problem containing the text (e.g. the "
       "missing variable's name), and none of `not_says` (e.g. a secret's value).", apps=(APP,),
    example="{at: 0s, boot_problem: BINANCE_API_SECRET, not_says: [KKKKKKKK]}")
def _boot_problem(player: Any, exp: Expectation) -> list[str]:
    end = None if exp.at_ms is None else player.start_ms + exp.at_ms
    exits = [e for _, _, e in player.entries if e["kind"] == "process" and e.get("event") == "exit 2"
             and (end is None or e["ts_ms"] <= end)]
    if not exits:
        return ["no boot exited 2"]
    problems = exits[-1].get("problems") or []
    text = "\n".join(problems)
    out = [] if exp.spec["boot_problem"] in text else [f"problems were {problems}"]
    return out + [f"a problem shows {s!r}" for s in exp.spec.get("not_says") or () if s in text]


@given("config_hash", {"type": "dict", "schema": {"settings": {"type": "dict"}}},
       "`system_state.config_hash` as the last start recorded it: the hash of the drill's settings with "
       "`settings` deep-merged over them (`{}`: the drill's own settings), as `hlcore hash` prints it.",
       apps=(APP,),
    example="config_hash: {settings: {safety: {warn_threshold: 0.001}}}")
def _given_config_hash(player: Any, value: dict[str, Any]) -> None:
    current = player.config
    player.config = deep_merge(current, value.get("settings") or {})
    player.write_settings()
    try:
        recorded = player.open_workspace().config_hash
    finally:
        player.config = current
        player.write_settings()
    SystemState(player.db).set_many({"config_hash": recorded}, player.now())
