"""A fake Hyperliquid for the wallet monitor at the `requests` transport level: the stats-data
leaderboard and the info API's `clearinghouseState`, with scripted faults per call or per wallet
("500", "400", "429", "timeout", "garbage") and an optional latency that moves the manual clock.
No socket is opened; the worker threads of the snapshot job may call it concurrently."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter

from hlcore.engine.clock import ManualClock

LEADERBOARD_HOST = "stats-data.hyperliquid.xyz"
INFO_HOST = "api.hyperliquid.xyz"


def address(i: int) -> str:
    """A deterministic wallet address, lowercase; `address(1) < address(2)`."""
    return "0x" + f"{i:040x}"


def lb_row(wallet: str, pnl: Any, *, window: str = "month", roi: str = "0.1",
           account_value: str = "100000.0", name: str | None = None) -> dict[str, Any]:
    """One leaderboard row as stats-data serves it (pnl as a string, windows as pairs)."""
    perf = {"pnl": str(pnl), "roi": roi, "vlm": "1000000.0"}
    windows = [["day", perf], ["week", perf], [window, perf], ["allTime", perf]]
    return {"ethAddress": wallet, "accountValue": account_value, "windowPerformances": windows,
            "prize": 0, "displayName": name}


def leaderboard(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {"leaderboardRows": list(rows)}


def position(coin: str, szi: Any, *, entry_px: str = "100.0", liq_px: str | None = "50.0",
             margin: str = "10.0", leverage: Any = None) -> dict[str, Any]:
    return {"type": "oneWay", "position": {
        "coin": coin, "szi": str(szi), "entryPx": entry_px, "liquidationPx": liq_px, "marginUsed": margin,
        "leverage": leverage if leverage is not None else {"type": "cross", "value": 5},
        "positionValue": "100.0", "unrealizedPnl": "0.0", "returnOnEquity": "0.0", "maxLeverage": 50,
        "cumFunding": {"allTime": "0.0", "sinceOpen": "0.0", "sinceChange": "0.0"}}}


class FakeHyperliquid(BaseAdapter):
    """Leaderboard and clearinghouseState. `positions[wallet]` maps coin → szi (anything `str`
    turns into a venue decimal) or a full `position(...)` entry; a wallet without an entry is flat."""

    def __init__(self, clock: ManualClock):
        super().__init__()
        self.clock = clock
        self.lock = threading.Lock()
        self.leaderboard_body: Any = leaderboard([])
        self.leaderboard_faults: list[str] = []  # consumed per leaderboard call; "ok" passes
        self.positions: dict[str, dict[str, Any]] = {}
        self.failing: dict[str, str] = {}  # wallet -> fault on every call
        self.wallet_faults: dict[str, list[str]] = {}  # wallet -> faults consumed per call
        self.latency_ms = 0  # the manual clock moves this much per info call
        self.calls: list[tuple[str, str]] = []  # (kind, wallet or "")

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _response(request: requests.PreparedRequest, status: int, body: Any,
                  headers: dict[str, str] | None = None, raw: bytes | None = None) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response._content = raw if raw is not None else json.dumps(body).encode()
        response.headers.update({"Content-Type": "application/json", **(headers or {})})
        response.request = request
        response.url = request.url or ""
        return response

    def _faulted(self, request: requests.PreparedRequest, fault: str) -> requests.Response | None:
        if fault == "ok":
            return None
        if fault == "timeout":
            raise requests.Timeout("scripted timeout")
        if fault == "429":
            return self._response(request, 429, {"error": "rate limited"}, {"Retry-After": "1"})
        if fault == "500":
            return self._response(request, 500, {"error": "internal"})
        if fault == "400":
            return self._response(request, 400, {"error": "bad request"})
        if fault == "garbage":
            return self._response(request, 200, None, raw=b"<html>oops</html>")
        raise AssertionError(f"unknown scripted fault {fault!r}")

    # ------------------------------------------------------------------ transport
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        url = urlsplit(request.url or "")
        if url.netloc == LEADERBOARD_HOST:
            with self.lock:
                self.calls.append(("leaderboard", ""))
                fault = self.leaderboard_faults.pop(0) if self.leaderboard_faults else "ok"
            faulted = self._faulted(request, fault)
            return faulted if faulted is not None else self._response(request, 200, self.leaderboard_body)
        if url.netloc == INFO_HOST and url.path == "/info":
            body = json.loads(request.body or b"{}")
            wallet = str(body.get("user", ""))
            with self.lock:
                self.calls.append((str(body.get("type")), wallet))
                if self.latency_ms:
                    self.clock.advance(self.latency_ms)
                queue = self.wallet_faults.get(wallet)
                fault = queue.pop(0) if queue else self.failing.get(wallet, "ok")
            if body.get("type") != "clearinghouseState":
                return self._response(request, 400, {"error": "unsupported"})
            faulted = self._faulted(request, fault)
            return faulted if faulted is not None else self._response(request, 200, self._state(wallet))
        return self._response(request, 404, {"error": f"no route {url.netloc}{url.path}"})

    def _state(self, wallet: str) -> dict[str, Any]:
        entries = []
        for coin, value in sorted(self.positions.get(wallet, {}).items()):
            entries.append(value if isinstance(value, dict) else position(coin, value))
        return {"marginSummary": {"accountValue": "1000.0", "totalNtlPos": "0.0", "totalRawUsd": "1000.0",
                                  "totalMarginUsed": "0.0"},
                "crossMarginSummary": {"accountValue": "1000.0", "totalNtlPos": "0.0", "totalRawUsd": "1000.0",
                                       "totalMarginUsed": "0.0"},
                "crossMaintenanceMarginUsed": "0.0", "withdrawable": "1000.0", "assetPositions": entries,
                "time": self.clock.now_ms()}

    def info_calls(self) -> list[str]:
        return [w for kind, w in self.calls if kind == "clearinghouseState"]

    def close(self) -> None:
        pass

    def session(self) -> requests.Session:
        s = requests.Session()
        s.mount("https://", self)
        return s
