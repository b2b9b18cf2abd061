"""Fill observed -> order submitted, in process, against loopback venue stubs on 127.0.0.1.

Run: python benchmarks/copytrade_latency.py [--orders N]   (prints p50/p99; asserts nothing)

`--orders N` (default 300; `--events` is the older name) runs N fills and prints p50/p99 over
the first 100 orders and over the last 100 up to N: latency must stay flat as orders pile up
(issue 12: p99 <= 5 ms after 100 orders, and within 10 % of that after 10,000).

Each iteration the Hyperliquid stub gains one fresh fill (a new transaction, an INCREASE); the
timer starts when the stub sends the info answer carrying it (the fill is observed) and stops when
the Binance stub receives the POST /fapi/v1/order. The whole tick (fetch included) is shown too.
Real SQLite file storage, real HTTP over
loopback, ARMED_LIVE, the default policy.

The stubs run in their own process by default (`--venue thread` puts them on a thread of this one,
as before issue 12's latency round: the venue's Python then competes with hlcore's for the GIL).
`--prefetch inline` (default, as `hlcore live` and replay) or `thread` (the GET on a worker thread,
overlapping the ingest commit; slower under CPU contention, see docs/decisions.md) picks how the mark
price is fetched; `--db-dir` puts the SQLite file elsewhere (e.g. /dev/shm for an A/B on a busy disk). The
third figure is the loop thread's CPU for ingest + decide, steadier than wall time under load.
After boot the benchmark calls `CopytradeJobs.prime` (the warm-up: `--no-prime` skips it) and
`settle_heap` (gc.freeze: `--no-freeze` skips it) as `hlcore live` does, and prints how many
collections of each generation ran during the loop and the longest.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hlcore.engine.clock import ManualClock  # noqa: E402
from hlcore.jobs.copytrade.prefetch import background_thread, run_when_taken  # noqa: E402
from hlcore.jobs.copytrade.service import Wiring, settle_heap, start  # noqa: E402
from hlcore.workspace import open_workspace  # noqa: E402

WALLET = "0x" + "ef" * 20
T0 = 1_769_248_800_000


class Venue:
    def __init__(self) -> None:
        self.fills: list[dict[str, Any]] = []
        self.posted_at: list[float] = []
        self.served_at: list[float] = []
        self.now_ms = T0
        self.lock = threading.Lock()


def handler_for(venue: Venue) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length) if length else b""
            if url.path == "/info":
                body = json.loads(raw or b"{}")
                start = body.get("startTime", 0)
                with venue.lock:
                    page = [f for f in venue.fills if f["time"] >= start]
                self._send(200, page)
                if page:
                    venue.served_at.append(time.perf_counter())  # the fill is now on its way to hlcore
                return
            if url.path == "/fapi/v1/order":
                venue.posted_at.append(time.perf_counter())
                p = dict(parse_qsl(url.query))
                self._send(200, {"orderId": len(venue.posted_at), "symbol": p["symbol"], "status": "FILLED",
                                 "clientOrderId": p["newClientOrderId"], "price": "0", "avgPrice": "60000",
                                 "origQty": p["quantity"], "executedQty": p["quantity"], "cumQuote": "0",
                                 "timeInForce": "GTC", "type": "MARKET", "reduceOnly": False, "side": p["side"],
                                 "positionSide": "BOTH", "updateTime": venue.now_ms})
                return
            self._send(404, {"code": -1, "msg": "no route"})

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            now = venue.now_ms
            if url.path == "/fapi/v1/time":
                self._send(200, {"serverTime": now})
            elif url.path == "/fapi/v1/exchangeInfo":
                self._send(200, {"symbols": [{"symbol": "BTCUSDT", "filters": [
                    {"filterType": "PRICE_FILTER", "tickSize": "0.10", "minPrice": "1", "maxPrice": "1000000"},
                    {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
                    {"filterType": "MIN_NOTIONAL", "notional": "100"}]}]})
            elif url.path == "/fapi/v1/premiumIndex":
                self._send(200, {"symbol": "BTCUSDT", "markPrice": "60000", "time": now})
            elif url.path == "/fapi/v2/positionRisk":
                self._send(200, [])
            elif url.path == "/fapi/v1/order":
                self._send(400, {"code": -2013, "msg": "Order does not exist."})
            else:
                self._send(404, {"code": -1, "msg": "no route"})

    return Handler


class LocalVenue:
    """The stubs on a thread of this process (`--venue thread`, as before this round): their Python
    competes with hlcore's for the GIL, so the venue's own CPU shows up in the figures."""

    def __init__(self) -> None:
        self.venue = Venue()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(self.venue))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]

    def set(self, now_ms: int, fills: list[dict[str, Any]]) -> None:
        with self.venue.lock:
            self.venue.now_ms, self.venue.fills = now_ms, fills

    def times(self) -> tuple[list[float], list[float]]:
        return list(self.venue.served_at), list(self.venue.posted_at)

    def close(self) -> None:
        self.server.shutdown()


def _serve(conn: Connection) -> None:
    """The venue process: the stubs, driven over a pipe (state in, timestamps out)."""
    local = LocalVenue()
    conn.send(local.port)
    while (msg := conn.recv()) is not None:
        if msg[0] == "set":
            local.set(msg[1], msg[2])
            conn.send(True)
        else:
            conn.send(local.times())
    local.close()


class RemoteVenue:
    """The stubs in their own process (`--venue process`, the default): like a real venue, they do
    not share hlcore's GIL. `perf_counter` is CLOCK_MONOTONIC, comparable across processes."""

    def __init__(self) -> None:
        self.conn, child = multiprocessing.get_context("fork").Pipe()
        self.process = multiprocessing.get_context("fork").Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        self.port = int(self.conn.recv())

    def set(self, now_ms: int, fills: list[dict[str, Any]]) -> None:
        self.conn.send(("set", now_ms, fills))
        self.conn.recv()

    def times(self) -> tuple[list[float], list[float]]:
        self.conn.send(("times",))
        served, posted = self.conn.recv()
        return served, posted

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", "--events", dest="events", type=int, default=300)
    parser.add_argument("--prefetch", choices=("thread", "inline"), default="inline",
                        help="mark prefetch runner: inline (as `hlcore live` and replay) or thread (the "
                             "experiment: the GET overlaps the ingest commit), for A/B")
    parser.add_argument("--db-dir", default=None,
                        help="folder for the SQLite file (default: the system temp folder); e.g. /dev/shm to "
                             "leave the disk's fsync out of an A/B on a busy machine")
    parser.add_argument("--venue", choices=("process", "thread"), default="process",
                        help="run the venue stubs in their own process (default) or on a thread of this one")
    parser.add_argument("--no-freeze", action="store_true",
                        help="skip `settle_heap` (gc.freeze after boot, as `hlcore live` does), for A/B")
    parser.add_argument("--no-prime", action="store_true",
                        help="skip `CopytradeJobs.prime` (the warm-up `hlcore live` runs after boot), for A/B")
    args = parser.parse_args()
    runner = background_thread if args.prefetch == "thread" else run_when_taken
    venue: LocalVenue | RemoteVenue = RemoteVenue() if args.venue == "process" else LocalVenue()
    base = f"http://127.0.0.1:{venue.port}"
    with tempfile.TemporaryDirectory(dir=args.db_dir) as tmp:
        settings = {"db_path": f"{tmp}/ct.db", "safety": {"startup_policy": "auto"},
                    "decision": {"sizing": {"max_qty": 10}},
                    "ingest": {"hyperliquid": {"rest_url": f"{base}/info"}},
                    "execution": {"binance": {"base_url": base}}}
        path = Path(tmp) / "settings.yaml"
        path.write_text(yaml.safe_dump(settings), encoding="utf-8")
        ws = open_workspace(ROOT, path)
        clock = ManualClock(T0)
        session = requests.Session()
        env = {"HYPERLIQUID_TARGET_WALLET": WALLET, "BINANCE_API_KEY": "k" * 64, "BINANCE_API_SECRET": "s" * 64}
        wiring = Wiring(clock, lambda s: clock.advance(int(s * 1000)), random.Random(1), lambda _v: session, env,
                        runner)
        ctx, jobs, _sched, _loop, code = start(ws, "live", wiring, allow_create_db=True)
        assert code == 0 and ctx.runtime.engine.state("safety") == "ARMED_LIVE", "benchmark needs ARMED_LIVE"
        if not args.no_prime:
            jobs.prime()  # as `hlcore live` does before its loop: nothing sent, nothing kept
        if not args.no_freeze:
            settle_heap()  # as `hlcore live` does before its loop
        pauses: list[tuple[int, float]] = []  # (generation, ms) of each collection during the loop
        gc.callbacks.append(_gc_timer(pauses))
        latencies: list[float] = []
        tick: list[float] = []
        cpu: list[float] = []  # the loop thread's CPU for ingest + decide (order sent): steadier under load
        posted = 0
        for i in range(args.events):
            clock.advance(2_000)
            tx = "0x" + f"{i:064x}"
            venue.set(clock.now_ms(), [{"coin": "BTC", "px": "60000.0", "sz": "2.0", "side": "B",
                                        "time": clock.now_ms() - 500, "startPosition": str(2.0 * i),
                                        "dir": "Open Long", "closedPnl": "0.0", "hash": tx, "oid": 10_000 + i,
                                        "crossed": True, "fee": "0.1", "tid": 100_000 + i, "feeToken": "USDC"}])
            started = time.perf_counter()
            cpu_started = time.thread_time()
            jobs.ingest()
            jobs.decide()
            cpu.append((time.thread_time() - cpu_started) * 1000)
            jobs.execute()
            served_at, posted_at = venue.times()
            if len(posted_at) == posted + 1:
                tick.append((posted_at[-1] - started) * 1000)
                latencies.append((posted_at[-1] - served_at[-1]) * 1000)
            posted = len(posted_at)
        ctx.close()
    venue.close()
    print(f"events={args.events} orders={len(latencies)}")
    for label, values in (("fill observed (info answer sent) -> order submitted", latencies),
                          ("tick start (before the fetch) -> order submitted", tick),
                          ("loop-thread CPU of ingest + decide (per tick, order included)", cpu)):
        print(f"{label}:")
        print(f"  all {len(values)} orders: {_figures(values)}")
        print(f"  orders 1-{min(100, len(values))}: {_figures(values[:100])}")
        if len(values) > 100:
            print(f"  orders {len(values) - 99}-{len(values)}: {_figures(values[-100:])}")
    for gen in (0, 1, 2):
        times = [ms for g, ms in pauses if g == gen]
        print(f"gc generation {gen}: {len(times)} collections during the loop, longest "
              f"{max(times, default=0):.2f} ms")
    print("target (issue 12): p99 <= 5 ms for fill observed -> order submitted, after 100 orders and after N")


def _gc_timer(pauses: list[tuple[int, float]]) -> Any:
    started = [0.0]

    def timer(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((int(info["generation"]), (time.perf_counter() - started[0]) * 1000))

    return timer


def _figures(values: list[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "no orders"
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    return f"p50={statistics.median(ordered):.2f} ms  p99={p99:.2f} ms  max={ordered[-1]:.2f} ms"


if __name__ == "__main__":
    main()
