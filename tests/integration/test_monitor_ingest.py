"""The wallet monitor's ingestion against a fake Hyperliquid at the transport level: universe
refresh (drills 1-3), snapshot cycles (S1-S6), dirty snapshots (drill 10) and health over the
stored runs (drills 4-7, 18), on a manual clock (spec/monitor.md §3-§5, §9).

Every verdict comes from the default policy (rules/universe.yaml, snapshots.yaml, health.yaml,
dirty.yaml, alerts.yaml); the tests assert the rows the jobs stored and the machine states."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hlcore.app import AppContext, open_app
from hlcore.engine.clock import ManualClock
from hlcore.jobs.monitor import build_client
from hlcore.jobs.monitor.health import HealthJob, HealthOutcome, alert_text
from hlcore.jobs.monitor.snapshots import SnapshotJob, SnapshotOutcome
from hlcore.jobs.monitor.universe import UniverseJob, UniverseOutcome
from hlcore.storage.db import StorageUnavailable
from hlcore.storage.monitor import (
    IngestHealth,
    IngestRuns,
    MonitorKey,
    MonitorState,
    Snapshots,
    Universe,
    UniverseMember,
    UniverseRun,
    dirty_rate,
)
from hlcore.storage.schema import ingest_runs, snapshot_anomalies, wallet_snapshots, wallet_universe_members
from hlcore.workspace import open_workspace
from replay.transport import Fault
from replay.wallets import address
from replay.worlds.monitor import lb_row, leaderboard, position
from tests.support.fakes import fail_wallet, info_calls, monitor_venues, queue

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_769_248_800_000  # 2026-01-24T10:00:00Z: a round minute and a 5-minute signal slot
SEC = 1_000
MIN = 60 * SEC
HOUR = 60 * MIN
ASSETS = ("HYPE", "BTC", "ETH")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Rig:
    """One monitor process: storage, the three jobs and the replay venues on one manual clock."""

    def __init__(self, tmp_path: Path, monitor: dict[str, Any] | None = None):
        config = _merge({"db_path": str(tmp_path / "monitor.db"), "snapshots": {"max_concurrency": 1}},
                        monitor or {})
        path = tmp_path / "settings.yaml"
        path.write_text(yaml.safe_dump({"monitor": config}), encoding="utf-8")
        self.ws = open_workspace(ROOT, path)
        self.clock = ManualClock(T0 - MIN)
        self.transport, self.world = monitor_venues(self.clock)
        self.sleeps: list[float] = []
        self.ctx: AppContext = open_app(self.ws, self.clock, app="monitor", create=True)
        s = self.ws.settings
        rng = random.Random(7)
        info_url = s.get("monitor.snapshots.info_url")
        lb = build_client(info_url, timeout_sec=s.get("monitor.universe.timeout_sec"), clock=self.clock,
                          sleep=self.sleep, rng=rng, session=self.transport.session())
        info = build_client(info_url, timeout_sec=s.get("monitor.snapshots.request_timeout_sec"), clock=self.clock,
                            sleep=self.sleep, rng=rng, session=self.transport.session(),
                            weight_budget_per_min=s.get("monitor.snapshots.weight_budget_per_min"))
        self.universe = UniverseJob(self.ctx, lb, self.clock)
        self.snapshots = SnapshotJob(self.ctx, info, self.clock)
        self.health = HealthJob(self.ctx, self.clock)

    def sleep(self, seconds: float) -> None:
        with self.transport.lock:  # the snapshot workers share the clock
            self.sleeps.append(seconds)
            self.clock.advance(round(seconds * 1000))

    @property
    def engine(self) -> Any:
        return self.ctx.runtime.engine

    @property
    def health_state(self) -> tuple[str, str | None]:
        return self.engine.state("health"), self.engine.reason("health")

    def at(self, ms: int) -> None:
        self.clock.set(max(ms, self.clock.now_ms()))

    def seed_universe(self, wallets: list[str]) -> None:
        """A current universe without a leaderboard round trip (snapshot and health tests)."""
        run = UniverseRun("seed", T0 - HOUR, "success", "stats-data", 200, len(wallets), 0, len(wallets), 0, 0,
                          None, 0, None)
        members = [UniverseMember(w, i, 1000.0 - i) for i, w in enumerate(wallets, start=1)]
        Universe(self.ctx.db).record_run(run, members, T0 - HOUR)

    def snapshot(self, minute: int) -> SnapshotOutcome:
        self.at(T0 + minute * MIN)
        return self.snapshots.run(T0 + minute * MIN)

    def evaluate(self, at_ms: int) -> HealthOutcome:
        self.at(at_ms)
        return self.health.run(at_ms)

    def minute(self, minute: int) -> tuple[SnapshotOutcome, HealthOutcome]:
        """The run at minute `minute`, then the health job 5 s later (§5 "after each run")."""
        out = self.snapshot(minute)
        return out, self.evaluate(max(self.clock.now_ms(), T0 + minute * MIN + 5 * SEC))

    def rows(self, table: Any, *where: Any) -> list[dict[str, Any]]:
        with self.ctx.db.transaction() as conn:
            return [dict(r) for r in conn.execute(select(table).where(*where)).mappings().all()]


@pytest.fixture
def rig(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    """One monitor on each backend: its SQLite file, then the worker's PostgreSQL database."""
    if db_url.startswith("postgresql"):
        monkeypatch.setenv("DATABASE_URL", db_url)
    r = Rig(tmp_path)
    yield r
    r.ctx.close()


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**monitor: Any) -> Rig:
        r = Rig(tmp_path / f"rig{len(made)}", monitor)
        made.append(r)
        return r

    (tmp_path / "rig0").mkdir()
    for i in range(1, 4):
        (tmp_path / f"rig{i}").mkdir()
    yield make
    for r in made:
        r.ctx.close()


def wallets(n: int, start: int = 1) -> list[str]:
    return [address(i) for i in range(start, start + n)]


def board(ids: list[int]) -> dict[str, Any]:
    """A leaderboard of `address(i)` with pnl falling as i grows (so rank follows i)."""
    return leaderboard(lb_row(address(i), 1_000_000 - i) for i in ids)


# =========================================================================== universe (§4.1, §3.3)


def test_drill1_universe_refresh_success(rig: Rig) -> None:
    """300 valid rows, 2 bad addresses, 1 without a month window, 2 tied on pnl: success,
    n_received=300, n_invalid=3, 200 current ranked 1..200 with the tie broken by id, churn skipped."""
    mixed = "0x" + "Ab" * 20
    rows = [lb_row(mixed, 9_999_999)] + [lb_row(address(i), 1_000_000 - i) for i in range(2, 301)]
    rows[100] = lb_row(address(102), 999_899)  # address(101) and address(102) tie on pnl ...
    rows[101] = lb_row(address(101), 999_899)
    rows += [lb_row("0x123", 5e6), lb_row("not-an-address", 5e6)]
    no_month = lb_row(address(999), 5e6)
    no_month["windowPerformances"] = [w for w in no_month["windowPerformances"] if w[0] != "month"]
    rows.append(no_month)
    random.Random(1).shuffle(rows)  # ... and the venue's order means nothing
    rig.world.leaderboard = leaderboard(rows)
    rig.at(T0)

    out = rig.universe.run()

    assert out.run is not None and out.applied
    run = out.run
    assert (run.status, run.error, run.n_requested, run.n_received, run.n_invalid) == ("success", None, 200, 300, 3)
    assert (run.churn_pct, out.warning, run.churn_warning_count) == (None, None, 0)
    current = Universe(rig.ctx.db).current()
    assert [m.rank for m in current] == list(range(1, 201))
    assert current[0].wallet_id == mixed.lower()  # stored lowercase
    ids = [m.wallet_id for m in current]
    assert ids.index(address(101)) < ids.index(address(102))  # same pnl: wallet_id ascending
    assert {m.wallet_id for m in current} == {m.wallet_id for m in Universe(rig.ctx.db).members(run.run_id)}
    assert len(rig.rows(wallet_universe_members)) == 200
    state = MonitorState(rig.ctx.db)
    assert state.universe_next_attempt_ts() == T0 + 6 * HOUR
    assert state.get_int(MonitorKey.UNIVERSE_FAIL_STREAK) == 0
    assert state.get_int("job_heartbeat_universe") == T0


def _lb_500(r: Rig) -> None:
    queue(r.transport, ["500"] * 4, venue="hyperliquid-stats")


def _lb_timeout(r: Rig) -> None:
    queue(r.transport, ["timeout"] * 4, venue="hyperliquid-stats")


def _lb_no_rows(r: Rig) -> None:
    r.world.leaderboard = {"rows": []}


def _lb_179(r: Rig) -> None:
    r.world.leaderboard = board(list(range(1, 180)))


def _lb_duplicate(r: Rig) -> None:
    body = board(list(range(1, 201)))
    body["leaderboardRows"].append(lb_row(address(7).upper().replace("0X", "0x"), 12))
    r.world.leaderboard = body


@pytest.mark.parametrize(("variant", "script", "error", "calls"), [
    ("http_500_on_all_attempts", _lb_500, "fetch_failed", 4),
    ("timeout_on_all_attempts", _lb_timeout, "fetch_failed", 4),
    ("no_leaderboardRows", _lb_no_rows, "schema_changed", 1),
    ("179_valid", _lb_179, "incomplete_universe", 1),
    ("duplicate_address", _lb_duplicate, "duplicate_wallet_id", 1),
])
def test_drill2_failure_keeps_last_good(rig: Rig, variant: str, script: Callable[[Rig], None],
                                        error: str, calls: int) -> None:
    rig.world.leaderboard = board(list(range(1, 201)))
    rig.at(T0)
    assert rig.universe.run().applied
    before = Universe(rig.ctx.db).current()

    rig.at(T0 + 6 * HOUR)
    rig.transport.calls.clear()
    rig.sleeps.clear()
    script(rig)
    out = rig.universe.run()

    assert out.run is not None and not out.applied, variant
    assert (out.run.status, out.run.error) == ("failed", error)
    assert len(rig.transport.calls) == calls
    if calls > 1:
        assert rig.sleeps == [0.5, 1.5, 4.0]  # retries after 0.5/1.5/4 s, on the injected clock
    assert Universe(rig.ctx.db).current() == before  # last good universe kept
    assert [r.status for r in Universe(rig.ctx.db).runs()] == ["failed", "success"]  # one row per attempt
    assert out.next_attempt_ts == rig.clock.now_ms() + 15 * MIN

    # snapshots continue with the kept universe
    snap = rig.snapshot(6 * 60 + 1)
    assert snap.run is not None and snap.run.wallets_expected == 200 and snap.status == "success"

    # +15 min: 180 valid rows -> success with a universe of 180
    rig.at(out.next_attempt_ts)
    assert rig.universe.due(rig.clock.now_ms())
    rig.world.leaderboard = board(list(range(1, 181)))
    again = rig.universe.run()
    assert again.applied and again.run is not None
    assert (again.run.status, again.run.error, again.run.exited_count, again.run.churn_pct) == (
        "success", None, 20, 10.0)
    assert len(Universe(rig.ctx.db).current()) == 180


def test_repeated_failures_count_the_fail_streak(rig: Rig) -> None:
    """≥ 3 consecutive failures: `universe_fail_streak` = 3 for the status warning (§4.1)."""
    rig.world.leaderboard = {"nothing": True}
    for i in range(3):
        rig.at(T0 + i * 15 * MIN)
        assert rig.universe.run().run.error == "schema_changed"  # type: ignore[union-attr]
    assert MonitorState(rig.ctx.db).get_int(MonitorKey.UNIVERSE_FAIL_STREAK) == 3
    assert Universe(rig.ctx.db).current() == []


def test_drill3_churn_guard_three_strikes(rig: Rig) -> None:
    """R1-R3 churn 35 %: success (count 1), success (count 2), failed churn_guard (count 3, R2 kept);
    R4 churn 10 %: success, count 0."""
    rig.world.leaderboard = board(list(range(1, 201)))  # U0
    rig.at(T0)
    rig.universe.run()
    outcomes: list[UniverseOutcome] = []
    states = []
    for n, first in enumerate([36, 71, 106, 81], start=1):
        rig.at(T0 + n * 6 * HOUR)
        rig.world.leaderboard = board(list(range(first, first + 200)))
        outcomes.append(rig.universe.run())
        states.append(rig.engine.state("universe"))
        if n == 2:
            r2 = [m.wallet_id for m in Universe(rig.ctx.db).current()]
    runs = [o.run for o in outcomes]
    assert [r.churn_pct for r in runs] == [35.0, 35.0, 35.0, 10.0]  # type: ignore[union-attr]
    assert [(r.status, r.error, r.churn_warning_count) for r in runs] == [  # type: ignore[union-attr]
        ("success", None, 1), ("success", None, 2), ("failed", "churn_guard", 3), ("success", None, 0)]
    assert [o.warning for o in outcomes] == ["churn", "churn", None, None]
    assert [o.applied for o in outcomes] == [True, True, False, True]
    assert states == ["APPLYING", "APPLYING", "GUARDING", "APPLYING"]
    assert r2[0] == address(71)
    assert [m.wallet_id for m in Universe(rig.ctx.db).current()] == wallets(200, 81)


def test_universe_cadence(rig: Rig) -> None:
    """At start when never refreshed; 6 h after a success; 15 min after a failure (§5)."""
    rig.at(T0)
    assert rig.universe.due(T0, at_start=True)
    rig.world.leaderboard = board(list(range(1, 201)))
    assert rig.universe.tick(T0) == 6 * HOUR
    assert not rig.universe.due(T0 + 6 * HOUR - 1)
    rig.at(T0 + HOUR)
    assert rig.universe.tick(T0 + HOUR) == 5 * HOUR  # not due: nothing fetched
    assert len(rig.transport.calls) == 1
    rig.at(T0 + 6 * HOUR)
    rig.world.leaderboard = board(list(range(1, 100)))
    assert rig.universe.tick(T0 + 6 * HOUR) == 15 * MIN
    assert not rig.universe.due(T0 + 6 * HOUR + 15 * MIN - 1)
    assert rig.universe.due(T0 + 6 * HOUR + 15 * MIN)


# =========================================================================== snapshots (§4.2)


@pytest.mark.parametrize(("failing", "status", "error", "coverage"), [
    (0, "success", None, 100.0),
    (30, "partial", None, 85.0),
    (200, "failed", "no_successes", 0.0),
])
def test_snapshot_run_status_from_coverage(rig: Rig, failing: int, status: str, error: str | None,
                                           coverage: float) -> None:
    """S2/S3 at 100 %, 85 % and 0 successes; 3 rows per wallet, NULL sizes for failed wallets, none
    at all for a run without successes."""
    ws = wallets(200)
    rig.seed_universe(ws)
    for w in ws:
        rig.world.positions[w] = {"BTC": "0.5"}
    for w in ws[:failing]:
        fail_wallet(rig.transport, w, "400")  # not retryable: one call each
    out = rig.snapshot(0)

    run = out.run
    assert run is not None
    assert (run.status, run.error, run.coverage_pct) == (status, error, coverage)
    assert (run.wallets_expected, run.wallets_succeeded, run.wallets_failed) == (200, 200 - failing, failing)
    rows = rig.rows(wallet_snapshots)
    written = 0 if failing == 200 else 600
    assert (run.rows_expected, run.rows_written, len(rows)) == (600, written, written)
    assert sum(1 for r in rows if r["position_szi"] is None) == (0 if failing == 200 else failing * 3)
    assert run.nonnull_pct == {"HYPE": coverage, "BTC": coverage, "ETH": coverage}
    assert IngestRuns(rig.ctx.db).get(T0) == run
    assert len(info_calls(rig.transport)) == 200


def test_explicit_zero_rows_null_rows_and_unreadable_positions(rig: Rig) -> None:
    long_btc, flat, failed, garbled = wallets(4)
    rig.seed_universe([long_btc, flat, failed, garbled])
    rig.world.positions[long_btc] = {"BTC": position("BTC", "1.5", entry_px="60000.0", liq_px="40000.0",
                                                     margin="9000.0", leverage={"type": "isolated", "value": 10})}
    rig.world.positions[garbled] = {"ETH": "2.0", "BTC": position("BTC", "abc")}
    fail_wallet(rig.transport, failed, "500")
    out = rig.snapshot(0)

    got = {(r["wallet_id"], r["asset"]): r for r in rig.rows(wallet_snapshots)}
    assert len(got) == 12
    btc = got[(long_btc, "BTC")]
    assert (btc["position_szi"], btc["entry_px"], btc["liq_px"], btc["margin_used"], btc["leverage"]) == (
        1.5, 60000.0, 40000.0, 9000.0, 10.0)
    for key in [(long_btc, "HYPE"), (long_btc, "ETH"), (flat, "HYPE"), (flat, "BTC"), (flat, "ETH")]:
        r = got[key]
        assert (r["position_szi"], r["entry_px"], r["liq_px"], r["leverage"], r["margin_used"]) == (
            0.0, None, None, None, None), key
    for asset in ASSETS:
        r = got[(failed, asset)]
        assert (r["position_szi"], r["entry_px"], r["is_dirty"], r["ingest_run_id"]) == (
            None, None, False, f"ingest-{T0}")
    assert got[(garbled, "BTC")]["position_szi"] is None
    assert (got[(garbled, "ETH")]["position_szi"], got[(garbled, "HYPE")]["position_szi"]) == (2.0, 0.0)
    assert info_calls(rig.transport).count(failed) == 4  # first try + retries after 0.5/1.5/4 s
    assert out.run is not None and (out.status, out.run.coverage_pct) == ("partial", 75.0)
    assert out.run.nonnull_pct == {"HYPE": 75.0, "BTC": 50.0, "ETH": 75.0}


@pytest.mark.parametrize(("start_offset", "faults", "calls", "ok"), [
    (0, ["500", "500"], 3, True),            # recovered by the second retry
    (54 * SEC, ["500"] * 4, 2, False),         # one retry fits before T+55 s, the next would end after it
    (55 * SEC, [], 0, False),                  # nothing starts at the deadline
])
def test_retries_only_before_the_cycle_deadline(rig: Rig, start_offset: int, faults: list[str], calls: int,
                                                ok: bool) -> None:
    (w,) = wallets(1)
    rig.seed_universe([w])
    queue(rig.transport, faults, users=frozenset({w}))
    rig.at(T0 + start_offset)
    out = rig.snapshots.run(T0)
    assert len(info_calls(rig.transport)) == calls
    (result,) = out.wallets
    assert result.ok is ok
    assert out.status == ("success" if ok else "failed")


def test_a_response_after_the_deadline_is_a_failed_wallet(rig: Rig) -> None:
    """300 ms per request, sequential: 183 answers land by T+54.9 s; the 184th ends at T+55.2 s
    (failed); the rest never start (§4.2 "unfinished at deadline = failed")."""
    rig.seed_universe(wallets(200))
    rig.transport.delays.append(Fault("latency", op="clearinghouseState", times=None, takes_ms=300))
    out = rig.snapshot(0)
    assert out.run is not None
    assert (out.run.wallets_succeeded, out.run.coverage_pct, out.status) == (183, 91.5, "success")
    assert len(info_calls(rig.transport)) == 184


def test_misaligned_slot_and_empty_universe_fail(rig: Rig) -> None:
    out = rig.snapshot(0)
    assert (out.status, out.error) == ("failed", "empty_universe")  # nothing to ask about yet
    rig.seed_universe(wallets(3))
    rig.at(T0 + MIN + 1500)
    out = rig.snapshots.run(T0 + MIN + 1500)
    assert (out.status, out.error) == ("failed", "misaligned_snapshot_ts")
    assert info_calls(rig.transport) == [] and rig.rows(wallet_snapshots) == []
    assert [r["snapshot_ts"] for r in rig.rows(ingest_runs)] == [T0, T0 + MIN + 1500]


def test_integrity_violation_rolls_back_the_run(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """S4: an unexpected constraint violation: run failed integrity_violation, no snapshot rows."""
    rig.seed_universe(wallets(3))

    def broken(*_a: Any, **_k: Any) -> int:
        raise IntegrityError("INSERT INTO wallet_snapshots", {}, Exception("CHECK constraint failed"))

    monkeypatch.setattr(Snapshots, "upsert", broken)
    out = rig.snapshot(0)
    assert (out.status, out.error) == ("failed", "integrity_violation")
    assert rig.rows(wallet_snapshots) == []
    (run,) = rig.rows(ingest_runs)
    assert (run["status"], run["error"], run["rows_written"]) == ("failed", "integrity_violation", 0)


def test_a_slot_runs_once(rig: Rig) -> None:
    rig.seed_universe(wallets(3))
    first = rig.snapshot(0)
    second = rig.snapshots.run(T0)
    assert second.skipped and second.run == first.run
    assert len(info_calls(rig.transport)) == 3 and len(rig.rows(ingest_runs)) == 1


def test_storage_outage_is_reported_and_nothing_is_written(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """H6: a storage error during a run is `storage_failed{app: monitor}` -> STALE STORAGE_UNAVAILABLE;
    no partial writes, and the minute is not backfilled after the restore."""
    rig.seed_universe(wallets(3))
    _db_down(rig, monkeypatch)
    out = rig.snapshot(0)
    assert out.storage_error and out.run is None
    assert (out.status, out.error) == ("failed", "db_error")
    assert rig.health_state == ("STALE", "STORAGE_UNAVAILABLE")
    assert info_calls(rig.transport) == []
    monkeypatch.undo()
    assert rig.rows(ingest_runs) == [] and rig.rows(wallet_snapshots) == []


def test_concurrent_workers_and_the_429_backoff(make_rig: Callable[..., Rig]) -> None:
    """Concurrency 8 fetches every wallet once; a 429 halves it (8 -> 4), a clean run adds one."""
    rig = make_rig(snapshots={"max_concurrency": 8})
    ws = wallets(20)
    rig.seed_universe(ws)
    for i, w in enumerate(ws):
        rig.world.positions[w] = {"ETH": str(i + 1)}
    out = rig.snapshot(0)
    assert out.run is not None and (out.status, out.run.concurrency, out.next_concurrency) == ("success", 8, 8)
    assert sorted(info_calls(rig.transport)) == ws
    eth = {r["wallet_id"]: r["position_szi"] for r in rig.rows(wallet_snapshots, wallet_snapshots.c.asset == "ETH")}
    assert eth == {w: float(i + 1) for i, w in enumerate(ws)}

    for w in ws:
        fail_wallet(rig.transport, w, "429")
    out = rig.snapshot(1)
    assert out.run is not None
    assert (out.status, out.error, out.run.concurrency) == ("failed", "no_successes", 8)
    assert out.run.rate_limited_count >= 1
    assert MonitorState(rig.ctx.db).snapshot_concurrency() == 4

    rig.transport.faults.clear()
    out = rig.snapshot(2)
    assert out.run is not None and (out.status, out.run.concurrency) == ("success", 4)
    assert MonitorState(rig.ctx.db).snapshot_concurrency() == 5


# =========================================================================== dirty snapshots (§4.4)


def test_transient_collapse_marks_the_middle_row_only(rig: Rig) -> None:
    """1.0/0/1.0 marks t1 dirty and writes an anomaly; 1.0->0->0 (a real close), a collapse that
    recovers to less than half, one within 1 %, and a position at or below ε_abs are not dirty."""
    w = wallets(8)
    rig.seed_universe(w)
    script = {  # wallet: (asset, szi at t0, t1, t2); None at t1 = the wallet failed that minute
        w[0]: ("BTC", "1.0", "0", "1.0"),       # transient collapse
        w[1]: ("BTC", "1.0", "0", "0"),         # real close: never dirty
        w[2]: ("HYPE", "5.0", None, "5.0"),     # NULL at t1 counts as a collapse
        w[3]: ("BTC", "0.0001", "0", "0.0001"),  # |t0| not above ε_abs BTC
        w[4]: ("ETH", "2.0", "0.015", "2.0"),   # < 1 % of t0
        w[5]: ("ETH", "2.0", "0.03", "2.0"),    # 1.5 % of t0: not a collapse
        w[6]: ("BTC", "1.0", "0", "0.4"),       # no recovery (< 50 %)
        w[7]: ("BTC", "-3.0", "0", "-2.0"),     # shorts too
    }
    for minute in range(3):
        rig.world.positions.clear()
        rig.transport.faults.clear()
        for wallet, (asset, *sizes) in script.items():
            if sizes[minute] is None:
                fail_wallet(rig.transport, wallet, "400")
            else:
                rig.world.positions[wallet] = {asset: sizes[minute]}
        out = rig.snapshot(minute)

    t1 = T0 + MIN
    assert {(m.wallet_id, m.asset) for m in out.dirty} == {(w[0], "BTC"), (w[2], "HYPE"), (w[4], "ETH"),
                                                           (w[7], "BTC")}
    rows = {(r["wallet_id"], r["asset"]): r for r in rig.rows(wallet_snapshots, wallet_snapshots.c.snapshot_ts == t1)}
    dirty = {k for k, r in rows.items() if r["is_dirty"]}
    assert dirty == {(w[0], "BTC"), (w[2], "HYPE"), (w[4], "ETH"), (w[7], "BTC")}
    assert all(rows[k]["dirty_reason"] == "transient_collapse" for k in dirty)
    assert all(r["dirty_reason"] is None for k, r in rows.items() if k not in dirty)
    # raw values untouched
    assert (rows[(w[0], "BTC")]["position_szi"], rows[(w[2], "HYPE")]["position_szi"],
            rows[(w[4], "ETH")]["position_szi"]) == (0.0, None, 0.015)
    anomalies = rig.rows(snapshot_anomalies)
    assert len(anomalies) == 4
    a0 = next(a for a in anomalies if a["wallet_id"] == w[0])
    assert (a0["snapshot_ts"], a0["asset"], a0["anomaly_type"]) == (t1, "BTC", "transient_collapse")
    assert Snapshots(rig.ctx.db).anomalies()[0]["details"]["szi_t1"] in (0.0, None, 0.015)
    assert IngestRuns(rig.ctx.db).get(T0 + 2 * MIN).dirty_marked == 4  # type: ignore[union-attr]
    assert IngestRuns(rig.ctx.db).get(t1).dirty_marked == 0  # type: ignore[union-attr]


def _alternate(rig: Rig, ws: list[str], flappers: int, minute: int, calm_from: int | None = None) -> None:
    """BTC: the first `flappers` wallets alternate 1.0 (even minutes) / 0 (odd) per minute."""
    for i, w in enumerate(ws):
        if i < flappers:
            flat = minute % 2 == 1 and (calm_from is None or minute < calm_from)
            rig.world.positions[w] = {"BTC": "0" if flat else "1.0", "ETH": "3.0"}
        else:
            rig.world.positions[w] = {"BTC": "2.0", "HYPE": "-10"}


def test_drill10_dirty_rate_at_a_signal_slot(rig: Rig) -> None:
    """5 of 20 wallets flap BTC for 10 min (the spec's 50 of 200): 12.5 % dirty over (T-10 min, T];
    HYPE and ETH 0 %; `dirty_check` reports it at the signal slot only."""
    ws = wallets(20)
    rig.seed_universe(ws)
    for m in range(11):
        _alternate(rig, ws, 5, m)
        rig.snapshot(m)
        checks = rig.snapshots.check_dirty_rates(T0 + m * MIN)
        assert len(checks) == (3 if m % 5 == 0 else 0)
    slot = T0 + 10 * MIN
    assert [(d.fact, d.vars) for d in checks] == [("dirty_check", ())] * 3
    assert dirty_rate(rig.ctx.db, "BTC", slot) == 12.5
    assert (dirty_rate(rig.ctx.db, "HYPE", slot), dirty_rate(rig.ctx.db, "ETH", slot)) == (0.0, 0.0)
    assert rig.engine.state("dirty", asset="BTC") == "CLEAN"
    assert rig.engine.var("dirty", "streak", asset="BTC") == 0  # 12.5 % is not above the sustained 20 %
    raw = rig.rows(wallet_snapshots, wallet_snapshots.c.asset == "BTC", wallet_snapshots.c.is_dirty.is_(True))
    assert len(raw) == 25 and {r["position_szi"] for r in raw} == {0.0}  # raw rows kept as they were


def test_drill10_sustained_dirty_stales_health_until_calm_and_release(rig: Rig) -> None:
    """12 of 20 wallets flap (30 % / 24 % / 30 % at slots 10, 15, 20): three cycles above 20 % ->
    STALE SUSTAINED_DIRTY; calm from minute 21; rate < 10 % at slot 30 clears it, then the release
    rule needs two clean adjacent runs after the latch."""
    ws = wallets(20)
    rig.seed_universe(ws)
    seen: dict[int, tuple[str, str | None]] = {}
    for m in range(32):
        _alternate(rig, ws, 12, m, calm_from=21)
        rig.snapshot(m)
        rig.snapshots.check_dirty_rates(T0 + m * MIN)  # what the signal cycle reports at its slot
        health = rig.evaluate(T0 + m * MIN + 5 * SEC)
        seen[m] = (health.state, health.reason)
    assert seen[1] == ("HEALTHY", "OK")
    assert seen[19] == ("HEALTHY", "OK")
    assert seen[20] == ("STALE", "SUSTAINED_DIRTY")
    assert seen[25] == ("STALE", "SUSTAINED_DIRTY")  # 12 % at slot 25: not yet below 10 %
    assert seen[29] == ("STALE", "SUSTAINED_DIRTY")
    assert seen[30] == ("STALE", "RECOVERING")
    assert seen[31] == ("HEALTHY", "OK")
    assert rig.engine.state("dirty", asset="BTC") == "CLEAN"


# =========================================================================== health (§4.3, drills 4-7, 18)


def test_drill7_two_clean_adjacent_runs_release_the_latch(rig: Rig) -> None:
    rig.seed_universe(wallets(20))
    first = rig.evaluate(T0 - 30 * SEC)  # fresh install, no run yet
    assert (first.state, first.reason, first.latched, first.alerts) == ("STALE", "NO_DATA", True, ())
    _, h0 = rig.minute(0)
    assert (h0.state, h0.reason, h0.latched, h0.facts["clean_streak"]) == ("STALE", "RECOVERING", True, 1)
    _, h1 = rig.minute(1)
    assert (h1.state, h1.reason, h1.latched, h1.facts["clean_streak"]) == ("HEALTHY", "OK", False, 2)
    rows = IngestHealth(rig.ctx.db).rows()
    assert [(r.health_state, r.health_reason, r.latched, r.clean_streak, r.snapshot_status) for r in rows] == [
        ("STALE", "NO_DATA", True, 0, None),
        ("STALE", "RECOVERING", True, 1, "success"),
        ("HEALTHY", "OK", False, 2, "success"),
    ]
    assert rows[-1].last_success_snapshot_ts == T0 + MIN and rows[-1].coverage_pct == 100.0
    assert MonitorState(rig.ctx.db).get_int("job_heartbeat_health") == T0 + MIN + 5 * SEC
    assert MonitorState(rig.ctx.db).first_start_ts() == T0 - 30 * SEC


def test_drill7_a_skipped_minute_keeps_recovering(rig: Rig) -> None:
    rig.seed_universe(wallets(20))
    rig.evaluate(T0 - 30 * SEC)
    rig.minute(0)
    half = rig.evaluate(T0 + MIN + 30 * SEC)  # minute 1 never ran (the job was down)
    assert (half.state, half.reason) == ("STALE", "RECOVERING")
    _, h2 = rig.minute(2)
    assert (h2.state, h2.reason, h2.facts["clean_streak"]) == ("STALE", "RECOVERING", 1)
    _, h3 = rig.minute(3)
    assert (h3.state, h3.reason, h3.facts["clean_streak"]) == ("HEALTHY", "OK", 2)


def test_drill6_age_degrades_then_stales_with_one_system_stale_alert(rig: Rig) -> None:
    rig.seed_universe(wallets(20))
    rig.minute(0)
    rig.minute(1)
    last = T0 + MIN
    expect = [(120, "HEALTHY", "OK"), (121, "DEGRADED", "AGE_DEGRADED"), (600, "DEGRADED", "AGE_DEGRADED"),
              (601, "STALE", "AGE_STALE"), (661, "STALE", "AGE_STALE")]
    alerts: dict[int, tuple[Any, ...]] = {}
    for age_s, state, reason in expect:
        h = rig.evaluate(last + age_s * SEC)
        assert (h.state, h.reason) == (state, reason), age_s
        assert h.facts["age_ms"] == age_s * SEC
        alerts[age_s] = h.alerts
    assert alerts[120] == alerts[121] == alerts[600] == alerts[661] == ()
    (alert,) = alerts[601]
    assert (alert.data["alert_type"], alert.data["severity"], alert.data["asset"]) == ("system_stale", "critical", None)
    assert "Ingestion has not succeeded for 10 minutes" in alert_text(alert)
    assert rig.engine.state("system_stale") == "ACTIVE"
    assert IngestHealth(rig.ctx.db).latest().latched is True  # type: ignore[union-attr]

    # ingestion comes back (the latch was last set at T0+12:01): two clean adjacent runs after it
    # release the latch and end the episode without a row
    _, a = rig.minute(13)
    assert (a.state, a.reason, a.alerts) == ("STALE", "RECOVERING", ())
    _, b = rig.minute(14)
    assert (b.state, b.reason, b.alerts) == ("HEALTHY", "OK", ())
    assert rig.engine.state("system_stale") == "INACTIVE"


def test_a_fresh_install_gets_ten_minutes_of_grace(rig: Rig) -> None:
    """No usable run ever: the System Stale age reference is the time since first start."""
    rig.evaluate(T0)
    quiet = rig.evaluate(T0 + 600 * SEC)
    assert (quiet.state, quiet.reason, quiet.alerts, quiet.facts["age_ref_ms"]) == ("STALE", "NO_DATA", (), 600 * SEC)
    loud = rig.evaluate(T0 + 601 * SEC)
    assert len(loud.alerts) == 1 and "for 10 minutes" in alert_text(loud.alerts[0])


def test_drill4_partial_runs_degrade_until_two_clean_runs(rig: Rig) -> None:
    ws = wallets(20)
    rig.seed_universe(ws)
    rig.minute(0)
    rig.minute(1)
    for w in ws[:3]:
        fail_wallet(rig.transport, w, "400")  # the same 3 of 20 fail: 85 %
    for m in range(2, 8):
        out, h = rig.minute(m)
        assert (out.status, h.state, h.reason) == ("partial", "DEGRADED", "COVERAGE_DEGRADED"), m
    rig.transport.faults.clear()
    _, h8 = rig.minute(8)
    assert (h8.state, h8.reason) == ("DEGRADED", "AWAITING_SECOND_CLEAN")
    _, h9 = rig.minute(9)
    assert (h9.state, h9.reason) == ("HEALTHY", "OK")


@pytest.mark.parametrize(("variant", "status", "reason"), [
    ("coverage_75", "partial", "COVERAGE_STALE"),
    ("all_429", "failed", "INGEST_FAILED"),
])
def test_drill5_low_coverage_stales(make_rig: Callable[..., Rig], variant: str, status: str, reason: str) -> None:
    rig = make_rig(snapshots={"max_concurrency": 8})
    ws = wallets(20)
    rig.seed_universe(ws)
    rig.minute(0)
    rig.minute(1)
    failing = ws[:5] if variant == "coverage_75" else ws
    for w in failing:
        fail_wallet(rig.transport, w, "400" if variant == "coverage_75" else "429")
    out, h = rig.minute(2)
    assert (out.status, h.state, h.reason, h.latched, h.alerts) == (status, "STALE", reason, True, ())
    if variant == "all_429":
        assert MonitorState(rig.ctx.db).snapshot_concurrency() == 4


def _db_down(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    def down() -> Any:
        raise StorageUnavailable("storage unavailable while running a transaction: database is locked")

    monkeypatch.setattr(rig.ctx.db, "transaction", down)


def test_drill18_database_unavailable(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """DB down for minutes 2-6: STALE STORAGE_UNAVAILABLE, no partial writes, no backfill, no System
    Stale; after the restore latched until two adjacent clean runs."""
    rig.seed_universe(wallets(20))
    rig.minute(0)
    rig.minute(1)
    _db_down(rig, monkeypatch)
    for m in range(2, 7):
        out, h = rig.minute(m)
        assert out.run is None and out.storage_error
        assert (h.state, h.reason, h.alerts, h.record) == ("STALE", "STORAGE_UNAVAILABLE", (), None)
        assert h.facts["storage_ok"] is False
    monkeypatch.undo()
    _, a = rig.minute(7)
    assert (a.state, a.reason) == ("STALE", "RECOVERING")
    _, b = rig.minute(8)
    assert (b.state, b.reason) == ("HEALTHY", "OK")
    assert [r["snapshot_ts"] for r in rig.rows(ingest_runs)] == [T0 + m * MIN for m in (0, 1, 7, 8)]
    assert [r.health_ts for r in IngestHealth(rig.ctx.db).rows()] == [T0 + m * MIN + 5 * SEC for m in (0, 1, 7, 8)]
    # the outage's decisions were persisted at the first good write
    assert MonitorState(rig.ctx.db).get("health_latch_reason") == "OK"
