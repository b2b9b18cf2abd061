"""Loopback venue stubs on 127.0.0.1 for a real `hlcore live --mode live` subprocess.

The venues are the drills' own model (`replay.worlds.copytrade.CopytradeWorld`: Hyperliquid fills,
a Binance account that keeps orders and positions, -4116 on a duplicate client order id) served
over real HTTP on the wall clock, so a crash test exercises the same venue semantics the drills
do. Every POST of an order is counted by client order id *before* the model answers, so a second
send of one id is seen even though the model refuses it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from replay.worlds.copytrade import WALLET, CopytradeWorld, hl_fill

SIZE = Decimal("2.0")


class QuietServer(ThreadingHTTPServer):
    """A killed client resets its connection mid-request: expected here, not worth a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class WallClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)


class LoopbackVenues:
    """Hyperliquid `/info` and Binance `/fapi/...` on one loopback port, thread-safe."""

    def __init__(self) -> None:
        self.world = CopytradeWorld(WallClock())
        self.lock = threading.Lock()
        self.posts: Counter[str] = Counter()  # client order id -> POSTs received
        self.post_times: list[tuple[float, str]] = []  # (wall time, client order id)
        self.next_tid = 1
        self.position = Decimal(0)  # the target wallet's position, for the next fill's startPosition
        self.server = QuietServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def settings(self) -> dict[str, Any]:
        """The settings that point `hlcore live` at these stubs."""
        return {"ingest": {"hyperliquid": {"rest_url": f"{self.base_url}/info"}},
                "execution": {"binance": {"base_url": self.base_url}}}

    def env(self) -> dict[str, str]:
        return {"HYPERLIQUID_TARGET_WALLET": WALLET, "BINANCE_API_KEY": "K" * 64, "BINANCE_API_SECRET": "S" * 64}

    def trade(self) -> dict[str, Any]:
        """The target wallet buys 2 BTC more (each fill its own transaction, so each is one INCREASE
        event and, mirrored at the default 0.001 ratio, one 0.002 BTC order, above Binance's
        100 USDT minimum notional). Always an increase: the close-only replay policy drops opens
        that happened while hlcore was down, and an order needs a live one."""
        with self.lock:
            tid = self.next_tid
            self.next_tid += 1
            fill = hl_fill({"tid": tid, "sz": str(SIZE), "side": "B", "startPosition": str(self.position),
                            "time": int(time.time() * 1000) - 5})
            self.position += SIZE
            self.world.fills.append(fill)
            return fill

    def fills(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.world.fills)

    def duplicates(self) -> int:
        with self.lock:
            return sum(n - 1 for n in self.posts.values() if n > 1)

    def clearinghouse_state(self, user: str) -> dict[str, Any]:
        """The target's BTC position (what `ops promote` prints for the runbook's manual check). The
        drills' world answers only fills; without this the promote's lookup failed and was retried
        with backoff, seconds of sleep per promotion."""
        with self.lock:
            held = self.position if user.lower() == WALLET else Decimal(0)
        rows = [{"type": "oneWay", "position": {"coin": "BTC", "szi": str(held)}}] if held else []
        return {"assetPositions": rows, "time": int(time.time() * 1000)}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, method: str, raw_path: str, body: bytes) -> tuple[int, bytes]:
        url = urlsplit(raw_path)
        params = dict(parse_qsl(url.query))
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                params.update(dict(parse_qsl(body.decode())))
        venue = "hyperliquid" if url.path == "/info" else "binance"
        if venue == "hyperliquid" and isinstance(payload, dict) and payload.get("type") == "clearinghouseState":
            return 200, json.dumps(self.clearinghouse_state(str(payload.get("user", "")))).encode()
        with self.lock:
            if venue == "binance" and method == "POST" and url.path == "/fapi/v1/order":
                cid = params.get("newClientOrderId", "")
                self.posts[cid] += 1
                self.post_times.append((time.time(), cid))
            reply = self.world.answer(venue, method, url.path, params, payload)
        data = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
        return reply.status, data

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        venues = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length", 0) or 0)
                body = self.rfile.read(length) if length else b""
                status, data = venues._answer(method, self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

        return Handler
