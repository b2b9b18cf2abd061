"""The replay harness's venues for integration tests: a `DrillTransport` (no cassettes) in front
of a replay world, plus shorthands for scripting faults the way the tests read best. Every venue
answer comes from `replay/worlds/*` and every fault from `replay/transport.py`; nothing here
builds a response. No socket is opened.

    transport, world = copytrade_venues(clock)
    world.fills = [fill(1, "2.0", "0.0", "B", t, tx)]
    queue(transport, ["timeout", "timeout"], match="GET /fapi/v1/order")
    wiring = Wiring(..., lambda _venue: transport.session(), ...)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from hlcore.engine.clock import Clock
from replay.cassettes import CassetteDeck
from replay.transport import DrillTransport, Fault, World
from replay.worlds.copytrade import CopytradeWorld, hl_fill
from replay.worlds.monitor import MonitorWorld

__all__ = ["RecordingTransport", "copytrade_venues", "fail_wallet", "fault", "fill", "info_calls", "monitor_venues",
           "queue"]


class RecordingTransport(DrillTransport):
    """A drill transport that also keeps every Binance `signature` the client sent, for the tests
    that prove none leaks (the drill transport itself never keeps one)."""

    def __init__(self, clock: Clock, world: World):
        super().__init__(clock, world, CassetteDeck([]))
        self.signatures: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        fields = parse_qsl(urlsplit(request.url or "").query)
        body = request.body.decode("utf-8", "replace") if isinstance(request.body, bytes) else request.body
        if body and not body.lstrip().startswith(("{", "[")):
            fields += parse_qsl(body)
        with self.lock:
            self.signatures += [v for k, v in fields if k == "signature"]
        return super().send(request, **kwargs)


def copytrade_venues(clock: Clock) -> tuple[RecordingTransport, CopytradeWorld]:
    """Hyperliquid `userFillsByTime` of `replay.worlds.copytrade.WALLET` and a Binance USD-M account."""
    world = CopytradeWorld(clock)
    return RecordingTransport(clock, world), world


def monitor_venues(clock: Clock) -> tuple[DrillTransport, MonitorWorld]:
    """The stats-data leaderboard and `clearinghouseState` per wallet."""
    world = MonitorWorld(clock)
    return DrillTransport(clock, world, CassetteDeck([])), world


def fill(tid: int, sz: str, start: str, side: str, time_ms: int, tx: str, coin: str = "BTC") -> dict[str, Any]:
    """A `userFillsByTime` fill (`replay.worlds.copytrade.hl_fill`) from positional arguments."""
    return hl_fill({"tid": tid, "sz": sz, "startPosition": start, "side": side, "time": time_ms, "hash": tx,
                    "coin": coin})


def fault(kind: str, *, times: int | None = 1, **fields: Any) -> Fault:
    """A `Fault` from a shorthand kind: any of `replay.transport.FAULT_KINDS`, an HTTP status
    ("500", "503": a 5xx; "400": a 4xx error body) or a Binance error code ("-2019": HTTP 400 with
    that code). `fields` are `Fault` fields (match, venue, users, retry_after, ...)."""
    if kind.startswith("-") and kind[1:].isdigit():
        fields.setdefault("status", 400)
        fields.setdefault("msg", f"scripted {kind}")
        return Fault("error", times=times, code=int(kind), **fields)
    if kind.isdigit() and kind not in ("429", "418"):
        status = int(kind)
        return Fault("5xx" if status >= 500 else "error", times=times, **{"status": status, **fields})
    return Fault(kind, times=times, **fields)


def queue(transport: DrillTransport, kinds: Iterable[str], **fields: Any) -> None:
    """Faults consumed one per matching call, in order (runs of one kind become one `Fault` with
    `times`); after the queue, calls are answered normally."""
    run: list[str] = []
    for kind in [*kinds, ""]:
        if run and kind != run[0]:
            transport.faults.append(fault(run[0], times=len(run), **fields))
            run = []
        if kind:
            run.append(kind)


def fail_wallet(transport: DrillTransport, wallet: str, kind: str, *, times: int | None = None,
                **fields: Any) -> None:
    """Every request about `wallet` (its `user`), or the next `times` of them, gets `kind`; a 429
    carries `Retry-After: 1` unless `retry_after` says otherwise."""
    if kind == "429":
        fields.setdefault("retry_after", 1)
    transport.faults.append(fault(kind, times=times, users=frozenset({wallet.lower()}), **fields))


def info_calls(transport: DrillTransport) -> list[str]:
    """The wallet of every `clearinghouseState` request, in order (faulted ones included)."""
    return [c.user or "" for c in transport.calls if c.op == "clearinghouseState"]
