"""The wallet monitor's world: the Hyperliquid stats-data leaderboard and the info API's
`clearinghouseState` per wallet, in the venues' real shapes (../shared/cassettes). The timeline
changes positions and the leaderboard; faults come from the shared `fault` step (per wallet
with `user:`). Also the app driver: how a drill boots the monitor (`service.start`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from hlcore.jobs.monitor.service import start as start_monitor
from replay.registry import given, step
from replay.transport import Reply
from replay.wallets import SELECTION, address, select

APP = "monitor"
LEADERBOARD_HOST = "stats-data.hyperliquid.xyz"
INFO_HOST = "api.hyperliquid.xyz"


def lb_row(wallet: str, pnl: Any, *, window: str = "month", roi: str = "0.1",
           account_value: str = "100000.0", name: str | None = None) -> dict[str, Any]:
    """One leaderboard row as stats-data serves it (pnl as a string, windows as pairs)."""
    perf = {"pnl": str(pnl), "roi": roi, "vlm": "1000000.0"}
    windows = [["day", perf], ["week", perf], [window, perf], ["allTime", perf]]
    return {"ethAddress": wallet, "accountValue": account_value, "windowPerformances": windows,
            "prize": 0, "displayName": name}


def leaderboard(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A whole stats-data leaderboard body around these rows."""
    return {"leaderboardRows": list(rows)}


def position(coin: str, szi: Any, *, entry_px: str = "100.0", liq_px: str | None = "50.0",
             margin: str = "10.0", leverage: Any = None) -> dict[str, Any]:
    return {"type": "oneWay", "position": {
        "coin": coin, "szi": str(szi), "entryPx": entry_px, "liquidationPx": liq_px, "marginUsed": margin,
        "leverage": leverage if leverage is not None else {"type": "cross", "value": 5},
        "positionValue": "100.0", "unrealizedPnl": "0.0", "returnOnEquity": "0.0", "maxLeverage": 50,
        "cumFunding": {"allTime": "0.0", "sinceOpen": "0.0", "sinceChange": "0.0"}}}


class MonitorWorld:
    def __init__(self, clock: Any):
        self.clock = clock
        self.leaderboard: Any = {"leaderboardRows": []}
        self.positions: dict[str, dict[str, Any]] = {}  # wallet -> coin -> szi or a full position entry
        self._entries: dict[str, tuple[tuple[tuple[str, str], ...], str]] = {}  # see `state_bytes`

    def universe_hint(self) -> int:
        """How many wallets "all" means: the leaderboard's size."""
        rows = self.leaderboard.get("leaderboardRows") if isinstance(self.leaderboard, dict) else None
        return len(rows) if isinstance(rows, list) else 0

    def venue_of(self, host: str) -> str | None:
        if host == LEADERBOARD_HOST:
            return "hyperliquid-stats"
        if host.endswith("hyperliquid.xyz"):
            return "hyperliquid"
        return None

    def answer(self, venue: str, method: str, path: str, params: Mapping[str, str], payload: Any) -> Reply:
        if venue == "hyperliquid-stats":
            return Reply(200, self.leaderboard)
        if venue == "hyperliquid" and isinstance(payload, dict) and payload.get("type") == "clearinghouseState":
            return Reply(200, raw=self.state_bytes(str(payload.get("user", "")).lower()))
        return Reply(422, raw=b"Failed to deserialize the JSON body into the target type")

    def state(self, wallet: str) -> dict[str, Any]:
        entries = [v if isinstance(v, dict) else position(coin, v)
                   for coin, v in sorted(self.positions.get(wallet, {}).items())]
        return {**_state_head(), "assetPositions": entries, "time": self.clock.now_ms()}

    def state_bytes(self, wallet: str) -> bytes:
        """`json.dumps(self.state(wallet))`, byte for byte, with the wallet's `assetPositions` text
        kept while its book reads the same: a drill serves each of ~200 wallets every simulated
        minute, mostly unchanged. A book of plain sizes is keyed by `(coin, str(size))`, all that
        `position()` reads of it; a book holding a full entry (a dict, mutable) is encoded afresh."""
        items = sorted(self.positions.get(wallet, {}).items())
        now = self.clock.now_ms()
        time_text = str(now) if type(now) is int else json.dumps(now)  # what `json.dumps` writes for it
        if any(isinstance(v, dict) for _, v in items):
            entries = json.dumps([v if isinstance(v, dict) else position(coin, v) for coin, v in items])
        else:
            seen = tuple((coin, str(v)) for coin, v in items)
            kept = self._entries.get(wallet)
            if kept is not None and kept[0] == seen:
                entries = kept[1]
            else:
                entries = json.dumps([position(coin, v) for coin, v in seen])
                self._entries[wallet] = (seen, entries)
        return f"{_STATE_HEAD}, \"assetPositions\": {entries}, \"time\": {time_text}}}".encode()


def _state_head() -> dict[str, Any]:
    """The account fields every `clearinghouseState` answer carries before `assetPositions`."""
    summary = {"accountValue": "1000.0", "totalNtlPos": "0.0", "totalRawUsd": "1000.0", "totalMarginUsed": "0.0"}
    return {"marginSummary": summary, "crossMarginSummary": dict(summary), "crossMaintenanceMarginUsed": "0.0",
            "withdrawable": "1000.0"}


_STATE_HEAD = json.dumps(_state_head())[:-1]  # the object's text without its closing brace


# ---------------------------------------------------------------------- drill vocabulary
_LEADERBOARD = {
    "wallets": {"type": "integer", "min": 0},  # rows for wallets 1..N, pnl falling with the number
    "first": {"type": "integer", "min": 1},  # start numbering here instead of 1
    "pnl_top": {"type": "number"},
    "rows": {"type": "list", "schema": {"type": "dict"}},  # extra rows exactly as stats-data serves them
    "body": {"type": ["dict", "list", "string"], "nullable": True},  # the whole body (schema-change drills)
}
_POSITIONS = {"type": "list", "schema": {"type": "dict", "schema": {
    "wallets": {**SELECTION, "required": True},
    "set": {"type": "dict", "required": True, "keysrules": {"type": "string", "regex": r"^[A-Z0-9]+$"},
            "valuesrules": {"type": ["string", "number", "dict"]}}}}}


def leaderboard_body(spec: Mapping[str, Any]) -> Any:
    if "body" in spec:
        return spec["body"]
    first, n = int(spec.get("first", 1)), int(spec.get("wallets", 0))
    top = float(spec.get("pnl_top", 5_000_000))
    rows = [lb_row(address(i), f"{top - (i - first) * 1000:.2f}") for i in range(first, first + n)]
    return {"leaderboardRows": rows + list(spec.get("rows") or [])}


def apply_positions(world: MonitorWorld, items: list[Mapping[str, Any]], universe: int) -> None:
    """Each item sets coins for the selected wallets; 0 (or "0") closes the position."""
    for item in items:
        for i in select(item["wallets"], universe):
            book = world.positions.setdefault(address(i), {})
            for coin, value in item["set"].items():
                if not isinstance(value, dict) and float(value) == 0:
                    book.pop(coin, None)
                else:
                    book[coin] = value


@given("leaderboard", {"type": "dict", "schema": _LEADERBOARD},
       "The stats-data leaderboard: `wallets: N` rows (wallets 1..N by falling month pnl), extra `rows`, or a "
       "whole `body`.", apps=(APP,),
    example="leaderboard: {wallets: 205}")
def _given_leaderboard(player: Any, value: Mapping[str, Any]) -> None:
    player.world.leaderboard = leaderboard_body(value)


@step("leaderboard", _LEADERBOARD, "The leaderboard changes (same keys as the given).", apps=(APP,),
    example="{at: 1m, do: leaderboard, wallets: 205}")
def _step_leaderboard(player: Any, args: Mapping[str, Any]) -> None:
    player.world.leaderboard = leaderboard_body(args)


@given("positions", _POSITIONS, "Open positions: [{wallets: 1-50 | [..] | all, set: {COIN: szi}}].", apps=(APP,),
    example="positions: [{wallets: \"1-200\", set: {HYPE: \"1.0\", BTC: \"10.0\"}}]")
def _given_positions(player: Any, value: list[Mapping[str, Any]]) -> None:
    apply_positions(player.world, value, player.world.universe_hint())


@step("positions", {"set": {**_POSITIONS, "required": True}}, "Wallets trade: [{wallets, set: {COIN: szi}}].",
      apps=(APP,),
    example="{at: 1m, do: positions, set: [{wallets: \"21-72\", set: {BTC: \"8\"}}]}")
def _step_positions(player: Any, args: Mapping[str, Any]) -> None:
    apply_positions(player.world, args["set"], player.world.universe_hint())


class MonitorDriver:
    """Boots the monitor's jobs exactly as `hlcore live --app monitor` does, on the drill's wiring."""

    name = APP
    threaded = True  # snapshot workers call the venue concurrently: calls are journaled per batch
    watch: tuple[str, ...] = ("alerts", "ops_events")
    env: Mapping[str, str] = {}

    @staticmethod
    def world(clock: Any) -> MonitorWorld:
        return MonitorWorld(clock)

    @staticmethod
    def start(player: Any) -> tuple[Any, Any, int]:
        from replay.runner import SideBySide  # the runner imports this module

        ctx, _jobs, scheduler = start_monitor(player.ws, player.wiring, fan_out=SideBySide(player.clock))
        if getattr(player, "signal_pins", None):  # `set_signal_inputs` pins outlive a restart
            from replay.vocab.monitor_signals import pin_signal_inputs

            player.scheduler = scheduler
            pin_signal_inputs(player)
        return ctx, scheduler, 0
