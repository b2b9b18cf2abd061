"""`hlcore ops` status, preflight, poststart, validate-run, backup, rebuild-db, recover-orders,
sync-baseline and reset-baseline against a temporary SQLite database (copytrader §8, drills 3, 20)."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from requests.adapters import BaseAdapter
from typer.testing import CliRunner

from hlcore.adapters.binance.client_order_id import client_order_id, correlation_id
from hlcore.app import AppContext, open_app
from hlcore.engine.clock import Clock, ManualClock, SystemClock
from hlcore.jobs.copytrade.jobs import CopytradeJobs, Venues
from hlcore.jobs.copytrade.service import Wiring
from hlcore.ops import database as ops_database
from hlcore.ops.reports import preflight_report, status_report
from hlcore.storage.copytrade import Baselines, CopytradeKey, CopytradeState, Events, Orders, event_key
from hlcore.storage.repos import AuditLog
from hlcore.workspace import open_workspace
from hlcore_cli import app
from replay.worlds.copytrade import CopytradeWorld
from tests.support.fakes import copytrade_venues, queue

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_769_248_800_000  # 2026-01-24T10:00:00Z
WALLET = "0x" + "ab" * 20
KEY, SECRET = "K" * 64, "S" * 64
ENV_OK = {"HYPERLIQUID_TARGET_WALLET": WALLET, "BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET}
ENV_NONE: dict[str, str | None] = dict.fromkeys(ENV_OK)
runner = CliRunner()

COMMANDS = ("unhalt", "promote", "reset-safety", "maintenance-skip", "status", "preflight", "poststart",
            "validate-run", "backup", "rebuild-db", "recover-orders", "sync-baseline", "reset-baseline")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # load_env() reads ./.env: keep a developer's own out of the tests


def write_config(tmp_path: Path, **overrides: Any) -> Path:
    path = tmp_path / "settings.yaml"
    data = {"db_path": str(tmp_path / "ct.db"), "metrics_log_path": str(tmp_path / "metrics.log"), **overrides}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def db_file(config: Path) -> Path:
    return config.parent / "ct.db"


def context(config: Path, clock: Clock | None = None, *, create: bool = False) -> AppContext:
    return open_app(open_workspace(ROOT, config), clock or SystemClock(), create=create, persist_start=create)


def seed(config: Path, *facts: tuple[str, dict[str, Any]], clock: Clock | None = None) -> None:
    ctx = context(config, clock, create=True)
    for kind, fields in facts:
        ctx.runtime.observe(kind, fields)
    ctx.close()


def ops(config: Path, *args: str, env: dict[str, str | None] | None = None) -> tuple[int, str, dict[str, str]]:
    result = runner.invoke(app, ["ops", *args, "--policy", str(ROOT), "--config", str(config)],
                           env=ENV_NONE | (env or {}))
    pairs = dict(line.split("=", 1) for line in result.output.splitlines() if "=" in line)
    return result.exit_code, result.output, pairs


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def add_order(ctx: AppContext, i: int, now: int) -> tuple[str, str]:
    """One event decided into one intent, as the decide job leaves them; returns (cid, client id)."""
    tx = "0x" + f"{i:064x}"
    events, orders = Events(ctx.db), Orders(ctx.db)
    pending = ctx.workspace.policy.machines["event"].initial
    events.insert_ingested([{"tx_hash": tx, "event_index": i, "symbol": "BTCUSDT", "timestamp_ms": now,
                             "is_replay": False, "action_type": "INCREASE", "prev_target": Decimal(0),
                             "next_target": Decimal(2), "expected_price": Decimal(60000)}], [], None, now,
                           pending_state=pending)
    key = event_key(now, i, tx, "BTCUSDT")
    cid = correlation_id(tx, i, "BTCUSDT", None)
    coid = client_order_id(cid)
    payload = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "qty": "0.002", "price": None,
               "reduce_only": False, "tif": "IOC", "is_replay": False, "strategy_version": "v1", "risk_notes": [],
               "contract_version": "1.0"}
    with ctx.db.transaction() as conn:
        ctx.runtime.observe("event_progress", {"event_key": key, "step": "decided", "intents": 1,
                                               "decision_reason": None}, conn=conn)
        orders.record_decision(key, [{"correlation_id": cid, "client_order_id": coid, "event_key": key,
                                      "payload": payload}], ctx.runtime.engine.state("event", event_key=key), now,
                               conn=conn)
    return cid, coid


def jobs_without_venues(ctx: AppContext) -> CopytradeJobs:
    return CopytradeJobs(ctx, Venues(None, None, ""), "live")  # type: ignore[arg-type]


def unknown_orders(config: Path, clock: Clock, codes: list[str], *, park: int = 0) -> list[tuple[str, str]]:
    """Orders that went UNKNOWN with `codes` (one audit transition each); the first `park` parked."""
    ctx = context(config, clock, create=True)
    jobs = jobs_without_venues(ctx)
    made = []
    for i, code in enumerate(codes, 1):
        cid, coid = add_order(ctx, i, clock.now_ms())
        jobs._answer(cid, "UNKNOWN", code)
        if i <= park:
            first = Orders(ctx.db).result(cid).first_unknown_ms  # type: ignore[union-attr]
            jobs._answer(cid, "UNKNOWN", code, attempts=3, first_unknown=first)
        made.append((cid, coid))
    ctx.close()
    return made


class TimeServer(BaseAdapter):
    """GET /fapi/v1/time answering `clock + offset_ms`; anything else, or `fail`, a 503."""

    def __init__(self, clock: Clock, offset_ms: int, fail: bool = False):
        super().__init__()
        self.clock, self.offset_ms, self.fail = clock, offset_ms, fail
        self.paths: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.paths.append(request.path_url)
        response = requests.Response()
        response.request = request
        ok = request.path_url.startswith("/fapi/v1/time") and not self.fail
        response.status_code = 200 if ok else 503
        body = {"serverTime": self.clock.now_ms() + self.offset_ms} if ok else {"code": -1001, "msg": "down"}
        response._content = json.dumps(body).encode()
        return response

    def close(self) -> None:
        pass


def session_with(adapter: BaseAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("https://", adapter)
    return session


# --------------------------------------------------------------------------------------------------
# help
# --------------------------------------------------------------------------------------------------


def test_ops_help_lists_every_command_of_section_8() -> None:
    result = runner.invoke(app, ["ops", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output, name


# --------------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------------


def test_status_without_a_database_blocks_and_creates_nothing(config: Path) -> None:
    code, _, out = ops(config, "status")
    assert code == 1
    assert out["blocker"] == "db_missing" and "--allow-create-db" in out["action_db_missing"]
    assert out["status"] == "blocked"
    assert not db_file(config).exists()


def test_status_of_a_booted_database_warns_about_the_restricted_mode_and_writes_nothing(config: Path) -> None:
    seed(config)
    before = dump(db_file(config))
    code, text, out = ops(config, "status")
    assert code == 0, text
    assert (out["safety_mode"], out["safety_reason_code"], out["schema_version"]) == ("ARMED_SAFE", "BOOTSTRAP", "5")
    assert out["warning"] == "ARMED_SAFE" and "promote" in out["action_ARMED_SAFE"]
    assert "blocker=" not in text and out["blockers"] == "0" and out["status"] == "ok"
    assert dump(db_file(config)) == before  # read-only


def test_status_blocks_on_halt(config: Path) -> None:
    seed(config, ("storage_failed", {"app": "copytrader", "operation": "write"}))
    code, text, out = ops(config, "status")
    assert code == 1
    assert out["blocker"] == "HALT" and out["safety_reason_code"] == "STORAGE_UNAVAILABLE"
    assert "unhalt" in out["action_HALT"]
    assert "warning=" not in text  # HALT is a blocker, not also a restricted-mode warning


def test_status_blocks_on_a_schema_version_mismatch(config: Path) -> None:
    seed(config)
    ctx = context(config)
    CopytradeState(ctx.db).set_many({CopytradeKey.SCHEMA_VERSION: "3"}, 1)
    ctx.close()
    code, _, out = ops(config, "status")
    assert code == 1
    assert out["blocker"] == "schema_version_mismatch" and out["schema_version"] == "3"
    assert "rebuild-db" in out["action_schema_version_mismatch"]


def test_status_unknown_burst_cursor_gap_parked_orders_and_skip_flag(tmp_path: Path) -> None:
    config = write_config(tmp_path, ingest={"maintenance_skip_gap": True})
    clock = SystemClock()
    unknown_orders(config, clock, ["TIMEOUT", "RATE_LIMITED", "TIMEOUT"], park=1)
    ctx = context(config)
    CopytradeState(ctx.db).advance_cursor(T0, event_key(T0, 7, "0xgone", "BTCUSDT"), T0)
    ctx.close()
    code, text, _ = ops(config, "status")
    assert code == 1
    blockers = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("blocker=")]
    warnings = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("warning=")]
    assert blockers == ["unknown_burst", "cursor_event_missing"]
    assert "maintenance_skip_gap=true" in warnings and "parked_unknown" in warnings
    assert "action_unknown_burst=" in text and "backfill-only" in text and "recover-orders" in text
    assert "unknown_orders=2" in text and "parked_orders=1" in text
    assert text.count("status=UNKNOWN error_code=RETRY_BUDGET_EXCEEDED") == 1  # parked, stored as §3.3 says


def test_unknown_burst_counts_only_burst_codes_within_the_window(config: Path) -> None:
    clock = ManualClock(T0)
    ctx = context(config, clock, create=True)
    jobs = jobs_without_venues(ctx)
    for i, code in enumerate(["TIMEOUT", "RATE_LIMITED", "NETWORK_ERROR", "TIMEOUT"], 1):
        cid, _ = add_order(ctx, i, clock.now_ms())
        jobs._answer(cid, "UNKNOWN", code)
        clock.advance(1_000)
    ctx.close()
    ws = open_workspace(ROOT, config)
    assert "blocker=unknown_burst" in status_report(ws, T0 + 3_000).lines  # 3 of 4 count (not NETWORK_ERROR)
    late = status_report(ws, T0 + 300_001)  # the first TIMEOUT left the 300 s window
    assert "blocker=unknown_burst" not in late.lines and "unknown_burst_count=2" in late.lines


def test_maintenance_skip_cursor_is_not_a_missing_event(config: Path) -> None:
    seed(config)
    ctx = context(config)
    CopytradeState(ctx.db).maintenance_skip(T0)
    ctx.close()
    code, text, _ = ops(config, "status")
    assert code == 0 and "cursor_event_missing" not in text


# --------------------------------------------------------------------------------------------------
# preflight
# --------------------------------------------------------------------------------------------------


def test_preflight_fails_without_a_database_and_creates_nothing(config: Path) -> None:
    code, text, out = ops(config, "preflight", env=ENV_OK)
    assert code == 1
    assert text.rstrip().endswith("preflight_failed")
    assert out["failure"].startswith("db_missing")
    assert not db_file(config).exists()
    assert "config_hash=" in text and "local_time_ms=" in text


def test_preflight_allow_create_db_bootstraps_and_never_prints_secrets(config: Path) -> None:
    code, text, out = ops(config, "preflight", "--allow-create-db", env=ENV_OK)
    assert code == 0, text
    assert text.rstrip().endswith("preflight_ok")
    assert (out["db_created"], out["schema_status"], out["schema_version"]) == ("true", "ok", "5")
    assert out["env_BINANCE_API_KEY"] == "SET (len 64)" and out["env_HYPERLIQUID_TARGET_WALLET"] == "SET (len 42)"
    assert KEY not in text and SECRET not in text and WALLET not in text
    assert db_file(config).is_file()
    code, text, _ = ops(config, "preflight", env=ENV_OK)  # now it exists: no flag needed
    assert code == 0 and "db_created=false" in text


def test_preflight_names_missing_env_vars_without_values(config: Path) -> None:
    seed(config)
    code, text, out = ops(config, "preflight", env={"HYPERLIQUID_TARGET_WALLET": WALLET})
    assert code == 0 and out["mode"] == "dry-run"  # the default mode is the safe one, as for `hlcore live`
    code, text, out = ops(config, "preflight", "--mode", "live", env={"HYPERLIQUID_TARGET_WALLET": WALLET})
    assert code == 1 and "preflight_failed" in text
    assert out["env_BINANCE_API_KEY"] == "UNSET" and out["env_BINANCE_API_SECRET"] == "UNSET"
    failures = [line for line in text.splitlines() if line.startswith("failure=")]
    assert any("BINANCE_API_KEY" in f for f in failures) and any("BINANCE_API_SECRET" in f for f in failures)
    assert WALLET not in text
    code, text, _ = ops(config, "preflight", "--mode", "dry-run", env={"HYPERLIQUID_TARGET_WALLET": WALLET})
    assert code == 0 and "preflight_ok" in text  # dry-run needs no Binance key


@pytest.mark.parametrize(("offset", "ok", "warned"), [(0, True, False), (-2_000, True, True), (5_000, False, False)])
def test_preflight_exchange_time_offset(config: Path, offset: int, ok: bool, warned: bool) -> None:
    seed(config)
    clock = ManualClock(T0)
    server = TimeServer(clock, offset)
    wiring = Wiring(clock, lambda s: None, random.Random(1), lambda _v: session_with(server), ENV_OK)
    report = preflight_report(open_workspace(ROOT, config), wiring, exchange_time_check=True)
    assert server.paths == ["/fapi/v1/time"]
    assert f"binance_server_time_ms={T0 + offset}" in report.lines and f"time_offset_ms={offset}" in report.lines
    assert report.ok is ok and ("preflight_ok" in report.lines) is ok
    assert any(line.startswith("warning=time_offset") for line in report.lines) is warned
    if not ok:
        assert any(line.startswith("failure=time_offset") for line in report.lines)


def test_preflight_exchange_time_unavailable_fails(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(config)
    server = TimeServer(SystemClock(), 0, fail=True)
    monkeypatch.setattr("hlcore.ops.baseline.new_session", lambda _venue: session_with(server))
    monkeypatch.setattr("hlcore.ops.baseline.time.sleep", lambda _s: None)  # the HTTP layer's retry backoff
    code, text, _ = ops(config, "preflight", "--exchange-time", env=ENV_OK)
    assert code == 1 and "failure=exchange_time_unavailable" in text


# --------------------------------------------------------------------------------------------------
# poststart
# --------------------------------------------------------------------------------------------------


def test_poststart_prints_state_counts_and_the_metrics_tail(config: Path) -> None:
    unknown_orders(config, SystemClock(), ["TIMEOUT"])
    metrics = config.parent / "metrics.log"
    metrics.write_text("".join(f'[METRICS] {{"name": "heartbeat", "tags": {{}}, "ts": {T0 + i}, "value": 1}}\n'
                               for i in range(7)), encoding="utf-8")
    code, text, out = ops(config, "poststart", "--metrics-tail", "3")
    assert code == 0, text
    assert (out["safety_mode"], out["safety_reason_code"]) == ("ARMED_SAFE", "BOOTSTRAP")
    assert "safety_reason_message" in out and "last_processed_event_key" in out and "last_ingest_success_ms" in out
    assert out["order_results_UNKNOWN"] == "1" and out["order_results_total"] == "1"
    assert int(out["audit_log_count"]) >= 1
    tail = [line for line in text.splitlines() if line.startswith("metrics_tail=")]
    assert len(tail) == 3 and f'"ts": {T0 + 6}' in tail[-1]
    assert out["metrics_last_ts_ms"] == str(T0 + 6)


def test_poststart_without_a_database_fails(config: Path) -> None:
    code, text, _ = ops(config, "poststart")
    assert code == 1 and "failure=db_missing" in text and not db_file(config).exists()


# --------------------------------------------------------------------------------------------------
# validate-run
# --------------------------------------------------------------------------------------------------


def test_validate_run_appends_an_evidence_bundle(config: Path, tmp_path: Path) -> None:
    seed(config)
    evidence = tmp_path / "docs" / "ops_validation_run.txt"
    for _ in range(2):
        code, text, _ = ops(config, "validate-run", "--output", str(evidence), "--operator", "alice",
                              "--mode", "live", env=ENV_OK)
        assert code == 0, text
    content = evidence.read_text(encoding="utf-8")
    assert content.count("# hlcore ops validate-run") == 2 and content.count("\nstatus=ok\n") == 2
    bundle = dict(line.split("=", 1) for line in content.split("# hlcore ops validate-run")[1].splitlines()
                  if "=" in line)
    assert bundle["operator"] == "alice" and bundle["mode"] == "live" and bundle["environment"] == "production"
    assert bundle["db"] == f"sqlite:///{db_file(config)}"
    assert bundle["date_utc"].endswith("Z") and bundle["config_hash"]
    assert bundle["preflight_env_BINANCE_API_KEY"] == "SET (len 64)" and "preflight_local_time_ms" in bundle
    assert (bundle["safety_mode"], bundle["safety_reason_code"]) == ("ARMED_SAFE", "BOOTSTRAP")
    assert bundle["maintenance_skip_gap"] == "false" and "maintenance_skip_applied_ms" in bundle
    assert bundle["unknown_orders"] == "0" and "last_reconcile_result" in bundle and "audit_log_count" in bundle
    assert "preflight_ok" in content and KEY not in content and SECRET not in content


def test_validate_run_with_no_database_driver_is_bad_input_without_the_password(tmp_path: Path) -> None:
    """No PostgreSQL driver installed: the environment is wrong, one line, exit 2 (issue 11)."""
    config = write_config(tmp_path, db_url="postgresql+pg8000://ops:hunter2@127.0.0.1:1/hlcore")
    evidence = tmp_path / "evidence.txt"
    result = runner.invoke(app, ["ops", "validate-run", "--output", str(evidence), "--policy", str(ROOT),
                                 "--config", str(config)], env=ENV_NONE | ENV_OK)
    assert result.exit_code == 2 and "db_url" in result.output and "driver" in result.output
    assert "hunter2" not in result.output and "Traceback" not in result.output


def test_validate_run_redacts_the_database_url_and_fails_when_unreachable(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from hlcore.ops import reports
    from hlcore.storage.db import StorageUnavailable

    def unreachable(url: str, **_k: Any) -> Any:
        raise StorageUnavailable(f"storage unavailable while connecting: could not connect to {url}")

    monkeypatch.setattr(reports, "open_database", unreachable)
    config = write_config(tmp_path, db_url="postgresql://ops:hunter2@127.0.0.1:1/hlcore")
    evidence = tmp_path / "evidence.txt"
    code, text, _ = ops(config, "validate-run", "--output", str(evidence), env=ENV_OK)
    assert code == 1
    content = evidence.read_text(encoding="utf-8")
    assert "db=postgresql://ops:***@127.0.0.1:1/hlcore" in content
    assert "hunter2" not in content and "hunter2" not in text
    assert content.rstrip().endswith("status=fail")


# --------------------------------------------------------------------------------------------------
# backup
# --------------------------------------------------------------------------------------------------


def test_backup_writes_a_verified_copy_beside_the_database(config: Path) -> None:
    unknown_orders(config, SystemClock(), ["TIMEOUT"])
    code, text, out = ops(config, "backup")
    assert code == 0, text
    copy = Path(out["backup_path"])
    assert copy.parent == db_file(config).parent and copy.name.startswith("backup-") and copy.suffix == ".db"
    assert len(copy.stem) == len("backup-YYYYMMDD-HHMM") or copy.stem.endswith("-2")
    assert out["verified"] == "true" and out["backup_schema_version"] == "5"
    conn = sqlite3.connect(copy)
    assert conn.execute("select count(*) from order_results").fetchone() == (1,)
    conn.close()
    code, _, again = ops(config, "backup")  # same minute: a new name, never an overwrite
    assert code == 0 and again["backup_path"] != out["backup_path"]


def test_backup_of_a_missing_database_is_refused(config: Path) -> None:
    code, _, _ = ops(config, "backup")
    assert code == 1 and not db_file(config).exists()


def test_postgresql_backup_needs_pg_dump(tmp_path: Path) -> None:
    config = write_config(tmp_path, db_url="postgresql://ops:hunter2@127.0.0.1:1/hlcore")
    code, text, _ = ops(config, "backup", env={"PATH": str(tmp_path / "empty")})
    assert code == 2 and "pg_dump" in text and "hunter2" not in text


def test_postgresql_backup_runs_pg_dump_with_the_password_in_the_environment(tmp_path: Path) -> None:
    config = write_config(tmp_path, db_url="postgresql://ops:hunter2@db.example:5432/hlcore")
    calls: list[tuple[list[str], dict[str, str] | None]] = []

    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append((args, kwargs.get("env")))
        listing = "215; 0 16390 TABLE DATA public system_state hlcore\n" if "--list" in args else ""
        return subprocess.CompletedProcess(args, 0, listing, "")

    result = ops_database.backup(open_workspace(ROOT, config), ManualClock(T0), which=lambda name: f"/bin/{name}",
                                 run=run)
    assert result.refused is None and "verified=true" in result.lines
    (dump_args, dump_env), (list_args, _) = calls
    assert dump_args[0] == "/bin/pg_dump" and "--format=custom" in dump_args
    assert f"--file={tmp_path / 'backup-20260124-1000.dump'}" in dump_args  # beside db_path
    assert not any("hunter2" in a for a in dump_args) and dump_env is not None and dump_env["PGPASSWORD"] == "hunter2"
    assert list_args[:2] == ["/bin/pg_restore", "--list"]
    assert "db=postgresql://ops:***@db.example:5432/hlcore" in result.lines


# --------------------------------------------------------------------------------------------------
# rebuild-db
# --------------------------------------------------------------------------------------------------


def test_rebuild_db_refused_without_force_then_rebuilds_with_a_backup(config: Path) -> None:
    unknown_orders(config, SystemClock(), ["TIMEOUT"])
    ctx = context(config)
    CopytradeState(ctx.db).set_many({CopytradeKey.SCHEMA_VERSION: "3"}, 1)  # drill 3: an old schema
    ctx.close()
    before = dump(db_file(config))
    code, _, out = ops(config, "rebuild-db", "--backup")
    assert code == 1 and out["refused"] == "force_required"
    code, _, out = ops(config, "rebuild-db", "--force")
    assert code == 1 and out["refused"] == "backup_required"
    code, _, out = ops(config, "rebuild-db", "--backup", "--force", "--dry-run")
    assert code == 0 and out["dry_run"].startswith("true") and out["before_order_intents_count"] == "1"
    assert dump(db_file(config)) == before and not Path(out["backup_path"]).exists()

    code, text, out = ops(config, "rebuild-db", "--backup", "--force", "--operator", "bob",
                          "--reason-message", "schema v3")
    assert code == 0, text
    assert out["db_rebuilt"] == "ok" and out["schema_version"] == "5" and out["schema_status"] == "ok"
    assert (out["audit_log_count"], out["order_intents_count"], out["order_results_count"]) == ("0", "0", "0")
    backup = Path(out["backup_path"])
    assert backup.name.startswith("ct.db.bak-") and out["backup_verified"] == "true"
    conn = sqlite3.connect(backup)
    assert conn.execute("select value from system_state where key='schema_version'").fetchone() == ("3",)
    assert conn.execute("select count(*) from order_intents").fetchone() == (1,)
    (meta,) = conn.execute("select metadata from audit_log where category='ops' and event='rebuild-db'").fetchone()
    conn.close()
    assert json.loads(meta)["operator"] == "bob"
    code, _, status = ops(config, "status")  # the rebuilt DB: schema ok, not booted yet
    assert status["schema_status"] == "ok" and status["schema_version"] == "5"


def test_rebuild_db_refused_while_the_service_ticks(config: Path) -> None:
    seed(config)
    ctx = context(config)
    now = SystemClock().now_ms()
    CopytradeState(ctx.db).set_many({CopytradeKey.LOOP_LAST_TICK_MS: now}, now)
    ctx.close()
    code, _, out = ops(config, "rebuild-db", "--backup", "--force")
    assert code == 1 and out["refused"].startswith("service_running")


def test_rebuild_db_refused_while_another_connection_holds_a_write_lock(config: Path) -> None:
    seed(config)
    holder = sqlite3.connect(db_file(config), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        code, _, out = ops(config, "rebuild-db", "--backup", "--force")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 1 and out["refused"].startswith("db_locked")


# --------------------------------------------------------------------------------------------------
# sync-baseline / reset-baseline
# --------------------------------------------------------------------------------------------------


def test_sync_replace_and_reset_baseline_from_a_positions_file(config: Path, tmp_path: Path) -> None:
    seed(config)
    positions = tmp_path / "positions.yaml"
    positions.write_text("BTCUSDT: 1.5\nETH-USDT: '-0.25'\n", encoding="utf-8")
    code, text, out = ops(config, "sync-baseline", "--positions", str(positions), "--operator", "carol",
                          "--reason-message", "go-live snapshot")
    assert code == 0, text
    assert out["reason_code"] == "BASELINE_SYNCED" and out["before_baseline_id"] == "none"
    assert (out["after_position_BTCUSDT"], out["after_position_ETHUSDT"]) == ("1.5", "-0.25")

    code, _, out = ops(config, "sync-baseline", "--positions", str(positions))
    assert code == 1 and out["refused"] == "baseline_active"

    positions.write_text("BTCUSDT: 2\n", encoding="utf-8")
    code, _, out = ops(config, "sync-baseline", "--replace", "--dry-run", "--positions", str(positions))
    assert code == 0 and out["reason_code"] == "BASELINE_REPLACED" and out["dry_run"].startswith("true")
    ctx = context(config)
    assert Baselines(ctx.db).active().positions == {"BTCUSDT": Decimal("1.5"),  # type: ignore[union-attr]
                                                    "ETHUSDT": Decimal("-0.25")}
    ctx.close()
    code, _, out = ops(config, "sync-baseline", "--replace", "--positions", str(positions))
    assert code == 0 and out["reason_code"] == "BASELINE_REPLACED" and out["after_position_BTCUSDT"] == "2"

    code, _, out = ops(config, "reset-baseline", "--dry-run")
    assert code == 0 and out["dry_run"].startswith("true")
    code, _, out = ops(config, "reset-baseline", "--operator", "carol")
    assert code == 0 and out["reason_code"] == "BASELINE_RESET" and out["after_baseline_id"] == "none"
    code, _, out = ops(config, "reset-baseline")
    assert code == 1 and out["refused"] == "no_active_baseline"

    ctx = context(config)
    assert Baselines(ctx.db).active() is None
    rows = AuditLog(ctx.db).rows(category="baseline")
    ctx.close()
    assert [r["reason_code"] for r in rows] == ["BASELINE_SYNCED", "BASELINE_REPLACED", "BASELINE_RESET"]
    assert rows[0]["metadata"]["operator"] == "carol" and rows[0]["reason_message"] == "go-live snapshot"
    assert rows[1]["from_state"] == rows[0]["to_state"]


def test_sync_baseline_rejects_a_malformed_positions_file(config: Path, tmp_path: Path) -> None:
    seed(config)
    positions = tmp_path / "positions.yaml"
    positions.write_text("BTCUSDT: lots\n", encoding="utf-8")
    code, _, _ = ops(config, "sync-baseline", "--positions", str(positions))
    assert code == 2


def test_sync_baseline_from_binance_position_risk(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(config)
    fake, world = copytrade_venues(ManualClock(T0))
    world.account.positions = {"BTCUSDT": Decimal("0.75"), "ETHUSDT": Decimal("0")}
    monkeypatch.setattr("hlcore.ops.baseline.new_session", lambda _venue: fake.session())
    code, _, _ = ops(config, "sync-baseline")  # no keys: bad input, nothing asked
    assert code == 2 and fake.calls == []
    code, text, out = ops(config, "sync-baseline", env=ENV_OK)
    assert code == 0, text
    assert out["source"] == "binance_position_risk" and out["after_position_BTCUSDT"] == "0.75"
    assert "after_position_ETHUSDT" not in out  # flat positions are not part of a baseline
    assert KEY not in text and SECRET not in text
    world.account.position_side = "LONG"
    code, _, _ = ops(config, "sync-baseline", "--replace", env=ENV_OK)
    assert code == 1  # hedge-mode entries: refused (position_mode_invalid)


# --------------------------------------------------------------------------------------------------
# recover-orders
# --------------------------------------------------------------------------------------------------


def fill_on_venue(world: CopytradeWorld, coid: str) -> None:
    """The venue holds a FILLED order under `coid` (one whose answer never reached us)."""
    world.account.orders[coid] = {"orderId": 4242, "symbol": "BTCUSDT", "status": "FILLED", "clientOrderId": coid,
                                  "qty": "0.002", "executed": "0.002", "tif": "GTC", "reduceOnly": "false",
                                  "side": "BUY", "updated": T0}


def test_recover_orders_resolves_unknown_and_parked_orders(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (unknown_cid, unknown_coid), (parked_cid, parked_coid) = reversed(
        unknown_orders(config, SystemClock(), ["TIMEOUT", "TIMEOUT"], park=1))
    fake, world = copytrade_venues(ManualClock(T0))
    fill_on_venue(world, unknown_coid)
    fill_on_venue(world, parked_coid)
    monkeypatch.setattr("hlcore.ops.baseline.new_session", lambda _venue: fake.session())

    code, text, out = ops(config, "recover-orders", "--dry-run", env=ENV_OK)
    assert code == 0 and out["candidates"] == "2" and fake.calls == []
    assert text.count("candidate=") == 2

    code, text, out = ops(config, "recover-orders", env={})
    assert code == 2 and "BINANCE_API_KEY" in text and fake.calls == []

    code, text, out = ops(config, "recover-orders", "--operator", "dave", "--reason-message", "sweep", env=ENV_OK)
    assert code == 0, text
    resolutions = [line for line in text.splitlines() if line.startswith("resolution=")]
    assert any(unknown_cid in r and "before=UNKNOWN after=FILLED" in r for r in resolutions)
    assert any(parked_cid in r and "before=UNKNOWN after=FILLED" in r for r in resolutions)  # parked (§3.3)
    assert out["resolved"] == "2" and out["remaining_unresolved"] == "0"
    assert [(c.method, c.path) for c in fake.calls if c.path == "/fapi/v1/order"] == \
        [("GET", "/fapi/v1/order")] * 2  # queried once
    assert not world.account.posts  # never a re-send
    ctx = context(config)
    orders = Orders(ctx.db)
    assert orders.result(unknown_cid).status == "FILLED"  # type: ignore[union-attr]
    assert orders.result(unknown_cid).filled_qty == Decimal("0.002")  # type: ignore[union-attr]
    done = ctx.workspace.policy.machines["event"]
    assert Events(ctx.db).unsettled([s for s, d in done.states.items() if not d.final]) == []
    (row,) = [r for r in AuditLog(ctx.db).rows(category="ops") if r["event"] == "recover-orders"]
    ctx.close()
    assert row["metadata"]["operator"] == "dave" and row["reason_message"] == "sweep"
    assert len(row["metadata"]["resolutions"]) == 2


def test_recover_orders_exits_1_when_an_order_stays_unresolved(config: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ((cid, _coid),) = unknown_orders(config, SystemClock(), ["TIMEOUT"])
    fake, world = copytrade_venues(ManualClock(T0))
    queue(fake, ["timeout"] * 10, match="GET /fapi/v1/order")
    monkeypatch.setattr("hlcore.ops.baseline.new_session", lambda _venue: fake.session())
    monkeypatch.setattr("hlcore.ops.baseline.time.sleep", lambda _s: None)
    code, text, out = ops(config, "recover-orders", env=ENV_OK)
    assert code == 1, text
    assert out["remaining_unresolved"] == "1" and out["refused"] == "orders_still_unresolved"
    assert f"resolution={cid}" in text and "after=UNKNOWN" in text
    assert not world.account.posts


def test_recover_orders_with_nothing_to_do(config: Path) -> None:
    seed(config)
    code, _, out = ops(config, "recover-orders", env=ENV_OK)
    assert code == 0 and out["candidates"] == "0" and out["resolved"] == "0"
