"""`hlcore live --mode dry-run` on recorded HTTP (vcrpy): ingest → decide → record intents →
simulated results, and no order endpoint is ever called (copytrader §1 run modes, drill 13 SAFE)."""

from __future__ import annotations

import json
import logging
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import vcr
import yaml
from sqlalchemy import select

from hlcore.engine.clock import ManualClock
from hlcore.errors import BadInput
from hlcore.jobs.copytrade.service import Wiring, start
from hlcore.storage.copytrade import Baselines, Orders
from hlcore.storage.schema import order_intents, order_results, processed_txs
from hlcore.workspace import open_workspace

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_769_248_800_000
WALLET = "0x" + "ab" * 20
TX = "0x" + "5e" * 32
INFO = "https://api.hyperliquid.xyz/info"


def json_body(r1: Any, r2: Any) -> None:
    assert json.loads(r1.body) == json.loads(r2.body)


def fill(tid: int, sz: str, start: str, side: str, time_ms: int) -> dict[str, Any]:
    return {"coin": "BTC", "px": "97000.0", "sz": sz, "side": side, "time": time_ms, "startPosition": start,
            "dir": "Close Long" if side == "A" else "Open Long", "closedPnl": "0.0", "hash": TX, "oid": 900 + tid,
            "crossed": True, "fee": "0.1", "tid": tid, "feeToken": "USDC"}


def cassette(path: Path, pages: list[tuple[int, int, list[dict[str, Any]]]]) -> Path:
    interactions = []
    for start_ms, end_ms, fills in pages:
        body = {"type": "userFillsByTime", "user": WALLET, "startTime": start_ms, "aggregateByTime": False,
                "endTime": end_ms}
        interactions.append({
            "request": {"body": json.dumps(body), "headers": {}, "method": "POST", "uri": INFO},
            "response": {"body": {"string": json.dumps(fills)}, "headers": {"Content-Type": ["application/json"]},
                         "status": {"code": 200, "message": "OK"}}})
    path.write_text(yaml.safe_dump({"interactions": interactions, "version": 1}), encoding="utf-8")
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Any:
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"db_path": str(tmp_path / "ct.db")}), encoding="utf-8")
    return open_workspace(ROOT, config)


def wiring(clock: ManualClock, env: dict[str, str]) -> Wiring:
    return Wiring(clock, lambda s: clock.advance(int(s * 1000)), random.Random(7),
                  lambda _venue: requests.Session(), env)


def test_dry_run_ingests_decides_and_simulates_without_any_order_request(tmp_path: Path, workspace: Any) -> None:
    clock = ManualClock(T0)
    tape = cassette(tmp_path / "hl.yaml", [(T0 - 5_000, T0 + 2_000, [
        fill(101, "300.0", "1000.0", "A", T0 + 1_000),
        fill(102, "200.0", "700.0", "A", T0 + 1_500),
    ])])
    recorder = vcr.VCR(record_mode="none", match_on=["method", "uri", "json_body"])
    recorder.register_matcher("json_body", json_body)
    env = {"HYPERLIQUID_TARGET_WALLET": WALLET}
    ctx, jobs, _scheduler, _loop, code = start(workspace, "dry-run", wiring(clock, env), allow_create_db=True)
    assert code == 0 and jobs.venues.binance is None  # dry-run: no execution adapter exists at all
    Baselines(ctx.db).sync({"BTCUSDT": Decimal("1.0")}, "op", "local = exchange", clock.now_ms())
    clock.set(T0 + 2_000)
    with recorder.use_cassette(str(tape)) as tape_in_use:
        assert jobs.ingest() == 1
        assert jobs.decide() == 1  # decided and its intent simulated at once (issue 10 §7: per event)
        assert jobs.execute() == 0  # nothing left to send; settles the event
        assert tape_in_use.play_count == 1
        assert all(r.uri == INFO for r in tape_in_use.requests)  # only the info API, never /fapi/v1/order
    with ctx.db.transaction() as conn:
        (event,) = conn.execute(select(processed_txs)).mappings().all()
        (intent,) = conn.execute(select(order_intents)).mappings().all()
        (result,) = conn.execute(select(order_results)).mappings().all()
    assert (event["action_type"], event["is_replay"], event["state"]) == ("DECREASE", False, "DONE")
    payload = json.loads(intent["intent_payload"])
    assert (payload["side"], Decimal(payload["qty"]), payload["reduce_only"]) == ("SELL", Decimal("0.5"), True)
    assert intent["client_order_id"].startswith("hl-") and len(intent["client_order_id"]) == 30
    assert (result["status"], result["error_code"]) == ("SIMULATED", "ADAPTER_DISABLED")
    assert Orders(ctx.db).results_by_status() == {"SIMULATED": 1}
    ctx.close()


def test_dry_run_in_armed_safe_blocks_an_increase(tmp_path: Path, workspace: Any) -> None:
    clock = ManualClock(T0)
    tape = cassette(tmp_path / "hl.yaml", [(T0 - 5_000, T0 + 2_000, [fill(201, "2.0", "0.0", "B", T0 + 1_000)])])
    recorder = vcr.VCR(record_mode="none", match_on=["method", "uri", "json_body"])
    recorder.register_matcher("json_body", json_body)
    ctx, jobs, *_ = start(workspace, "dry-run", wiring(clock, {"HYPERLIQUID_TARGET_WALLET": WALLET}),
                          allow_create_db=True)
    clock.set(T0 + 2_000)
    with recorder.use_cassette(str(tape)):
        jobs.ingest()
        jobs.decide()
        jobs.execute()
    with ctx.db.transaction() as conn:
        (event,) = conn.execute(select(processed_txs)).mappings().all()
        intents = conn.execute(select(order_intents)).mappings().all()
    assert (event["state"], event["decision_reason"], intents) == ("DONE", "safety_mode_reduce_only", [])
    ctx.close()


def test_live_without_keys_is_a_startup_error_before_any_state(tmp_path: Path, workspace: Any) -> None:
    with pytest.raises(BadInput) as exc:
        start(workspace, "live", wiring(ManualClock(T0), {"HYPERLIQUID_TARGET_WALLET": WALLET,
                                                          "BINANCE_API_KEY": "k" * 64}))
    assert "BINANCE_API_SECRET" in str(exc.value) and "k" * 64 not in str(exc.value)
    assert not (tmp_path / "ct.db").exists()


def test_cli_live_mode_missing_env_exits_2_naming_it(tmp_path: Path, monkeypatch: Any) -> None:
    from typer.testing import CliRunner

    from hlcore_cli import app

    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("HYPERLIQUID_TARGET_WALLET", "BINANCE_API_KEY", "BINANCE_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HYPERLIQUID_TARGET_WALLET", WALLET)
    monkeypatch.setenv("BINANCE_API_KEY", "x" * 64)
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"db_path": str(tmp_path / "ct.db")}), encoding="utf-8")
    result = CliRunner().invoke(app, ["live", "--mode", "live", "--config", str(config), "--policy", str(ROOT)])
    assert result.exit_code == 2
    assert "BINANCE_API_SECRET: required for mode live but not set" in result.output
    assert "x" * 64 not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "ct.db").exists()


def test_cli_live_dry_run_on_a_cassette_never_calls_binance(tmp_path: Path, monkeypatch: Any) -> None:
    """The acceptance path end to end: `hlcore live --mode dry-run` (system clock) on recorded HTTP."""
    from typer.testing import CliRunner

    from hlcore.app import open_app
    from hlcore.engine.clock import SystemClock
    from hlcore_cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYPERLIQUID_TARGET_WALLET", WALLET)
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"db_path": str(tmp_path / "ct.db"), "app_log_path": str(tmp_path / "app.log"),
                                      "metrics_log_path": str(tmp_path / "metrics.log")}), encoding="utf-8")
    ctx = open_app(open_workspace(ROOT, config), SystemClock(), create=True)
    Baselines(ctx.db).sync({"BTCUSDT": Decimal("1.0")}, "op", "local = exchange", SystemClock().now_ms())
    ctx.close()
    tape = cassette(tmp_path / "hl.yaml", [(0, 0, [fill(301, "500.0", "1000.0", "A", T0)])])

    def same_request_but_times(r1: Any, r2: Any) -> None:
        strip = ("startTime", "endTime")
        a, b = json.loads(r1.body), json.loads(r2.body)
        assert {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}

    recorder = vcr.VCR(record_mode="none", match_on=["method", "uri", "body_but_times"])
    recorder.register_matcher("body_but_times", same_request_but_times)
    handlers_before = list(logging.getLogger("hlcore").handlers)
    with recorder.use_cassette(str(tape), allow_playback_repeats=True) as used:  # tick 2 sees the fill again
        result = CliRunner().invoke(app, ["live", "--mode", "dry-run", "--max-ticks", "2", "--config", str(config),
                                          "--policy", str(ROOT)])
        assert result.exit_code == 0, result.output
        assert used.play_count >= 1 and all(r.uri == INFO for r in used.requests)
    # the command's log handlers leave with it: none writes to the runner's closed stream afterwards
    assert logging.getLogger("hlcore").handlers == handlers_before
    assert "mode=dry-run safety_mode=ARMED_SAFE" in result.output
    ctx = open_app(open_workspace(ROOT, config), SystemClock(), persist_start=False)
    assert Orders(ctx.db).results_by_status() == {"SIMULATED": 1}
    ctx.close()
    assert "heartbeat" in (tmp_path / "metrics.log").read_text(encoding="utf-8")


class _Unreachable(requests.adapters.BaseAdapter):
    """Every request fails to connect (the venues unreachable)."""

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        raise requests.ConnectionError(f"cannot connect to {request.url}")

    def close(self) -> None:
        pass


def test_failed_fetches_are_loud_and_only_a_complete_fetch_stamps_success(
        tmp_path: Path, workspace: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 11: each failed cycle is one WARNING line with its cause, the first success after
    failures says so; `last_ingest_success_ms` is not stamped at boot nor by a failed fetch, and
    `ops status` blocks while no fetch has succeeded since boot."""
    from hlcore.ops.reports import status_report
    from hlcore.storage.copytrade import CopytradeState

    clock = ManualClock(T0)
    offline = requests.Session()
    offline.mount("https://", _Unreachable())
    w = Wiring(clock, lambda s: clock.advance(int(s * 1000)), random.Random(7), lambda _venue: offline,
               {"HYPERLIQUID_TARGET_WALLET": WALLET})
    ctx, jobs, _scheduler, _loop, code = start(workspace, "dry-run", w, allow_create_db=True)
    assert code == 0
    state = CopytradeState(ctx.db)
    assert state.last_ingest_success_ms() is None  # boot stamps the cursor, not a success
    caplog.set_level("WARNING", logger="hlcore")
    assert jobs.ingest() == 0 and jobs.ingest() == 0
    failed = [r.getMessage() for r in caplog.records if "ingest fetch failed" in r.getMessage()]
    assert len(failed) == 2 and "(2 in a row)" in failed[1] and "NETWORK_ERROR" in failed[1]
    assert state.last_ingest_success_ms() is None
    blocked = status_report(workspace, clock.now_ms())
    assert not blocked.ok and "blocker=no_ingest_since_boot" in blocked.lines

    jobs.venues.hyperliquid.http.session = requests.Session()  # the network is back
    clock.set(T0 + 60_000)
    tape = cassette(tmp_path / "hl.yaml", [(T0 - 5_000, T0 + 60_000, [])])
    recorder = vcr.VCR(record_mode="none", match_on=["method", "uri", "json_body"])
    recorder.register_matcher("json_body", json_body)
    with recorder.use_cassette(str(tape)):
        assert jobs.ingest() == 0
    assert any(r.getMessage() == "ingest fetch succeeded after 2 failed cycles" for r in caplog.records)
    assert state.last_ingest_success_ms() == T0 + 60_000
    assert "blocker=no_ingest_since_boot" not in status_report(workspace, clock.now_ms()).lines
    ctx.close()
