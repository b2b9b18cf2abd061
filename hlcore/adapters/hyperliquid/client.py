"""Hyperliquid info-API reads: one method per request type, parsed values or a `VenueError`.

Transport (timeouts, weight limiter, 429 cooldown, retries) belongs to `VenueHttp`; this module
builds request bodies, paginates `userFillsByTime` (copytrader §4.1), charges request weight and
turns an unreadable body into a retried `MALFORMED_RESPONSE` (§4.2 Retries: "a non-list body is a
failure"). Nothing raises past it (house rule 7). Venue doc:
https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/info-endpoint
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from hlcore.adapters.http import MALFORMED_RESPONSE, HttpResult, VenueError, VenueHttp
from hlcore.adapters.hyperliquid.parse import (
    Fill,
    FillsPage,
    Invalid,
    LeaderboardParse,
    Meta,
    Mids,
    ParseError,
    PositionRow,
    parse_all_mids,
    parse_clearinghouse_state,
    parse_fills,
    parse_leaderboard,
    parse_meta,
)

T = TypeVar("T")

# Venue facts (info-endpoint docs), not policy.
PAGE_LIMIT = 2000           # fills per userFills/userFillsByTime response
HISTORY_LIMIT = 10_000      # only the most recent 10000 fills are served
INFO_WEIGHT = 20            # most info requests (meta, userFills*)
LIGHT_WEIGHT = 2            # clearinghouseState, allMids
ITEMS_PER_EXTRA_WEIGHT = 20  # userFills*: +1 weight per 20 items returned


@dataclass(frozen=True)
class FillsHistory:
    """A whole `userFillsByTime` pagination. `fills` are unique by fill id, oldest first.

    `complete` means a short page ended the range. `history_limit_reached` means the venue's
    10000-fill limit was reached before the range was covered (the caller's `backfill_result` fact,
    which halts `BACKFILL_WINDOW_EXCEEDED`). Neither, with a full page that did not advance the
    start time (2000 fills in one ms), is an incomplete fetch: the success stamp must not move.
    """

    fills: tuple[Fill, ...]
    invalid: tuple[Invalid, ...]
    pages: int
    n_items: int
    complete: bool
    history_limit_reached: bool
    start_ms: int
    end_ms: int | None

    def as_fact(self) -> dict[str, Any]:
        """Fields of the `backfill_result` fact (rules/facts.yaml)."""
        return {"complete": self.complete, "history_limit_reached": self.history_limit_reached,
                "fills": len(self.fills)}


class HyperliquidClient:
    """Reads from POST `{info_path}` (and the stats-data leaderboard), over one `VenueHttp`.

    Item weight (+1 per 20 fills) is only known after a response, so it is owed and added to the
    `weight=` of this client's next fills request: the limiter sees every unit, one request late.
    """

    def __init__(self, http: VenueHttp, info_path: str = "/info"):
        self.http = http
        self.info_path = info_path
        self.owed_weight = 0

    # ------------------------------------------------------------------ fills
    def user_fills_by_time(self, user: str, start_ms: int, end_ms: int | None = None) -> FillsHistory | VenueError:
        """All fills in `[start_ms, end_ms]`, paginated per copytrader §4.1: up to 2000 per page; the
        next `startTime` is the page's max `time` (the boundary ms is fetched twice and deduplicated);
        a page of fewer than 2000 ends it. Any page failing fails the whole fetch."""
        by_id: dict[int, Fill] = {}
        invalid: list[Invalid] = []
        start, pages, n_items = start_ms, 0, 0
        complete = limit_reached = False
        while True:
            body: dict[str, Any] = {"type": "userFillsByTime", "user": user, "startTime": start,
                                    "aggregateByTime": False}
            if end_ms is not None:
                body["endTime"] = end_ms
            page = self._fills_request(body, page=pages)
            if isinstance(page, VenueError):
                return page
            pages += 1
            n_items += page.n_items
            for fill in page.fills:
                by_id.setdefault(fill.fill_id, fill)
            invalid.extend(page.invalid)
            if page.n_items < PAGE_LIMIT:
                complete = True
                break
            if n_items >= HISTORY_LIMIT:
                # Five full pages are the venue's whole retention: fills older than these may be gone.
                # (Counting raw items, overlaps included, stops no later than counting unique ones.)
                limit_reached = True
                break
            next_start = max((f.time_ms for f in page.fills), default=start)
            if next_start <= start:
                break  # no progress possible: incomplete, never loop
            start = next_start
        fills = tuple(sorted(by_id.values(), key=lambda f: (f.time_ms, f.fill_id)))
        return FillsHistory(fills, tuple(invalid), pages, n_items, complete, limit_reached, start_ms, end_ms)

    def user_fills(self, user: str) -> FillsPage | VenueError:
        """The most recent fills (at most 2000), as the venue orders them (newest first)."""
        return self._fills_request({"type": "userFills", "user": user})

    # ------------------------------------------------------------------ state and market data
    def clearinghouse_state(self, user: str, assets: Iterable[str]) -> dict[str, PositionRow] | VenueError:
        """One wallet's perp positions for `assets` (`monitor.assets` in settings; monitor §4.2; weight 2)."""
        wanted = tuple(assets)
        return self._info({"type": "clearinghouseState", "user": user},
                          lambda body: parse_clearinghouse_state(body, wanted), LIGHT_WEIGHT)

    def meta(self) -> Meta | VenueError:
        return self._info({"type": "meta"}, parse_meta, INFO_WEIGHT)

    def all_mids(self) -> Mids | VenueError:
        return self._info({"type": "allMids"}, parse_all_mids, LIGHT_WEIGHT)

    def leaderboard(self, url: str, window: str = "month") -> LeaderboardParse | VenueError:
        """GET the stats-data leaderboard (monitor §4.1). A body without `leaderboardRows` is not an
        error here: it returns `schema_ok=False` for the policy's `schema_changed`. Weight 0: that
        host is outside the info API's per-IP budget."""
        result = self.http.request("GET", "", url=url, weight=0)
        if isinstance(result, VenueError):
            return result
        return parse_leaderboard(result.body, window)

    # ------------------------------------------------------------------ internals
    def _fills_request(self, body: dict[str, Any], page: int | None = None) -> FillsPage | VenueError:
        weight, self.owed_weight = INFO_WEIGHT + self.owed_weight, 0
        result = self._info(body, lambda raw: parse_fills(raw, page=page), weight)
        if isinstance(result, FillsPage):
            self.owed_weight = math.ceil(result.n_items / ITEMS_PER_EXTRA_WEIGHT)
        return result

    def _info(self, body: dict[str, Any], parse: Callable[[Any], T | ParseError], weight: int) -> T | VenueError:
        """POST one info request. An unreadable body counts as a failed attempt under the same retry
        policy (and injected sleep/rng) as transport failures; transport errors come back already
        retried by `VenueHttp` and are returned as they are."""
        retry = self.http.retry
        attempts = max(1, retry.max_attempts)
        error: ParseError | None = None
        result: HttpResult | VenueError | None = None
        for attempt in range(1, attempts + 1):
            result = self.http.request("POST", self.info_path, json_body=body, weight=weight)
            if isinstance(result, VenueError):
                return result
            parsed = parse(result.body)
            if not isinstance(parsed, ParseError):
                return parsed
            error = parsed
            if attempt < attempts:
                self.http.sleep(retry.delay_ms(attempt, self.http.rng) / 1000)
        status = result.status if isinstance(result, HttpResult) else None
        return VenueError(MALFORMED_RESPONSE, f"{self.http.name} {error}", status=status)
