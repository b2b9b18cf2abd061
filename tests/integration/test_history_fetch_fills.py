"""`hlcore history fetch-fills`: paging `userFillsByTime` through the copy-trader's client, against a
loopback HTTP stub serving generated pages (never the network) and an in-process stub for the
generated paging cases."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from typer.testing import CliRunner

from backtest.history.dataset import open_history
from backtest.history.fetch import FetchStats, fetch_fills, fetch_pages, hyperliquid_client
from hlcore.adapters.http import Answer
from hlcore.engine.clock import ManualClock
from hlcore.errors import BadInput
from hlcore.workspace import open_workspace
from hlcore_cli import app

T0 = 1769248800000  # 2026-01-24T10:00:00Z
WALLET = "0x" + "ab" * 20
ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def make_fill(tid: int, t: int, tid_less: bool = False) -> dict[str, Any]:
    fill: dict[str, Any] = {"coin": "BTC", "px": "60050.5", "sz": "0.0125", "side": "B" if tid % 2 else "A",
                            "time": t, "startPosition": f"{tid * 0.0125:.4f}", "dir": "Open Long",
                            "closedPnl": "0.0", "hash": "0x" + f"{tid:064x}", "oid": 900 + tid, "crossed": True,
                            "fee": "0.26", "tid": tid, "feeToken": "USDC"}
    if tid_less:
        del fill["tid"]
    return fill


class Pages:
    """The venue's `userFillsByTime`: fills in [startTime, endTime], oldest first, at most 2000; the
    first requests can be overridden by scripted answers (status, body, headers)."""

    def __init__(self, fills: list[dict[str, Any]], script: list[tuple[int, Any, dict[str, str]]] | None = None):
        self.fills = sorted(fills, key=lambda f: (f["time"], f.get("tid", 0)))
        self.script = list(script or [])
        self.requests: list[dict[str, Any]] = []

    def answer(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        self.requests.append(body)
        if self.script:
            return self.script.pop(0)
        lo, hi = int(body["startTime"]), int(body.get("endTime") or 2**62)
        return 200, [f for f in self.fills if lo <= f["time"] <= hi][:2000], {}

    def exchange(self, method: str, url: str, params: Any, json_body: Any, headers: Any) -> Answer:
        status, body, hdrs = self.answer(json_body)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return Answer(status, CaseInsensitiveDict(hdrs), raw)


@pytest.fixture
def loopback() -> Iterator[tuple[str, list[Pages]]]:
    """A real HTTP server on 127.0.0.1 answering POSTs from `holder[0]`."""
    holder: list[Pages] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, payload, hdrs = holder[0].answer(body)
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            for k, v in hdrs.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/info", holder
    finally:
        server.shutdown()
        server.server_close()


def client_for(url: str | None = None, session: Any = None) -> tuple[Any, ManualClock, list[float]]:
    clock, slept = ManualClock(T0 + 30 * 86_400_000), []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(int(seconds * 1000))

    ws = open_workspace(ROOT, ROOT / "config" / "settings.yaml")
    client = hyperliquid_client(ws, url=url, clock=clock, sleep=sleep, rng=random.Random(1), session=session)
    return client, clock, slept


def test_paging_over_loopback_http_drops_the_boundary_duplicate(tmp_path: Path,
                                                                 loopback: tuple[str, list[Pages]]) -> None:
    url, holder = loopback
    # 4,500 fills; the 2000th and 2001st share a millisecond, so page 2 starts at that ms and serves
    # the 2000th again (and the 2001st, which page 1 did not hold); page 3 starts at page 2's last
    # ms and serves that fill again: 3 pages of 2000, 2000 and 502 items, 2 boundary duplicates
    times = [T0 + i * 1000 for i in range(4500)]
    times[2000] = times[1999]
    holder.append(Pages([make_fill(10_000 + i, t) for i, t in enumerate(times)]))
    client, _clock, _slept = client_for(url)
    manifest, stats = fetch_fills(client, WALLET, T0, T0 + 86_400_000, tmp_path / "h")
    assert (stats.pages, stats.items, stats.duplicates) == (3, 4502, 2)
    assert manifest["rows"] == {"target_fills": 4500}
    assert manifest["missing"] == ["klines_1m", "exchange_info"] and "pass --klines" in manifest["missing_note"]
    assert [r["startTime"] for r in holder[0].requests] == [T0, times[1999], T0 + 3_998_000]
    assert all(r["endTime"] == T0 + 86_400_000 - 1 and r["user"] == WALLET for r in holder[0].requests)
    table = pq.ParquetDataset(tmp_path / "h" / "target_fills").read().sort_by("tid")
    assert table.column("tid").to_pylist() == list(range(10_000, 14_500))
    first = table.slice(0, 1).to_pylist()[0]
    assert (first["px"], first["sz"], first["fee"], first["oid"], first["dir"]) == ("60050.5", "0.0125", "0.26",
                                                                                    10_900, "Open Long")
    assert open_history(tmp_path / "h").manifest["target_wallet"] == WALLET


def test_stop_at_until_and_an_empty_page(tmp_path: Path, loopback: tuple[str, list[Pages]]) -> None:
    url, holder = loopback
    holder.append(Pages([make_fill(1, T0 + 5_000), make_fill(2, T0 + 60_000), make_fill(3, T0 + 120_000)]))
    client, _clock, _slept = client_for(url)
    fills = fetch_pages(client, WALLET, T0, T0 + 60_000)  # --until is exclusive
    assert [f["tid"] for f in fills] == [1]
    holder[0] = Pages([])
    stats = FetchStats()
    assert fetch_pages(client, WALLET, T0, T0 + 60_000, stats) == [] and stats.pages == 1


def test_429_then_success_waits_the_cooldown(loopback: tuple[str, list[Pages]]) -> None:
    url, holder = loopback
    holder.append(Pages([make_fill(1, T0 + 5_000)], script=[(429, {"error": "rate limited"}, {"Retry-After": "2"})]))
    client, _clock, slept = client_for(url)
    fills = fetch_pages(client, WALLET, T0, T0 + 60_000)
    assert [f["tid"] for f in fills] == [1] and len(holder[0].requests) == 2
    assert sum(slept) >= 2.0  # the Retry-After was honoured on the injected clock


def test_malformed_page_is_one_clear_error(loopback: tuple[str, list[Pages]]) -> None:
    url, holder = loopback
    holder.append(Pages([], script=[(200, {"oops": 1}, {})] * 5))  # not a list, every attempt
    client, _clock, _slept = client_for(url)
    with pytest.raises(BadInput) as exc:
        fetch_pages(client, WALLET, T0, T0 + 60_000)
    text = str(exc.value)
    assert "MALFORMED_RESPONSE" in text and "userFillsByTime page 0" in text and "expected a list" in text
    assert len(holder[0].requests) == 5  # retried as the adapter retries an unreadable body


def test_cli_fetch_writes_a_history_and_a_bad_item_exits_2(tmp_path: Path, loopback: tuple[str, list[Pages]],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url, holder = loopback
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("BINANCE_API_SECRET", "s3cret-never-printed")
    holder.append(Pages([make_fill(1, T0 + 5_000), make_fill(2, T0 + 65_000, tid_less=True)]))
    r = runner.invoke(app, ["history", "fetch-fills", "--wallet", WALLET.upper().replace("0X", "0x"), "--since",
                            "2026-01-24T10:00:00Z", "--until", "2026-01-24T11:00:00Z", "--url", url,
                            "--out", str(tmp_path / "ok")])
    assert r.exit_code == 0, r.output
    assert "2 target fills of " + WALLET in r.output and "pass --klines" in r.output
    assert "s3cret" not in r.output and "s3cret" not in (tmp_path / "ok" / "manifest.json").read_text()
    tids = pq.ParquetDataset(tmp_path / "ok" / "target_fills").read().column("tid").to_pylist()
    assert tids == [1, None]  # the tid-less fill is kept as the venue sent it
    bad = make_fill(3, T0 + 5_000)
    bad["sz"] = "-1"
    holder[0] = Pages([bad])
    r = runner.invoke(app, ["history", "fetch-fills", "--wallet", WALLET, "--since", "2026-01-24", "--until",
                            "2026-01-25", "--url", url, "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "page 0 page0[0]" in lines[0] and "sz: -1 is not positive" in lines[0], r.output
    r = runner.invoke(app, ["history", "fetch-fills", "--wallet", "0x123", "--since", "2026-01-24",
                            "--out", str(tmp_path / "w")])
    assert r.exit_code == 2 and "expected a 0x-prefixed 40-hex-digit address" in r.output


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 400), min_size=0, max_size=5000), st.integers(0, 400))
def test_generated_pages_fetch_every_fill_once(offsets: list[int], cut: int) -> None:
    """Whatever the times (many fills sharing a second), the fetch returns each fill in the window once."""
    fills = [make_fill(100 + i, T0 + off * 1000) for i, off in enumerate(offsets)]
    per_ms: dict[int, int] = {}
    for f in fills:
        per_ms[f["time"]] = per_ms.get(f["time"], 0) + 1
    pages = Pages(fills)
    client, _clock, _slept = client_for(session=pages)
    until = T0 + cut * 1000
    if max(per_ms.values(), default=0) >= 2000:  # the venue cannot page past 2000 fills in one ms
        with pytest.raises(BadInput, match="more than 2000 fills in one millisecond"):
            fetch_pages(client, WALLET, T0, until)
        return
    got = fetch_pages(client, WALLET, T0, until)
    want = sorted((f["time"], f["tid"]) for f in fills if f["time"] < until)
    assert [(f["time"], f["tid"]) for f in got] == want
