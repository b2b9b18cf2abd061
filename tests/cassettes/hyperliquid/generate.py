"""Generate the vcrpy cassettes in this directory, deterministically (seeded RNG, fixed clock).

    python tests/cassettes/hyperliquid/generate.py [outdir]

The bodies follow the current documented info-API shapes (`tid`, `feeToken`, `twapId`,
`builderFee`, `time`, `cumFunding`, `maxLeverage`, `marginTables`, isolated leverage with
`rawUsd`; https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/info-endpoint), with
string decimals as the venue sends them. Fills come from a small simulated trader whose positions
are tracked, so `startPosition`, `dir`, `closedPnl` and fees are consistent with each other. A tiny
venue model serves `userFillsByTime`: fills with `startTime <= time <= endTime`, oldest first, at
most 2000 per response, and only the wallet's 10000 most recent fills. Each cassette is then the
exact request sequence `HyperliquidClient` sends against that model.

tests/unit/test_hyperliquid_client.py imports the constants below and checks that running this
script reproduces the committed files byte for byte.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from email.utils import formatdate
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SEED = 20260124
T0 = 1_769_248_800_000  # 2026-01-24T10:00:00Z, the tests' clock
INFO_URL = "https://api.hyperliquid.xyz/info"
LEADERBOARD_URL = "https://stats-data.hyperliquid.xyz/Mainnet/leaderboard"
PAGE_LIMIT = 2000
RETENTION = 10_000
MAX_ATTEMPTS = 5  # RetryPolicy().max_attempts: cassettes that fail every attempt hold this many answers

PAGINATION_USER = "0x8f3a61c0a5d1e7b2c94e0d36f1b7a2e5c0d9b413"
HISTORY_USER = "0x2e4b9c7d1a6f3085e2d7c4b1a9f60e3d5c8b7a21"
RETRY_USER = "0x51c0d7e9a3b24f68e1d0c9b7a5f3e2d1c0b9a876"
MALFORMED_USER = "0xa0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9"
MALFORMED_THEN_OK_USER = "0x0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
RATE_LIMITED_USER = "0x7d6c5b4a3928170f6e5d4c3b2a1908f7e6d5c4b3"
RATE_LIMITED_THEN_OK_USER = "0x3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a09"
STATE_USERS = {  # current-shape clearinghouseState: positions in all three assets / none / others only
    "full": "0xc1a9e0d4b7f2a6e3d8c5b0f9a4e7d2c6b1f8a3e5",
    "empty": "0x9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a",
    "others": "0x4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70",
}

# coin: (szDecimals, maxLeverage, mid at T0). Order = the universe order of the generated meta.
PERPS: dict[str, tuple[int, int, str]] = {
    "BTC": (5, 40, "97184.5"), "ETH": (4, 25, "3312.45"), "ATOM": (2, 5, "6.2381"), "MATIC": (1, 20, "0.41233"),
    "DYDX": (1, 10, "1.1542"), "SOL": (2, 20, "187.42"), "AVAX": (2, 10, "36.128"), "BNB": (3, 10, "688.41"),
    "APE": (1, 10, "1.0823"), "OP": (1, 10, "1.8712"), "LTC": (2, 10, "112.84"), "ARB": (1, 10, "0.71412"),
    "DOGE": (0, 10, "0.33127"), "INJ": (1, 10, "21.384"), "SUI": (1, 10, "4.2651"), "kPEPE": (0, 10, "0.019342"),
    "LINK": (1, 10, "24.118"), "XRP": (0, 20, "2.9184"), "HYPE": (2, 10, "24.317"), "WIF": (0, 5, "1.6127"),
    "TRUMP": (1, 10, "18.734"), "FARTCOIN": (1, 5, "1.2211"),
}
DELISTED = {"MATIC"}
ONLY_ISOLATED = {"TRUMP"}
SPOT_MIDS = {"@1": "0.000214", "@107": "24.309", "PURR/USDC": "0.20871", "@142": "97102.0"}


# ---------------------------------------------------------------------------------------- helpers
def fmt(value: Decimal) -> str:
    """The venue's decimal strings: plain notation, at least one fractional digit ("0.0", "97123.0")."""
    text = format(value.normalize(), "f") if value else "0"
    return text if "." in text else f"{text}.0"


def q(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def round_px(px: Decimal, sz_decimals: int) -> Decimal:
    """Perp prices: at most 5 significant figures and 6 − szDecimals decimals."""
    sig = q(px, max(0, 4 - px.adjusted()))
    return q(sig, min(6 - sz_decimals, max(0, 4 - sig.adjusted())))


def random_address(rng: random.Random, mixed_case: bool = False) -> str:
    digits = "".join(rng.choice("0123456789abcdef") for _ in range(40))
    if mixed_case:
        digits = "".join(c.upper() if c.isalpha() and rng.random() < 0.5 else c for c in digits)
    return "0x" + digits


def random_hash(rng: random.Random) -> str:
    return "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(64))


def http_date(ms: int) -> str:
    return formatdate(ms / 1000, usegmt=True)


# ------------------------------------------------------------------------------------ fill model
@dataclass
class Book:
    """What the simulated trader holds: signed size and average entry per coin."""

    size: dict[str, Decimal] = field(default_factory=dict)
    entry: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class Trader:
    """A perp trader on a handful of coins (plus the odd spot and builder-dex fill).

    Taker transactions sweep 1..n levels in one ms under one hash and oid; maker fills are single
    fills under the counterparty's hash. Sizes respect szDecimals and prices the tick rules, and
    positions random-walk with mean reversion so increases, decreases and flips all occur.
    """

    rng: random.Random
    user: str
    coins: dict[str, float]
    start_ms: int
    mean_gap_ms: float
    twap_share: float = 0.0
    spot_share: float = 0.02
    dex_share: float = 0.01
    book: Book = field(default_factory=Book)
    fills: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.now = self.start_ms
        self.tid = self.rng.randrange(700_000_000_000_000, 720_000_000_000_000)
        self.oid = self.rng.randrange(290_000_000_000, 300_000_000_000)
        self.twap_id = self.rng.randrange(900_000, 1_000_000)
        self.mids = {coin: Decimal(PERPS[coin][2]) for coin in self.coins}
        for coin in self.coins:  # an opening inventory, so the first fills are not all opens
            sz_dec = PERPS[coin][0]
            notional = Decimal(self.rng.randrange(-60_000, 60_000))
            self.book.size[coin] = q(notional / self.mids[coin], sz_dec)
            self.book.entry[coin] = self.mids[coin]

    def run(self, n_fills: int) -> list[dict[str, Any]]:
        while len(self.fills) < n_fills:
            self.now += max(1, int(self.rng.expovariate(1 / self.mean_gap_ms)))
            roll = self.rng.random()
            if roll < self.spot_share:
                self._spot()
            elif roll < self.spot_share + self.dex_share:
                self._builder_dex()
            elif roll < self.spot_share + self.dex_share + self.twap_share:
                self._perp(self._pick_coin(), twap=True)
            else:
                self._perp(self._pick_coin(), taker=self.rng.random() < 0.55)
        return self.fills[:n_fills]

    def _pick_coin(self) -> str:
        return self.rng.choices(list(self.coins), weights=list(self.coins.values()))[0]

    def _next_tid(self) -> int:
        self.tid += self.rng.randrange(1, 4_000_000)
        return self.tid

    def _next_oid(self) -> int:
        self.oid += self.rng.randrange(1, 6_000)
        return self.oid

    def _perp(self, coin: str, taker: bool = True, twap: bool = False) -> None:
        sz_dec = PERPS[coin][0]
        mid = self.mids[coin] = round_px(self.mids[coin] * Decimal(str(1 + self.rng.gauss(0, 0.0004))), sz_dec)
        position = self.book.size[coin]
        cap = Decimal(250_000) / mid
        # Mean reversion: the further from flat, the likelier the next trade reduces.
        lean = float(position / cap) if cap else 0.0
        side = "A" if self.rng.random() < 0.5 + 0.45 * max(-1.0, min(1.0, lean)) else "B"
        notional = Decimal(str(round(self.rng.lognormvariate(8.6, 1.1), 2)))
        total = q(notional / mid, sz_dec)
        if self.rng.random() < 0.12 and position:  # close out or flip through zero
            total = q(abs(position) * Decimal(str(self.rng.choice([1, 1, 1.4, 2.2]))), sz_dec)
            side = "A" if position > 0 else "B"
        if total <= 0:
            total = Decimal(1).scaleb(-sz_dec)
        n = 1 if (twap or not taker) else min(20, 1 + int(self.rng.expovariate(0.45)))
        parts = self._split(total, n, sz_dec)
        liquidation = None
        if taker and not twap and position and self.rng.random() < 0.004:  # rare: this wallet is liquidated
            side = "A" if position > 0 else "B"
            liquidation = {"liquidatedUser": self.user, "markPx": fmt(mid), "method": "market"}
        tx_hash = "0x" + "0" * 64 if twap else random_hash(self.rng)
        oid = self._next_oid()
        tick = Decimal(1).scaleb(-min(6 - sz_dec, max(0, 4 - mid.adjusted())))
        px = mid + (tick if side == "B" else -tick) * (1 if taker else -1)
        for sz in parts:
            self._fill(coin, px, sz, side, tx_hash, oid, crossed=taker, twap=twap, liquidation=liquidation)
            if taker and self.rng.random() < 0.5:
                px += tick if side == "B" else -tick  # the sweep walks the book

    def _split(self, total: Decimal, n: int, sz_dec: int) -> list[Decimal]:
        unit = Decimal(1).scaleb(-sz_dec)
        n = max(1, min(n, int(total / unit)))
        cuts = sorted(self.rng.sample(range(1, int(total / unit)), n - 1)) if n > 1 else []
        edges = [0, *cuts, int(total / unit)]
        return [(edges[i + 1] - edges[i]) * unit for i in range(n)]

    def _fill(self, coin: str, px: Decimal, sz: Decimal, side: str, tx_hash: str, oid: int, *, crossed: bool,
              twap: bool, liquidation: dict[str, Any] | None) -> None:
        start = self.book.size[coin]
        signed = sz if side == "B" else -sz
        end = start + signed
        entry = self.book.entry[coin]
        closed = min(abs(start), sz) if start and (start > 0) != (signed > 0) else Decimal(0)
        pnl = closed * (px - entry) * (1 if start > 0 else -1) if closed else Decimal(0)
        if start == 0 or (start > 0) == (signed > 0):
            direction = "Open Long" if side == "B" else "Open Short"
            self.book.entry[coin] = (abs(start) * entry + sz * px) / abs(end)
        elif abs(end) == 0 or (end > 0) == (start > 0):
            direction = "Close Long" if start > 0 else "Close Short"
        else:
            direction = "Long > Short" if start > 0 else "Short > Long"
            self.book.entry[coin] = px
        self.book.size[coin] = end
        rate = Decimal("0.00045") if crossed else Decimal("0.00015")
        if not crossed and self.rng.random() < 0.1:
            rate = Decimal("-0.00002")  # a maker rebate tier
        fill: dict[str, Any] = {
            "coin": coin, "px": fmt(px), "sz": fmt(sz), "side": side, "time": self.now, "startPosition": fmt(start),
            "dir": direction, "closedPnl": fmt(q(pnl, 6)), "hash": tx_hash, "oid": oid, "crossed": crossed,
            "fee": fmt(q(px * sz * rate, 6)), "tid": self._next_tid(), "feeToken": "USDC",
            "twapId": self.twap_id if twap else None,
        }
        if self.rng.random() < 0.03:
            fill["builderFee"] = fmt(q(px * sz * Decimal("0.0001"), 6))
        if liquidation is not None:
            fill["liquidation"] = liquidation
        self.fills.append(fill)

    def _spot(self) -> None:
        coin = self.rng.choice(["@107", "@142", "PURR/USDC"])
        side = self.rng.choice("BA")
        px = Decimal(SPOT_MIDS[coin])
        sz_dec = {"@107": 2, "@142": 5, "PURR/USDC": 0}[coin]
        sz = max(q(Decimal(str(self.rng.uniform(20, 4000))) / px, sz_dec), Decimal(1).scaleb(-sz_dec))
        self.fills.append({
            "coin": coin, "px": fmt(px), "sz": fmt(sz), "side": side, "time": self.now,
            "startPosition": fmt(q(Decimal(str(self.rng.uniform(0, 5000))), 2)),
            "dir": "Buy" if side == "B" else "Sell",
            "closedPnl": "0.0", "hash": random_hash(self.rng), "oid": self._next_oid(), "crossed": True,
            "fee": fmt(q(sz * Decimal("0.0007") * (px if side == "A" else 1), 6)), "tid": self._next_tid(),
            "feeToken": "USDC" if side == "A" else coin, "twapId": None,
        })

    def _builder_dex(self) -> None:
        coin, px = self.rng.choice([("xyz:XYZ100", Decimal("25512.0")), ("xyz:TSLA", Decimal("426.81"))])
        side = self.rng.choice("BA")
        sz = q(Decimal(str(self.rng.uniform(500, 5000))) / px, 4)
        self.fills.append({
            "coin": coin, "px": fmt(px), "sz": fmt(sz), "side": side, "time": self.now, "startPosition": "0.0",
            "dir": "Open Long" if side == "B" else "Open Short", "closedPnl": "0.0", "hash": random_hash(self.rng),
            "oid": self._next_oid(), "crossed": True, "fee": fmt(q(px * sz * Decimal("0.0005"), 6)),
            "tid": self._next_tid(), "feeToken": "USDC", "twapId": None,
        })


def serve(history: list[dict[str, Any]], start: int, end: int | None) -> list[dict[str, Any]]:
    """The venue model: retained fills in [start, end], oldest first, at most one page."""
    retained = sorted(history, key=lambda f: (f["time"], f["tid"]))[-RETENTION:]
    hits = [f for f in retained if f["time"] >= start and (end is None or f["time"] <= end)]
    return hits[:PAGE_LIMIT]


def paginate(history: list[dict[str, Any]], user: str, start: int, end: int | None) -> list[tuple[dict, list]]:
    """(request body, page) pairs exactly as HyperliquidClient.user_fills_by_time asks for them."""
    pairs, seen, returned = [], 0, 0
    while True:
        body = {"type": "userFillsByTime", "user": user, "startTime": start, "aggregateByTime": False}
        if end is not None:
            body["endTime"] = end
        page = serve(history, start, end)
        pairs.append((body, page))
        returned += len(page)
        seen += 1
        if len(page) < PAGE_LIMIT or returned >= RETENTION:
            return pairs
        start = max(f["time"] for f in page)


# ------------------------------------------------------------------------------------ cassettes
def request(body: dict[str, Any] | None, method: str = "POST", uri: str = INFO_URL) -> dict[str, Any]:
    text = None if body is None else json.dumps(body)  # as requests' json= sends it
    headers: dict[str, list[str]] = {"Accept": ["*/*"], "Accept-Encoding": ["gzip, deflate"],
                                     "Connection": ["keep-alive"], "User-Agent": ["python-requests/2.34.2"]}
    if text is not None:
        headers["Content-Length"] = [str(len(text.encode()))]
        headers["Content-Type"] = ["application/json"]
    return {"body": text, "headers": headers, "method": method, "uri": uri}


def response(body: Any, at_ms: int, status: int = 200, *, raw: str | None = None,
             content_type: str = "application/json") -> dict[str, Any]:
    text = raw if raw is not None else json.dumps(body, separators=(",", ":"))
    messages = {200: "OK", 429: "Too Many Requests", 502: "Bad Gateway"}
    return {
        "body": {"string": text},
        "headers": {"access-control-allow-origin": ["*"], "access-control-expose-headers": ["*"],
                    "content-length": [str(len(text.encode()))], "content-type": [content_type],
                    "date": [http_date(at_ms)], "vary": ["origin, access-control-request-method, "
                                                         "access-control-request-headers"]},
        "status": {"code": status, "message": messages[status]},
    }


def cassette(interactions: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    data = {"interactions": [{"request": req, "response": resp} for req, resp in interactions], "version": 1}
    return yaml.safe_dump(data, sort_keys=True, width=120, allow_unicode=True)


def pagination(rng: random.Random) -> tuple[str, int, int]:
    """A busy market-making wallet: 3 pages (2000, 2000, 13) over about eight minutes."""
    trader = Trader(rng, PAGINATION_USER, {"BTC": 5, "ETH": 4, "SOL": 2, "HYPE": 3, "DOGE": 1}, T0 - 540_000,
                    mean_gap_ms=150)
    history = trader.run(4_600)
    start = history[0]["time"]
    probe = paginate(history, PAGINATION_USER, start, None)
    third_start = probe[2][0]["startTime"]
    tail = [f["time"] for f in sorted(history, key=lambda f: (f["time"], f["tid"])) if f["time"] >= third_start]
    end = tail[12]  # endTime keeps the third page at exactly 13 fills
    assert tail[13] > end, "the 14th fill shares the 13th's ms; pick another seed"
    pairs = paginate(history, PAGINATION_USER, start, end)
    assert [len(p) for _, p in pairs] == [2000, 2000, 13], [len(p) for _, p in pairs]
    at = T0
    return cassette([(request(b), response(p, at + 300 * i)) for i, (b, p) in enumerate(pairs)]), start, end


def history_limit(rng: random.Random) -> tuple[str, int, int]:
    """A wallet with 13000 fills since the range start: the venue keeps only the last 10000."""
    trader = Trader(rng, HISTORY_USER, {"BTC": 3, "ETH": 3, "SOL": 2, "HYPE": 2, "XRP": 1, "kPEPE": 1}, T0 - 3_000_000,
                    mean_gap_ms=220)
    history = trader.run(13_000)
    start, end = T0 - 3_000_000, T0
    pairs = paginate(history, HISTORY_USER, start, end)
    assert [len(p) for _, p in pairs] == [2000] * 5, [len(p) for _, p in pairs]
    return cassette([(request(b), response(p, T0 + 300 * i)) for i, (b, p) in enumerate(pairs)]), start, end


def retry_5xx(rng: random.Random) -> tuple[str, int, int]:
    """A quieter wallet's 10-minute poll: one 502 from the edge, then 41 fills (with two TWAP slices)."""
    trader = Trader(rng, RETRY_USER, {"ETH": 3, "HYPE": 3, "BTC": 1}, T0 - 600_000, mean_gap_ms=14_000, spot_share=0.05,
                    dex_share=0.05)
    fills = trader.run(19)
    for _ in range(2):  # two slices of one HYPE TWAP: same all-zero hash, minutes apart
        trader.now += 61_000
        trader._perp("HYPE", twap=True)
    fills = trader.run(41)
    assert fills[-1]["time"] <= T0, "fills past endTime; pick another seed"
    body = {"type": "userFillsByTime", "user": RETRY_USER, "startTime": T0 - 605_000, "aggregateByTime": False,
            "endTime": T0}
    bad_gateway = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                   "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n")
    return cassette([(request(body), response(None, T0, 502, raw=bad_gateway, content_type="text/html")),
                     (request(body), response(fills, T0 + 300))]), T0 - 605_000, T0


def malformed(rng: random.Random) -> str:
    """`null` where a list belongs: every attempt for one wallet, only the first for another."""
    trader = Trader(rng, MALFORMED_THEN_OK_USER, {"BTC": 1, "ETH": 1}, T0 - 600_000, mean_gap_ms=20_000)
    fills = trader.run(12)
    interactions = []
    for user, answers in ((MALFORMED_USER, [None] * MAX_ATTEMPTS), (MALFORMED_THEN_OK_USER, [None, fills])):
        body = {"type": "userFillsByTime", "user": user, "startTime": T0 - 605_000, "aggregateByTime": False,
                "endTime": T0}
        interactions += [(request(body), response(answer, T0 + 250 * i)) for i, answer in enumerate(answers)]
    return cassette(interactions)


def clearinghouse(rng: random.Random, user_kind: str) -> dict[str, Any]:
    """A current-shape clearinghouseState."""
    positions = []
    coins = {"full": ["BTC", "ETH", "HYPE", "SOL"], "empty": [], "others": ["SOL", "DOGE", "kPEPE"]}[user_kind]
    total_margin = Decimal(0)
    for coin in coins:
        sz_dec, max_lev, mid_text = PERPS[coin]
        mid = Decimal(mid_text)
        szi = q(Decimal(str(rng.uniform(-150_000, 150_000))) / mid, sz_dec)
        entry = round_px(mid * Decimal(str(1 + rng.gauss(0, 0.02))), sz_dec)
        isolated = coin == "HYPE"
        lev = rng.choice([3, 5, 10, min(20, max_lev)])
        value = abs(szi) * mid
        margin = q(value / lev, 6)
        total_margin += margin
        upnl = q(szi * (mid - entry), 6)
        liq = round_px(entry * (1 - Decimal(1) / lev * (1 if szi > 0 else -1) * Decimal("0.9")), sz_dec)
        leverage: dict[str, Any] = {"type": "isolated", "value": lev, "rawUsd": fmt(q(-szi * entry + margin, 6))} \
            if isolated else {"type": "cross", "value": lev}
        positions.append({"type": "oneWay", "position": {
            "coin": coin, "szi": fmt(szi), "leverage": leverage, "entryPx": fmt(entry),
            "positionValue": fmt(q(value, 6)), "unrealizedPnl": fmt(upnl),
            "returnOnEquity": fmt(q(upnl / margin, 8)) if margin else "0.0",
            "liquidationPx": None if coin == "BTC" and szi > 0 else fmt(liq), "marginUsed": fmt(margin),
            "maxLeverage": max_lev,
            "cumFunding": {"allTime": fmt(q(Decimal(str(rng.uniform(-900, 900))), 6)),
                           "sinceOpen": fmt(q(Decimal(str(rng.uniform(-90, 90))), 6)),
                           "sinceChange": fmt(q(Decimal(str(rng.uniform(-9, 9))), 6))},
        }})
    account = q(total_margin * Decimal("2.7") + Decimal(str(round(rng.uniform(1_000, 50_000), 2))), 6)
    summary = {"accountValue": fmt(account), "totalNtlPos": fmt(q(total_margin * 8, 6)),
               "totalRawUsd": fmt(q(account * Decimal("1.3"), 6)), "totalMarginUsed": fmt(total_margin)}
    return {"marginSummary": summary, "crossMarginSummary": summary,
            "crossMaintenanceMarginUsed": fmt(q(total_margin / 4, 6)), "withdrawable": fmt(q(account / 3, 6)),
            "assetPositions": positions, "time": T0 + 120}


def meta_body() -> dict[str, Any]:
    universe = []
    for coin, (sz_dec, max_lev, _) in PERPS.items():
        entry: dict[str, Any] = {"szDecimals": sz_dec, "name": coin, "maxLeverage": max_lev,
                                 "marginTableId": max_lev}
        if coin in ONLY_ISOLATED:
            entry["onlyIsolated"] = True
        if coin in DELISTED:
            entry["isDelisted"] = True
        universe.append(entry)
    tables = [[lev, {"description": "", "marginTiers": [{"lowerBound": "0.0", "maxLeverage": lev}]}]
              for lev in sorted({v[1] for v in PERPS.values()})]
    return {"universe": universe, "marginTables": tables}


def mids_body() -> dict[str, str]:
    mids = {coin: mid for coin, (_, _, mid) in PERPS.items() if coin not in DELISTED}
    return {**mids, **SPOT_MIDS}


def info_current(rng: random.Random) -> str:
    interactions = [(request({"type": "meta"}), response(meta_body(), T0)),
                    (request({"type": "allMids"}), response(mids_body(), T0 + 50))]
    for i, (kind, user) in enumerate(STATE_USERS.items()):
        interactions.append((request({"type": "clearinghouseState", "user": user}),
                             response(clearinghouse(rng, kind), T0 + 100 + 10 * i)))
    return cassette(interactions)


def rate_limited(rng: random.Random) -> str:
    """429 on every attempt for one wallet; 429 then an answer for another."""
    interactions = []
    for i in range(MAX_ATTEMPTS):
        interactions.append((request({"type": "clearinghouseState", "user": RATE_LIMITED_USER}),
                             response(None, T0 + 5_000 * i, 429, raw="null")))
    ok_request = request({"type": "clearinghouseState", "user": RATE_LIMITED_THEN_OK_USER})
    interactions.append((ok_request, response(None, T0, 429, raw="null")))
    interactions.append((ok_request, response(clearinghouse(rng, "full"), T0 + 5_000)))
    return cassette(interactions)


def leaderboard_body(rng: random.Random) -> dict[str, Any]:
    """270 valid rows (month pnl with a long tail, one exact tie) and 9 the monitor must drop."""
    rows = []
    for i in range(270):
        month = Decimal(str(round(rng.paretovariate(1.3) * 40_000 - 20_000, 6)))
        if i == 17:
            month = Decimal(rows[5]["windowPerformances"][2][1]["pnl"])  # an exact tie: wallet_id breaks it
        account = Decimal(str(round(rng.lognormvariate(12, 1.4), 6)))
        perf = []
        for window, scale in (("day", Decimal("0.05")), ("week", Decimal("0.3")), ("month", None),
                              ("allTime", Decimal("3.1"))):
            pnl = month if scale is None else q(month * scale * Decimal(str(rng.uniform(-0.5, 1.5))), 6)
            vlm = q(abs(pnl) * Decimal(str(rng.uniform(20, 400))) + Decimal(str(rng.uniform(0, 1e5))), 6)
            perf.append([window, {"pnl": fmt(pnl), "roi": fmt(q(pnl / account, 8)) if account else "0.0",
                                  "vlm": fmt(vlm)}])
        rows.append({"ethAddress": random_address(rng, mixed_case=rng.random() < 0.2), "accountValue": fmt(account),
                     "windowPerformances": perf, "prize": 0,
                     "displayName": rng.choice([None, None, None, f"trader{rng.randrange(10_000)}",
                                                f"vault-{rng.randrange(100)}"])})
    good_perf = rows[0]["windowPerformances"]
    broken = [
        {**rows[1], "ethAddress": "0x12ab"},                                        # too short
        {**rows[2], "ethAddress": None},                                            # missing
        {**rows[3], "ethAddress": "0x" + "g" * 40},                                 # not hex
        {**rows[4], "ethAddress": rows[4]["ethAddress"] + "0"},                     # 41 digits
        {**rows[6], "ethAddress": random_address(rng), "windowPerformances": good_perf[:2] + good_perf[3:]},
        {**rows[7], "ethAddress": random_address(rng), "windowPerformances": [
            *good_perf[:2], ["month", {"pnl": "NaN", "roi": "0.0", "vlm": "0.0"}], good_perf[3]]},
        {**rows[8], "ethAddress": random_address(rng), "windowPerformances": [
            *good_perf[:2], ["month", {"pnl": None, "roi": None, "vlm": "0.0"}], good_perf[3]]},
        {**rows[9], "ethAddress": random_address(rng), "windowPerformances": [
            *good_perf[:2], ["month", {"pnl": "Infinity", "roi": "0.0", "vlm": "0.0"}], good_perf[3]]},
        "0x" + "1" * 40,                                                            # not an object
    ]
    for row in broken:
        rows.insert(rng.randrange(len(rows)), row)
    return {"leaderboardRows": rows}


def leaderboard(rng: random.Random) -> str:
    return cassette([(request(None, "GET", LEADERBOARD_URL), response(leaderboard_body(rng), T0))])


def build() -> tuple[dict[str, str], dict[str, tuple[int, int]]]:
    """(file name → text, fills cassette → (startTime, endTime) it was generated for). Each cassette
    has its own RNG stream, so editing one leaves the others byte-identical."""
    files: dict[str, str] = {}
    ranges: dict[str, tuple[int, int]] = {}
    files["user_fills_by_time_pagination.yaml"], *span = pagination(random.Random(SEED + 1))
    ranges["pagination"] = (span[0], span[1])
    files["user_fills_by_time_history_limit.yaml"], *span = history_limit(random.Random(SEED + 2))
    ranges["history_limit"] = (span[0], span[1])
    files["user_fills_by_time_5xx_then_ok.yaml"], *span = retry_5xx(random.Random(SEED + 3))
    ranges["5xx_then_ok"] = (span[0], span[1])
    files["user_fills_by_time_malformed.yaml"] = malformed(random.Random(SEED + 4))
    ranges["malformed"] = (T0 - 605_000, T0)
    files["clearinghouse_state_429.yaml"] = rate_limited(random.Random(SEED + 5))
    files["info_current.yaml"] = info_current(random.Random(SEED + 6))
    files["leaderboard.yaml"] = leaderboard(random.Random(SEED + 7))
    return files, ranges


def main(argv: list[str]) -> None:
    out = Path(argv[1]) if len(argv) > 1 else HERE
    out.mkdir(parents=True, exist_ok=True)
    for name, text in build()[0].items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"{out / name}: {len(text):,} bytes")


if __name__ == "__main__":
    main(sys.argv)
