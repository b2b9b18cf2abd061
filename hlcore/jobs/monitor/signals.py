"""The signal job (spec/monitor.md §4.5, §3.2, §5 `signals`): one 5-minute slot per call.

It measures (sets, ε, classes, EC, CAS, trend, Di, dirty rate, missing %, usable runs) and
reports each measurement to the policy as a fact; the policy answers with the playbook, the
forcing, the invariant verdicts, the lock and the alerts. The job writes what those answers say:

- `signal_lock_check` at cycle start, before each asset and inside the commit (G0). A closed lock
  writes nothing, logs the policy's "blocked" line and reports every asset's slot as missed; a
  lock closing mid-cycle rolls the whole cycle back (nothing is written before the commit).
- `dirty_check` per asset at every slot, locked or not: the dirty machine that can make health
  STALE must be able to clear while the lock it caused is closed (§4.4 Sustained).
- `signal_qa` → `forcing` effects (the strongest wins: risk order from the policy's `risk_modes`
  list, reasons comma-joined in rule order); `signal_scored` → the `playbook` effect;
  `signal_candidate` → `invariant_violated` drops that asset's row (G5/G6).
- One transaction writes `signals`, `signal_contributors` (if N_total > 0) and
  `asset_positioning` for the cycle; then, per committed asset, `signal_committed` (the alert
  machines and delivery run on it) commits together with its alert rows and `alert_state`.

A slot that already has rows is not recomputed (§5: a restarted job computes the latest slot only
if it has no rows), so a rerun writes each asset once and each alert once.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hlcore.app import AppContext
from hlcore.engine.clock import Clock
from hlcore.engine.decision import Decision, Effect
from hlcore.errors import BadInput
from hlcore.jobs.monitor import RunStatuses, observe, report_storage_failure
from hlcore.jobs.monitor import formulas as f
from hlcore.jobs.monitor.alerts import ALERT_SUPPRESSED, ALERT_SURFACED, AlertWriter
from hlcore.jobs.monitor.health import HealthMeter
from hlcore.policy.model import Policy
from hlcore.storage.db import StorageUnavailable
from hlcore.storage.monitor_signals import SignalStore
from hlcore.storage.repos import SystemState

log = logging.getLogger("hlcore.monitor.signals")

# The policy contract this job reads: fact, effect, gate, machine and list names and the lock
# phases (not states, reasons, playbooks or thresholds).
LOCK_CHECK = "signal_lock_check"
DIRTY_CHECK = "dirty_check"
QA = "signal_qa"
SCORED = "signal_scored"
CANDIDATE = "signal_candidate"
COMMITTED = "signal_committed"
SLOT_MISSED = "signal_slot_missed"
FORCING = "forcing"
PLAYBOOK = "playbook"
INVARIANT = "invariant_violated"
LOG = "log"
COMPUTE_GATE = "signals.compute"
COMMIT_GATE = "signals.commit"
TRADING_GATE = "trading"
HEALTH = "health"
SIGNAL_LOCK = "signal_lock"
RISK_MODES_LIST = "risk_modes"
PHASE_START, PHASE_ASSET, PHASE_COMMIT = "cycle_start", "before_asset", "commit"
HEARTBEAT_KEY = "job_heartbeat_signals"

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS


# --------------------------------------------------------------------------------------------------
# What the formulas need from settings and policy
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignalSettings:
    """Everything a cycle reads from settings and the compiled policy, resolved once.

    Attributes:
        interval_ms: slot length; the current window is (T − interval, T], the previous one the
            interval before it, the dirty-rate window both (§2, §4.4).
        exit_fire_pct: EC above it caps CAS and tightens stops (`monitor.alerts.exit_fire_pct`).
        cas_cap: the CAS cap while EC is above the fire level, read from the policy's G6
            invariant so the formula and the check cannot disagree.
        di_high: Di at or above it is the high band (G6 invariant `dispersion gte`).
        ec_low: EC below it is the low band (the playbook table's `ec_low` guard).
        risk_order: risk modes weakest → strongest (the policy's `risk_modes` list).
        flat_playbook: the playbook data-quality forcing imposes (the No-trade playbook).
        runs_per_window: snapshot runs a window can hold (`snapshot_slots` is at most this).
    """

    assets: tuple[str, ...]
    interval_ms: int
    eps_abs: Mapping[str, float]
    eps_rel: float
    eps_lookback_ms: int
    trend_band: float
    trend_periods: int
    min_ratios: int
    ratio_clamp: float
    exit_fire_pct: float
    cas_cap: float
    di_high: float
    ec_low: float
    risk_order: tuple[str, ...]
    flat_playbook: str
    runs_per_window: int

    @classmethod
    def load(cls, settings: Any, policy: Policy) -> SignalSettings:
        s = "monitor.signals."
        return cls(
            assets=tuple(settings.get("monitor.assets")),
            interval_ms=int(settings.get(s + "interval_sec")) * 1000,
            eps_abs={k: float(v) for k, v in settings.get(s + "epsilon_abs").items()},
            eps_rel=float(settings.get(s + "epsilon_rel")),
            eps_lookback_ms=int(float(settings.get(s + "epsilon_lookback_hours")) * HOUR_MS),
            trend_band=float(settings.get(s + "trend_band")),
            trend_periods=int(settings.get(s + "trend_periods")),
            min_ratios=int(settings.get(s + "dispersion_min_ratios")),
            ratio_clamp=float(settings.get(s + "ratio_clamp")),
            exit_fire_pct=float(settings.get("monitor.alerts.exit_fire_pct")),
            cas_cap=_rule_bound(policy, settings, "g6_exit_cluster_risk", "cas", "gt"),
            di_high=_rule_bound(policy, settings, "g6_dispersion_no_trade", "dispersion", "gte"),
            ec_low=_resolve(policy.guards.get("ec_low", {}).get("lt"), settings, "guard ec_low"),
            risk_order=tuple(policy.lists[RISK_MODES_LIST]),
            flat_playbook=_forced_playbook(policy),
            runs_per_window=(int(settings.get(s + "interval_sec"))
                             // int(settings.get("monitor.snapshots.interval_sec"))),
        )


def _resolve(value: Any, settings: Any, where: str) -> float:
    if isinstance(value, Mapping) and "config" in value:
        value = settings.get(value["config"])
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise BadInput(f"the policy has no numeric bound at {where} (the signal formulas need it)")
    return float(value)


def _leaves(node: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        if "fact" in node:
            yield node
        for v in node.values():
            yield from _leaves(v)
    elif isinstance(node, list | tuple):
        for v in node:
            yield from _leaves(v)


def _rule_bound(policy: Policy, settings: Any, rule_id: str, fact: str, op: str) -> float:
    """The `op` bound on `fact` in rule `rule_id`'s condition."""
    for table in policy.tables:
        for row in table.rows:
            if row.id == rule_id:
                for leaf in _leaves(row.when):
                    if leaf.get("fact") == fact and op in leaf:
                        return _resolve(leaf[op], settings, f"{table.name}.{rule_id} {fact} {op}")
    raise BadInput(f"the policy has no rule {rule_id!r} bounding {fact} (the signal formulas need it)")


def _forced_playbook(policy: Policy) -> str:
    """The playbook the `forcing` effects impose: the one that allows no new exposure."""
    forced = {e["playbook"] for t in policy.tables for r in t.rows for e in (r.then.get("effects") or ())
              if isinstance(e, Mapping) and e.get("kind") == FORCING and isinstance(e.get("playbook"), str)}
    if len(forced) != 1:
        raise BadInput(f"the policy's forcing effects should impose exactly one playbook, found {sorted(forced)}")
    return forced.pop()


# --------------------------------------------------------------------------------------------------
# One asset's measurements and verdicts
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """What the data say about one asset at slot T, before the policy speaks."""

    asset: str
    expected: int
    total: int
    missing_pct: float
    usable_runs: int
    dirty_count: int
    dirty_rate_pct: float
    counts: f.Counts
    ec: float
    cas: float
    trend: f.Trend
    previous_trend: str | None
    di: float
    positioning: f.Positioning

    @property
    def missing_count(self) -> int:
        return self.expected - self.total


@dataclass(frozen=True)
class Forcing:
    """The strongest of the `forcing` effects (§4.5 forcing table)."""

    playbook: str | None = None
    risk_at_least: str | None = None
    cas: float | None = None
    forbid_add_exposure: bool = False
    reasons: tuple[str, ...] = ()

    @classmethod
    def combine(cls, effects: Iterable[Effect], risk_order: tuple[str, ...]) -> Forcing:
        playbook = risk = None
        cas = None
        forbid = False
        reasons: list[str] = []
        for e in effects:
            d = e.data
            playbook = d.get("playbook") or playbook
            if d.get("risk_at_least") is not None:
                risk = _stronger(risk, d["risk_at_least"], risk_order)
            if d.get("cas") is not None:
                cas = float(d["cas"])
            if d.get("add_exposure") is False:
                forbid = True
            if d.get("degraded_reason") and d["degraded_reason"] not in reasons:
                reasons.append(d["degraded_reason"])
        return cls(playbook, risk, cas, forbid, tuple(reasons))


def _stronger(a: str | None, b: str | None, order: tuple[str, ...]) -> str | None:
    if a is None or b is None:
        return a if b is None else b
    if a not in order or b not in order:  # unknown risk: G5 rejects the row; keep it visible
        return b if a in order else a
    return a if order.index(a) >= order.index(b) else b


@dataclass
class SignalRun:
    """The outcome of one slot.

    Attributes:
        slot_ts: T.
        committed: assets whose row was written.
        dropped: assets whose candidate violated an invariant (no row, alerts suppressed).
        blocked_reason: the lock's reason when the cycle was locked or rolled back.
        skipped: the slot already had rows; nothing was recomputed.
        error: a storage failure that stopped the cycle (reported as `storage_failed`).
        decisions: every decision the cycle observed, in order.
        alerts: the `alerts` rows written.
    """

    slot_ts: int
    committed: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    blocked_reason: str | None = None
    skipped: bool = False
    error: str | None = None
    decisions: list[Decision] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def alert_effects(self) -> list[Effect]:
        return [e for d in self.decisions for e in d.effects if e.kind in (ALERT_SURFACED, ALERT_SUPPRESSED)]


# --------------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------------


class SignalJob:
    """`SignalJob(ctx, clock).run(slot_ts)`: compute, gate and commit one slot (§4.5, G0–G6)."""

    def __init__(self, ctx: AppContext, clock: Clock, *, alerts: AlertWriter | None = None):
        self.ctx = ctx
        self.clock = clock
        self.runtime = ctx.runtime
        self.engine = ctx.runtime.engine
        self.store = SignalStore(ctx.db)
        self.alerts = alerts or AlertWriter(ctx)
        self.cfg = SignalSettings.load(ctx.settings, ctx.workspace.policy)
        self.statuses = RunStatuses.from_policy(ctx.workspace.policy)
        self.meter = HealthMeter(ctx.db, ctx.workspace.policy, ctx.settings)
        self._lookback: dict[str, LookbackBook] = {}  # per asset: the ε lookback, kept sorted

    # ------------------------------------------------------------------ entry point
    def run(self, slot_ts: int) -> SignalRun:
        """Compute slot `slot_ts` once. G1: T must be a slot boundary (seconds 0, minute % 5 = 0)."""
        if slot_ts % self.cfg.interval_ms:
            raise BadInput(f"G1: signal slot {slot_ts} is not aligned to {self.cfg.interval_ms} ms")
        result = SignalRun(slot_ts)
        try:
            if self.store.assets_at(slot_ts):
                result.skipped = True
                return result
            self._cycle(slot_ts, result)
        except StorageUnavailable as exc:
            log.error("signal cycle %s stopped: %s", slot_ts, exc)
            result.error = str(exc)
            result.decisions.append(report_storage_failure(self.runtime, "signals"))
            self._lock_without_storage(result)
            return result
        try:
            SystemState(self.ctx.db).set(HEARTBEAT_KEY, str(self.clock.now_ms()), self.clock.now_ms())
        except StorageUnavailable as exc:  # the cycle stands; the next heartbeat retries
            log.error("signal heartbeat not written: %s", exc)
        return result

    def _cycle(self, slot_ts: int, result: SignalRun) -> None:
        cfg = self.cfg
        for asset in cfg.assets:  # measured every slot, locked or not (see the module docstring)
            dirty, total = self.store.dirty_counts(asset, slot_ts - 2 * cfg.interval_ms, slot_ts)
            self._observe(result, DIRTY_CHECK, {"asset": asset, "dirty_rate_pct": _pct(dirty, total)})
        if not self._lock_open(result, PHASE_START, None):
            return self._abandon(slot_ts, result)
        candidates: list[tuple[Measured, dict[str, Any]]] = []
        dropped: list[str] = []
        for asset in cfg.assets:
            if not self._lock_open(result, PHASE_ASSET, asset):
                return self._abandon(slot_ts, result)
            started = self.clock.now_ms()
            m = self.measure(asset, slot_ts)
            row = self._decide(m, slot_ts, result)
            if row is None:
                dropped.append(asset)
                continue
            row["computation_ms"] = self.clock.now_ms() - started
            candidates.append((m, row))
        with self.ctx.db.transaction() as conn:  # the cycle's one transaction
            checks = self._check(PHASE_COMMIT, None, conn=conn)
            committing = self.engine.may(COMMIT_GATE)
            if committing:
                now = self.clock.now_ms()
                self.store.write_cycle(
                    [{**row, "created_at": now} for _, row in candidates],
                    [_contributors_row(slot_ts, m) for m, _ in candidates if m.total > 0],
                    [_positioning_row(slot_ts, m) for m, _ in candidates],
                    conn=conn,
                )
        self._record(checks, result)
        if not committing:  # closed inside the commit: nothing of the cycle was written
            result.blocked_reason = self._blocked_reason(checks[-1])
            return self._abandon(slot_ts, result)
        result.committed = tuple(m.asset for m, _ in candidates)
        result.dropped = tuple(dropped)
        for m, row in candidates:
            self._deliver(result, COMMITTED, {
                "asset": m.asset, "signal_ts": slot_ts, "exit_cluster_score": row["exit_cluster_score"],
                "playbook": row["allowed_playbook"], "risk_mode": row["risk_mode"],
                "is_degraded": row["is_degraded"]})
        for asset in dropped:
            self._deliver(result, SLOT_MISSED, {"asset": asset, "signal_ts": slot_ts})

    # ------------------------------------------------------------------ measuring
    def measure(self, asset: str, slot_ts: int) -> Measured:
        """Everything §4.5 computes for `asset` at T, from storage alone."""
        cfg = self.cfg
        win = cfg.interval_ms
        universe_now = self.store.universe_at(slot_ts)
        expected = universe_now & self.store.universe_at(slot_ts - 2 * win)
        # One read of the slots not seen before (sealed slots are kept by the store, issue 12):
        # the ε lookback and both windows are cut from it.
        slots = self.store.clean_slots(asset, slot_ts - max(cfg.eps_lookback_ms, 2 * win), slot_ts)
        cur = _latest(slots, slot_ts - win, slot_ts)
        prev = _latest(slots, slot_ts - 2 * win, slot_ts - win)
        comparable = sorted(w for w in expected if w in cur and w in prev)
        book = self._lookback.get(asset)
        if book is None:
            book = self._lookback[asset] = LookbackBook()
        lookback = book.update(slots, slot_ts - cfg.eps_lookback_ms, slot_ts)
        eps_abs = cfg.eps_abs[asset]
        behaviours, ratios = [], []
        for w in comparable:
            eps = f.epsilon_of_sorted(lookback.get(w, ()), eps_abs, cfg.eps_rel)
            behaviours.append(f.classify(prev[w], cur[w], eps))
            ratios.append(f.ratio(prev[w], cur[w], eps, cfg.ratio_clamp))
        counts = f.Counts.of(behaviours)
        ec = f.exit_cluster(counts)
        cas = f.alignment(counts, ec, exit_fire_pct=cfg.exit_fire_pct, cas_cap=cfg.cas_cap)
        past = [slot_ts - k * win for k in range(1, cfg.trend_periods + 1)]
        stored = self.store.stored_scores(asset, past)
        trend = f.trend(cas, [stored.get(ts, (None, None))[0] for ts in past], band=cfg.trend_band,
                        periods=cfg.trend_periods)
        dirty, rows = self.store.dirty_counts(asset, slot_ts - 2 * win, slot_ts)
        n_expected = len(expected)
        return Measured(
            asset=asset,
            expected=n_expected,
            total=len(comparable),
            # nobody expected means nothing to compare: fully missing, never "complete"
            missing_pct=100.0 if n_expected == 0 else (n_expected - len(comparable)) / n_expected * 100.0,
            usable_runs=self.store.count_runs(slot_ts - win, slot_ts, self.statuses.usable),
            dirty_count=dirty,
            dirty_rate_pct=_pct(dirty, rows),
            counts=counts,
            ec=ec,
            cas=cas,
            trend=trend,
            previous_trend=stored.get(past[0], (None, None))[1],
            di=f.dispersion(ratios, min_ratios=cfg.min_ratios),
            positioning=f.positioning(cur[w] for w in sorted(universe_now) if w in cur),
        )

    # ------------------------------------------------------------------ the policy's verdicts
    def _decide(self, m: Measured, slot_ts: int, result: SignalRun) -> dict[str, Any] | None:
        """Report the measurements; build the row the verdicts describe, or None if G5/G6 fail."""
        cfg = self.cfg
        qa = self._observe(result, QA, {"asset": m.asset, "usable_runs": m.usable_runs,
                                        "missing_pct": m.missing_pct, "dirty_rate_pct": m.dirty_rate_pct},
                           asset=m.asset)
        forcing = Forcing.combine(qa.find(FORCING), cfg.risk_order)
        scored = self._observe(result, SCORED, dict(asset=m.asset, cas=m.cas, trend=str(m.trend), dispersion=m.di,
                                                    exit_cluster=m.ec), asset=m.asset)
        verdicts = scored.find(PLAYBOOK)
        if not verdicts:
            raise BadInput(f"the policy gave no {PLAYBOOK!r} effect for {SCORED!r} ({m.asset})")
        playbook = forcing.playbook or verdicts[0].data["playbook"]
        risk = _stronger(verdicts[0].data["risk_mode"], forcing.risk_at_least, cfg.risk_order)
        cas = forcing.cas if forcing.cas is not None else m.cas
        trading_allowed = (playbook != cfg.flat_playbook and risk != cfg.risk_order[-1]
                           and not forcing.forbid_add_exposure and self.engine.may(TRADING_GATE))
        candidate = self._observe(result, CANDIDATE, dict(asset=m.asset, cas=cas, dispersion=m.di, exit_cluster=m.ec,
                                                          playbook=playbook, risk_mode=risk, trend=str(m.trend)))
        violations = candidate.find(INVARIANT)
        if violations:
            log.error("signal %s %s not written: invariant violated (%s)", slot_ts, m.asset,
                      ",".join(str(v.data.get("check")) for v in violations))
            return None
        return {
            "signal_ts": slot_ts,
            "asset": m.asset,
            "alignment_score": cas,
            "dispersion_index": m.di,
            "exit_cluster_score": m.ec,
            "alignment_trend": str(m.trend),
            "allowed_playbook": playbook,
            "risk_mode": risk,
            "add_exposure": f.add_exposure(m.trend, m.ec, m.di, ec_low=cfg.ec_low, di_high=cfg.di_high,
                                           trading_allowed=trading_allowed),
            "tighten_stops": f.tighten_stops(m.ec, m.di, m.trend, m.previous_trend,
                                             exit_fire_pct=cfg.exit_fire_pct, di_high=cfg.di_high),
            "wallet_count": m.total,
            "expected_count": m.expected,
            "missing_count": m.missing_count,
            "dirty_count": m.dirty_count,
            "dirty_rate_pct": m.dirty_rate_pct,
            "snapshot_slots": min(m.usable_runs, cfg.runs_per_window),
            "is_degraded": bool(forcing.reasons),
            "degraded_reason": ",".join(forcing.reasons) or None,
            "health_state": self.engine.state(HEALTH),
        }

    # ------------------------------------------------------------------ lock, observe, deliver
    def _age_ref_ms(self, conn: Any = None) -> int | None:
        """The live age reference (§4.3): now − the latest usable run, or − first start."""
        now = self.clock.now_ms()
        last = self.store.last_run_ts(self.statuses.usable, at_or_before=now, conn=conn)
        if last is not None:
            return now - last
        first = self.store.first_start_ts(conn=conn)
        return None if first is None else now - first

    def _check(self, phase: str, asset: str | None, *, conn: Any = None) -> list[Decision]:
        """Health at this instant (monitor §3.1 `health(now)`: the lock, the alert gate and the
        row's `health_state` never read a verdict older than the data, even with the health job
        dead), then `signal_lock_check`; neither is persisted yet (see `_record`)."""
        health = self.meter.observe_now(self.runtime, self.clock.now_ms(), conn=conn)
        fields = {"phase": phase, "asset": asset, "age_ref_ms": self._age_ref_ms(conn)}
        return [health, self.runtime.observe(LOCK_CHECK, fields, persist=False)]

    def _record(self, decisions: list[Decision], result: SignalRun) -> None:
        """Persist a health evaluation and lock check, each with the System Stale row it may have
        fired (the locked signal job fires it too, S7), in transactions of their own: for the check
        inside the commit that is after the cycle's transaction ends, so a rolled-back cycle still
        records the closed lock."""
        for decision in decisions:  # one transaction each: a joined persist re-sends rows until commit
            with self.ctx.db.transaction() as conn:
                self.runtime.persist(decision, conn=conn)
                result.alerts += self.alerts.write([decision], conn=conn)
        result.decisions.extend(decisions)
        if not self.engine.may(COMPUTE_GATE) or not self.engine.may(COMMIT_GATE):
            _log_effects(decisions[-1])

    def _lock_without_storage(self, result: SignalRun) -> None:
        """G0 for a cycle storage stopped: the outage made health STALE (H6), so the lock closes
        with its reason and logs the blocked line like any locked cycle (§3.2); the decision is
        persisted with the next good write."""
        decision, _ = observe(self.runtime, LOCK_CHECK, {"phase": PHASE_START, "asset": None, "age_ref_ms": None})
        result.decisions.append(decision)
        if not self.engine.may(COMPUTE_GATE):
            result.blocked_reason = self._blocked_reason(decision)
            _log_effects(decision)

    def _lock_open(self, result: SignalRun, phase: str, asset: str | None) -> bool:
        checks = self._check(phase, asset)
        self._record(checks, result)
        if self.engine.may(COMPUTE_GATE):
            return True
        result.blocked_reason = self._blocked_reason(checks[-1])
        return False

    def _blocked_reason(self, decision: Decision) -> str | None:
        for e in decision.find(LOG):
            if e.data.get("reason"):
                return str(e.data["reason"])
        return self.engine.reason(SIGNAL_LOCK)

    def _abandon(self, slot_ts: int, result: SignalRun) -> None:
        """Nothing was written for this slot: every asset's slot is missed (§3.4 regime)."""
        result.committed = ()
        for asset in self.cfg.assets:
            self._deliver(result, SLOT_MISSED, {"asset": asset, "signal_ts": slot_ts})

    def _observe(self, result: SignalRun, kind: str, fields: dict[str, Any], *, asset: str | None = None) -> Decision:
        decision = self.runtime.observe(kind, fields)
        result.decisions.append(decision)
        _log_effects(decision, asset)
        return decision

    def _deliver(self, result: SignalRun, kind: str, fields: dict[str, Any]) -> None:
        """Observe a post-commit fact; its machine state and alert rows commit together."""
        with self.ctx.db.transaction() as conn:
            decision = self.runtime.observe(kind, fields, conn=conn)
            result.alerts += self.alerts.write([decision], conn=conn)
        result.decisions.append(decision)
        _log_effects(decision, fields.get("asset"))


def _log_effects(decision: Decision, asset: str | None = None) -> None:
    """Write the policy's `log` effects: "<message>: <reason>" (e.g. the lock's blocked line)."""
    for e in decision.find(LOG):
        message = str(e.data.get("message", ""))
        if e.data.get("reason"):
            message = f"{message}: {e.data['reason']}"
        elif asset:
            message = f"{message}: {asset}"
        level = logging.getLevelName(str(e.data.get("level", "info")).upper())
        log.log(level if isinstance(level, int) else logging.INFO, message)


def _latest(slots: list[tuple[int, dict[str, float]]], after_ms: int, up_to_ms: int) -> dict[str, float]:
    """Per wallet, its clean szi at the latest slot in `(after_ms, up_to_ms]` (§4.5 Rows)."""
    out: dict[str, float] = {}
    for ts, rows in slots:
        if after_ms < ts <= up_to_ms:
            out.update(rows)
    return out


class LookbackBook:
    """Per wallet, the absolute clean sizes of the ε lookback, ascending, kept across cycles (issue 16:
    re-collecting and sorting 24 h × 200 wallets per asset was most of a cycle once the lookback
    filled). `update` drops the slots that left the window or whose rows object changed and adds
    the new ones; `SignalStore.clean_slots` returns the same read-only object for a slot while its
    clean rows stay the same (sealed, same dirty marks), so a changed object is a changed slot.
    The result equals `_history` + `f.epsilon` (a hypothesis test compares them)."""

    def __init__(self) -> None:
        self.slots: dict[int, Mapping[str, float]] = {}  # the rows objects counted in `values`
        self.values: dict[str, list[float]] = {}

    def update(self, slots: list[tuple[int, Mapping[str, float]]], after_ms: int,
               up_to_ms: int) -> dict[str, list[float]]:
        """The lookback `(after_ms, up_to_ms]` of `slots`, per wallet, ascending (read-only lists)."""
        wanted = {ts: rows for ts, rows in slots if after_ms < ts <= up_to_ms}
        for ts in [ts for ts, rows in self.slots.items() if wanted.get(ts) is not rows]:
            for w, v in self.slots.pop(ts).items():
                values = self.values[w]
                del values[bisect_left(values, abs(v))]
                if not values:
                    del self.values[w]
        for ts, rows in wanted.items():
            if ts not in self.slots:
                for w, v in rows.items():
                    if v != v:  # NaN: no order to keep; start again from the slots, as `_history` would
                        return self._rebuilt(wanted)
                    insort(self.values.setdefault(w, []), abs(v))
                self.slots[ts] = rows
        return self.values

    def _rebuilt(self, wanted: dict[int, Mapping[str, float]]) -> dict[str, list[float]]:
        self.slots = {}
        self.values = {}
        out: dict[str, list[float]] = {}
        for ts in sorted(wanted):
            for w, v in wanted[ts].items():
                out.setdefault(w, []).append(abs(v))
        return {w: sorted(v) for w, v in out.items()}  # not kept: the next update starts afresh


def _history(slots: list[tuple[int, dict[str, float]]], after_ms: int, up_to_ms: int,
             wallets: Iterable[str]) -> dict[str, list[float]]:
    """The ε lookback of `wallets`: every clean szi in `(after_ms, up_to_ms]`."""
    out: dict[str, list[float]] = {w: [] for w in wallets}
    for ts, rows in slots:
        if after_ms < ts <= up_to_ms:
            for w, v in rows.items():  # a slot's rows in any order: each wallet's list stays in slot order
                values = out.get(w)
                if values is not None:
                    values.append(v)
    return out


def _pct(part: int, whole: int) -> float:
    return part / whole * 100.0 if whole else 0.0


def _contributors_row(slot_ts: int, m: Measured) -> dict[str, Any]:
    c = f.contributors(m.counts)
    assert c is not None  # only called when N_total > 0
    return {
        "signal_ts": slot_ts, "asset": m.asset,
        "pct_add_long": c.pct_add_long, "pct_add_short": c.pct_add_short,
        "pct_reducers": c.pct_reducers, "pct_flat": c.pct_flat,
        "count_add_long": c.counts.add_long, "count_add_short": c.counts.add_short,
        "count_reducers": c.counts.reducers, "count_flat": c.counts.flat,
        "total_wallets": c.total_wallets,
    }


def _positioning_row(slot_ts: int, m: Measured) -> dict[str, Any]:
    p = m.positioning
    return {
        "signal_ts": slot_ts, "asset": m.asset, "net_szi": p.net_szi,
        "long_count": p.long_count, "short_count": p.short_count, "flat_count": p.flat_count,
        "long_pct": p.long_pct, "short_pct": p.short_pct, "flat_pct": p.flat_pct,
        "top10_share_pct": p.top10_share_pct,
    }


__all__ = ["Forcing", "LookbackBook", "Measured", "SignalJob", "SignalRun", "SignalSettings"]
