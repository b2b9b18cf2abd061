"""Wallet-monitor ingestion jobs: universe, snapshots, health (spec/monitor.md §4.1–4.4, §5).

They measure and report facts (`universe_refresh`, `snapshot_run`, `dirty_check`,
`health_evaluated`, `storage_failed`); the policy decides, and its verdict effects and machine
states are what the jobs store. This package module holds what the three share: the names of the
policy contract they read, the run status words read from the policy, the HTTP client they are
given, retries on the injected clock, and an observe that survives a storage outage.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from hlcore.adapters.http import RATE_LIMITED, RetryPolicy, VenueError, VenueHttp, WeightLimiter
from hlcore.adapters.hyperliquid.client import HyperliquidClient
from hlcore.engine.clock import Clock
from hlcore.engine.decision import Decision, Effect
from hlcore.engine.runtime import Runtime
from hlcore.policy.model import Policy
from hlcore.storage.db import StorageUnavailable

# The policy contract these jobs read (machine, effect and gate names; not states or reasons).
HEALTH = "health"
UNIVERSE = "universe"
UNIVERSE_VERDICT = "universe_verdict"
RUN_VERDICT = "run_verdict"
ALERT_SURFACED = "alert_surfaced"
SIGNALS_GATE = "signals.compute"
MONITOR_APP = "monitor"

MINUTE_MS = 60_000


class VerdictMissing(RuntimeError):
    """The policy answered a measured fact with no verdict effect: a policy bug, not venue data."""


def verdict(decision: Decision, kind: str) -> Effect:
    """The single `kind` effect of a decision (first-match tables give exactly one)."""
    found = decision.find(kind)
    if not found:
        raise VerdictMissing(f"the policy gave no {kind!r} effect for {decision.fact!r}")
    return found[0]


@dataclass(frozen=True)
class RunStatuses:
    """The snapshot-run status words, read from the policy's `run_verdict` effects.

    Attributes:
        usable: statuses whose verdict carries no error (§2 usable run: success or partial).
        full: the first of those in table order, the strictest row (§2 clean run: success).
        all: every status the table can give.
    """

    usable: frozenset[str]
    full: str
    all: frozenset[str]

    @classmethod
    def from_policy(cls, policy: Policy, kind: str = RUN_VERDICT) -> RunStatuses:
        ordered: list[tuple[str, bool]] = []
        for table in sorted(policy.tables, key=lambda t: t.order):
            for row in table.rows:
                for effect in row.then.get("effects") or ():
                    if isinstance(effect, dict) and effect.get("kind") == kind and "status" in effect:
                        ordered.append((str(effect["status"]), effect.get("error") is not None))
        usable = [s for s, has_error in ordered if not has_error]
        if not usable:
            raise VerdictMissing(f"the policy has no {kind!r} verdict without an error")
        return cls(frozenset(usable), usable[0], frozenset(s for s, _ in ordered))


def observe(runtime: Runtime, kind: str, fields: dict[str, Any], *,
            conn: Any = None) -> tuple[Decision, StorageUnavailable | None]:
    """Observe a fact; the decision stands even if persisting it fails (the runtime retries the
    unsaved rows with its next decision). Returns the decision and the storage failure, if any."""
    decision = runtime.observe(kind, fields, persist=False)
    if not (decision.transitions or decision.effects or decision.events or decision.vars):
        return decision, None
    try:
        runtime.persist(decision, conn=conn)
    except StorageUnavailable as exc:
        return decision, exc
    return decision, None


def report_storage_failure(runtime: Runtime, operation: str) -> Decision:
    """H6: observe `storage_failed{app: monitor}`; persisting it may fail too and is retried later."""
    decision, _ = observe(runtime, "storage_failed", {"app": MONITOR_APP, "operation": operation})
    return decision


# --------------------------------------------------------------------------------------------------
# HTTP: one client per host, retries in the job on the injected clock
# --------------------------------------------------------------------------------------------------


class LockedWeightLimiter(WeightLimiter):
    """A `WeightLimiter` safe to share between the snapshot job's worker threads."""

    def __init__(self, clock: Clock, budget_per_min: int, window_ms: int = MINUTE_MS):
        super().__init__(clock, budget_per_min, window_ms)
        self._lock = threading.Lock()

    def wait_ms(self, weight: int) -> int:
        with self._lock:
            return super().wait_ms(weight)

    def spend(self, weight: int) -> None:
        with self._lock:
            super().spend(weight)

    @property
    def used(self) -> int:
        with self._lock:
            return super().used


def build_client(base_url: str, *, timeout_sec: float, clock: Clock, sleep: Callable[[float], None],
                 rng: random.Random, session: requests.Session | None = None,
                 weight_budget_per_min: int | None = None) -> HyperliquidClient:
    """A Hyperliquid client for the monitor: one attempt per request at the transport level,
    because the jobs retry themselves on the spec's schedule (`retry_delays_sec`, and for snapshots
    only before the cycle deadline). `base_url` is the info URL (`monitor.snapshots.info_url`); the
    leaderboard is fetched by absolute URL through the same kind of client."""
    limiter = None if weight_budget_per_min is None else LockedWeightLimiter(clock, weight_budget_per_min)
    http = VenueHttp("hyperliquid", base_url, clock=clock, sleep=sleep, rng=rng,
                     timeout_ms=int(float(timeout_sec) * 1000),
                     retry=RetryPolicy(max_attempts=1, base_delay_ms=0, max_delay_ms=0, jitter_ms=0),
                     limiter=limiter, session=session)
    return HyperliquidClient(http, info_path="")


@dataclass(frozen=True)
class Attempts:
    """What a retried call came back with: the last result, how many attempts, how many 429s."""

    result: Any
    attempts: int
    rate_limited: int


def with_retries(call: Callable[[], Any], *, delays_sec: list[float], jitter_ms: float, clock: Clock,
                 sleep: Callable[[float], None], rng: random.Random, deadline_ms: int | None = None) -> Attempts:
    """Call, and retry a retryable `VenueError` after each of `delays_sec` (+ uniform jitter, or the
    venue's Retry-After when longer). With a deadline, a retry whose wait would end at or after it
    is not made, and no attempt starts at or after it (§4.2 Transport)."""
    attempts = rate_limited = 0
    result: Any = None
    for index in range(len(delays_sec) + 1):
        if deadline_ms is not None and clock.now_ms() >= deadline_ms:
            break
        result = call()
        attempts += 1
        if isinstance(result, VenueError) and result.code == RATE_LIMITED and result.sent:
            rate_limited += 1
        if not isinstance(result, VenueError) or not result.retryable or index == len(delays_sec):
            break
        wait_ms = float(delays_sec[index]) * 1000 + (rng.uniform(0, jitter_ms) if jitter_ms else 0.0)
        if result.retry_after_ms:
            wait_ms = max(wait_ms, float(result.retry_after_ms))
        if deadline_ms is not None and clock.now_ms() + wait_ms >= deadline_ms:
            break
        sleep(wait_ms / 1000)
    return Attempts(result, attempts, rate_limited)


__all__ = [
    "ALERT_SURFACED",
    "HEALTH",
    "MONITOR_APP",
    "RUN_VERDICT",
    "SIGNALS_GATE",
    "UNIVERSE",
    "UNIVERSE_VERDICT",
    "Attempts",
    "LockedWeightLimiter",
    "RunStatuses",
    "VerdictMissing",
    "build_client",
    "observe",
    "report_storage_failure",
    "verdict",
    "with_retries",
]
