"""Storage: the schema of both specs' §6, SQLite pragmas, schema-version check, repositories."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import CreateIndex, CreateTable

from hlcore.storage import schema
from hlcore.storage.db import Database, StorageUnavailable, open_database, sqlite_url
from hlcore.storage.repos import AuditLog, MachineStateStore, OpsEvents, SystemState, TallyStore

T0 = 1_769_248_800_000  # 2026-01-24T10:00:00Z

# (table, column) pairs taken from spec/copytrader.md §6 and spec/monitor.md §6, plus the engine's.
SPEC_COLUMNS = [
    ("system_state", "key"),
    ("system_state", "value"),
    ("system_state", "updated_at_ms"),
    ("processed_txs", "tx_hash"),
    ("processed_txs", "event_index"),
    ("processed_txs", "symbol"),
    ("processed_txs", "timestamp_ms"),
    ("processed_txs", "is_replay"),
    ("processed_txs", "state"),
    ("processed_txs", "decision_reason"),
    ("ingested_fills", "tid"),
    ("ingested_fills", "start_position"),
    ("ingested_fills", "event_key"),
    ("order_intents", "correlation_id"),
    ("order_intents", "client_order_id"),
    ("order_intents", "intent_payload"),
    ("order_results", "correlation_id"),
    ("order_results", "exchange_order_id"),
    ("order_results", "contract_version"),
    ("order_results", "query_attempts"),
    ("order_results", "first_unknown_ms"),
    ("audit_log", "id"),
    ("audit_log", "timestamp_ms"),
    ("audit_log", "category"),
    ("audit_log", "entity_id"),
    ("audit_log", "machine"),
    ("audit_log", "instance"),
    ("audit_log", "from_state"),
    ("audit_log", "to_state"),
    ("audit_log", "event"),
    ("audit_log", "reason_code"),
    ("audit_log", "reason_message"),
    ("audit_log", "event_id"),
    ("audit_log", "facts"),
    ("audit_log", "policy_hash"),
    ("audit_log", "metadata"),
    ("reconcile_runs", "raw_result"),
    ("reconcile_runs", "missing_exchange"),
    ("reconcile_runs", "reason_after"),
    ("baseline_snapshots", "baseline_id"),
    ("baseline_snapshots", "active"),
    ("baseline_positions", "baseline_id"),
    ("baseline_positions", "symbol"),
    ("baseline_positions", "qty"),
    ("wallet_universe_current", "wallet_id"),
    ("wallet_universe_current", "rank"),
    ("wallet_universe_current", "as_of_ts"),
    ("wallet_universe_runs", "run_id"),
    ("wallet_universe_runs", "churn_warning_count"),
    ("wallet_universe_members", "run_id"),
    ("wallet_universe_members", "wallet_id"),
    ("wallet_snapshots", "snapshot_ts"),
    ("wallet_snapshots", "wallet_id"),
    ("wallet_snapshots", "asset"),
    ("wallet_snapshots", "position_szi"),
    ("wallet_snapshots", "is_dirty"),
    ("wallet_snapshots", "dirty_reason"),
    ("wallet_snapshots", "ingest_run_id"),
    ("snapshot_anomalies", "anomaly_type"),
    ("snapshot_anomalies", "details"),
    ("ingest_runs", "snapshot_ts"),
    ("ingest_runs", "wallets_succeeded"),
    ("ingest_runs", "coverage_pct"),
    ("ingest_runs", "nonnull_pct_hype"),
    ("ingest_runs", "nonnull_pct_btc"),
    ("ingest_runs", "nonnull_pct_eth"),
    ("ingest_health", "health_ts"),
    ("ingest_health", "health_state"),
    ("ingest_health", "latched"),
    ("ingest_health", "clean_streak"),
    ("signals", "signal_ts"),
    ("signals", "asset"),
    ("signals", "alignment_score"),
    ("signals", "dispersion_index"),
    ("signals", "exit_cluster_score"),
    ("signals", "allowed_playbook"),
    ("signals", "snapshot_slots"),
    ("signals", "degraded_reason"),
    ("signal_contributors", "pct_reducers"),
    ("signal_contributors", "total_wallets"),
    ("asset_positioning", "net_szi"),
    ("asset_positioning", "top10_share_pct"),
    ("alerts", "alert_ts"),
    ("alerts", "signal_snapshot"),
    ("alerts", "suppressed_reason"),
    ("alert_state", "asset"),
    ("alert_state", "alert_type"),
    ("alert_state", "pending_playbook"),
    ("alert_state", "daily_window_start"),
    ("ops_events", "ts"),
    ("ops_events", "command"),
    ("ops_events", "before"),
    ("ops_events", "after"),
    ("machine_states", "machine"),
    ("machine_states", "instance"),
    ("machine_states", "state"),
    ("machine_states", "reason"),
    ("machine_states", "since_ms"),
    ("machine_states", "vars"),
    ("machine_states", "updated_at_ms"),
    ("engine_tallies", "name"),
    ("engine_tallies", "instance"),
    ("engine_tallies", "ts_ms"),
    ("engine_tallies", "value"),
]

PRIMARY_KEYS = {
    "system_state": ["key"],
    "processed_txs": ["tx_hash", "event_index", "symbol"],
    "order_results": ["correlation_id"],
    "wallet_snapshots": ["snapshot_ts", "wallet_id", "asset"],
    "wallet_universe_members": ["run_id", "wallet_id"],
    "signals": ["signal_ts", "asset"],
    "alert_state": ["asset", "alert_type"],
    "machine_states": ["machine", "instance"],
}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "hlcore.db"


@pytest.fixture
def db(db_path: Path):
    database = open_database(sqlite_url(db_path))
    database.create_schema(now_ms=T0)
    yield database
    database.dispose()


def test_every_table_of_both_specs_is_in_the_schema_and_created(db: Database) -> None:
    names = set(inspect(db.engine).get_table_names())
    expected = set(schema.COPYTRADER_TABLES) | set(schema.MONITOR_TABLES) | set(schema.ENGINE_TABLES)
    assert expected == set(schema.metadata.tables)
    assert expected <= names
    assert db.tables_exist()


@pytest.mark.parametrize(("table", "column"), SPEC_COLUMNS)
def test_spec_column_exists(db: Database, table: str, column: str) -> None:
    columns = {c["name"] for c in inspect(db.engine).get_columns(table)}
    assert column in columns


@pytest.mark.parametrize(("table", "pk"), sorted(PRIMARY_KEYS.items()))
def test_primary_keys_follow_the_spec(db: Database, table: str, pk: list[str]) -> None:
    assert inspect(db.engine).get_pk_constraint(table)["constrained_columns"] == pk


def test_sqlite_pragmas_are_on(db: Database) -> None:
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_busy_timeout_is_a_parameter(db_path: Path) -> None:
    database = open_database(sqlite_url(db_path), busy_timeout_ms=1234)
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    database.dispose()


def test_in_memory_database_keeps_one_connection() -> None:
    database = open_database("sqlite://")
    database.create_schema(now_ms=T0)
    assert database.schema_status() == "ok"
    SystemState(database).set("boot_ms", str(T0), T0)
    assert SystemState(database).get("boot_ms") == str(T0)
    database.dispose()


def test_schema_version_is_stored(db: Database) -> None:
    assert db.stored_schema_version() == "5" == str(schema.SCHEMA_VERSION)
    assert SystemState(db).get("schema_version") == "5"


def test_create_schema_is_idempotent(db: Database) -> None:
    db.create_schema(now_ms=T0 + 1)
    assert db.schema_status() == "ok"


def test_schema_status_ok_missing_and_mismatch(db: Database, tmp_path: Path) -> None:
    assert db.schema_status() == "ok"

    empty = open_database(sqlite_url(tmp_path / "empty.db"))
    assert empty.schema_status() == "missing"
    assert not empty.tables_exist()
    assert empty.stored_schema_version() is None
    empty.dispose()

    SystemState(db).set("schema_version", "3", T0)
    assert db.schema_status() == "mismatch"

    with db.transaction() as conn:
        conn.execute(schema.system_state.delete())
    assert db.stored_schema_version() is None
    assert db.schema_status() == "incomplete"  # no version and not one row: an interrupted first boot
    SystemState(db).set("safety_mode", "ARMED_SAFE", T0)
    assert db.schema_status() == "mismatch"  # no version but state: never re-initialised


def test_partial_tables_are_a_mismatch(tmp_path: Path) -> None:
    database = open_database(sqlite_url(tmp_path / "partial.db"))
    with database.transaction() as conn:
        schema.system_state.create(conn)
        conn.execute(schema.system_state.insert().values(key="schema_version", value="5"))
    assert database.schema_status() == "mismatch"
    database.dispose()


def test_system_state_upsert(db: Database) -> None:
    state = SystemState(db)
    assert state.get("safety_mode") is None
    state.set("safety_mode", "ARMED_SAFE", T0)
    state.set("safety_mode", "HALT", T0 + 5)
    assert state.get("safety_mode") == "HALT"
    state.set_many({"safety_reason_code": "BACKFILL_WINDOW_EXCEEDED", "safety_mode": "ARMED_SAFE"}, T0 + 9)
    stored = state.all()
    assert stored.pop("db_identity").startswith(f"{T0}-")  # written once at creation (issue 10)
    assert stored == {
        "safety_mode": "ARMED_SAFE",
        "safety_reason_code": "BACKFILL_WINDOW_EXCEEDED",
        "schema_version": "5",
    }
    with db.engine.connect() as conn:
        stamped = conn.execute(
            text("SELECT updated_at_ms FROM system_state WHERE key='safety_mode'")
        ).scalar()
    assert stamped == T0 + 9


def test_set_many_is_one_transaction(db: Database) -> None:
    state = SystemState(db)
    with pytest.raises(RuntimeError), db.transaction() as conn:
        state.set_many({"a": "1", "b": "2"}, T0, conn=conn)
        raise RuntimeError("crash mid-unit")
    assert state.get("a") is None and state.get("b") is None


def test_audit_round_trip_with_json(db: Database) -> None:
    audit = AuditLog(db)
    first = audit.write(
        {
            "timestamp_ms": T0,
            "category": "safety",
            "entity_id": "safety",
            "machine": "safety",
            "instance": "safety",
            "from_state": "ARMED_LIVE",
            "to_state": "HALT",
            "event": "gap_detected",
            "reason_code": "BACKFILL_WINDOW_EXCEEDED",
            "reason_message": "gap exceeds backfill window",
            "facts": {"gap_ms": 3_600_000, "backfill_window_ms": 600_000},
            "policy_hash": "sha256:abc",
            "metadata": {"z": 1, "a": [1, 2]},
        }
    )
    second = audit.write({"timestamp_ms": T0 + 1, "category": "ops", "entity_id": "promote"})
    assert second > first
    rows = audit.rows()
    assert [r["id"] for r in rows] == [first, second]
    assert rows[0]["facts"] == {"gap_ms": 3_600_000, "backfill_window_ms": 600_000}
    assert rows[0]["metadata"] == {"z": 1, "a": [1, 2]}
    assert rows[0]["to_state"] == "HALT"
    assert rows[1]["facts"] is None
    assert [r["id"] for r in audit.rows(category="ops")] == [second]
    assert len(audit.rows(limit=1)) == 1
    assert audit.count() == 2
    with db.engine.connect() as conn:
        raw = conn.execute(text("SELECT metadata FROM audit_log WHERE id = :i"), {"i": first}).scalar()
    assert raw == '{"a":[1,2],"z":1}'  # canonical: sorted keys, compact


def test_audit_rejects_unknown_columns(db: Database) -> None:
    with pytest.raises(ValueError, match="nope"):
        AuditLog(db).write({"timestamp_ms": T0, "category": "ops", "nope": 1})


def test_machine_state_survives_reopening_the_file(db: Database, db_path: Path) -> None:
    """HALT survives a restart, at storage level: a new Database on the same file loads it back."""
    rows = [
        {
            "machine": "safety",
            "instance": "safety",
            "state": "HALT",
            "reason": "BACKFILL_WINDOW_EXCEEDED",
            "since_ms": T0,
            "vars": {"noncritical_count": 2},
        },
        {
            "machine": "alert",
            "instance": "alert/BTC/exit_cluster",
            "state": "armed",
            "reason": None,
            "since_ms": T0 - 60_000,
            "vars": {},
        },
    ]
    MachineStateStore(db).save(rows, now_ms=T0)
    MachineStateStore(db).save([{**rows[0], "vars": {"noncritical_count": 3}}], now_ms=T0 + 1)
    db.dispose()

    reopened = open_database(sqlite_url(db_path))
    assert reopened.schema_status() == "ok"
    loaded = MachineStateStore(reopened).load()
    reopened.dispose()
    expected = sorted(rows, key=lambda r: (r["machine"], r["instance"]))
    expected[1] = {**expected[1], "vars": {"noncritical_count": 3}}
    assert loaded == expected


def test_tallies_add_load_prune(db: Database) -> None:
    tallies = TallyStore(db)
    tallies.add("retry", "order", T0, 1.0)
    tallies.add("retry", "order", T0, 1.0)  # same millisecond is two observations
    tallies.add("retry", "order", T0 + 10_000, 1.0)
    tallies.add("alerts", "BTC", T0 + 5_000, 1.0)
    assert len(tallies.load(T0)) == 4
    assert [r["ts_ms"] for r in tallies.load(T0 + 1)] == [T0 + 5_000, T0 + 10_000]
    assert tallies.prune(T0 + 1) == 2
    assert len(tallies.load(0)) == 2


def test_ops_events_write(db: Database) -> None:
    ops = OpsEvents(db)
    event_id = ops.write(
        T0, "manual_halt", "alice", "drill", {"manual_halt": "false"}, {"manual_halt": "true"}
    )
    with db.engine.connect() as conn:
        row = conn.execute(schema.ops_events.select().where(schema.ops_events.c.id == event_id)).one()
    assert row.command == "manual_halt" and row.ts == T0
    assert row.before == '{"manual_halt":"false"}'


def test_duplicate_alert_is_rejected(db: Database) -> None:
    alert = {
        "alert_ts": T0,
        "signal_ts": T0,
        "asset": "BTC",
        "alert_type": "exit_cluster",
        "severity": "high",
        "message": "m",
        "suppressed": False,
    }
    with db.transaction() as conn:
        conn.execute(schema.alerts.insert().values(**alert))
    with pytest.raises(IntegrityError), db.transaction() as conn:
        conn.execute(schema.alerts.insert().values(**{**alert, "alert_ts": T0 + 1}))


def test_client_order_id_is_unique(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute(
            schema.order_intents.insert().values(
                correlation_id="c1", client_order_id="x", intent_payload="{}"
            )
        )
    with pytest.raises(IntegrityError), db.transaction() as conn:
        conn.execute(
            schema.order_intents.insert().values(
                correlation_id="c2", client_order_id="x", intent_payload="{}"
            )
        )


def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError), db.transaction() as conn:
        conn.execute(schema.order_results.insert().values(correlation_id="nope", contract_version="1"))


def test_numeric_checks(db: Database) -> None:
    with pytest.raises(IntegrityError), db.transaction() as conn:
        conn.execute(schema.wallet_universe_current.insert().values(wallet_id="0x1", rank=0, as_of_ts=T0))
    with pytest.raises(IntegrityError), db.transaction() as conn:
        conn.execute(schema.ingest_runs.insert().values(run_id="r", snapshot_ts=T0, coverage_pct=100.5))
    with pytest.raises(IntegrityError), db.transaction() as conn:
        conn.execute(
            schema.wallet_snapshots.insert().values(
                snapshot_ts=T0, wallet_id="0x1", asset="BTC", is_dirty=True
            )
        )


def test_storage_unavailable_for_a_directory_as_db_file(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-file.db"
    folder.mkdir()
    database = open_database(sqlite_url(folder))
    with pytest.raises(StorageUnavailable) as info:
        database.create_schema(now_ms=T0)
    assert info.value.cause is not None
    with pytest.raises(StorageUnavailable):
        database.schema_status()
    with pytest.raises(StorageUnavailable):
        SystemState(database).get("safety_mode")
    database.dispose()


def test_unsupported_backend_is_bad_input() -> None:
    from hlcore.errors import BadInput

    with pytest.raises(BadInput):
        open_database("mysql://u@h/db")


def test_schema_compiles_for_postgresql() -> None:
    dialect = postgresql.dialect()
    for table in schema.metadata.sorted_tables:
        assert "CREATE TABLE" in str(CreateTable(table).compile(dialect=dialect))
        for index in table.indexes:
            str(CreateIndex(index).compile(dialect=dialect))


POLICY_NAME = re.compile(r"""['"](HALT|ARMED_LIVE|ARMED_SAFE|HEALTHY|DEGRADED|STALE|PENDING|DECIDED)['"]""")


def test_no_policy_names_in_storage_code() -> None:
    storage_dir = Path(schema.__file__).parent
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(storage_dir.glob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if POLICY_NAME.search(line)
    ]
    assert offenders == []


def test_at_most_one_active_baseline(db: Database) -> None:
    table = schema.baseline_snapshots
    with db.transaction() as conn:
        conn.execute(table.insert().values(baseline_id="b1", created_at_ms=T0, active=True))
        conn.execute(table.insert().values(baseline_id="b0", created_at_ms=T0, active=False))
        conn.execute(table.insert().values(baseline_id="b00", created_at_ms=T0, active=False))
    with pytest.raises(IntegrityError), db.transaction() as conn:
        conn.execute(table.insert().values(baseline_id="b2", created_at_ms=T0, active=True))
