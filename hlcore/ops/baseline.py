"""Operator commands that talk to Binance (copytrader §8): `sync-baseline`, `reset-baseline`,
`recover-orders`, and the venue wiring they share with `preflight --exchange-time`.

- `sync-baseline` captures live positions (`positionRisk`) as the one active baseline that local
  positions count from (§4.7 step 4); refused while one is active unless `--replace`. The offline
  path `--positions FILE` (YAML `{SYMBOL: qty}`) takes the snapshot from a file instead of the
  venue: for tests, drills and an operator who read the positions elsewhere.
- `reset-baseline` deactivates the active baseline.
- `recover-orders` is the UNKNOWN sweep of §4.6: every unresolved or parked result is queried once
  by `origClientOrderId`; the policy decides the new status through the copy-trader's own
  execution job (the `order_answered` fact), exactly as the loop would.

Baseline changes write one `audit_log` row, category `baseline`, with the codes §8 fixes; the
sweep writes one `ops` row (each status change also gets the engine's own `execution` row).
`--dry-run` prints the plan and writes nothing (the sweep then sends no request either).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import requests

from hlcore.adapters.binance import parse
from hlcore.adapters.binance.client import TIME_PATH, WEIGHT, BinanceClient
from hlcore.adapters.binance.sign import TimeSample
from hlcore.adapters.http import MALFORMED_RESPONSE, RetryPolicy, VenueError, VenueHttp
from hlcore.app import AppContext
from hlcore.config.settings import BINANCE_KEY_ENV, BINANCE_SECRET_ENV
from hlcore.engine.clock import Clock, SystemClock
from hlcore.errors import BadInput, CheckFailed, Problem
from hlcore.jobs.copytrade.jobs import ORDER, SAFETY, CopytradeJobs, Venues
from hlcore.jobs.copytrade.order_status import OrderStatuses
from hlcore.jobs.copytrade.service import Wiring, build_venues
from hlcore.ops.database import OPS_CATEGORY, CommandResult, open_read_only
from hlcore.storage.copytrade import (
    POSITION_DUST,
    Baseline,
    BaselineActive,
    Baselines,
    OrderResult,
    Orders,
    normalise_symbol,
)
from hlcore.storage.repos import AuditLog
from hlcore.workspace import Workspace
from hlcore.yamlsource import load_yaml

BASELINE_CATEGORY = "baseline"  # audit_log.category (copytrader §6)
# The audit codes §8 fixes for baseline changes (operator vocabulary, not policy states).
BASELINE_SYNCED = "BASELINE_SYNCED"
BASELINE_REPLACED = "BASELINE_REPLACED"
BASELINE_RESET = "BASELINE_RESET"
BINANCE_SECRETS = (BINANCE_KEY_ENV, BINANCE_SECRET_ENV)


# --------------------------------------------------------------------------------------------------
# Wiring
# --------------------------------------------------------------------------------------------------


def new_session(venue: str) -> requests.Session:
    """The HTTP session of each venue. The one seam tests replace with a scripted transport."""
    del venue
    return requests.Session()


def system_wiring(clock: Clock | None = None, environ: Mapping[str, str] | None = None) -> Wiring:
    """What the CLI runs with: the system clock, real sleeps, real sessions, the process env."""
    return Wiring(clock or SystemClock(), time.sleep, random.Random(), new_session,
                  os.environ if environ is None else environ)


def read_only_context(ws: Workspace) -> AppContext:
    """What `--dry-run` opens: the existing database, engine restored but never persisted."""
    return open_read_only(ws, SystemClock())


def binance_http(ws: Workspace, wiring: Wiring) -> VenueHttp:
    """The Binance HTTP layer as `build_venues` makes it, for public calls that need no key."""
    s = ws.settings
    retry = RetryPolicy(**{k: int(s.get(f"execution.binance.retry.{k}")) for k in
                           ("max_attempts", "base_delay_ms", "max_delay_ms", "jitter_ms")})
    return VenueHttp("binance", s.get("execution.binance.base_url"), clock=wiring.clock, sleep=wiring.sleep,
                     rng=wiring.rng, timeout_ms=int(s.get("execution.binance.request_timeout_ms")), retry=retry,
                     default_cooldown_ms=int(s.get("execution.binance.rate_limit.cooldown_seconds")) * 1000,
                     session=wiring.session_factory("binance"))


def exchange_time(ws: Workspace, wiring: Wiring) -> TimeSample | VenueError:
    """GET /fapi/v1/time once: server time and offset against the local midpoint (§4.3)."""
    http = binance_http(ws, wiring)
    result = http.request("GET", TIME_PATH, weight=WEIGHT[TIME_PATH], idempotent=True)
    if isinstance(result, VenueError):
        return result
    server = parse.server_time(result.body)
    if isinstance(server, parse.Malformed):
        return VenueError(MALFORMED_RESPONSE, f"binance {server}", status=result.status)
    return TimeSample(server, result.sent_ms, result.received_ms)


def binance_client(ctx: AppContext, wiring: Wiring) -> tuple[Venues, BinanceClient]:
    """The live Binance client as the service builds it; BadInput when its secrets are missing."""
    missing = [n for n in BINANCE_SECRETS if not wiring.environ.get(n)]
    if missing:
        raise BadInput([Problem("environment", n, "required to talk to Binance but not set") for n in missing])
    venues = build_venues(ctx.workspace, "live", wiring)
    if venues.binance is None:
        raise BadInput("execution.binance.enabled is false: no Binance client to ask")
    return venues, venues.binance


# --------------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------------


def load_positions(path: Path) -> dict[str, Decimal]:
    """`--positions FILE`: a YAML mapping `{SYMBOL: qty}` (the offline snapshot)."""
    data = load_yaml(path).data  # the bounded reader: located errors, never a traceback
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadInput(Problem(str(path), "", "positions must be a mapping SYMBOL: qty"))
    out: dict[str, Decimal] = {}
    for symbol, qty in data.items():
        try:
            value = Decimal(str(qty))
        except InvalidOperation as exc:
            raise BadInput(Problem(str(path), str(symbol), f"not a quantity: {qty!r}")) from exc
        if not value.is_finite():
            raise BadInput(Problem(str(path), str(symbol), f"not a finite quantity: {qty!r}"))
        out[str(symbol)] = value
    return out


def venue_positions(client: BinanceClient) -> dict[str, Decimal]:
    """Non-flat `positionRisk` entries; refused when the venue cannot answer or is not one-way."""
    snapshot = client.position_risk()
    if isinstance(snapshot, VenueError):
        raise CheckFailed(f"position_risk_failed: {snapshot.code} {snapshot.message}")
    if not snapshot.position_mode_ok:
        raise CheckFailed("position_mode_invalid: a positionRisk entry is not positionSide=BOTH")
    return {normalise_symbol(p.symbol): p.position_amt for p in snapshot.positions
            if abs(p.position_amt) > POSITION_DUST}


def _describe(prefix: str, baseline: Baseline | None, result: CommandResult) -> None:
    result.add(f"{prefix}_baseline_id", baseline.baseline_id if baseline else "none")
    if baseline:
        result.add(f"{prefix}_baseline_created_at_ms", baseline.created_at_ms)
        for symbol, qty in sorted(baseline.positions.items()):
            result.add(f"{prefix}_position_{symbol}", qty)


def sync_baseline(ctx: AppContext, positions: Mapping[str, Decimal], *, source: str, operator: str,
                  reason_message: str | None, replace: bool = False, dry_run: bool = False) -> CommandResult:
    """Store `positions` as the active baseline, audited `BASELINE_SYNCED` / `BASELINE_REPLACED`."""
    result = CommandResult()
    result.add("command", "sync-baseline")
    result.add("source", source)
    baselines = Baselines(ctx.db)
    current = baselines.active()
    _describe("before", current, result)
    for symbol, qty in sorted(positions.items()):
        result.add(f"captured_position_{normalise_symbol(symbol)}", qty)
    if current is not None and not replace:
        result.refused = "baseline_active"
        return result
    code = BASELINE_REPLACED if current is not None else BASELINE_SYNCED
    result.add("reason_code", code)
    if dry_run:
        result.add("dry_run", "true (nothing written)")
        return result
    now = ctx.clock.now_ms()
    with ctx.db.transaction() as conn:
        try:
            synced = baselines.sync(positions, operator, reason_message, now, replace=replace, conn=conn)
        except BaselineActive:  # someone synced between the read and the write
            result.refused = "baseline_active"
            return result
        AuditLog(ctx.db).write({
            "timestamp_ms": now, "category": BASELINE_CATEGORY, "entity_id": synced.baseline.baseline_id,
            "from_state": synced.replaced.baseline_id if synced.replaced else None,
            "to_state": synced.baseline.baseline_id, "event": "sync-baseline", "event_id": "sync-baseline",
            "reason_code": code, "reason_message": reason_message, "policy_hash": ctx.workspace.policy.hash,
            "metadata": {"operator": operator, "source": source,
                         "positions": {k: str(v) for k, v in synced.baseline.positions.items()}}}, conn=conn)
    _describe("after", synced.baseline, result)
    return result


def reset_baseline(ctx: AppContext, *, operator: str, reason_message: str | None,
                   dry_run: bool = False) -> CommandResult:
    """Deactivate the active baseline, audited `BASELINE_RESET`; refused when none is active."""
    result = CommandResult()
    result.add("command", "reset-baseline")
    baselines = Baselines(ctx.db)
    current = baselines.active()
    _describe("before", current, result)
    if current is None:
        result.refused = "no_active_baseline"
        return result
    result.add("reason_code", BASELINE_RESET)
    if dry_run:
        result.add("dry_run", "true (nothing written)")
        return result
    now = ctx.clock.now_ms()
    with ctx.db.transaction() as conn:
        reset = baselines.reset(now, conn=conn)
        if reset is None:
            result.refused = "no_active_baseline"
            return result
        AuditLog(ctx.db).write({
            "timestamp_ms": now, "category": BASELINE_CATEGORY, "entity_id": reset.baseline_id,
            "from_state": reset.baseline_id, "to_state": None, "event": "reset-baseline",
            "event_id": "reset-baseline", "reason_code": BASELINE_RESET, "reason_message": reason_message,
            "policy_hash": ctx.workspace.policy.hash, "metadata": {"operator": operator}}, conn=conn)
    _describe("after", None, result)
    return result


# --------------------------------------------------------------------------------------------------
# UNKNOWN sweep
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    correlation_id: str
    client_order_id: str
    before: str | None
    after: str | None
    error_code: str | None
    filled_qty: Decimal | None

    def line(self) -> str:
        return (f"resolution={self.correlation_id} client_order_id={self.client_order_id} before={self.before} "
                f"after={self.after} error_code={self.error_code} filled_qty={self.filled_qty}")


def unknown_statuses(ctx: AppContext) -> OrderStatuses:
    """Unresolved and parked order states as the policy lists them, and how they are stored (§3.3, §4.6, §8)."""
    return OrderStatuses.of(ctx.workspace.policy, ORDER)


def recover_orders(ctx: AppContext, venues: Venues | None, *, operator: str, reason_message: str | None,
                   dry_run: bool = False) -> CommandResult:
    """Query every unresolved or parked result once; the policy decides each new status.

    Refused (exit 1) when a result is still unresolved or parked afterwards, so a script notices.
    `venues` may be None only with `dry_run` (nothing is sent)."""
    result = CommandResult()
    result.add("command", "recover-orders")
    statuses = unknown_statuses(ctx)

    def swept(r: OrderResult | None) -> bool:
        return statuses.is_unresolved(r) or statuses.is_parked(r)

    orders = Orders(ctx.db)
    candidates = [u for u in orders.unsettled_intents(statuses.final) if swept(u.result)]
    engine = ctx.runtime.engine
    result.add("before_safety_mode", engine.state(SAFETY))
    result.add("before_safety_reason_code", engine.reason(SAFETY))
    result.add("candidates", len(candidates))
    if dry_run:
        for u in candidates:
            assert u.result is not None
            result.body.append(f"candidate={u.intent.correlation_id} client_order_id={u.intent.client_order_id} "
                                f"status={u.result.status} error_code={u.result.error_code}")
        result.add("dry_run", "true (nothing sent, nothing written)")
        return result
    if candidates:
        if venues is None or venues.binance is None:
            raise BadInput("recover-orders needs the Binance client")
        jobs = CopytradeJobs(ctx, venues, "live")
        venues.binance.sync_time()  # best effort: a failure keeps the old offset, -1021 re-syncs
        # Parked first, through the job's own startup sweep; then each UNKNOWN once through the path
        # the loop takes for an intent that already has a result (a query, never a re-send). In this
        # order an UNKNOWN that the query parks is not queried a second time.
        jobs.sweep_parked()
        for u in candidates:
            assert u.result is not None
            if statuses.is_unresolved(u.result):
                jobs._execute_one(u.intent, u.result)
        resolutions = []
        for u in candidates:
            assert u.result is not None
            after = orders.result(u.intent.correlation_id)
            resolutions.append(Resolution(u.intent.correlation_id, u.intent.client_order_id, u.result.status,
                                          after.status if after else None, after.error_code if after else None,
                                          after.filled_qty if after else None))
        jobs._settle_events()  # events whose intents are now all settled leave DECIDED, as after a tick
        result.body += [r.line() for r in resolutions]
    else:
        resolutions = []
    remaining = [r for r in resolutions if swept(orders.result(r.correlation_id))]
    result.add("resolved", len(resolutions) - len(remaining))
    result.add("remaining_unresolved", len(remaining))
    result.add("after_safety_mode", engine.state(SAFETY))
    result.add("after_safety_reason_code", engine.reason(SAFETY))
    now = ctx.clock.now_ms()
    AuditLog(ctx.db).write({
        "timestamp_ms": now, "category": OPS_CATEGORY, "entity_id": ORDER, "event": "recover-orders",
        "event_id": "recover-orders", "reason_message": reason_message, "policy_hash": ctx.workspace.policy.hash,
        "metadata": {"operator": operator, "resolutions": [
            {"correlation_id": r.correlation_id, "before": r.before, "after": r.after, "error_code": r.error_code}
            for r in resolutions]}})
    if remaining:
        result.refused = "orders_still_unresolved"
    return result


# --------------------------------------------------------------------------------------------------
# promote: what the operator checks by hand (§8)
# --------------------------------------------------------------------------------------------------


def promote_checks(ctx: AppContext, wiring: Wiring) -> list[str]:
    """`ops promote` prints, for the runbook's manual checks before ARMED_LIVE (§8): every UNKNOWN
    (parked included) result, the target's positions (Hyperliquid `clearinghouseState`), and the local
    and exchange (`positionRisk`) positions. A venue that cannot be asked is reported, never fatal."""
    lines = []
    statuses = unknown_statuses(ctx)
    orders = Orders(ctx.db)
    for r in [*statuses.unresolved_results(orders), *statuses.parked_results(orders)]:
        lines.append(f"unknown_order={r.correlation_id} status={r.status} error_code={r.error_code} "
                     f"query_attempts={r.query_attempts}")
    symbol_map = ctx.settings.get("ingest.hyperliquid.symbol_map") or {}
    venues = build_venues(ctx.workspace, "live" if all(wiring.environ.get(n) for n in BINANCE_SECRETS) else
                          "dry-run", wiring)
    if venues.target_wallet:
        target = venues.hyperliquid.clearinghouse_state(venues.target_wallet, sorted(symbol_map))
        if isinstance(target, VenueError):
            lines.append(f"target_positions=unavailable ({target.code} {target.message})")
        else:
            lines += [f"target_position_{coin}={row.szi}" for coin, row in sorted(target.items())]
    else:
        lines.append("target_positions=unavailable (HYPERLIQUID_TARGET_WALLET unset)")
    lines += [f"local_position_{s}={q}" for s, q in sorted(Baselines(ctx.db).local_positions().items())]
    if venues.binance is None:
        lines.append("exchange_positions=unavailable (no Binance client: keys unset or execution disabled)")
    else:
        try:
            lines += [f"exchange_position_{s}={q}" for s, q in sorted(venue_positions(venues.binance).items())]
        except CheckFailed as exc:
            lines.append(f"exchange_positions=unavailable ({exc})")
    return lines
