"""The copy-trader in live mode against the replay harness's stateful venues (tests/support/fakes.py):
crash recovery exactly once, the retry budget, reconcile verdicts, FLIP in ARMED_SAFE, the gap rule
(copytrader §3-§5, drills)."""

from __future__ import annotations

import random
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from hlcore.app import open_app
from hlcore.engine.clock import ManualClock
from hlcore.jobs.copytrade.jobs import CopytradeJobs
from hlcore.jobs.copytrade.service import Wiring, retention, start
from hlcore.storage.copytrade import Baselines, Orders
from hlcore.storage.schema import order_results, processed_txs
from hlcore.workspace import open_workspace
from replay.transport import ProcessKilled
from replay.worlds.copytrade import WALLET
from tests.support.fakes import copytrade_venues, fill, queue

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_769_248_800_000
ENV = {"HYPERLIQUID_TARGET_WALLET": WALLET, "BINANCE_API_KEY": "K" * 64, "BINANCE_API_SECRET": "S" * 64}
TX1 = "0x" + "a1" * 32


class Rig:
    def __init__(self, tmp_path: Path, config: dict[str, Any] | None = None, baseline: dict[str, str] | None = None):
        self.tmp = tmp_path
        settings = {"db_path": str(tmp_path / "ct.db"), "metrics_log_path": str(tmp_path / "metrics.log"),
                    "safety": {"startup_policy": "auto"}, "execution": {"binance": {"retry": {"max_attempts": 1}}},
                    **(config or {})}
        path = tmp_path / "settings.yaml"
        path.write_text(yaml.safe_dump(settings), encoding="utf-8")
        self.ws = open_workspace(ROOT, path)
        self.clock = ManualClock(T0)
        self.transport, self.world = copytrade_venues(self.clock)
        if baseline:
            ctx = open_app(self.ws, self.clock, create=True)
            Baselines(ctx.db).sync({k: Decimal(v) for k, v in baseline.items()}, "op", "test", T0 - 1)
            ctx.close()
            self.world.account.positions = {k: Decimal(v) for k, v in baseline.items()}
        self.ctx: Any = None
        self.jobs: CopytradeJobs | None = None

    def boot(self) -> CopytradeJobs:
        wiring = Wiring(self.clock, lambda s: self.clock.advance(int(s * 1000)), random.Random(3),
                        lambda _venue: self.transport.session(), ENV)
        self.ctx, self.jobs, _sched, _loop, code = start(self.ws, "live", wiring, allow_create_db=True)
        assert code == 0
        return self.jobs

    def cycle(self) -> None:
        assert self.jobs is not None
        self.jobs.ingest()
        self.jobs.decide()
        self.jobs.execute()

    def die(self) -> None:
        self.ctx.close()
        self.ctx = self.jobs = None

    @property
    def mode(self) -> tuple[str, str | None]:
        engine = self.ctx.runtime.engine
        return engine.state("safety"), engine.reason("safety")

    def rows(self, table: Any) -> list[dict[str, Any]]:
        with self.ctx.db.transaction() as conn:
            return [dict(r) for r in conn.execute(select(table)).mappings().all()]


def test_fresh_fill_is_copied_once_and_filled(tmp_path: Path) -> None:
    """Drill 9: ARMED_LIVE since boot; BTC 0 -> 2.0 at now-1000 => BUY 0.002 MARKET, FILLED, DONE."""
    rig = Rig(tmp_path)
    rig.boot()
    assert rig.mode == ("ARMED_LIVE", "OK")  # startup_policy=auto and an OK startup reconcile (S15)
    rig.clock.set(T0 + 2_000)
    rig.world.fills = [fill(1, "2.0", "0.0", "B", T0 + 1_000, TX1)]
    rig.cycle()
    (post,) = rig.world.account.posts
    assert (post["side"], post["quantity"], post["type"], post["reduceOnly"]) == ("BUY", "0.002", "MARKET", "false")
    assert re.fullmatch(r"hl-[0-9a-f]{24}-00", post["newClientOrderId"])
    (event,) = rig.rows(processed_txs)
    (result,) = rig.rows(order_results)
    assert (event["is_replay"], event["state"], result["status"]) == (False, "DONE", "FILLED")


def _all_rows(db: Any) -> dict[str, list[tuple[Any, ...]]]:
    from hlcore.storage.schema import metadata

    with db.transaction() as conn:
        return {t.name: sorted(map(tuple, conn.execute(select(t)).all()), key=repr) for t in metadata.sorted_tables}


def test_prime_writes_nothing_sends_nothing_and_the_next_fill_is_copied_as_without_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm-up `hlcore live` runs before its loop (issue 12): every table as it was, no request
    sent (nor built through the transport), and the next fill copied exactly as by an unprimed copy."""
    from sqlalchemy import event

    from replay.transport import DrillTransport

    posts: dict[bool, list[dict[str, Any]]] = {}
    calls: list[str] = []
    statements: list[str] = []
    for primed in (False, True):
        (tmp_path / str(primed)).mkdir()
        rig = Rig(tmp_path / str(primed))
        jobs = rig.boot()
        rig.clock.set(T0 + 2_000)
        rig.world.fills = [fill(1, "2.0", "0.0", "B", T0 + 1_000, TX1)]
        rig.cycle()  # some history: an event, its intent and result
        if primed:
            monkeypatch.setattr(DrillTransport, "exchange", lambda *a, **k: calls.append(str(a[1:3])))
            event.listen(rig.ctx.db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
            before = _all_rows(rig.ctx.db)
            jobs.prime()
            assert _all_rows(rig.ctx.db) == before
            assert calls == []
            assert any(s.startswith("INSERT INTO order_intents") for s in statements)  # it did walk the writes
            monkeypatch.undo()
        rig.clock.set(T0 + 4_000)
        rig.world.fills += [fill(2, "2.0", "2.0", "B", T0 + 3_000, "0x" + "b2" * 32)]
        rig.cycle()
        posts[primed] = [{k: v for k, v in p.items() if k not in ("signature", "timestamp")}
                         for p in rig.world.account.posts]
        assert [r["status"] for r in rig.rows(order_results)] == ["FILLED", "FILLED"]
        rig.die()
    assert posts[True] == posts[False] and len(posts[True]) == 2


def test_prime_leaves_a_storage_failure_to_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A warm-up never stops `hlcore live` on its own: a storage failure is logged, and the loop's
    first tick meets it and reports it as the policy's fact."""
    from hlcore.storage.copytrade import CopytradeState
    from hlcore.storage.db import StorageUnavailable

    rig = Rig(tmp_path)
    jobs = rig.boot()

    def down(*_a: Any, **_k: Any) -> None:
        raise StorageUnavailable("storage unavailable while reading: disk I/O error")

    monkeypatch.setattr(CopytradeState, "ingest_keys", down)
    jobs.prime()
    assert "warm-up skipped: storage unavailable" in caplog.text
    assert rig.mode == ("ARMED_LIVE", "OK")


CRASH_POINTS = ["after_ingest_commit", "after_intents_commit", "after_venue_accepted", "after_result_commit"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_any_step_then_restart_sends_exactly_one_order(tmp_path: Path, point: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(tmp_path)
    rig.boot()
    rig.clock.set(T0 + 2_000)
    rig.world.fills = [fill(1, "2.0", "0.0", "B", T0 + 1_000, TX1)]

    def crash_after(cls: Any, name: str) -> None:
        original = getattr(cls, name)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            original(self, *args, **kwargs)  # the step completes (and commits) ...
            monkeypatch.setattr(cls, name, original)  # only the first call dies
            raise ProcessKilled(point)  # ... then the process dies

        monkeypatch.setattr(cls, name, wrapper)

    if point == "after_ingest_commit":  # ingest commits once, at its end (fills, events, cursor, stamp)
        crash_after(CopytradeJobs, "ingest")
    elif point == "after_intents_commit":
        crash_after(Orders, "record_decision")
    elif point == "after_venue_accepted":
        queue(rig.transport, ["crash"], match="POST /fapi/v1/order")  # the venue takes the order, then death
    else:
        crash_after(CopytradeJobs, "_execute_one")
    with pytest.raises(ProcessKilled):
        rig.cycle()
    rig.die()

    rig.clock.advance(5_000)  # restart
    rig.boot()
    rig.cycle()
    rig.clock.advance(2_000)
    rig.cycle()
    assert len(rig.world.account.posts) == 1, f"{point}: {rig.world.account.posts}"
    (event,) = rig.rows(processed_txs)
    (result,) = rig.rows(order_results)
    assert (event["state"], result["status"]) == ("DONE", "FILLED")
    assert rig.world.account.positions["BTCUSDT"] == Decimal("0.002")


@pytest.mark.parametrize(("budget_mode", "expected"), [
    ("ARMED_SAFE", ("ARMED_SAFE", "EXECUTION_RETRY_BUDGET_EXCEEDED")),
    ("HALT", ("HALT", "EXECUTION_RETRY_BUDGET_EXCEEDED")),
])
def test_retry_budget_exhausted(tmp_path: Path, budget_mode: str, expected: tuple[str, str]) -> None:
    """Drills 14/15: POST times out, three queries time out => parked, safety per retry_budget_mode."""
    rig = Rig(tmp_path, {"execution": {"retry_budget_mode": budget_mode,
                                       "binance": {"retry": {"max_attempts": 1}}}})
    rig.boot()
    rig.clock.set(T0 + 2_000)
    rig.world.fills = [fill(1, "2.0", "0.0", "B", T0 + 1_000, TX1)]
    queue(rig.transport, ["timeout", "timeout", "timeout"], match="GET /fapi/v1/order")
    queue(rig.transport, ["timeout"], match="POST /fapi/v1/order")
    rig.cycle()
    (result,) = rig.rows(order_results)
    assert (result["status"], result["error_code"]) == ("UNKNOWN", "TIMEOUT")
    for _ in range(3):
        rig.clock.advance(2_000)
        rig.jobs.execute()
    (result,) = rig.rows(order_results)
    assert (result["status"], result["error_code"], result["query_attempts"]) == \
        ("UNKNOWN", "RETRY_BUDGET_EXCEEDED", 3)  # parked, as the spec stores it (§3.3)
    assert rig.mode == expected
    assert rig.world.account.posts == []  # never re-sent
    assert not rig.ctx.runtime.engine.may("order.open")


@pytest.mark.parametrize(("exchange", "side", "expected"), [
    ({"BTCUSDT": "0.995"}, "BOTH", ("ARMED_SAFE", "RECONCILE_WARN")),
    ({"BTCUSDT": "0.999"}, "BOTH", ("ARMED_SAFE", "RECONCILE_WARN")),  # drift exactly 0.001 is WARN
    ({"BTCUSDT": "0.98"}, "BOTH", ("HALT", "RECONCILE_CRITICAL")),
    ({"BTCUSDT": "1.0", "ETHUSDT": "0.5"}, "BOTH", ("HALT", "RECONCILE_CRITICAL")),  # missing_local
    ({"BTCUSDT": "1.0"}, "LONG", ("HALT", "POSITION_MODE_INVALID")),
], ids=["warn", "warn-boundary", "critical", "missing-symbol", "hedge-mode"])
def test_reconcile_verdicts_from_live_positions(tmp_path: Path, exchange: dict[str, str], side: str,
                                                expected: tuple[str, str]) -> None:
    """Drills 17/18: local BTC 1.0 (baseline) against the exchange."""
    rig = Rig(tmp_path, baseline={"BTCUSDT": "1.0"})
    rig.boot()
    assert rig.mode == ("ARMED_LIVE", "OK")
    rig.world.account.positions = {k: Decimal(v) for k, v in exchange.items()}
    rig.world.account.position_side = side
    rig.clock.advance(60_000)
    rig.jobs.reconcile("loop")
    assert rig.mode == expected


def test_reconcile_stale_when_position_risk_keeps_failing(tmp_path: Path) -> None:
    rig = Rig(tmp_path, baseline={"BTCUSDT": "1.0"})
    rig.boot()
    queue(rig.transport, ["5xx"], match="GET /fapi/v2/positionRisk")
    rig.clock.advance(60_000)
    rig.jobs.reconcile("loop")
    assert rig.mode == ("ARMED_SAFE", "SNAPSHOT_STALE")


def _count_full_recomputations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    full = Baselines.local_positions

    def counted(self: Baselines, *args: Any, **kwargs: Any) -> dict[str, Decimal]:
        calls.append(1)
        return full(self, *args, **kwargs)

    monkeypatch.setattr(Baselines, "local_positions", counted)
    return calls


def test_clean_loop_reconciles_recompute_local_positions_in_full_only_when_due(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12 item 6 / round 5: a loop reconcile whose running sum equals the exchange uses it;
    the full recomputation (linear in orders) runs on the first loop reconcile after the hourly
    maintenance job and on every non-loop reconcile."""
    rig = Rig(tmp_path, baseline={"BTCUSDT": "1.0"})
    rig.boot()  # the startup reconcile checked in full
    calls = _count_full_recomputations(monkeypatch)
    for _ in range(9):
        rig.clock.advance(60_000)
        rig.jobs.reconcile("loop")
    assert (len(calls), rig.mode) == (0, ("ARMED_LIVE", "OK"))
    retention(rig.ctx, rig.jobs)  # the hourly job
    rig.jobs.reconcile("loop")
    rig.jobs.reconcile("loop")
    assert len(calls) == 1
    rig.jobs.reconcile("manual")
    assert (len(calls), rig.mode) == (2, ("ARMED_LIVE", "OK"))


def test_a_running_sum_that_disagrees_with_the_exchange_is_checked_in_full_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Any drift seen from the running sum is confirmed from the full recomputation before the
    policy classifies it: a wrong running sum is logged, rebuilt, and never reaches the verdict."""
    rig = Rig(tmp_path, baseline={"BTCUSDT": "1.0"})
    rig.boot()
    calls = _count_full_recomputations(monkeypatch)
    book = rig.jobs.book
    book._totals["BTCUSDT"] = Decimal("0.7")  # a bug in the running sum, simulated
    rig.clock.advance(60_000)
    rig.jobs.reconcile("loop")
    assert (len(calls), rig.mode) == (1, ("ARMED_LIVE", "OK"))  # the full figure (1.0) was the one used
    assert "differ from the full recomputation" in caplog.text
    assert book.positions(rig.clock.now_ms()) == {"BTCUSDT": Decimal("1.0")}  # rebuilt


def test_a_running_sum_wrong_in_the_exchange_s_favour_is_caught_by_the_due_full_check(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The window the cadence leaves: a running sum that is wrong *and* equal to the exchange is
    only caught by the first loop reconcile after the hourly job, which then sees the real drift."""
    rig = Rig(tmp_path, baseline={"BTCUSDT": "1.0"})
    rig.boot()
    rig.jobs.book._totals["BTCUSDT"] = Decimal("0.5")
    rig.world.account.positions = {"BTCUSDT": Decimal("0.5")}
    rig.clock.advance(60_000)
    rig.jobs.reconcile("loop")
    assert rig.mode == ("ARMED_LIVE", "OK")
    retention(rig.ctx, rig.jobs)  # the hourly job
    rig.jobs.reconcile("loop")
    assert rig.mode == ("HALT", "RECONCILE_CRITICAL")
    assert "differ from the full recomputation" in caplog.text


def test_flip_in_armed_safe_sends_only_the_reduce_only_close(tmp_path: Path) -> None:
    """Drill 13 SAFE: local 1.0 BTC, target flips 1000 -> -50: only the close leg (SELL 1.0 reduce-only)."""
    rig = Rig(tmp_path, {"safety": {"startup_policy": "manual"}}, baseline={"BTCUSDT": "1.0"})
    rig.boot()
    assert rig.mode == ("ARMED_SAFE", "BOOTSTRAP")
    rig.clock.set(T0 + 2_000)
    rig.world.fills = [fill(1, "1050.0", "1000.0", "A", T0 + 1_000, TX1)]
    rig.cycle()
    (post,) = rig.world.account.posts
    assert (post["side"], post["quantity"], post["reduceOnly"]) == ("SELL", "1", "true")
    assert post["newClientOrderId"] != ""
    (event,) = rig.rows(processed_txs)
    assert event["action_type"] == "FLIP" and event["state"] == "DONE"


def test_gap_halts_before_any_fetch(tmp_path: Path) -> None:
    """Drill 5: last success t0, next tick at t0 + 600001 => HALT BACKFILL_WINDOW_EXCEEDED, no userFillsByTime."""
    rig = Rig(tmp_path)
    rig.boot()
    rig.clock.set(T0 + 600_001)
    before = len(rig.transport.calls)
    rig.jobs.ingest()
    assert rig.mode == ("HALT", "BACKFILL_WINDOW_EXCEEDED")
    assert [c for c in rig.transport.calls[before:] if c.path == "/info"] == []


def test_no_secret_reaches_storage_logs_or_metrics(tmp_path: Path) -> None:
    """Keys, secrets and signatures never reach the database, the JSON log or the metrics log."""
    import logging

    from hlcore.jobs.copytrade.service import Loop, metrics_writer
    from hlcore.logs import configure

    handler = configure(tmp_path / "app.log", ManualClock(T0), "DEBUG")
    try:
        rig = Rig(tmp_path)
        rig.boot()
        rig.clock.set(T0 + 2_000)
        rig.world.fills = [fill(1, "2.0", "0.0", "B", T0 + 1_000, TX1)]
        queue(rig.transport, ["-2019"], match="POST /fapi/v1/order")  # an API error is logged and stored
        loop = Loop(rig.ctx, rig.jobs, metrics_writer(tmp_path / "metrics.log", rig.clock))
        loop.tick(rig.clock.now_ms())
        logging.getLogger("hlcore.copytrade").warning("probe signature=abc123 api_key=%s", "K" * 64)
        signatures = set(rig.transport.signatures)
        assert len(signatures) >= 2  # the startup position risk and the order attempt: both signed
        rig.die()
    finally:
        logging.getLogger("hlcore").removeHandler(handler)
    db_bytes = (tmp_path / "ct.db").read_bytes()
    wal = tmp_path / "ct.db-wal"
    blobs = {"db": db_bytes + (wal.read_bytes() if wal.exists() else b""),
             "app.log": (tmp_path / "app.log").read_bytes(), "metrics.log": (tmp_path / "metrics.log").read_bytes()}
    assert b"probe signature=<redacted>" in blobs["app.log"]
    for name, blob in blobs.items():
        for secret in ("K" * 64, "S" * 64, *signatures):
            assert secret.encode() not in blob, f"{secret[:6]}… leaked into {name}"


def test_an_order_still_open_at_tif_becomes_unknown_poll_timeout(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.boot()
    rig.clock.set(T0 + 2_000)
    rig.world.fills = [fill(1, "2.0", "0.0", "B", T0 + 1_000, TX1)]
    rig.world.account.order_status = "NEW"  # the venue takes the MARKET order but it never fills
    rig.cycle()
    assert rig.rows(order_results)[0]["status"] == "SUBMITTED"
    rig.clock.advance(4_999)
    rig.jobs.execute()
    assert rig.rows(order_results)[0]["status"] == "SUBMITTED"
    rig.clock.advance(1)  # tif_seconds = 5 since the order was sent
    rig.jobs.execute()
    (result,) = rig.rows(order_results)
    assert (result["status"], result["error_code"]) == ("UNKNOWN", "POLL_TIMEOUT")
    assert len(rig.world.account.posts) == 1


def test_reduce_only_rejection_reconciles_at_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, baseline={"BTCUSDT": "1.0"})
    rig.boot()
    rig.clock.set(T0 + 2_000)
    rig.world.fills = [fill(1, "500.0", "1000.0", "A", T0 + 1_000, TX1)]  # DECREASE: reduce-only SELL 0.5
    queue(rig.transport, ["-2022"], match="POST /fapi/v1/order")
    rig.cycle()
    (result,) = rig.rows(order_results)
    assert (result["status"], result["error_code"]) == ("REJECTED", "REDUCE_ONLY_REJECTED")
    from hlcore.storage.copytrade import ReconcileRuns

    assert ReconcileRuns(rig.ctx.db).last()["context"] == "reduce_only_reject"


def test_startup_sweep_queries_parked_orders_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"execution": {"binance": {"retry": {"max_attempts": 1}}}})
    rig.boot()
    rig.clock.set(T0 + 2_000)
    rig.world.fills = [fill(1, "2.0", "0.0", "B", T0 + 1_000, TX1)]
    queue(rig.transport, ["timeout"] * 3, match="GET /fapi/v1/order")
    queue(rig.transport, ["lost"], match="POST /fapi/v1/order")  # the venue takes the order, the answer is lost
    rig.cycle()
    for _ in range(3):
        rig.clock.advance(2_000)
        rig.jobs.execute()
    (result,) = rig.rows(order_results)
    assert (result["status"], result["error_code"]) == ("UNKNOWN", "RETRY_BUDGET_EXCEEDED")
    rig.die()
    rig.clock.advance(60_000)
    rig.boot()  # the venue did take the order: the sweep finds it FILLED
    (result,) = rig.rows(order_results)
    assert result["status"] == "FILLED" and len(rig.world.account.posts) == 1


def test_parked_order_is_stored_as_unknown_not_polled_and_swept_once_at_startup(tmp_path: Path) -> None:
    """§3.3 "parked | UNKNOWN + RETRY_BUDGET_EXCEEDED": the order machine's own parked state is stored
    as the spec says; the execute loop leaves it alone, the startup sweep queries it exactly once."""
    rig = Rig(tmp_path)
    rig.boot()
    rig.clock.set(T0 + 2_000)
    rig.world.fills = [fill(1, "2.0", "0.0", "B", T0 + 1_000, TX1)]
    queue(rig.transport, ["timeout"] * 4, match="GET /fapi/v1/order")
    queue(rig.transport, ["lost"], match="POST /fapi/v1/order")
    rig.cycle()
    for _ in range(3):
        rig.clock.advance(2_000)
        rig.jobs.execute()
    cid = rig.rows(order_results)[0]["correlation_id"]
    (result,) = rig.rows(order_results)
    assert (result["status"], result["error_code"], result["query_attempts"]) == \
        ("UNKNOWN", "RETRY_BUDGET_EXCEEDED", 3)
    assert result["error_message"]  # the last error's message
    engine = rig.ctx.runtime.engine
    assert engine.state("order", correlation_id=cid) == "PARKED"  # the machine keeps its own state

    def queries() -> int:
        return sum(1 for c in rig.transport.calls if (c.method, c.path) == ("GET", "/fapi/v1/order"))

    sent = queries()
    for _ in range(5):  # no longer polled, however long the loop runs
        rig.clock.advance(10_000)
        rig.jobs.execute()
    assert queries() == sent and rig.jobs.next_query_ms is None
    statuses, orders = rig.jobs.statuses, Orders(rig.ctx.db)
    assert [r.correlation_id for r in statuses.parked_results(orders)] == [cid]
    assert statuses.unresolved_results(orders) == []  # R6 `unparked_unknown` counts only these
    (event,) = rig.rows(processed_txs)
    assert event["state"] == "DONE"  # a parked intent settles its event (§3.2)

    rig.die()
    rig.clock.advance(60_000)
    rig.boot()  # restored from machine_states as PARKED; the sweep queries it once (it times out again)
    assert queries() == sent + 1
    assert rig.ctx.runtime.engine.state("order", correlation_id=cid) == "PARKED"
    (result,) = rig.rows(order_results)
    assert (result["status"], result["error_code"]) == ("UNKNOWN", "RETRY_BUDGET_EXCEEDED")
    rig.clock.advance(10_000)
    rig.jobs.execute()
    assert queries() == sent + 1 and rig.world.account.posts and len(rig.world.account.posts) == 1


def test_maintenance_skip_flag_abandons_the_gap_into_armed_safe(tmp_path: Path) -> None:
    """Drill 7 (dry-run restart with ingest.maintenance_skip_gap=true after 30 min down)."""
    from hlcore.storage.copytrade import CopytradeKey, CopytradeState

    rig = Rig(tmp_path)
    rig.boot()
    rig.die()
    rig.ws = open_workspace(ROOT, _settings(tmp_path, {"ingest": {"maintenance_skip_gap": True}}))
    rig.clock.advance(30 * 60_000)
    wiring = Wiring(rig.clock, lambda s: rig.clock.advance(int(s * 1000)), random.Random(3),
                    lambda _venue: rig.transport.session(), {"HYPERLIQUID_TARGET_WALLET": WALLET})
    rig.ctx, rig.jobs, *_ = start(rig.ws, "dry-run", wiring, allow_create_db=True)
    calls = len(rig.transport.calls)
    rig.jobs.ingest()
    assert rig.mode == ("ARMED_SAFE", "MAINTENANCE_SKIP_APPLIED")
    state = CopytradeState(rig.ctx.db)
    now = rig.clock.now_ms()
    assert state.cursor().event_key == f"{now}|0|maintenance|MAINTENANCE"
    assert state.get_int(CopytradeKey.MAINTENANCE_SKIP_APPLIED_MS) == now
    assert [c for c in rig.transport.calls[calls:] if c.path.startswith("/fapi")] == []  # dry-run: no Binance call
    rig.clock.advance(2_000)
    rig.jobs.ingest()  # the next tick fetches normally and applies no second skip
    assert rig.mode == ("ARMED_SAFE", "MAINTENANCE_SKIP_APPLIED")
    assert state.get_int(CopytradeKey.MAINTENANCE_SKIP_APPLIED_MS) == now


def _settings(tmp_path: Path, extra: dict[str, Any]) -> Path:
    path = tmp_path / "settings.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in extra.items():
        data.setdefault(key, {}).update(value)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path
