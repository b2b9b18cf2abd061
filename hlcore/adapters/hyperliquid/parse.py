"""Pure functions from Hyperliquid info-API JSON to frozen values (house rule 6).

Nothing here raises on venue input. A body that cannot be read at all comes back as a
`ParseError` (the caller reports `MALFORMED_RESPONSE`); a bad item inside a readable body is
skipped and listed in `invalid` with its reason, so one odd row never hides the others.

Both the current documented shapes and the older recorded ones (tests/cassettes/
hyperliquid-python-sdk/, 2023) are accepted: fields added since (`tid`, `feeToken`, `builderFee`,
`twapId`, `time`, `cumFunding`, `maxLeverage`, `marginTables`) are optional, and leverage may be an
object `{type, value[, rawUsd]}` or a bare number. Quantities and prices are `Decimal`, read from
the strings the venue sends. Venue docs:
https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/info-endpoint
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any

from hlcore.adapters.http import MALFORMED_RESPONSE

# Decimal strings as the venue writes them ("0.0", "-0.00785", "1e-5"); no NaN, Infinity or "1_000".
_DECIMAL = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INTEGER = re.compile(r"-?\d{1,19}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
SIDES = frozenset({"B", "A"})
# Venue numbers live well inside 1e±40; anything beyond is garbage, and would overflow Decimal arithmetic.
_MAX_ADJUSTED_EXPONENT = 40
# Fills without a venue `tid` (2023 shape) get a stable id at or above this, far above any real tid,
# so "smallest tid" prefers real tids and a synthetic id can never collide with one.
SYNTHETIC_TID_BASE = 2**62


@dataclass(frozen=True)
class ParseError:
    """A body that cannot be read at all (wrong top-level type, required list missing)."""

    what: str
    reason: str
    code: str = MALFORMED_RESPONSE

    def __str__(self) -> str:
        return f"{self.what}: {self.reason}"


@dataclass(frozen=True)
class Invalid:
    """One skipped item: where it was (`[17]`, `page2[17]`, `BTC`) and why."""

    where: str
    reason: str
    key: str = ""  # a digest of the raw item: the same unreadable item refetched is the same skip


class _Bad(Exception):
    """Internal only: a field failed to parse. Always caught in this module."""


# ---------------------------------------------------------------------------------------- scalars
# Venue strings read before, and what they read as (a Decimal is immutable, so one object can be
# shared). A monitor minute reads ~3,000 decimal strings, most of them the same few ("0.0", a size
# unchanged since the last minute); the cache makes a repeat a dict lookup. Bounded: cleared when
# full; only short strings are kept (venue numbers are short, fuzzed garbage need not be).
_DECIMALS: dict[str, Decimal | None] = {}
_DECIMALS_MAX = 8192
_DECIMAL_KEY_MAX = 64
_MISSING = object()


def to_decimal(value: Any) -> Decimal | None:
    """A finite Decimal from a venue string or JSON number, or None if it is not one."""
    if type(value) is str:
        known = _DECIMALS.get(value, _MISSING)
        if known is not _MISSING:
            return known  # type: ignore[return-value]
        number = _to_decimal(value)
        if len(value) <= _DECIMAL_KEY_MAX:
            if len(_DECIMALS) >= _DECIMALS_MAX:
                _DECIMALS.clear()
            _DECIMALS[value] = number
        return number
    return _to_decimal(value)


def _to_decimal(value: Any) -> Decimal | None:
    """`to_decimal` without the cache: the one definition of what reads as a venue decimal."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            return None
        number = value
    elif isinstance(value, float) and math.isfinite(value):
        number = Decimal(repr(value))
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        try:
            number = Decimal(value)
        except InvalidOperation:  # an exponent beyond what Decimal can hold
            return None
    else:
        return None
    if number and abs(number.adjusted()) > _MAX_ADJUSTED_EXPONENT:
        return None
    return number


def _req_dec(obj: Mapping[str, Any], key: str) -> Decimal:
    value = to_decimal(obj.get(key))
    if value is None:
        raise _Bad(f"{key}: {_show(obj.get(key))} is not a decimal" if key in obj else f"{key}: missing")
    return value


def _opt_dec(obj: Mapping[str, Any], key: str) -> Decimal | None:
    """Absent or null is None; anything else must parse (a present-but-garbled field is an error)."""
    raw = obj.get(key)
    if raw is None:
        return None
    value = to_decimal(raw)
    if value is None:
        raise _Bad(f"{key}: {_show(raw)} is not a decimal")
    return value


def _lenient_dec(obj: Mapping[str, Any], key: str) -> Decimal | None:
    """For fields nothing downstream decides on (fee, closedPnl): unreadable reads as None."""
    return to_decimal(obj.get(key))


def to_int(value: Any) -> int | None:
    """A whole number from what a venue or proxy may send for an id or a time (issue 11): a JSON
    integer, a string of digits, or an integral decimal/float; None for anything else (bools,
    fractions, NaN, text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value) if _INTEGER.fullmatch(value) else None
    if isinstance(value, float | Decimal):
        number = to_decimal(value)
        if number is not None and number == number.to_integral_value():
            return int(number)
    return None


def _req_int(obj: Mapping[str, Any], key: str, below: int = 2**63) -> int:
    raw = obj.get(key)
    value = to_int(raw)
    if value is None or not 0 <= value < below:
        raise _Bad(f"{key}: {_show(raw)} is not an integer in [0, {below})" if key in obj else f"{key}: missing")
    return value


def _req_str(obj: Mapping[str, Any], key: str) -> str:
    raw = obj.get(key)
    if not isinstance(raw, str) or not raw:
        raise _Bad(f"{key}: {_show(raw)} is not a non-empty string" if key in obj else f"{key}: missing")
    return raw


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    raw = obj.get(key)
    return raw if isinstance(raw, str) else None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ------------------------------------------------------------------------------------------ fills
@dataclass(frozen=True)
class Fill:
    """One fill of `userFills`/`userFillsByTime`. `side` is B (buy) or A (sell); `tid` is None in
    the 2023 shape. `start_position` is the signed position before this fill."""

    coin: str
    px: Decimal
    sz: Decimal
    side: str
    time_ms: int
    start_position: Decimal | None
    hash: str
    oid: int
    tid: int | None = None
    crossed: bool | None = None
    dir: str | None = None
    fee: Decimal | None = None
    fee_token: str | None = None
    closed_pnl: Decimal | None = None
    builder_fee: Decimal | None = None
    twap_id: int | None = None

    @property
    def signed_sz(self) -> Decimal:
        """+sz for a buy, −sz for a sell (copytrader §4.2)."""
        return self.sz if self.side == "B" else -self.sz

    @cached_property
    def content_key(self) -> ContentKey | None:
        """The fill's identity from fields the venue always sends (issue 10 §2), so the same fill
        served once without `tid` and once with it is recognised as one: tx hash, coin, time,
        side, px, sz and `startPosition` (which moves after every fill of an order, so two distinct
        fills never share it). Floats because `ingested_fills` stores quantities as floats and the
        dedup compares against those rows. None without `startPosition`: then only `tid` identifies it."""
        if self.start_position is None:
            return None
        return (self.hash, self.coin, self.time_ms, self.side, float(self.px), float(self.sz),
                float(self.start_position))

    @cached_property
    def fill_id(self) -> int:
        """The dedup key: the venue `tid`, or for tid-less (2023) fills a stable synthetic id in
        [2^62, 2^63) hashed from the fill's own fields. `startPosition` changes after every fill of
        an order, so two distinct fills never share it."""
        if self.tid is not None:
            return self.tid
        canonical = "|".join(str(v) for v in (self.hash, self.coin, self.oid, self.time_ms, self.side, self.px,
                                               self.sz, self.start_position))
        digest = hashlib.sha256(canonical.encode()).digest()
        return SYNTHETIC_TID_BASE + (int.from_bytes(digest[:8], "big") >> 2)


# (tx hash, coin, time ms, side, px, sz, startPosition): see `Fill.content_key`.
ContentKey = tuple[str, str, int, str, float, float, float]


@dataclass(frozen=True)
class FillsPage:
    """One fills response: the readable fills, the skipped ones, and the raw item count (the
    pagination rule counts what the venue sent, readable or not)."""

    fills: tuple[Fill, ...]
    invalid: tuple[Invalid, ...] = ()
    n_items: int = 0


def parse_fill(item: Any) -> Fill | str:
    """One fill, or the reason it is unreadable. Required: coin, px (> 0), sz (> 0), side, time,
    hash, oid; `startPosition` may be absent (aggregation then falls back to prev + Σ) but not
    garbled, and not together with `tid` (then the fill has no identity, issue 10 §2); `tid`, if
    present, must be a non-negative integer. Ids and times may come as JSON integers, digit strings
    or integral decimals (`to_int`). Other fields are informational and
    read as None when absent or unreadable."""
    if not isinstance(item, Mapping):
        return f"not an object: {_show(item)}"
    try:
        px, sz = _req_dec(item, "px"), _req_dec(item, "sz")
        if px <= 0:
            raise _Bad(f"px: {px} is not positive")
        if sz <= 0:
            raise _Bad(f"sz: {sz} is not positive")
        side = item.get("side")
        if side not in SIDES:
            raise _Bad(f"side: {_show(side)} is not B or A" if "side" in item else "side: missing")
        tid = None if item.get("tid") is None else _req_int(item, "tid", below=SYNTHETIC_TID_BASE)
        if tid is None and item.get("startPosition") is None:
            raise _Bad("identity: no tid and no startPosition, so this fill cannot be told from another")
        twap = to_int(item.get("twapId"))
        return Fill(
            coin=_req_str(item, "coin"), px=px, sz=sz, side=side, time_ms=_req_int(item, "time"),
            start_position=_opt_dec(item, "startPosition"), hash=_req_str(item, "hash"), oid=_req_int(item, "oid"),
            tid=tid,
            crossed=item.get("crossed") if isinstance(item.get("crossed"), bool) else None,
            dir=_opt_str(item, "dir"), fee=_lenient_dec(item, "fee"), fee_token=_opt_str(item, "feeToken"),
            closed_pnl=_lenient_dec(item, "closedPnl"), builder_fee=_lenient_dec(item, "builderFee"),
            twap_id=twap,
        )
    except _Bad as bad:
        return str(bad)


def parse_fills(body: Any, *, page: int | None = None) -> FillsPage | ParseError:
    """A `userFills`/`userFillsByTime` body. A non-list body is malformed (copytrader §4.2 Retries);
    unreadable items are skipped into `invalid` (`ingest_fill_invalid` downstream)."""
    if not isinstance(body, list):
        return ParseError("userFills", f"expected a list, got {type(body).__name__}")
    fills: list[Fill] = []
    invalid: list[Invalid] = []
    prefix = "" if page is None else f"page{page}"
    for index, item in enumerate(body):
        parsed = parse_fill(item)
        if isinstance(parsed, Fill):
            fills.append(parsed)
        else:
            invalid.append(Invalid(f"{prefix}[{index}]", parsed, item_digest(item)))
    return FillsPage(tuple(fills), tuple(invalid), len(body))


def item_digest(item: Any) -> str:
    """A stable short digest of a raw venue item (canonical JSON; anything else by its repr)."""
    text = json.dumps(item, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# ----------------------------------------------------------------------------- clearinghouseState
@dataclass(frozen=True)
class PositionRow:
    """One asset's position in a wallet snapshot (monitor §4.2 Parse). `szi` 0 with other fields
    None means no position; `szi` None means the venue said something we could not read."""

    szi: Decimal | None
    entry_px: Decimal | None = None
    liquidation_px: Decimal | None = None
    margin_used: Decimal | None = None
    leverage: Decimal | None = None
    leverage_type: str | None = None
    error: str | None = None


FLAT = PositionRow(szi=Decimal(0))


def _leverage(raw: Any) -> tuple[Decimal | None, str | None]:
    if raw is None:
        return None, None
    if type(raw) is dict or isinstance(raw, Mapping):  # a plain dict skips the ABC check
        value = to_decimal(raw.get("value"))
        if value is None:
            raise _Bad(f"leverage.value: {_show(raw.get('value'))} is not a number")
        kind = raw.get("type")
        return value, kind if isinstance(kind, str) else None
    value = to_decimal(raw)
    if value is None:
        raise _Bad(f"leverage: {_show(raw)} is not a number or {{type, value}}")
    return value, None


def parse_position(position: Mapping[str, Any]) -> PositionRow:
    """`assetPositions[].position` → a row; any unreadable field makes it `szi` None (conservative:
    a half-read position is not trusted)."""
    try:
        leverage, leverage_type = _leverage(position.get("leverage"))
        return PositionRow(szi=_req_dec(position, "szi"), entry_px=_opt_dec(position, "entryPx"),
                           liquidation_px=_opt_dec(position, "liquidationPx"),
                           margin_used=_opt_dec(position, "marginUsed"), leverage=leverage,
                           leverage_type=leverage_type)
    except _Bad as bad:
        return PositionRow(szi=None, error=str(bad))


def parse_clearinghouse_state(body: Any, assets: Iterable[str]) -> dict[str, PositionRow] | ParseError:
    """{asset: PositionRow} for the requested assets (monitor §4.2 Parse). An absent coin is flat
    (`szi` 0, other fields None); a position that fails to parse gives that asset `szi` None. An
    entry whose coin cannot be read could be any asset, so every asset not otherwise found gets
    `szi` None too (never report flat when we could not look). A non-object body or a missing
    `assetPositions` list is a ParseError (the wallet failed)."""
    if not isinstance(body, Mapping):
        return ParseError("clearinghouseState", f"expected an object, got {type(body).__name__}")
    entries = body.get("assetPositions")
    if not isinstance(entries, list):
        return ParseError("clearinghouseState", "assetPositions: missing or not a list")
    wanted = list(dict.fromkeys(assets))
    found: dict[str, PositionRow] = {}
    unattributed: list[str] = []
    for index, entry in enumerate(entries):
        # `type(..) is dict` first: decoded JSON is plain dicts, and the ABC check costs more
        position = entry.get("position") if type(entry) is dict or isinstance(entry, Mapping) else None
        if not (type(position) is dict or isinstance(position, Mapping)) or not isinstance(position.get("coin"), str):
            unattributed.append(f"assetPositions[{index}]: no readable position.coin")
            continue
        coin = position["coin"]
        if coin not in wanted:
            continue
        row = parse_position(position)
        if coin in found:
            row = PositionRow(szi=None, error=f"assetPositions[{index}]: duplicate position for {coin}")
        found[coin] = row
    result: dict[str, PositionRow] = {}
    for asset in wanted:
        if asset in found:
            result[asset] = found[asset]
        elif unattributed:
            result[asset] = PositionRow(szi=None, error=unattributed[0])
        else:
            result[asset] = FLAT
    return result


# ------------------------------------------------------------------------------- meta and allMids
@dataclass(frozen=True)
class AssetMeta:
    """One perp of `meta.universe`. `index` is its position there, which is the venue's asset id."""

    index: int
    name: str
    sz_decimals: int
    max_leverage: int | None = None
    only_isolated: bool = False
    is_delisted: bool = False


@dataclass(frozen=True)
class Meta:
    assets: tuple[AssetMeta, ...]
    invalid: tuple[Invalid, ...] = ()

    def by_name(self) -> dict[str, AssetMeta]:
        return {asset.name: asset for asset in self.assets}


def parse_meta(body: Any) -> Meta | ParseError:
    """`{"type":"meta"}` → the perp universe. `maxLeverage`, `onlyIsolated`, `isDelisted` and
    `marginTables` are optional; an unreadable universe entry is skipped (its index stays reserved)."""
    if not isinstance(body, Mapping):
        return ParseError("meta", f"expected an object, got {type(body).__name__}")
    universe = body.get("universe")
    if not isinstance(universe, list):
        return ParseError("meta", "universe: missing or not a list")
    assets: list[AssetMeta] = []
    invalid: list[Invalid] = []
    for index, item in enumerate(universe):
        if not isinstance(item, Mapping):
            invalid.append(Invalid(f"universe[{index}]", f"not an object: {_show(item)}"))
            continue
        try:
            max_leverage = item.get("maxLeverage")
            if max_leverage is not None:
                max_leverage = _req_int(item, "maxLeverage")
            assets.append(AssetMeta(index=index, name=_req_str(item, "name"),
                                    sz_decimals=_req_int(item, "szDecimals"), max_leverage=max_leverage,
                                    only_isolated=item.get("onlyIsolated") is True,
                                    is_delisted=item.get("isDelisted") is True))
        except _Bad as bad:
            invalid.append(Invalid(f"universe[{index}]", str(bad)))
    return Meta(tuple(assets), tuple(invalid))


@dataclass(frozen=True)
class Mids:
    """`allMids`: coin → mid price. Spot entries (`@107`, `PURR/USDC`) are kept as the venue names them."""

    mids: Mapping[str, Decimal]
    invalid: tuple[Invalid, ...] = ()


def parse_all_mids(body: Any) -> Mids | ParseError:
    if not isinstance(body, Mapping):
        return ParseError("allMids", f"expected an object, got {type(body).__name__}")
    mids: dict[str, Decimal] = {}
    invalid: list[Invalid] = []
    for coin, raw in body.items():
        value = to_decimal(raw)
        if value is None or value <= 0:
            invalid.append(Invalid(str(coin), f"{_show(raw)} is not a positive decimal"))
        else:
            mids[str(coin)] = value
    return Mids(mids, tuple(invalid))


# ------------------------------------------------------------------------------------ leaderboard
@dataclass(frozen=True)
class LeaderboardRow:
    """One valid leaderboard row for the chosen window. `wallet_id` is the lowercased address."""

    wallet_id: str
    pnl: Decimal
    roi: Decimal | None
    vlm: Decimal | None
    account_value: Decimal | None
    display_name: str | None
    window: str


@dataclass(frozen=True)
class LeaderboardParse:
    """Monitor §4.1 inputs: valid rows sorted by pnl desc then wallet_id asc; `n_received` counts
    valid rows, `n_invalid` dropped ones; `schema_ok` is False when `leaderboardRows` is missing
    (`schema_changed`). Duplicate ids are kept: U4 judges them."""

    rows: tuple[LeaderboardRow, ...]
    n_received: int
    n_invalid: int
    schema_ok: bool
    window: str = "month"
    invalid: tuple[Invalid, ...] = field(default=(), repr=False)


def _window_performance(row: Mapping[str, Any], window: str) -> Mapping[str, Any] | None:
    performances = row.get("windowPerformances")
    if isinstance(performances, Mapping):  # tolerate {window: {...}} as well as [[window, {...}]]
        found = performances.get(window)
        return found if isinstance(found, Mapping) else None
    if isinstance(performances, list):
        for pair in performances:
            if isinstance(pair, list) and len(pair) == 2 and pair[0] == window and isinstance(pair[1], Mapping):
                return pair[1]
    return None


def parse_leaderboard_row(row: Any, window: str = "month") -> LeaderboardRow | str:
    """A row is valid iff `ethAddress` is 0x + 40 hex and the window's pnl is finite (monitor §4.1);
    roi, vlm and accountValue are optional and read as None when unreadable."""
    if not isinstance(row, Mapping):
        return f"not an object: {_show(row)}"
    address = row.get("ethAddress")
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        return f"ethAddress: {_show(address)} is not 0x + 40 hex digits"
    performance = _window_performance(row, window)
    if performance is None:
        return f"windowPerformances: no {window!r} window"
    pnl = to_decimal(performance.get("pnl"))
    if pnl is None:
        return f"{window} pnl: {_show(performance.get('pnl'))} is not a finite number"
    name = row.get("displayName")
    return LeaderboardRow(wallet_id=address.lower(), pnl=pnl, roi=to_decimal(performance.get("roi")),
                          vlm=to_decimal(performance.get("vlm")), account_value=to_decimal(row.get("accountValue")),
                          display_name=name if isinstance(name, str) else None, window=window)


def parse_leaderboard(body: Any, window: str = "month") -> LeaderboardParse:
    """The stats-data leaderboard → rows for `window` (monitor §4.1). Never a ParseError: a body
    without `leaderboardRows` is `schema_ok=False` with no rows, which the policy calls `schema_changed`."""
    rows_raw = body.get("leaderboardRows") if isinstance(body, Mapping) else None
    if not isinstance(rows_raw, list):
        return LeaderboardParse((), 0, 0, False, window)
    rows: list[LeaderboardRow] = []
    invalid: list[Invalid] = []
    for index, raw in enumerate(rows_raw):
        parsed = parse_leaderboard_row(raw, window)
        if isinstance(parsed, LeaderboardRow):
            rows.append(parsed)
        else:
            invalid.append(Invalid(f"leaderboardRows[{index}]", parsed))
    rows.sort(key=lambda r: (r.pnl.copy_negate(), r.wallet_id))  # copy_negate: exact, no rounding
    return LeaderboardParse(tuple(rows), len(rows), len(invalid), True, window, tuple(invalid))
