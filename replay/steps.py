"""Timeline verbs shared by every app: the process (boot, crash, advance), venue faults,
storage outages, config and environment changes, and operator commands through the real CLI."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from replay.drill import DURATION, deep_merge, duration_ms
from replay.registry import step
from replay.storage_faults import Kill
from replay.transport import FAULT_KINDS, Fault
from replay.wallets import SELECTION, address, select

_DURATION = {"type": ["string", "integer"]}


_RUN_MODE = {"mode": {"type": "string", "allowed": ["live", "dry-run", "backfill-only"]}}


def _set_mode(player: Any, args: Mapping[str, Any]) -> None:
    if "mode" in args:  # `hlcore live --mode X` for this and later starts (the copy-trader's run modes)
        player.run.mode = args["mode"]


@step("boot", _RUN_MODE, "Start the process (a running one is crashed first), in `mode` when given (this and "
      "later starts). Missing env or bad config: exit 2.",
    example="{at: 0s, do: boot, mode: dry-run}")
def _boot(player: Any, args: Mapping[str, Any]) -> None:
    _set_mode(player, args)
    player.boot()


@step("restart", _RUN_MODE, "Crash the running process and start it again (in `mode` when given).",
    example="{at: 20s, do: restart}")
def _restart(player: Any, args: Mapping[str, Any]) -> None:
    _set_mode(player, args)
    player.boot()


@step("advance", {}, "Run the scheduler up to this time (a no-op marker: every step and check does it).",
    example="{at: 70s, do: advance}")
def _advance(player: Any, args: Mapping[str, Any]) -> None:
    del player, args


@step("crash", {
    "on": {"type": "string", "excludes": "commit"},
    "commit": {"type": "string", "regex": r"^[a-z_]+$", "excludes": "on"},
    "when": {"type": "string", "allowed": ["before", "after"], "dependencies": "commit"},
}, "The process dies: now; or armed, while sending `on` (\"METHOD /path\": the venue acts, the answer is "
   "lost); or at the commit that writes table `commit` (`when: before` it lands, or just `after`).",
    example="{at: 1s, do: crash, commit: processed_txs, when: after}")
def _crash(player: Any, args: Mapping[str, Any]) -> None:
    if "on" in args:
        player.transport.faults.append(Fault("crash", match=args["on"]))
    elif "commit" in args:
        player.storage.kills.append(Kill(args["commit"], args.get("when", "before")))
    else:
        player.stop("crash")


@step("fault", {
    "kind": {"type": "string", "required": True, "allowed": list(FAULT_KINDS)},
    "match": {"type": "string"}, "venue": {"type": "string"}, "op": {"type": "string"}, "user": {"type": "string"},
    "wallets": SELECTION,
    "times": {"type": "integer", "min": 1, "excludes": "for"}, "for": {**_DURATION, "excludes": "times"},
    "status": {"type": "integer", "min": 100, "max": 599}, "retry_after": {"type": "integer", "min": 0},
    "code": {"type": "integer"}, "msg": {"type": "string"},
    "drop": {"type": "list", "schema": {"type": "string"}}, "takes": DURATION,
}, "A venue misbehaves on matching requests (`wallets: 1-30` limits it to those wallets' requests): for "
   "the next `times` calls (default 1) or every call for a duration (`for: 40s`); `takes: 10s` makes each "
   "such call take that long on the scripted clock before it fails (a read timeout). Kinds: "
   + ", ".join(FAULT_KINDS) + ".",
   example="{at: 1m, do: fault, kind: timeout, match: GET /fapi/v1/order, takes: 10s}")
def _fault(player: Any, args: Mapping[str, Any]) -> None:
    until = None
    times: int | None = args.get("times", 1)
    if "for" in args:
        until, times = player.now() + (duration_ms(args["for"]) or 0), None
    player.transport.faults.append(Fault(
        args["kind"], match=args.get("match"), op=args.get("op"), times=times,
        until_ms=until, status=args.get("status"), retry_after=args.get("retry_after"), code=args.get("code"),
        msg=args.get("msg"), drop=tuple(args.get("drop") or ()), venue=args.get("venue"),
        takes_ms=duration_ms(args.get("takes", 0)) or 0,
        users=frozenset({address(i) for i in select(args.get("wallets") or [], 100_000)}
                        | ({args["user"].lower()} if args.get("user") else set()))))


@step("latency", {
    "ms": {"type": "integer", "min": 0, "required": True},
    "venue": {"type": "string"}, "match": {"type": "string"}, "op": {"type": "string"},
}, "From now on every answered venue call matching `venue`/`match`/`op` (all calls when none is given) takes "
   "`ms` on the scripted clock (`ms: 0` ends it); a later latency step with the same filters replaces it. "
   "The monitor's snapshot workers share one clock: drill it with `max_concurrency: 1`.",
   example="{at: 30s, do: latency, ms: 300, op: clearinghouseState}")
def _latency(player: Any, args: Mapping[str, Any]) -> None:
    same = (args.get("venue"), args.get("match"), args.get("op"))
    with player.transport.lock:
        kept = [d for d in player.transport.delays if (d.venue, d.match, d.op) != same]
        if args["ms"]:
            kept.append(Fault("latency", match=same[1], op=same[2], venue=same[0], times=None,
                              takes_ms=int(args["ms"])))
        player.transport.delays = kept


@step("storage", {"down": {"type": "boolean", "required": True}},
      "The database becomes unavailable (`down: true`) or comes back (`down: false`).",
    example="{at: 40s, do: storage, down: true}")
def _storage(player: Any, args: Mapping[str, Any]) -> None:
    player.storage.down = bool(args["down"])


@step("config", {"set": {"type": "dict", "required": True}},
      "Edit the settings file (deep-merged); like a real edit it takes effect at the next boot.",
    example="{at: 1m, do: config, set: {ingest: {maintenance_skip_gap: true}}}")
def _config(player: Any, args: Mapping[str, Any]) -> None:
    player.config = deep_merge(player.config, args["set"])
    player.write_settings()
    player.open_workspace()  # a bad value is bad input now, not at the next boot


@step("env", {"set": {"type": "dict", "valuesrules": {"type": "string"}},
              "unset": {"type": "list", "schema": {"type": "string"}}},
      "Change the process environment (takes effect at the next boot).",
    example="{at: 5s, do: env, unset: [BINANCE_API_SECRET]}")
def _env(player: Any, args: Mapping[str, Any]) -> None:
    for key in args.get("unset") or ():
        player.env.pop(key, None)
    player.env.update(args.get("set") or {})


@step("operator", {"command": {"type": "string", "required": True, "empty": False}},
      "Run an `hlcore` command (e.g. `ops unhalt --operator alice`) through the real CLI, at drill time, "
      "against the drill's database and venues; its exit code and output go to the journal.",
    example="{at: 1s, do: operator, command: \"ops unhalt --dry-run\"}")
def _operator(player: Any, args: Mapping[str, Any]) -> None:
    from replay.operator import run_command

    argv = shlex.split(args["command"])
    result = run_command(player, argv)
    player.operator_results.append({"at_ms": player.now(), "command": args["command"], **result})
    player.add(player.now(), {"kind": "operator", "command": args["command"], **result})
    player.storage_touched()


@step("repeat", {
    "every": {**DURATION, "required": True}, "times": {"type": "integer", "min": 1, "required": True},
    "steps": {"type": "list", "required": True, "empty": False, "schema": {"type": "dict"}},
}, "Periodic behaviour: the inner `steps` (each `{at?: offset inside the period, do: VERB, ...}`) happen "
   "`times` times, `every` apart, from this step's `at`; the loader expands them (the journal marks each "
   "occurrence `repeat: k/N`).",
   example="{at: 10m, do: repeat, every: 5m, times: 12, steps: [{do: storage, down: true}, "
           "{at: 30s, do: storage, down: false}]}")
def _repeat(player: Any, args: Mapping[str, Any]) -> None:
    raise AssertionError("repeat steps are expanded when the drill is loaded")
