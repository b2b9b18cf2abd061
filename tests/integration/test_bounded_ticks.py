"""Issue 10 §7: a tick decides and sends event by event, at most `orchestrator.max_events_per_tick`
of them, so a backlog drains at the venue's pace; SIGTERM stops the real `hlcore live` process
promptly with exit 0 and a consistent database."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import yaml

from hlcore.storage.copytrade import Baselines
from hlcore.storage.schema import order_results, processed_txs
from replay.worlds.copytrade import hl_fill
from tests.integration.test_ingest_skips import T0, Live

ROOT = Path(__file__).resolve().parents[2]


def _reducing(live: Live, n: int, first_tid: int) -> None:
    """Local BTC 1.0 (= the exchange); the target sells 1000 -> 1000 - 100·n in n transactions:
    n reduce-only events, each with one intent even in ARMED_SAFE."""
    Baselines(live.ctx.db).sync({"BTCUSDT": Decimal("1.0")}, "op", "local = exchange", live.clock.now_ms())
    live.world.fills = [hl_fill({"tid": first_tid + i, "sz": "100.0", "startPosition": str(1000 - 100 * i),
                                 "side": "A", "time": T0 + 1_000 + i}) for i in range(n)]


def test_a_backlog_is_decided_and_sent_a_budget_per_tick(tmp_path: Path) -> None:
    live = Live(tmp_path, {"orchestrator": {"max_events_per_tick": 3}})
    _reducing(live, 7, 100)
    live.clock.advance(2_000)
    wait = live.loop.tick(live.clock.now_ms())
    states = sorted(r["state"] for r in live.rows(processed_txs))
    assert states == ["DONE"] * 3 + ["PENDING"] * 4  # three decided *and* sent (simulated), four wait
    assert len(live.rows(order_results)) == 3
    assert wait <= 1  # work was done: the next tick comes at once
    live.loop.tick(live.clock.now_ms())
    live.loop.tick(live.clock.now_ms())
    assert [r["state"] for r in live.rows(processed_txs)] == ["DONE"] * 7
    live.ctx.close()


def test_a_stop_between_events_leaves_the_rest_pending(tmp_path: Path) -> None:
    live = Live(tmp_path)
    _reducing(live, 4, 200)
    asked: list[int] = []

    def stop_after_two() -> bool:
        asked.append(1)
        return len(live.rows(order_results)) >= 2

    live.loop.should_stop = stop_after_two
    live.clock.advance(2_000)
    live.loop.tick(live.clock.now_ms())
    states = [r["state"] for r in live.rows(processed_txs)]
    assert states.count("PENDING") == 2 and len(live.rows(order_results)) == 2  # nothing half-done
    live.ctx.close()


def test_sigterm_stops_hlcore_live_promptly(tmp_path: Path) -> None:
    """The real process, idle between ticks (a 60 s idle sleep), exits 0 soon after SIGTERM."""
    settings = {"db_path": str(tmp_path / "ct.db"), "metrics_log_path": str(tmp_path / "metrics.log"),
                "app_log_path": str(tmp_path / "app.log"),
                "orchestrator": {"loop_idle_sleep_sec": 60, "loop_max_idle_sleep_sec": 60},
                "ingest": {"hyperliquid": {"rest_url": "http://127.0.0.1:9/info",  # discard port: refused at once
                                           "retry": {"max_attempts": 1}}}}
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    env = {**os.environ, "HYPERLIQUID_TARGET_WALLET": "0x" + "ab" * 20}
    env.pop("BINANCE_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "hlcore", "live", "--mode", "dry-run", "--allow-create-db",
                             "--policy", str(ROOT),
                             "--config", str(config)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()  # printed once boot is done and the loop starts
        assert header.startswith("mode=dry-run"), header + (proc.stderr.read() if proc.stderr else "")
        metrics = tmp_path / "metrics.log"
        for _ in range(200):  # wait for the first tick to finish: the process then sleeps 60 s
            if metrics.exists() and "heartbeat" in metrics.read_text():
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)  # far below the 60 s idle sleep it was in
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    with sqlite3.connect(tmp_path / "ct.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
