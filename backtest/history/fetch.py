"""`hlcore history fetch-fills`: a target wallet's fills from Hyperliquid's `userFillsByTime`, as a history.

Pages go through the copy-trader's own Hyperliquid client (`build_venues`: its `VenueHttp` with the
settings' timeout, weight and request limiters, 429 cooldown and retry schedule; an unreadable body
is retried as the adapter retries it). Paging is the copy-trader's (copytrader §4.1): at most 2000
fills a page, the next `startTime` is the page's last fill time, the boundary millisecond comes
twice and is deduplicated by the copy-trader's fill identity (`Fill.fill_id`: `tid`, or the
synthetic id of a tid-less fill); a short page, or `--until`, ends it. Every raw field is kept.

Only the wallet address (public) is sent; no key is read, so nothing secret can reach the output.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from backtest.history.copyrows import fill_rows_to_tables, write_copy_history
from backtest.history.dataset import Writer, iso
from hlcore.adapters.http import VenueError
from hlcore.adapters.hyperliquid.client import (
    HISTORY_LIMIT,
    INFO_WEIGHT,
    ITEMS_PER_EXTRA_WEIGHT,
    PAGE_LIMIT,
    HyperliquidClient,
)
from hlcore.adapters.hyperliquid.parse import FillsPage, ParseError, parse_fill, parse_fills
from hlcore.engine.clock import Clock, SystemClock
from hlcore.errors import BadInput, Problem
from hlcore.workspace import Workspace

SOURCE = "fetch-fills:userFillsByTime"


@dataclass
class FetchStats:
    """What the paging did (printed, and kept in the manifest)."""

    pages: int = 0
    items: int = 0
    duplicates: int = 0


def hyperliquid_client(ws: Workspace, *, url: str | None = None, clock: Clock | None = None,
                       sleep: Callable[[float], None] | None = None, rng: random.Random | None = None,
                       session: Any = None) -> HyperliquidClient:
    """The copy-trader's Hyperliquid client as `hlcore live --app copytrader` builds it (no keys:
    backfill-only mode never builds the Binance side), optionally pointed at another info URL."""
    from hlcore.jobs.copytrade.service import Wiring, build_venues

    wiring = Wiring(clock or SystemClock(), sleep or time.sleep, rng or random.Random(),
                    lambda _name: session or requests.Session(), {})
    client = build_venues(ws, "backfill-only", wiring).hyperliquid
    if url is not None:  # the same client, another host (a mirror, or a test's loopback stub)
        client.http.base_url = url.rstrip("/")
    return client


def fetch_pages(client: HyperliquidClient, wallet: str, since_ms: int, until_ms: int,
                stats: FetchStats | None = None) -> list[dict[str, Any]]:
    """Every raw fill of `wallet` in `[since_ms, until_ms)`, oldest first, unique by fill identity."""
    stats = stats if stats is not None else FetchStats()
    by_id: dict[int, dict[str, Any]] = {}
    start, end = since_ms, until_ms - 1
    while True:
        body = {"type": "userFillsByTime", "user": wallet, "startTime": start, "endTime": end,
                "aggregateByTime": False}
        raw, page = _page(client, body, stats.pages)
        stats.pages += 1
        stats.items += page.n_items
        if page.invalid:
            bad = page.invalid[0]
            raise BadInput(Problem(f"{client.http.name} userFillsByTime", f"page {stats.pages - 1} {bad.where}",
                                   f"expected a Hyperliquid fill, got an unreadable one: {bad.reason}"))
        for item, fill in zip(raw, page.fills, strict=True):
            if fill.time_ms > end or fill.time_ms < since_ms:
                continue
            if fill.fill_id in by_id:
                stats.duplicates += 1
                continue
            by_id[fill.fill_id] = dict(item)
        if page.n_items < PAGE_LIMIT:
            break
        next_start = max(f.time_ms for f in page.fills)
        if next_start <= start:
            raise BadInput(Problem(f"{client.http.name} userFillsByTime", f"startTime {start}",
                                   f"more than {PAGE_LIMIT} fills in one millisecond: the venue cannot page past "
                                   "them (expected fewer)"))
        if next_start > end:
            break
        start = next_start
    fills = sorted(by_id.values(), key=lambda f: (int(f["time"]), _fill_id(f)))
    return fills


def _fill_id(item: Mapping[str, Any]) -> int:
    parsed = parse_fill(item)
    return 0 if isinstance(parsed, str) else parsed.fill_id


def _page(client: HyperliquidClient, body: dict[str, Any], index: int) -> tuple[list[Any], FillsPage]:
    """One page through the client's retried info request; its raw items and their parse.
    Weight as the client charges it: the info weight plus what the previous page's items owe."""
    captured: list[Any] = []

    def parse(raw: Any) -> FillsPage | ParseError:
        parsed = parse_fills(raw, page=index)
        if isinstance(parsed, FillsPage):
            captured[:] = raw
        return parsed

    weight, client.owed_weight = INFO_WEIGHT + client.owed_weight, 0
    result = client._info(body, parse, weight)  # the adapter's own retry of unreadable bodies
    if isinstance(result, VenueError):
        raise BadInput(Problem(f"{client.http.name} {client.http.base_url}", f"userFillsByTime page {index}",
                               f"{result.code}: {result.message} (expected a list of fills)"))
    client.owed_weight = math.ceil(result.n_items / ITEMS_PER_EXTRA_WEIGHT)
    return captured, result


def fetch_fills(client: HyperliquidClient, wallet: str, since_ms: int, until_ms: int, out: Path,
                klines: list[Path] | None = None, exchange_info: Path | None = None,
                now_ms: int | None = None) -> tuple[dict[str, Any], FetchStats]:
    """Fetch, then write the copy-trade history (target_fills, and klines/exchange_info if given)."""
    stats = FetchStats()
    observed = now_ms if now_ms is not None else client.http.clock.now_ms()
    fills = fetch_pages(client, wallet.lower(), since_ms, until_ms, stats)
    rows = [api_to_row(f, observed) for f in fills]
    writer = Writer(out, source=SOURCE, app="copytrader")
    extra = write_copy_history(writer, fill_rows_to_tables(rows), klines or [], exchange_info)
    manifest = writer.close({
        "target_wallet": wallet.lower(),
        "fetch": {"since": iso(since_ms), "until": iso(until_ms), "pages": stats.pages, "items": stats.items,
                  "duplicates_dropped": stats.duplicates},
        "assumptions": [
            f"Hyperliquid serves only a wallet's most recent {HISTORY_LIMIT} fills: older fills in the window "
            "are not in this history (compare the span's start with --since)",
            "observed_ts is when this fetch ran, not when a live copy-trader would have seen each fill",
            "fills come unaggregated (aggregateByTime false), each with every field the venue sent"],
        **extra})
    return manifest, stats


def api_to_row(item: Mapping[str, Any], observed_ts: int) -> dict[str, Any]:
    """A raw `userFillsByTime` item as a `target_fills` row (every field the venue sends)."""

    def opt(key: str) -> Any:
        value = item.get(key)
        return None if value is None else str(value)

    return {"time": int(item["time"]), "observed_ts": observed_ts, "coin": str(item["coin"]), "px": str(item["px"]),
            "sz": str(item["sz"]), "side": str(item["side"]), "start_position": opt("startPosition"),
            "dir": opt("dir"), "closed_pnl": opt("closedPnl"), "hash": str(item["hash"]), "oid": int(item["oid"]),
            "crossed": item.get("crossed") if isinstance(item.get("crossed"), bool) else None,
            "fee": opt("fee"), "tid": None if item.get("tid") is None else int(item["tid"]),
            "fee_token": opt("feeToken"), "twap_id": None if item.get("twapId") is None else int(item["twapId"]),
            "source": SOURCE}
