"""Copy-trader safety vocabulary (copytrader §9 drills 15-21): venue faults armed before boot (so the
startup reconcile or UNKNOWN sweep already meets them) and one request by the running service's own
Binance adapter (to drill §4.8 R3/R4, whose clocks any Binance answer or error moves)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from replay.drill import DURATION
from replay.registry import given, step
from replay.steps import _fault

APP = ("copytrader",)
_FAULT = {"type": "dict", "schema": {
    "kind": {"type": "string", "required": True}, "match": {"type": "string"}, "op": {"type": "string"},
    "times": {"type": "integer", "min": 1}, "for": {"type": ["string", "integer"]},
    "status": {"type": "integer"}, "retry_after": {"type": "integer"}, "code": {"type": "integer"},
    "msg": {"type": "string"}, "takes": DURATION}}


@given("faults", {"type": "list", "schema": _FAULT},
       "Venue faults armed before boot, as the `fault` step takes them (e.g. the startup sweep's query times "
       "out).", apps=APP,
    example="faults: [{kind: timeout, match: \"GET /fapi/v1/order\", times: 5}]")
def _given_faults(player: Any, value: list[Mapping[str, Any]]) -> None:
    for spec in value:
        _fault(player, spec)


def _binance_client(player: Any) -> Any:
    """The running copy-trader's Binance client (the loop job holds the jobs and their venues)."""
    for job in player.scheduler.jobs if player.scheduler is not None else ():
        loop = getattr(job.run, "__self__", None)
        jobs = getattr(loop, "jobs", None)
        if jobs is not None and jobs.venues.binance is not None:
            return jobs.venues.binance
    return None


@step("adapter_request", {"request": {"type": "string", "required": True, "allowed": ["GET /fapi/v1/time"]}},
      "The running copy-trader's own Binance adapter sends this request now (a server-time sync), as it does "
      "between reconciles; with a `fault` first, that is an adapter error (§4.8 R4).", apps=APP,
    example="{at: 170s, do: adapter_request, request: \"GET /fapi/v1/time\"}")
def _adapter_request(player: Any, args: Mapping[str, Any]) -> None:
    client = _binance_client(player)
    if client is None:
        raise RuntimeError("adapter_request: no running copy-trader with a Binance adapter")
    client.sync_time()
