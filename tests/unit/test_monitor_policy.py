"""The wallet monitor's operational safety policy, read as its runbook (monitor spec §3, §4, §9).

Every case feeds facts to the engine running the default policy (machines/*.yaml, rules/*.yaml)
and checks states, reason codes, effects and gates at the spec's boundaries. Times are epoch ms on
a manual clock; runs are UTC minutes, signal slots are 5-minute marks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from hlcore.engine.core import Engine
from hlcore.engine.decision import Decision, Effect

T0 = 1_769_248_800_000  # 2026-01-24T10:00:00Z, a round minute (and a 5-minute signal slot)
SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
SLOT = 5 * MIN


# =========================================================================== helpers


def health_row(state: str = "HEALTHY", reason: str = "OK", latched_since: int | None = None,
               manual_halt: bool = False) -> dict[str, Any]:
    """A persisted `health` instance (what a restarted job reads back)."""
    return {"machine": "health", "instance": "health", "key": [], "state": state, "reason": reason,
            "since_ms": T0, "vars": {"latched_since": latched_since, "manual_halt": manual_halt}}


@pytest.fixture
def healthy(make_engine: Callable[..., Any]) -> Callable[..., Any]:
    """`healthy(start_ms=T0)`: HEALTHY/OK, two clean adjacent runs behind it, no latch."""

    def make(start_ms: int = T0, **kw: Any) -> Any:
        return make_engine(start_ms=start_ms, persisted=[health_row()], **kw)

    return make


@dataclass
class Run:
    """One `ingest_runs` row, reduced to what health reads."""

    ts: int
    coverage: float = 100.0
    nonnull: float = 100.0   # the lowest per-asset non-null rate

    @property
    def status(self) -> str:  # S3: success >= 90, partial > 0, failed at 0 successes
        return "success" if self.coverage >= 90 else "partial" if self.coverage > 0 else "failed"

    @property
    def usable(self) -> bool:
        return self.status in ("success", "partial")

    @property
    def clean(self) -> bool:
        return self.status == "success" and self.nonnull >= 80


class Ingestion:
    """The stored runs, measured the way the health job measures them (§2, §4.3)."""

    def __init__(self, first_start_ms: int = T0 - HOUR):
        self.runs: list[Run] = []
        self.first_start_ms = first_start_ms

    def run(self, ts: int, coverage: float = 100.0, nonnull: float = 100.0) -> Ingestion:
        self.runs.append(Run(ts, coverage, nonnull))
        return self

    def clean_streak(self) -> int:
        """Consecutive clean, minute-adjacent runs ending at the latest run."""
        streak, newer = 0, None
        for r in reversed(self.runs):
            if not r.clean or (newer is not None and newer.ts - r.ts != MIN):
                break
            streak, newer = streak + 1, r
        return streak

    def facts(self, now: int, storage_ok: bool = True) -> dict[str, Any]:
        usable = [r for r in self.runs if r.usable]
        latest = self.runs[-1] if self.runs else None
        age = now - usable[-1].ts if usable else None
        return {
            "storage_ok": storage_ok,
            "has_usable_run": bool(usable),
            "latest_status": latest.status if latest else None,
            "age_ms": age,
            "age_ref_ms": age if age is not None else now - self.first_start_ms,
            "coverage_pct": latest.coverage if latest else None,
            "min_nonnull_pct": latest.nonnull if latest else None,
            "clean_streak": self.clean_streak(),
            "latest_run_ts": latest.ts if latest else None,
        }


def evaluate(engine: Engine, clock: Any, ingestion: Ingestion, at: int, storage_ok: bool = True) -> Decision:
    """The health job at `at` (it runs after each run and every minute at second 30)."""
    clock.set(at)
    return engine.observe("health_evaluated", ingestion.facts(at, storage_ok))


def health_eval(**fields: Any) -> dict[str, Any]:
    """A health_evaluated fact: two clean adjacent runs, 30 s old, unless overridden."""
    base = {"storage_ok": True, "has_usable_run": True, "latest_status": "success", "age_ms": 30 * SEC,
            "age_ref_ms": 30 * SEC, "coverage_pct": 100.0, "min_nonnull_pct": 100.0, "clean_streak": 2,
            "latest_run_ts": T0 - 30 * SEC}
    base.update(fields)
    return base


def lock_check(engine: Engine, age_ref_ms: int | None = 30 * SEC, phase: str = "cycle_start",
               asset: str = "HYPE") -> Decision:
    return engine.observe("signal_lock_check", {"phase": phase, "asset": asset, "age_ref_ms": age_ref_ms})


def dashboard(engine: Engine, signal_age_ms: int | None = 60 * SEC, storage_ok: bool = True) -> Decision:
    return engine.observe("dashboard_refresh", {"signal_age_ms": signal_age_ms, "storage_ok": storage_ok})


def commit(engine: Engine, clock: Any, at: int, asset: str = "BTC", ec: float = 5.0, playbook: str = "No-trade",
           risk: str = "Reduced", degraded: bool = False) -> Decision:
    """One asset's committed signal row at slot `at` (the alert engine runs right after)."""
    clock.set(at)
    return engine.observe("signal_committed", {"asset": asset, "signal_ts": at, "exit_cluster_score": ec,
                                               "playbook": playbook, "risk_mode": risk, "is_degraded": degraded})


def fire(engine: Engine, asset: str = "BTC", alert_type: str = "exit_cluster", degraded: bool = False,
         cooldown_ms: int | None = None) -> Decision:
    """An alert machine fired (the internal `alert_fired` fact): A1 -> A4 -> A5 decides."""
    if cooldown_ms is None:
        cooldown_ms = 60 * MIN if alert_type == "exit_cluster" else 30 * MIN
    now = engine.clock.now_ms()
    return engine.observe("alert_fired", {
        "asset": asset, "alert_type": alert_type, "severity": "high" if alert_type == "exit_cluster" else "medium",
        "cooldown_ms": cooldown_ms, "is_degraded": degraded, "signal_ts": now, "template": "t", "score": 30.0,
        "playbook": "No-trade", "risk_mode": "Defensive"})


def alerts(decision: Decision, alert_type: str | None = None) -> list[Effect]:
    return [e for e in decision.find("alert_surfaced") if alert_type is None or e.data.get("alert_type") == alert_type]


def suppressions(decision: Decision, alert_type: str | None = None) -> list[str]:
    return [e.data["suppressed_reason"] for e in decision.find("alert_suppressed")
            if alert_type is None or e.data.get("alert_type") == alert_type]


def delivery(decision: Decision, alert_type: str) -> tuple[str, ...] | None:
    """What the alert engine did with `alert_type` on this fact: None, ('surfaced',) or ('suppressed', why)."""
    out = [("surfaced",) for _ in alerts(decision, alert_type)]
    out += [("suppressed", r) for r in suppressions(decision, alert_type)]
    assert len(out) <= 1, f"more than one alert row for one fact: {out}"
    return out[0] if out else None


def health(engine: Engine) -> tuple[str, str | None]:
    return engine.state("health"), engine.reason("health")


# =========================================================================== §4.3 health, drill 8

# Each case: the stored runs, when the health job evaluates, the expected (state, reason).
HEALTH_BOUNDARIES = [
    pytest.param(Ingestion().run(T0 - MIN).run(T0), T0 + 120 * SEC, "HEALTHY", "OK", id="age 120 s is healthy"),
    pytest.param(Ingestion().run(T0 - MIN).run(T0), T0 + 121 * SEC, "DEGRADED", "AGE_DEGRADED",
                 id="age 121 s degrades"),
    pytest.param(Ingestion().run(T0 - MIN).run(T0), T0 + 600 * SEC, "DEGRADED", "AGE_DEGRADED",
                 id="age 600 s is not stale"),
    pytest.param(Ingestion().run(T0 - MIN).run(T0), T0 + 600_001, "STALE", "AGE_STALE",
                 id="age 600.001 s is stale"),
    pytest.param(Ingestion().run(T0 - MIN).run(T0, coverage=90), T0 + 30 * SEC, "HEALTHY", "OK",
                 id="coverage 90 is healthy"),
    pytest.param(Ingestion().run(T0 - MIN).run(T0, coverage=89.9), T0 + 30 * SEC, "DEGRADED", "COVERAGE_DEGRADED",
                 id="coverage 89.9 degrades"),
    pytest.param(Ingestion().run(T0 - MIN).run(T0, coverage=80), T0 + 30 * SEC, "DEGRADED", "COVERAGE_DEGRADED",
                 id="coverage 80 is degraded not stale"),
    pytest.param(Ingestion().run(T0 - MIN).run(T0, coverage=79.99), T0 + 30 * SEC, "STALE", "COVERAGE_STALE",
                 id="coverage 79.99 is stale"),
    pytest.param(Ingestion().run(T0 - MIN).run(T0, coverage=79.9), T0 + 30 * SEC, "STALE", "COVERAGE_STALE",
                 id="coverage 79.9 is stale"),
    pytest.param(Ingestion().run(T0 - MIN).run(T0, nonnull=80), T0 + 30 * SEC, "HEALTHY", "OK",
                 id="BTC non-null 80 is ok"),
    pytest.param(Ingestion().run(T0 - MIN).run(T0, nonnull=79), T0 + 30 * SEC, "DEGRADED", "NONNULL_DEGRADED",
                 id="BTC non-null 79 degrades"),
    pytest.param(Ingestion().run(T0 - MIN).run(T0, nonnull=60), T0 + 30 * SEC, "DEGRADED", "NONNULL_DEGRADED",
                 id="BTC non-null 60 is degraded not stale"),
    pytest.param(Ingestion().run(T0 - MIN).run(T0, nonnull=59), T0 + 30 * SEC, "STALE", "NONNULL_STALE",
                 id="BTC non-null 59 is stale"),
    pytest.param(Ingestion().run(T0 - MIN).run(T0, coverage=0, nonnull=0), T0 + 30 * SEC, "STALE", "INGEST_FAILED",
                 id="latest run failed"),
    pytest.param(Ingestion().run(T0, coverage=0, nonnull=0), T0 + 30 * SEC, "STALE", "NO_DATA",
                 id="no usable run ever (row 3 before row 4)"),
    pytest.param(Ingestion(), T0 + 30 * SEC, "STALE", "NO_DATA", id="no run at all"),
    pytest.param(Ingestion().run(T0 - 2 * MIN).run(T0), T0 + 30 * SEC, "DEGRADED", "AWAITING_SECOND_CLEAN",
                 id="two clean runs not adjacent"),
    pytest.param(Ingestion().run(T0 - MIN, coverage=85).run(T0), T0 + 30 * SEC, "DEGRADED", "AWAITING_SECOND_CLEAN",
                 id="previous run not clean"),
]

VIEW_OF = {"HEALTHY": "NORMAL", "DEGRADED": "DEGRADED", "STALE": "HALT"}


@pytest.mark.parametrize(("runs", "at", "state", "reason"), HEALTH_BOUNDARIES)
def test_health_boundaries_and_every_consumer_agrees(healthy, runs, at, state, reason):
    """Drill 8: each case from HEALTHY with no latch; the lock, the alert gate and the dashboard
    give the same answer as health() (one function, every layer)."""
    engine, clock = healthy()
    evaluate(engine, clock, runs, at)
    assert health(engine) == (state, reason)

    # signal lock G0
    lock_check(engine, age_ref_ms=runs.facts(at)["age_ref_ms"] if state != "STALE" else None)
    assert engine.state("signal_lock") == ("LOCKED" if state == "STALE" else "OPEN")
    assert engine.reason("signal_lock") == reason
    assert engine.may("signals.compute") is (state != "STALE")
    # alert gate A1
    assert engine.may("alerts.behavioral") is (state == "HEALTHY")
    assert delivery(fire(engine), "exit_cluster") == (("surfaced",) if state == "HEALTHY"
                                                      else ("suppressed", "health_degraded"))
    # dashboard §3.5
    dashboard(engine)
    assert engine.state("dashboard_view") == VIEW_OF[state]
    assert engine.reason("dashboard_view") == reason
    assert engine.may("dashboard.decision_surface") is (state != "STALE")


def test_first_start_is_stale_no_data_everywhere(make_engine):
    """H0: first start with no latch key is STALE/NO_DATA; nothing computes, the dashboard halts."""
    engine, _ = make_engine()
    assert health(engine) == ("STALE", "NO_DATA")
    assert (engine.state("signal_lock"), engine.reason("signal_lock")) == ("LOCKED", "NO_DATA")
    assert (engine.state("dashboard_view"), engine.reason("dashboard_view")) == ("HALT", "NO_DATA")
    for gate in ("trading", "signals.compute", "signals.commit", "alerts.behavioral", "dashboard.decision_surface"):
        assert engine.may(gate) is False, gate


def test_fresh_install_needs_two_clean_adjacent_runs(make_engine):
    """First start: STALE/NO_DATA until two clean adjacent runs exist, then HEALTHY directly."""
    engine, clock = make_engine(start_ms=T0)
    ing = Ingestion(first_start_ms=T0)
    evaluate(engine, clock, ing, T0 + 30 * SEC)
    assert health(engine) == ("STALE", "NO_DATA")
    evaluate(engine, clock, ing.run(T0 + MIN), T0 + 90 * SEC)
    assert health(engine) == ("STALE", "RECOVERING")
    evaluate(engine, clock, ing.run(T0 + 2 * MIN), T0 + 150 * SEC)
    assert health(engine) == ("HEALTHY", "OK")


@pytest.mark.parametrize(("start", "fields", "state", "reason"), [
    pytest.param("HEALTHY", health_eval(coverage_pct=85.0, clean_streak=0), "DEGRADED", "COVERAGE_DEGRADED",
                 id="H4 healthy to degraded"),
    pytest.param("DEGRADED", health_eval(), "HEALTHY", "OK", id="H5 degraded back to healthy"),
    pytest.param("DEGRADED", health_eval(clean_streak=1), "DEGRADED", "AWAITING_SECOND_CLEAN",
                 id="H5 needs two adjacent clean runs"),
    pytest.param("DEGRADED", health_eval(age_ms=130 * SEC, age_ref_ms=130 * SEC), "DEGRADED", "AGE_DEGRADED",
                 id="first match: age before awaiting-second-clean"),
    pytest.param("DEGRADED", health_eval(storage_ok=False), "STALE", "STORAGE_UNAVAILABLE",
                 id="H1 storage unreachable"),
    pytest.param("HEALTHY", health_eval(latest_status="failed", age_ms=700 * SEC, age_ref_ms=700 * SEC), "STALE",
                 "INGEST_FAILED", id="first match: failed run before age"),
])
def test_health_transitions(make_engine, start, fields, state, reason):
    reasons = {"HEALTHY": "OK", "DEGRADED": "AWAITING_SECOND_CLEAN"}
    engine, _ = make_engine(persisted=[health_row(start, reasons[start])])
    engine.observe("health_evaluated", fields)
    assert health(engine) == (state, reason)


def test_any_stale_row_sets_the_latch_time_on_every_evaluation(healthy):
    """H1: health_latched_since = now on every evaluation where a STALE row holds."""
    engine, clock = healthy()
    clock.set(T0 + MIN)
    engine.observe("health_evaluated", health_eval(coverage_pct=70.0, clean_streak=0))
    assert engine.var("health", "latched_since") == T0 + MIN
    clock.set(T0 + 2 * MIN)
    engine.observe("health_evaluated", health_eval(coverage_pct=70.0, clean_streak=0))
    assert engine.var("health", "latched_since") == T0 + 2 * MIN
    clock.set(T0 + 3 * MIN)
    engine.observe("health_evaluated", health_eval(clean_streak=1, latest_run_ts=T0 + 3 * MIN - 30 * SEC))
    assert health(engine) == ("STALE", "RECOVERING")
    assert engine.var("health", "latched_since") == T0 + 2 * MIN  # RECOVERING does not move the latch


# =========================================================================== H3 release rule, drill 7

LATCH = T0  # latched_since of the persisted STALE state, on a minute boundary


@pytest.mark.parametrize(("clean_streak", "latest_run_ts", "age_ms", "state", "reason"), [
    pytest.param(2, LATCH + 2 * MIN, 30 * SEC, "HEALTHY", "OK", id="both runs after the latch, fresh"),
    pytest.param(2, LATCH + MIN, 30 * SEC, "STALE", "RECOVERING", id="older run at the latch instant"),
    pytest.param(2, LATCH, 30 * SEC, "STALE", "RECOVERING", id="both runs before the latch"),
    pytest.param(5, LATCH + MIN, 30 * SEC, "STALE", "RECOVERING", id="long streak but older run not after latch"),
    pytest.param(1, LATCH + 5 * MIN, 30 * SEC, "STALE", "RECOVERING", id="one clean run"),
    pytest.param(0, LATCH + 5 * MIN, 30 * SEC, "STALE", "RECOVERING", id="latest run not clean"),
    pytest.param(2, LATCH + 5 * MIN, 120 * SEC, "HEALTHY", "OK", id="age 120 s releases"),
    pytest.param(2, LATCH + 5 * MIN, 121 * SEC, "STALE", "RECOVERING", id="age 121 s stays latched"),
])
def test_release_rule(make_engine, clean_streak, latest_run_ts, age_ms, state, reason):
    """H3: the 2 latest runs clean, minute-adjacent, with snapshot_ts > health_latched_since, and
    age <= 120 s. Anything less is row 9, RECOVERING (never auto-recover into confidence)."""
    engine, clock = make_engine(persisted=[health_row("STALE", "AGE_STALE", latched_since=LATCH)])
    clock.set(latest_run_ts + age_ms)
    engine.observe("health_evaluated", health_eval(clean_streak=clean_streak, latest_run_ts=latest_run_ts,
                                                   age_ms=age_ms, age_ref_ms=age_ms))
    assert health(engine) == (state, reason)


def ingestion_dies(make_engine) -> tuple[Engine, Any, Ingestion, list[tuple[Decision, tuple[str, Any]]]]:
    """Drill 6: HEALTHY with runs T0-60 s and T0; ingestion dies; the health job keeps evaluating
    every minute at second 30 until T0+690 s. Returns the engine and every (decision, health)."""
    engine, clock = make_engine(persisted=[health_row()])
    ing = Ingestion().run(T0 - MIN).run(T0)
    seen = []
    for s in range(30, 691, 60):
        d = evaluate(engine, clock, ing, T0 + s * SEC)
        seen.append((d, health(engine)))
    return engine, clock, ing, seen


def test_drill_6_ingestion_dies_degraded_then_stale_with_one_system_alert(make_engine):
    engine, _, _, seen = ingestion_dies(make_engine)
    # evaluations at T0+30, 90, 150, ... 690 s: DEGRADED from T0+150 s, STALE at T0+630 s
    assert [h for _, h in seen] == ([("HEALTHY", "OK")] * 2 + [("DEGRADED", "AGE_DEGRADED")] * 8
                                    + [("STALE", "AGE_STALE")] * 2)
    # exactly one critical System Stale, at T0+630 s, none at T0+690 s
    fired = [(d.at_ms, e) for d, _ in seen for e in alerts(d, "system_stale")]
    assert [at for at, _ in fired] == [T0 + 630 * SEC]
    effect = fired[0][1]
    assert effect.data["severity"] == "critical" and effect.data["asset"] is None
    message = effect.data["template"].format(minutes=effect.data["age_ref_ms"] // MIN)
    assert "Ingestion has not succeeded for 10 minutes" in message
    assert engine.state("system_stale") == "ACTIVE"
    assert engine.var("health", "latched_since") == T0 + 690 * SEC


@pytest.mark.parametrize(("coverages", "expected"), [
    pytest.param([100, 100], ["RECOVERING", "OK"], id="clean S then clean S+60: healthy"),
    pytest.param([100, None, 100, 100], ["RECOVERING", "RECOVERING", "RECOVERING", "OK"],
                 id="S+60 missing: healthy only after S+180"),
    pytest.param([100, 85], ["RECOVERING", "RECOVERING"], id="clean S then 85 %: still recovering"),
    pytest.param([100, 85, 100, 100], ["RECOVERING", "RECOVERING", "RECOVERING", "OK"],
                 id="clean S, 85 %, then two clean"),
    pytest.param([100, 100, 100], ["RECOVERING", "OK", "OK"], id="stays healthy on the third clean run"),
])
def test_drill_7_two_cycle_recovery(make_engine, coverages, expected):
    """Drill 7, from the end of drill 6 (STALE/AGE_STALE, latch, system_stale active). Runs resume at
    S = T0+12 min (None = minute missed); the health job evaluates at second 30 of each minute."""
    engine, clock, ing, _ = ingestion_dies(make_engine)
    start = T0 + 12 * MIN
    released = None
    for i, (coverage, reason) in enumerate(zip(coverages, expected, strict=True)):
        if coverage is not None:
            ing.run(start + i * MIN, coverage=coverage)
        d = evaluate(engine, clock, ing, start + i * MIN + 30 * SEC)
        assert health(engine) == ("HEALTHY" if reason == "OK" else "STALE", reason), f"minute S+{i}"
        assert alerts(d) == [], "no alert row on recovery"
        if reason == "RECOVERING":
            assert engine.state("system_stale") == "ACTIVE"
            assert engine.may("signals.compute") is False
        elif released is None:
            released = d
    if expected[-1] == "OK":
        # H3 resets system_stale without an alert row; the next slot's lock check opens
        assert engine.state("system_stale") == "INACTIVE"
        moves = [(t.machine, t.from_state, t.to_state) for t in released.transitions]
        assert ("health", "STALE", "HEALTHY") in moves and ("system_stale", "ACTIVE", "INACTIVE") in moves
        lock_check(engine)
        assert (engine.state("signal_lock"), engine.reason("signal_lock")) == ("OPEN", "OK")
        assert engine.may("signals.compute") and engine.may("alerts.behavioral")
    else:
        assert engine.state("system_stale") == "ACTIVE"


# =========================================================================== drills 18, 19, 10


def test_drill_19_manual_halt_and_resume(healthy):
    engine, clock = healthy()
    ing = Ingestion().run(T0 - MIN).run(T0)
    clock.set(T0 + 10 * SEC)
    engine.observe("monitor_command", {"command": "halt", "reason": "X"})
    assert health(engine) == ("STALE", "MANUAL_HALT")
    lock_check(engine)
    dashboard(engine)
    assert (engine.state("signal_lock"), engine.reason("signal_lock")) == ("LOCKED", "MANUAL_HALT")
    assert (engine.state("dashboard_view"), engine.reason("dashboard_view")) == ("HALT", "MANUAL_HALT")
    assert not engine.may("signals.compute") and not engine.may("alerts.behavioral")
    # snapshots continue, clean; the halt flag wins (row 1)
    for m in range(1, 21):
        ing.run(T0 + m * MIN)
        evaluate(engine, clock, ing, T0 + m * MIN + 30 * SEC)
        assert health(engine) == ("STALE", "MANUAL_HALT")
    # the T0+21 min run lands, then resume at T0+21 min 5 s: that run predates the resume and does
    # not count; RECOVERING until two clean runs after the resume (T0+22, T0+23 min)
    ing.run(T0 + 21 * MIN)
    clock.set(T0 + 21 * MIN + 5 * SEC)
    engine.observe("monitor_command", {"command": "resume", "reason": ""})
    assert health(engine) == ("STALE", "RECOVERING")
    assert engine.var("health", "manual_halt") is False
    evaluate(engine, clock, ing, T0 + 21 * MIN + 30 * SEC)
    assert health(engine) == ("STALE", "RECOVERING")
    for m, reason in [(22, "RECOVERING"), (23, "OK")]:
        ing.run(T0 + m * MIN)
        evaluate(engine, clock, ing, T0 + m * MIN + 30 * SEC)
        assert health(engine) == ("HEALTHY" if reason == "OK" else "STALE", reason), f"T0+{m} min"
    assert engine.state("system_stale") == "INACTIVE"


def test_resume_without_halt_is_refused(healthy):
    engine, _ = healthy()
    d = engine.observe("monitor_command", {"command": "resume", "reason": ""})
    assert [e.data.get("code") for e in d.find("refused")] == ["unknown_or_not_halted"]
    assert health(engine) == ("HEALTHY", "OK")


def test_drill_18_database_unavailable(healthy):
    """H6: storage outage -> STALE/STORAGE_UNAVAILABLE, signals locked, halt view; after restore the
    latch needs two adjacent clean runs; no backfill, no System Stale."""
    engine, clock = healthy()
    ing = Ingestion().run(T0 - MIN).run(T0)
    decisions = []
    clock.set(T0 + 5 * SEC)
    decisions.append(engine.observe("storage_failed", {"app": "monitor", "operation": "write"}))
    assert health(engine) == ("STALE", "STORAGE_UNAVAILABLE")
    decisions.append(lock_check(engine))
    decisions.append(dashboard(engine, storage_ok=False))
    assert (engine.state("signal_lock"), engine.reason("signal_lock")) == ("LOCKED", "STORAGE_UNAVAILABLE")
    assert (engine.state("dashboard_view"), engine.reason("dashboard_view")) == ("HALT", "STORAGE_UNAVAILABLE")
    for m in range(0, 5):  # DB down T0..T0+5 min: no runs stored
        decisions.append(evaluate(engine, clock, ing, T0 + m * MIN + 30 * SEC, storage_ok=False))
        assert health(engine) == ("STALE", "STORAGE_UNAVAILABLE")
    for m, reason in [(6, "RECOVERING"), (7, "OK")]:  # restored at T0+5 min; first run T0+6 min
        ing.run(T0 + m * MIN)
        decisions.append(evaluate(engine, clock, ing, T0 + m * MIN + 30 * SEC))
        assert health(engine) == ("HEALTHY" if reason == "OK" else "STALE", reason)
    assert [e for d in decisions for e in alerts(d)] == []
    assert engine.state("system_stale") == "INACTIVE"


def test_storage_failure_of_the_copy_trader_does_not_touch_monitor_health(healthy):
    engine, _ = healthy()
    engine.observe("storage_failed", {"app": "copytrader", "operation": "write"})
    assert health(engine) == ("HEALTHY", "OK")


def test_drill_10_sustained_dirty_then_release(healthy):
    """BTC dirty 25 % for 3 signal cycles -> STALE/SUSTAINED_DIRTY; < 10 % clears the dirty machine,
    then the release rule applies (two clean runs after the latch)."""
    engine, clock = healthy(start_ms=T0)
    ing = Ingestion().run(T0 - MIN).run(T0)
    dirty_rates = {5: 25.0, 10: 25.0, 15: 25.0, 20: 5.0}
    expected = {m: ("HEALTHY", "OK") for m in range(1, 16)}
    expected.update({m: ("STALE", "SUSTAINED_DIRTY") for m in range(15, 20)})
    expected.update({20: ("STALE", "RECOVERING"), 21: ("HEALTHY", "OK")})
    streaks = []
    for m in range(1, 22):
        ing.run(T0 + m * MIN)
        if m in dirty_rates:
            clock.set(T0 + m * MIN + 10 * SEC)
            engine.observe("dirty_check", {"asset": "BTC", "dirty_rate_pct": dirty_rates[m]})
            engine.observe("dirty_check", {"asset": "HYPE", "dirty_rate_pct": 0.0})
            streaks.append((engine.state("dirty", asset="BTC"), engine.var("dirty", "streak", asset="BTC")))
        evaluate(engine, clock, ing, T0 + m * MIN + 30 * SEC)
        assert health(engine) == expected[m], f"T0+{m} min"
    assert streaks == [("CLEAN", 1), ("CLEAN", 2), ("SUSTAINED", 3), ("CLEAN", 0)]
    assert engine.state("dirty", asset="HYPE") == "CLEAN"


@pytest.mark.parametrize(("rates", "state"), [
    pytest.param([25, 25, 25], "SUSTAINED", id="3 cycles above 20 %"),
    pytest.param([25, 25], "CLEAN", id="2 cycles are not sustained"),
    pytest.param([20, 20, 20], "CLEAN", id="20 % exactly is not above"),
    pytest.param([25, 25, 15, 25], "CLEAN", id="a cycle at or below 20 % restarts the count"),
    pytest.param([25, 25, 25, 15], "SUSTAINED", id="15 % does not clear (clears below 10 %)"),
    pytest.param([25, 25, 25, 10], "SUSTAINED", id="10 % exactly does not clear"),
    pytest.param([25, 25, 25, 9.99], "CLEAN", id="9.99 % clears"),
])
def test_sustained_dirty_boundaries(healthy, rates, state):
    engine, _ = healthy()
    for rate in rates:
        engine.observe("dirty_check", {"asset": "ETH", "dirty_rate_pct": rate})
    assert engine.state("dirty", asset="ETH") == state
    engine.observe("health_evaluated", health_eval())
    assert health(engine) == (("STALE", "SUSTAINED_DIRTY") if state == "SUSTAINED" else ("HEALTHY", "OK"))


# =========================================================================== System Stale (S7, drill 6, 9)


@pytest.mark.parametrize(("persisted", "fact", "age_ref_ms", "fires"), [
    pytest.param(True, "health_evaluated", 600 * SEC, False, id="health job, age ref 600 s: nothing"),
    pytest.param(True, "health_evaluated", 600_001, True, id="health job, age ref 600.001 s: fires"),
    pytest.param(False, "health_evaluated", 600 * SEC, False, id="fresh install, 10 min grace: nothing"),
    pytest.param(False, "health_evaluated", 600_001, True, id="fresh install after the grace: fires"),
    pytest.param(True, "signal_lock_check", 600 * SEC, False, id="locked signal job, 600 s: nothing"),
    pytest.param(True, "signal_lock_check", 600_001, True, id="locked signal job, 600.001 s: fires"),
])
def test_system_stale_threshold(make_engine, persisted, fact, age_ref_ms, fires):
    engine, _ = make_engine(persisted=[health_row()] if persisted else None)
    if fact == "health_evaluated":
        fields = (health_eval(age_ms=age_ref_ms, age_ref_ms=age_ref_ms) if persisted else
                  health_eval(has_usable_run=False, latest_status=None, age_ms=None, age_ref_ms=age_ref_ms,
                              clean_streak=0, latest_run_ts=None))
        d = engine.observe(fact, fields)
    else:
        d = lock_check(engine, age_ref_ms=age_ref_ms)
    surfaced = alerts(d, "system_stale")
    assert engine.state("system_stale") == ("ACTIVE" if fires else "INACTIVE")
    assert len(surfaced) == (1 if fires else 0)
    if fires:
        assert surfaced[0].data["severity"] == "critical"
        assert surfaced[0].data["age_ref_ms"] == age_ref_ms
        assert d.find("alert_suppressed") == []  # never suppressed


def test_system_stale_is_idempotent_between_health_and_signal_jobs(healthy):
    """One row per episode: the health job fires, the signal job's check (and later evaluations)
    find it active and do nothing."""
    engine, clock = healthy()
    rows = []
    for offset, fact in [(630, "health_evaluated"), (660, "signal_lock_check"), (690, "health_evaluated"),
                         (900, "signal_lock_check")]:
        clock.set(T0 + offset * SEC)
        if fact == "health_evaluated":
            d = engine.observe(fact, health_eval(age_ms=offset * SEC, age_ref_ms=offset * SEC, latest_run_ts=T0))
        else:
            d = lock_check(engine, age_ref_ms=offset * SEC)
        rows += [(offset, e.data["alert_type"]) for e in alerts(d)]
    assert rows == [(630, "system_stale")]


def test_drill_9_signal_job_fires_system_stale_and_locks_by_age(healthy):
    """Drill 9: the last health row says HEALTHY but is 30 min old (health and ingestion jobs dead).
    The signal job's live lock check locks on AGE_STALE and fires System Stale itself (idempotent);
    the loop stays alive and logs "blocked" every slot."""
    engine, clock = healthy()
    first = lock_check(engine, age_ref_ms=30 * MIN)
    assert [e.data["alert_type"] for e in alerts(first)] == ["system_stale"]
    assert engine.state("system_stale") == "ACTIVE"
    assert (engine.state("signal_lock"), engine.reason("signal_lock")) == ("LOCKED", "AGE_STALE")
    assert engine.may("signals.compute") is False
    clock.advance(SLOT)
    second = lock_check(engine, age_ref_ms=35 * MIN)
    assert alerts(second) == []
    assert [e.data["message"] for e in second.find("log")] == ["Signal computation blocked"]


# =========================================================================== signal lock G0 (§3.2)


@pytest.mark.parametrize(("state", "reason", "lock", "blocked_log"), [
    pytest.param("STALE", "AGE_STALE", "LOCKED", True, id="stale age: locked with the health code"),
    pytest.param("STALE", "RECOVERING", "LOCKED", True, id="recovering: still locked"),
    pytest.param("STALE", "MANUAL_HALT", "LOCKED", True, id="manual halt: locked"),
    pytest.param("DEGRADED", "COVERAGE_DEGRADED", "OPEN", False, id="degraded: open with the degraded code"),
    pytest.param("HEALTHY", "OK", "OPEN", False, id="healthy: open OK"),
])
def test_signal_lock_follows_health(make_engine, state, reason, lock, blocked_log):
    engine, _ = make_engine(persisted=[health_row(state, reason)])
    for phase in ("cycle_start", "before_asset", "commit"):
        d = lock_check(engine, phase=phase)
        assert (engine.state("signal_lock"), engine.reason("signal_lock")) == (lock, reason), phase
        logs = [e.data for e in d.find("log")]
        assert logs == ([{"level": "warning", "message": "Signal computation blocked", "reason": reason}]
                        if blocked_log else []), phase
        assert engine.may("signals.compute") is (lock == "OPEN")
        assert engine.may("signals.commit") is (lock == "OPEN")


def test_signal_lock_relocks_mid_cycle_when_health_turns_stale(healthy):
    """Checked before each asset and inside the commit: a STALE between assets locks the rest."""
    engine, _ = healthy()
    lock_check(engine, phase="cycle_start")
    assert engine.state("signal_lock") == "OPEN"
    d = engine.observe("health_evaluated", health_eval(coverage_pct=50.0, clean_streak=0))
    assert [g.data["gate"] for g in d.find("gate_closed")] == ["alerts.behavioral", "dashboard.full",
                                                             "signals.compute", "trading"]
    lock_check(engine, phase="before_asset", asset="BTC")
    assert (engine.state("signal_lock"), engine.reason("signal_lock")) == ("LOCKED", "COVERAGE_STALE")


# =========================================================================== universe §4.1, §3.3, drills 1-3

UNIVERSE_OK = {"fetch_ok": True, "schema_ok": True, "n_requested": 200, "n_received": 300, "n_kept": 200,
               "ranks_ok": True, "ids_ok": True, "has_prior": True, "churn_pct": 5.0}


def refresh(engine: Engine, **fields: Any) -> dict[str, Any]:
    d = engine.observe("universe_refresh", {**UNIVERSE_OK, **fields})
    verdicts = d.find("universe_verdict")
    assert len(verdicts) == 1, "every attempt writes exactly one run row"
    return verdicts[0].data


@pytest.mark.parametrize(("fields", "verdict"), [
    pytest.param({}, {"status": "success"}, id="valid refresh"),
    pytest.param({"fetch_ok": False}, {"status": "failed", "error": "fetch_failed"}, id="HTTP 500 after retries"),
    pytest.param({"schema_ok": False}, {"status": "failed", "error": "schema_changed"}, id="no leaderboardRows"),
    pytest.param({"n_received": 0, "n_kept": 0}, {"status": "failed", "error": "empty_leaderboard"}, id="U1 empty"),
    pytest.param({"n_received": 179, "n_kept": 179}, {"status": "failed", "error": "incomplete_universe"},
                 id="U2 179 of 200 fails"),
    pytest.param({"n_received": 180, "n_kept": 180}, {"status": "success"}, id="U2 180 of 200 passes"),
    pytest.param({"ranks_ok": False}, {"status": "failed", "error": "rank_integrity"}, id="U3 ranks"),
    pytest.param({"ids_ok": False}, {"status": "failed", "error": "duplicate_wallet_id"}, id="U4 duplicate address"),
    pytest.param({"fetch_ok": False, "n_received": 0}, {"status": "failed", "error": "fetch_failed"},
                 id="fetch failure reported before U1"),
    pytest.param({"has_prior": False, "churn_pct": 100.0}, {"status": "success"}, id="first refresh skips churn"),
    pytest.param({"has_prior": False, "n_kept": 179, "n_received": 179},
                 {"status": "failed", "error": "incomplete_universe"}, id="first refresh still runs U2"),
    pytest.param({"churn_pct": 30.0}, {"status": "success"}, id="churn 30 % is not above"),
    pytest.param({"churn_pct": 30.01}, {"status": "success", "warning": "churn"}, id="churn 30.01 % warns"),
])
def test_universe_checks(make_engine, fields, verdict):
    engine, _ = make_engine()
    assert refresh(engine, **fields) == verdict


def test_drill_3_churn_guard_three_strikes(make_engine):
    engine, _ = make_engine()
    assert refresh(engine, has_prior=False) == {"status": "success"}
    seen = []
    for churn in (35.0, 35.0, 35.0, 10.0):
        verdict = refresh(engine, churn_pct=churn)
        seen.append((verdict, engine.var("universe", "churn_streak"), engine.state("universe"),
                     engine.may("universe.apply")))
    assert seen == [
        ({"status": "success", "warning": "churn"}, 1, "APPLYING", True),
        ({"status": "success", "warning": "churn"}, 2, "APPLYING", True),
        ({"status": "failed", "error": "churn_guard"}, 3, "GUARDING", False),
        ({"status": "success"}, 0, "APPLYING", True),
    ]


def test_failed_refresh_leaves_the_churn_count_and_counts_failures(make_engine):
    """n -> n on a refresh failing U1-U4 or fetch; >= 3 consecutive failures are visible (status
    warning universe_refresh_repeated); a success resets the failure count."""
    engine, _ = make_engine()
    refresh(engine, churn_pct=35.0)
    assert engine.var("universe", "churn_streak") == 1
    counts = []
    for fields in ({"fetch_ok": False}, {"schema_ok": False}, {"n_kept": 179}):
        refresh(engine, **fields)
        counts.append((engine.var("universe", "churn_streak"), engine.var("universe", "fail_streak")))
    assert counts == [(1, 1), (1, 2), (1, 3)]
    assert refresh(engine, churn_pct=35.0) == {"status": "success", "warning": "churn"}
    assert (engine.var("universe", "churn_streak"), engine.var("universe", "fail_streak")) == (2, 0)


# =========================================================================== snapshots §4.2 S1-S4

SNAPSHOT_OK = {"aligned": True, "integrity_ok": True, "db_ok": True, "wallets_expected": 200,
               "wallets_succeeded": 200, "coverage_pct": 100.0, "rate_limited": 0}


@pytest.mark.parametrize(("fields", "verdict"), [
    pytest.param({}, {"status": "success"}, id="coverage 100: success"),
    pytest.param({"wallets_succeeded": 180, "coverage_pct": 90.0}, {"status": "success"}, id="coverage 90: success"),
    pytest.param({"wallets_succeeded": 179, "coverage_pct": 89.9}, {"status": "partial"}, id="coverage 89.9: partial"),
    pytest.param({"wallets_succeeded": 1, "coverage_pct": 0.5}, {"status": "partial"}, id="one success: partial"),
    pytest.param({"wallets_succeeded": 0, "coverage_pct": 0.0}, {"status": "failed", "error": "no_successes"},
                 id="0 successes (all 429): failed"),
    pytest.param({"aligned": False}, {"status": "failed", "error": "misaligned_snapshot_ts"}, id="S1 misaligned"),
    pytest.param({"integrity_ok": False}, {"status": "failed", "error": "integrity_violation"},
                 id="S4 integrity violation"),
    pytest.param({"db_ok": False}, {"status": "failed", "error": "db_error"}, id="DB error"),
    pytest.param({"wallets_expected": 0, "wallets_succeeded": 0, "coverage_pct": 0.0},
                 {"status": "failed", "error": "empty_universe"}, id="empty universe"),
])
def test_snapshot_run_verdict(make_engine, fields, verdict):
    engine, _ = make_engine()
    d = engine.observe("snapshot_run", {**SNAPSHOT_OK, **fields})
    assert [e.data for e in d.find("run_verdict")] == [verdict]


# =========================================================================== signal QA forcing (§4.5, drills 4, 10, 11)

QA_OK = {"asset": "BTC", "usable_runs": 5, "missing_pct": 0.0, "dirty_rate_pct": 0.0}
LOW_COV_WARN = {"cas": 50, "playbook": "No-trade", "risk_at_least": "Reduced", "degraded_reason": "low_coverage"}
LOW_COV_ERROR = {"cas": 50, "playbook": "No-trade", "risk_at_least": "Defensive", "degraded_reason": "low_coverage"}
INSUFFICIENT = {"playbook": "No-trade", "risk_at_least": "Defensive", "degraded_reason": "insufficient_snapshots"}
MISSING_SNAPSHOT = {"risk_at_least": "Reduced", "degraded_reason": "missing_snapshot"}
HIGH_DIRTY = {"playbook": "No-trade", "risk_at_least": "Defensive", "degraded_reason": "high_dirty_rate"}
HEALTH_DEGRADED = {"risk_at_least": "Reduced", "add_exposure": False, "degraded_reason": "health_degraded"}


@pytest.mark.parametrize(("health_state", "fields", "forcing", "log_levels"), [
    pytest.param("HEALTHY", {}, [], [], id="clean signal: no forcing"),
    pytest.param("HEALTHY", {"missing_pct": 10.0}, [], [], id="missing 10 %: none"),
    pytest.param("HEALTHY", {"missing_pct": 10.01}, [LOW_COV_WARN], ["warning"], id="missing 10.01 %: low_coverage"),
    pytest.param("HEALTHY", {"missing_pct": 15.0}, [LOW_COV_WARN], ["warning"], id="missing 15 %: CAS 50 Reduced"),
    pytest.param("HEALTHY", {"missing_pct": 25.0}, [LOW_COV_WARN], ["warning"], id="missing 25 %: still Reduced"),
    pytest.param("HEALTHY", {"missing_pct": 25.01}, [LOW_COV_ERROR], ["error"], id="missing 25.01 %: Defensive"),
    pytest.param("HEALTHY", {"missing_pct": 30.0}, [LOW_COV_ERROR], ["error"], id="missing 30 %: Defensive + error"),
    pytest.param("HEALTHY", {"usable_runs": 5}, [], [], id="5 usable runs: ok"),
    pytest.param("HEALTHY", {"usable_runs": 4}, [MISSING_SNAPSHOT], [], id="4 usable runs: missing_snapshot"),
    pytest.param("HEALTHY", {"usable_runs": 3}, [INSUFFICIENT], [], id="3 usable runs: insufficient_snapshots"),
    pytest.param("HEALTHY", {"dirty_rate_pct": 10.0}, [], [], id="dirty 10 %: none"),
    pytest.param("HEALTHY", {"dirty_rate_pct": 12.5}, [HIGH_DIRTY], [], id="dirty 12.5 %: high_dirty_rate"),
    pytest.param("DEGRADED", {}, [HEALTH_DEGRADED], [], id="health DEGRADED: health_degraded"),
    pytest.param("DEGRADED", {"missing_pct": 15.0}, [LOW_COV_WARN, HEALTH_DEGRADED], ["warning"],
                 id="drill 4: low_coverage,health_degraded"),
    pytest.param("HEALTHY", {"missing_pct": 15.0, "usable_runs": 4}, [LOW_COV_WARN, MISSING_SNAPSHOT], ["warning"],
                 id="reason order: low_coverage before missing_snapshot"),
    pytest.param("DEGRADED", {"missing_pct": 30.0, "usable_runs": 3, "dirty_rate_pct": 12.5},
                 [LOW_COV_ERROR, INSUFFICIENT, HIGH_DIRTY, HEALTH_DEGRADED], ["error"],
                 id="reason order: low_coverage, insufficient_snapshots, high_dirty_rate, health_degraded"),
])
def test_signal_qa_forcing(make_engine, health_state, fields, forcing, log_levels):
    """Forcing rows in the spec's reason order (low_coverage; G2/G4; health DEGRADED), which is the
    order the job comma-joins into degraded_reason."""
    engine, _ = make_engine(persisted=[health_row(health_state, "OK" if health_state == "HEALTHY"
                                                  else "COVERAGE_DEGRADED")])
    d = engine.observe("signal_qa", {**QA_OK, **fields})
    assert [e.data for e in d.find("forcing")] == forcing
    assert [e.data["level"] for e in d.find("log")] == log_levels


# =========================================================================== playbook matrix (§4.5)


def P(cas, trend, di, ec, playbook, risk, id):
    return pytest.param(cas, trend, di, ec, playbook, risk, id=id)


PLAYBOOK_CASES = [
    # matrix rows, in the spec's order
    P(80, "rising", 10, 5, "Long-only", "Normal", "CAS >75 rising Di low EC low"),
    P(80, "rising", 10, 20, "Long-only", "Reduced", "CAS >75 rising Di low EC medium"),
    P(80, "flat", 10, 5, "Long-only", "Reduced", "CAS >75 flat Di low EC low"),
    P(70, "rising", 10, 5, "Long-only", "Reduced", "CAS 60-75 rising Di low EC low"),
    P(70, "flat", 50, 5, "Long-only", "Reduced", "CAS 60-75 any Di medium EC low"),
    P(10, "falling", 10, 5, "Short-only", "Normal", "CAS <25 falling Di low EC low"),
    P(10, "falling", 10, 20, "Short-only", "Reduced", "CAS <25 falling Di low EC medium"),
    P(10, "flat", 10, 5, "Short-only", "Reduced", "CAS <25 flat Di low EC low"),
    P(30, "falling", 10, 5, "Short-only", "Reduced", "CAS 25-40 falling Di low EC low"),
    P(30, "rising", 50, 5, "Short-only", "Reduced", "CAS 25-40 any Di medium EC low"),
    P(50, "rising", 50, 20, "No-trade", "Defensive", "CAS 40-60 any: neutral"),
    P(80, "rising", 50, 5, "No-trade", "Reduced", "default: CAS >75 with Di medium"),
    P(10, "rising", 10, 5, "No-trade", "Reduced", "default: CAS <25 rising"),
    P(70, "rising", 10, 20, "No-trade", "Reduced", "default: CAS 60-75 with EC medium"),
    # overrides, in order
    P(80, "rising", 60, 5, "No-trade", "Defensive", "override Di 60"),
    P(60, "rising", 10, 25.01, "No-trade", "Defensive", "override EC 25.01"),
    P(90, "falling", 10, 5, "No-trade", "Reduced", "override falling and CAS >60"),
    P(70, "falling", 50, 5, "No-trade", "Reduced", "override falling beats CAS 60-75 any Di medium"),
    P(60.01, "falling", 10, 5, "No-trade", "Reduced", "override falling at CAS 60.01"),
    P(60, "falling", 10, 5, "No-trade", "Defensive", "no falling override at CAS 60: neutral"),
    P(80, "falling", 70, 30, "No-trade", "Defensive", "Di override comes first"),
    # boundaries
    P(75, "rising", 10, 5, "Long-only", "Reduced", "CAS 75 is the 60-75 band"),
    P(75.01, "rising", 10, 5, "Long-only", "Normal", "CAS 75.01 is above 75"),
    P(60, "rising", 10, 5, "Long-only", "Reduced", "CAS 60 rising: 60-75 row first"),
    P(59.99, "rising", 10, 5, "No-trade", "Defensive", "CAS 59.99: neutral"),
    P(40, "falling", 10, 5, "No-trade", "Defensive", "CAS 40: neutral"),
    P(39.99, "falling", 10, 5, "Short-only", "Reduced", "CAS 39.99: 25-40 band"),
    P(25, "falling", 10, 5, "Short-only", "Reduced", "CAS 25: 25-40 band"),
    P(24.99, "falling", 10, 5, "Short-only", "Normal", "CAS 24.99: below 25"),
    P(80, "rising", 39.99, 5, "Long-only", "Normal", "Di 39.99 is low"),
    P(80, "rising", 40, 5, "No-trade", "Reduced", "Di 40 is medium"),
    P(70, "flat", 59.99, 5, "Long-only", "Reduced", "Di 59.99 is medium"),
    P(70, "flat", 60, 5, "No-trade", "Defensive", "Di 60 overrides"),
    P(80, "rising", 10, 15.99, "Long-only", "Normal", "EC 15.99 is low"),
    P(80, "rising", 10, 16, "Long-only", "Reduced", "EC 16 is medium"),
    P(80, "rising", 10, 25, "Long-only", "Reduced", "EC 25 is medium"),
    P(80, "rising", 10, 25.01, "No-trade", "Defensive", "EC 25.01 overrides"),
]


@pytest.mark.parametrize(("cas", "trend", "di", "ec", "playbook", "risk"), PLAYBOOK_CASES)
def test_playbook_matrix(make_engine, cas, trend, di, ec, playbook, risk):
    engine, _ = make_engine()
    d = engine.observe("signal_scored", {"asset": "BTC", "cas": cas, "trend": trend, "dispersion": di,
                                         "exit_cluster": ec})
    assert [e.data for e in d.find("playbook")] == [{"playbook": playbook, "risk_mode": risk}]


# =========================================================================== G5 / G6 invariants

CANDIDATE_OK = {"asset": "BTC", "cas": 80.0, "dispersion": 10.0, "exit_cluster": 5.0, "playbook": "Long-only",
                "risk_mode": "Normal", "trend": "rising"}


@pytest.mark.parametrize(("fields", "violations"), [
    pytest.param({}, [], id="valid row"),
    pytest.param({"cas": 0.0, "dispersion": 100.0, "exit_cluster": 0.0, "playbook": "No-trade"}, [],
                 id="scores at the bounds"),
    pytest.param({"cas": 100.01}, ["g5_bounds"], id="G5 CAS above 100"),
    pytest.param({"cas": -0.01}, ["g5_bounds"], id="G5 CAS below 0"),
    pytest.param({"dispersion": 101.0, "playbook": "No-trade"}, ["g5_bounds"], id="G5 Di above 100"),
    pytest.param({"exit_cluster": -1.0}, ["g5_bounds"], id="G5 EC below 0"),
    pytest.param({"playbook": "Long"}, ["g5_enums"], id="G5 unknown playbook"),
    pytest.param({"risk_mode": "Aggressive"}, ["g5_enums"], id="G5 unknown risk mode"),
    pytest.param({"trend": "up"}, ["g5_enums"], id="G5 unknown trend"),
    pytest.param({"dispersion": 60.0}, ["g6_dispersion_no_trade"], id="G6 Di 60 with Long-only"),
    pytest.param({"dispersion": 60.0, "playbook": "No-trade", "risk_mode": "Defensive"}, [], id="G6 Di 60 No-trade"),
    pytest.param({"dispersion": 59.99}, [], id="G6 Di 59.99 may be Long-only"),
    pytest.param({"exit_cluster": 25.01, "cas": 60.0}, ["g6_exit_cluster_risk"], id="G6 EC 25.01 with Normal risk"),
    pytest.param({"exit_cluster": 25.01, "cas": 60.01, "playbook": "No-trade", "risk_mode": "Defensive"},
                 ["g6_exit_cluster_risk"], id="G6 EC 25.01 with CAS above 60"),
    pytest.param({"exit_cluster": 25.01, "cas": 60.0, "playbook": "No-trade", "risk_mode": "Defensive"}, [],
                 id="G6 EC 25.01 Defensive CAS 60"),
    pytest.param({"exit_cluster": 25.01, "cas": 60.0, "playbook": "No-trade", "risk_mode": "Reduced"}, [],
                 id="G6 EC 25.01 Reduced"),
    pytest.param({"exit_cluster": 25.0}, [], id="G6 EC 25 may be Normal"),
    pytest.param({"cas": 101.0, "dispersion": 70.0}, ["g5_bounds", "g6_dispersion_no_trade"],
                 id="every violation reported"),
])
def test_signal_invariants(make_engine, fields, violations):
    engine, _ = make_engine()
    d = engine.observe("signal_candidate", {**CANDIDATE_OK, **fields})
    assert [e.data["check"] for e in d.find("invariant_violated")] == violations


# =========================================================================== exit cluster (§3.4 A2, drill 12)


@pytest.mark.parametrize(("history", "ec", "state"), [
    pytest.param([], 25.0, "INACTIVE", id="EC 25 does not fire"),
    pytest.param([], 25.01, "ACTIVE", id="EC 25.01 fires"),
    pytest.param([26.0], 20.0, "ACTIVE", id="EC 20 holds"),
    pytest.param([26.0], 25.0, "ACTIVE", id="EC 25 holds"),
    pytest.param([26.0], 19.99, "INACTIVE", id="EC 19.99 resets"),
    pytest.param([26.0, 19.0], 24.0, "INACTIVE", id="re-armed, 24 does not fire"),
])
def test_exit_cluster_hysteresis(healthy, history, ec, state):
    engine, clock = healthy()
    for k, value in enumerate([*history, ec]):
        commit(engine, clock, T0 + k * SLOT, ec=value, playbook="No-trade", risk="Defensive")
    assert engine.state("exit_cluster", asset="BTC") == state


# slot offset (minutes after T0), EC, latch state after, delivery outcome
DRILL_12 = [
    (0, 10, "INACTIVE", None),
    (5, 26, "ACTIVE", ("surfaced",)),            # fire: high, cooldown until T0+65 min
    (10, 24, "ACTIVE", None),
    (15, 22, "ACTIVE", None),
    (20, 26, "ACTIVE", None),                    # latched: no re-fire
    (25, 19, "INACTIVE", None),                  # reset, no row
    (30, 30, "ACTIVE", ("suppressed", "cooldown")),  # fire+25 min: stored suppressed, still latches
    *[(m, 22, "ACTIVE", None) for m in range(35, 70, 5)],
    (70, 18, "INACTIVE", None),                  # fire+65 min: reset
    (75, 27, "ACTIVE", ("surfaced",)),           # fire+70 min: cooldown over, surfaces
]


def test_exit_cluster_latch_states_drill_12(healthy):
    engine, clock = healthy()
    for minute, ec, state, _ in DRILL_12:
        d = commit(engine, clock, T0 + minute * MIN, ec=ec, playbook="No-trade", risk="Defensive")
        assert engine.state("exit_cluster", asset="BTC") == state, f"T0+{minute} min"
        fired = [t.severity for t in d.transitions if t.machine == "exit_cluster" and t.to_state == "ACTIVE"]
        assert fired == (["high"] if minute in (5, 30, 75) else []), f"T0+{minute} min"


def test_exit_cluster_delivery_drill_12(healthy):
    """Drill 12 end to end: the latch fires alert_fired, which the delivery table surfaces or stores
    suppressed; cooldown_until is set only by the surfaced alert."""
    engine, clock = healthy()
    outcomes = []
    for minute, ec, _, _ in DRILL_12:
        d = commit(engine, clock, T0 + minute * MIN, ec=ec, playbook="No-trade", risk="Defensive")
        outcomes.append((minute, delivery(d, "exit_cluster")))
        if minute == 5:
            surfaced = alerts(d, "exit_cluster")[0].data
            assert surfaced["severity"] == "high" and surfaced["asset"] == "BTC"
            assert surfaced["cooldown_until"] == T0 + 65 * MIN
        if minute == 30:
            assert engine.var("alert_delivery", "cooldown_until", asset="BTC", alert_type="exit_cluster") \
                == T0 + 65 * MIN, "a suppressed alert leaves cooldown_until unchanged"
    assert outcomes == [(minute, outcome) for minute, _, _, outcome in DRILL_12]
    assert engine.var("alert_delivery", "cooldown_until", asset="BTC", alert_type="exit_cluster") == T0 + 135 * MIN


def test_exit_cluster_message_renders_from_the_alert(healthy):
    engine, clock = healthy()
    d = commit(engine, clock, T0, ec=26.04, playbook="No-trade", risk="Defensive")
    (effect,) = alerts(d, "exit_cluster")
    assert effect.data["template"].format(**effect.data) == (
        "[BTC] Smart Money De-risking: Exit Cluster elevated (26.0%). Stop adding exposure. Tighten stops.")


# =========================================================================== regime change (§3.4 A3, drill 13)

# A slot is (minutes after T0, playbook, risk, is_degraded) or (minutes, None) for a missed slot.
LONG = ("Long-only", "Normal", False)
SHORT = ("Short-only", "Reduced", False)
NO_TRADE = ("No-trade", "Defensive", False)
SHORT_DEGRADED = ("Short-only", "Reduced", True)
MISSED = None

REGIME_CASES = [
    pytest.param([LONG, LONG, NO_TRADE, NO_TRADE], [3], "No-trade", id="No-trade x2: fires on the 2nd"),
    pytest.param([LONG, NO_TRADE], [], "Long-only", id="No-trade once: pending only"),
    pytest.param([LONG, LONG, SHORT, LONG, SHORT, LONG], [], "Long-only", id="flicker Long-Short-Long: no alert"),
    pytest.param([LONG, SHORT, MISSED, SHORT, SHORT], [4], "Short-only",
                 id="missed slot between two Short-only: only two adjacent confirm"),
    pytest.param([LONG, SHORT, SHORT_DEGRADED, SHORT, SHORT], [4], "Short-only",
                 id="degraded slot clears the candidate"),
    pytest.param([LONG, NO_TRADE, SHORT, SHORT], [3], "Short-only", id="candidate switch: PENDING(q,1) then q"),
    pytest.param([LONG, NO_TRADE, SHORT, NO_TRADE], [], "Long-only", id="candidate switch back and forth"),
    pytest.param([SHORT_DEGRADED, LONG, LONG], [], "Long-only", id="first non-degraded signal establishes"),
]


def run_regime(engine: Engine, clock: Any, slots: list[Any]) -> list[Decision]:
    decisions = []
    for k, slot in enumerate(slots):
        at = T0 + k * SLOT
        if slot is MISSED:
            clock.set(at)
            decisions.append(engine.observe("signal_slot_missed", {"asset": "BTC", "signal_ts": at}))
        else:
            playbook, risk, degraded = slot
            decisions.append(commit(engine, clock, at, playbook=playbook, risk=risk, degraded=degraded))
    return decisions


@pytest.mark.parametrize(("slots", "changes_at", "confirmed"), REGIME_CASES)
def test_regime_persistence(healthy, slots, changes_at, confirmed):
    """The machine: REGIME_CHANGED exactly where a new playbook held two adjacent non-degraded slots."""
    engine, clock = healthy()
    decisions = run_regime(engine, clock, slots)
    changed = [k for k, d in enumerate(decisions)
               if any(t.machine == "regime_change" and t.reason == "REGIME_CHANGED" for t in d.transitions)]
    assert changed == changes_at
    assert engine.var("regime_change", "confirmed", asset="BTC") == confirmed
    assert engine.state("regime_change", asset="BTC") in ("STABLE", "PENDING")


@pytest.mark.parametrize(("slots", "changes_at", "confirmed"), REGIME_CASES)
def test_regime_change_alerts_drill_13(healthy, slots, changes_at, confirmed):
    """Drill 13 end to end: a medium alert exactly on the confirming slot, rendered from its row."""
    engine, clock = healthy()
    decisions = run_regime(engine, clock, slots)
    fired = [k for k, d in enumerate(decisions) if alerts(d, "regime_change")]
    assert fired == changes_at
    for k in fired:
        (effect,) = alerts(decisions[k], "regime_change")
        playbook, risk, _ = slots[k]
        assert effect.data["severity"] == "medium"
        assert effect.data["cooldown_until"] == T0 + k * SLOT + 30 * MIN
        assert effect.data["template"].format(**effect.data) == (
            f"[BTC] Regime Change: Playbook switched to {playbook}. Risk Mode: {risk}.")


# =========================================================================== alert delivery A1/A4/A5 (§4.6)


@pytest.mark.parametrize(("health_state", "degraded", "outcome"), [
    pytest.param("HEALTHY", False, ("surfaced",), id="healthy, clean signal: surfaced"),
    pytest.param("DEGRADED", False, ("suppressed", "health_degraded"), id="A1 health DEGRADED"),
    pytest.param("STALE", False, ("suppressed", "health_degraded"), id="A1 health STALE"),
    pytest.param("HEALTHY", True, ("suppressed", "degraded_signal"), id="A1 degraded signal"),
    pytest.param("DEGRADED", True, ("suppressed", "health_degraded"), id="A1 health checked first"),
])
def test_a1_gate(make_engine, health_state, degraded, outcome):
    engine, _ = make_engine(persisted=[health_row(health_state, {"HEALTHY": "OK", "DEGRADED": "AGE_DEGRADED",
                                                                 "STALE": "RECOVERING"}[health_state])])
    d = fire(engine, degraded=degraded)
    assert delivery(d, "exit_cluster") == outcome
    expected_cooldown = T0 + 60 * MIN if outcome == ("surfaced",) else None
    assert engine.var("alert_delivery", "cooldown_until", asset="BTC", alert_type="exit_cluster") == expected_cooldown
    assert engine.state("alert_delivery", asset="BTC", alert_type="exit_cluster") == \
        ("SURFACED" if outcome == ("surfaced",) else "SUPPRESSED")
    if outcome != ("surfaced",):
        assert engine.reason("alert_delivery", asset="BTC", alert_type="exit_cluster") == outcome[1]


@pytest.mark.parametrize(("offset_ms", "outcome"), [
    pytest.param(30 * MIN - 1, ("suppressed", "cooldown"), id="1 ms before cooldown_until: cooldown"),
    pytest.param(30 * MIN, ("surfaced",), id="at cooldown_until: allowed"),
])
def test_a4_cooldown_boundary(healthy, offset_ms, outcome):
    engine, clock = healthy()
    assert delivery(fire(engine, alert_type="regime_change"), "regime_change") == ("surfaced",)
    clock.set(T0 + offset_ms)
    assert delivery(fire(engine, alert_type="regime_change"), "regime_change") == outcome


def test_drill_14_cooldowns_per_type_delivery_table(healthy):
    """Regime alert surfaced at t; regime fires at t+15 (cooldown, cooldown_until unchanged) and
    t+35 (surfaces); an exit-cluster fire at t+10 has its own cooldown."""
    engine, clock = healthy()
    key = {"asset": "BTC", "alert_type": "regime_change"}
    seen = []
    for minute, alert_type in [(0, "regime_change"), (10, "exit_cluster"), (15, "regime_change"),
                               (35, "regime_change")]:
        clock.set(T0 + minute * MIN)
        seen.append((minute, delivery(fire(engine, alert_type=alert_type), alert_type),
                     engine.var("alert_delivery", "cooldown_until", **key)))
    assert seen == [
        (0, ("surfaced",), T0 + 30 * MIN),
        (10, ("surfaced",), T0 + 30 * MIN),
        (15, ("suppressed", "cooldown"), T0 + 30 * MIN),
        (35, ("surfaced",), T0 + 65 * MIN),
    ]
    assert engine.var("alert_delivery", "cooldown_until", asset="BTC", alert_type="exit_cluster") == T0 + 70 * MIN


def test_drill_14_alert_cooldown_end_to_end(healthy):
    """Drill 14 from committed signals: regime confirmed at t (surfaced), exit fire at t+10 (own
    cooldown), regime confirmed at t+15 (suppressed cooldown, confirmed updated) and t+35 (surfaces)."""
    engine, clock = healthy()
    t = T0 + 10 * MIN
    script = [  # minutes after t, EC, playbook, risk
        (-10, 5, "Long-only", "Normal"),
        (-5, 5, "Short-only", "Reduced"),
        (0, 5, "Short-only", "Reduced"),      # regime confirmed: surfaced
        (5, 5, "Short-only", "Reduced"),
        (10, 30, "No-trade", "Defensive"),    # exit fire: surfaced; regime candidate
        (15, 22, "No-trade", "Defensive"),    # regime confirmed: suppressed cooldown
        (20, 22, "No-trade", "Defensive"),
        (25, 22, "No-trade", "Defensive"),
        (30, 10, "Long-only", "Normal"),
        (35, 10, "Long-only", "Normal"),      # regime confirmed: surfaced
    ]
    seen = {}
    for minute, ec, playbook, risk in script:
        d = commit(engine, clock, t + minute * MIN, ec=ec, playbook=playbook, risk=risk)
        out = {a: delivery(d, a) for a in ("regime_change", "exit_cluster") if delivery(d, a)}
        if out:
            seen[minute] = out
        if minute == 15:
            assert engine.var("regime_change", "confirmed", asset="BTC") == "No-trade"
            assert engine.var("alert_delivery", "cooldown_until", asset="BTC", alert_type="regime_change") \
                == t + 30 * MIN
    assert seen == {
        0: {"regime_change": ("surfaced",)},
        10: {"exit_cluster": ("surfaced",)},
        15: {"regime_change": ("suppressed", "cooldown")},
        35: {"regime_change": ("surfaced",)},
    }


def test_drill_15_daily_cap_is_per_asset_and_spares_system_stale(healthy):
    """BTC has 4 surfaced alerts at -23, -10, -5, -1 h: a 5th BTC alert (any type) is stored
    daily_cap with cooldown_until unchanged; ETH and System Stale surface."""
    engine, clock = healthy(start_ms=T0 - 23 * HOUR)
    for hours in (23, 10, 5, 1):
        clock.set(T0 - hours * HOUR)
        assert delivery(fire(engine), "exit_cluster") == ("surfaced",), f"-{hours} h"
    clock.set(T0)
    assert delivery(fire(engine), "exit_cluster") == ("suppressed", "daily_cap")
    assert engine.var("alert_delivery", "cooldown_until", asset="BTC", alert_type="exit_cluster") == T0
    assert delivery(fire(engine, alert_type="regime_change"), "regime_change") == ("suppressed", "daily_cap")
    assert delivery(fire(engine, asset="ETH"), "exit_cluster") == ("surfaced",)
    d = engine.observe("health_evaluated", health_eval(age_ms=601 * SEC, age_ref_ms=601 * SEC))
    assert [(e.data["alert_type"], e.data["severity"]) for e in alerts(d)] == [("system_stale", "critical")]


@pytest.mark.parametrize(("at", "outcome"), [
    pytest.param(T0 + HOUR - 1, ("suppressed", "daily_cap"), id="-23 h alert 1 ms inside 24 h: capped"),
    pytest.param(T0 + HOUR, ("surfaced",), id="-23 h alert exactly 24 h old: rolled off"),
])
def test_daily_cap_window_edge(healthy, at, outcome):
    """A5 counts surfaced alerts with alert_ts > now - 24 h."""
    engine, clock = healthy(start_ms=T0 - 23 * HOUR)
    for hours in (23, 10, 5, 1):
        clock.set(T0 - hours * HOUR)
        fire(engine)
    clock.set(at)
    assert delivery(fire(engine), "exit_cluster") == outcome


def test_drill_15_cap_reopens_at_plus_1h05(healthy):
    engine, clock = healthy(start_ms=T0 - 23 * HOUR)
    for hours in (23, 10, 5, 1):
        clock.set(T0 - hours * HOUR)
        fire(engine)
    clock.set(T0)
    assert delivery(fire(engine), "exit_cluster") == ("suppressed", "daily_cap")
    clock.set(T0 + 65 * MIN)
    assert delivery(fire(engine), "exit_cluster") == ("surfaced",)
    assert delivery(fire(engine, alert_type="regime_change"), "regime_change") == ("suppressed", "daily_cap")


def test_cooldown_is_checked_before_the_daily_cap(healthy):
    engine, clock = healthy(start_ms=T0 - 4 * HOUR)
    for hours in (4, 3, 2, 1):
        clock.set(T0 - hours * HOUR)
        fire(engine)
    clock.set(T0 - 30 * MIN)
    assert delivery(fire(engine), "exit_cluster") == ("suppressed", "cooldown")


@pytest.mark.parametrize(("health_state", "degraded", "why"), [
    pytest.param("DEGRADED", False, "health_degraded", id="health DEGRADED"),
    pytest.param("HEALTHY", True, "degraded_signal", id="degraded signal"),
])
def test_suppressed_alerts_still_latch(make_engine, health_state, degraded, why):
    """exit_cluster latches and regime_change confirms even when the alert is stored suppressed
    (hlcore choice); a suppressed alert sets no cooldown."""
    engine, clock = make_engine(persisted=[health_row(health_state, "OK" if health_state == "HEALTHY"
                                                      else "COVERAGE_DEGRADED")])
    d = commit(engine, clock, T0, ec=30.0, playbook="No-trade", risk="Defensive", degraded=degraded)
    assert engine.state("exit_cluster", asset="BTC") == "ACTIVE"
    assert delivery(d, "exit_cluster") == ("suppressed", why)
    assert engine.var("alert_delivery", "cooldown_until", asset="BTC", alert_type="exit_cluster") is None


def test_regime_confirmed_even_if_suppressed(make_engine):
    engine, clock = make_engine(persisted=[health_row("DEGRADED", "COVERAGE_DEGRADED")])
    decisions = run_regime(engine, clock, [LONG, NO_TRADE, NO_TRADE])
    assert engine.var("regime_change", "confirmed", asset="BTC") == "No-trade"
    assert delivery(decisions[2], "regime_change") == ("suppressed", "health_degraded")


# =========================================================================== dashboard view (§3.5, drills 16, 17)


@pytest.mark.parametrize(("state", "reason", "signal_age_ms", "storage_ok", "view", "shown"), [
    pytest.param("STALE", "AGE_STALE", 12 * MIN, True, "HALT", "AGE_STALE", id="drill 16 stale: halt"),
    pytest.param("STALE", "RECOVERING", 60 * SEC, True, "HALT", "RECOVERING", id="drill 16 recovering: halt"),
    pytest.param("HEALTHY", "OK", 11 * MIN, True, "HALT", "SIGNALS_STALE", id="drill 16 signals 11 min old"),
    pytest.param("HEALTHY", "OK", 601 * SEC, True, "HALT", "SIGNALS_STALE", id="signal age 601 s: halt"),
    pytest.param("HEALTHY", "OK", 600 * SEC, True, "NORMAL", "OK", id="signal age 600 s: normal"),
    pytest.param("HEALTHY", "OK", None, True, "HALT", "SIGNALS_STALE", id="no signal yet: halt"),
    pytest.param("DEGRADED", "COVERAGE_DEGRADED", 60 * SEC, True, "DEGRADED", "COVERAGE_DEGRADED",
                 id="drill 17 degraded"),
    pytest.param("DEGRADED", "COVERAGE_DEGRADED", 601 * SEC, True, "HALT", "SIGNALS_STALE",
                 id="degraded with stale signals: halt"),
    pytest.param("HEALTHY", "OK", 60 * SEC, False, "HALT", "STORAGE_UNAVAILABLE", id="storage down: halt"),
    pytest.param("STALE", "MANUAL_HALT", 60 * SEC, False, "HALT", "MANUAL_HALT", id="stale wins: health code"),
])
def test_dashboard_view(make_engine, state, reason, signal_age_ms, storage_ok, view, shown):
    engine, _ = make_engine(persisted=[health_row(state, reason)])
    dashboard(engine, signal_age_ms=signal_age_ms, storage_ok=storage_ok)
    assert (engine.state("dashboard_view"), engine.reason("dashboard_view")) == (view, shown)
    assert engine.may("dashboard.decision_surface") is (view != "HALT")
    assert engine.may("dashboard.system_alerts") is True


def test_dashboard_has_no_hysteresis(healthy):
    """Re-derived on every refresh: HALT on stale signals, NORMAL on the next refresh once fresh."""
    engine, clock = healthy()
    views = []
    for age in (601 * SEC, 30 * SEC, 700 * SEC, 0):
        clock.advance(30 * SEC)
        dashboard(engine, signal_age_ms=age)
        views.append(engine.state("dashboard_view"))
    assert views == ["HALT", "NORMAL", "HALT", "NORMAL"]
