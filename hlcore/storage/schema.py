"""The one storage schema of hlcore: every table of both systems, as SQLAlchemy Core objects.

Owns table layout only (spec/copytrader.md §6, spec/monitor.md §6, plus the engine's own
`machine_states` and `engine_tallies`). One `MetaData` serves SQLite (the embedded default) and
PostgreSQL, so every type is chosen to behave the same on both:

- Times are `BigInteger` epoch milliseconds everywhere, including the monitor's `*_ts`,
  `created_at` and `updated_at` columns (the spec allows TIMESTAMPTZ/ISO text; one integer type
  compares, sorts and round-trips identically on both backends, which keeps journals
  byte-identical).
- Venue quantities and prices are `Numeric(38, 18)` (NUMERIC on PostgreSQL, REAL on SQLite) read
  back as `float`, so both backends return the same Python value; percentages and scores are
  `Float`.
- JSON is `Text` holding canonical JSON (sorted keys); repositories encode and decode it.
- Run, order and baseline ids are caller-supplied `Text`, so replay can name them deterministically;
  log-like tables use an autoincrement integer `id`.

Columns that hold states, reason codes, categories or other enumerations from the policy are plain
`TEXT` without CHECKs or defaults: the policy YAML owns those names (house rule 4). Only numeric
and nullability invariants the specs state are enforced here. `alert_state` is not seeded here
for the same reason; its seven rows come from the policy's assets and alert types.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)

SCHEMA_VERSION = 5
"""Storage layout version, owned by code: bump it whenever a table or column changes."""

SCHEMA_VERSION_KEY = "schema_version"
"""The `system_state` key holding the stored layout version (a storage key, not policy)."""

DB_IDENTITY_KEY = "db_identity"
"""The `system_state` key naming this database: written once at creation, checked at boot and
every tick, so a database deleted or replaced under a running process is noticed (issue 10)."""

metadata = MetaData()


def quantity() -> Numeric:
    """A venue quantity or price: exact NUMERIC on PostgreSQL, returned as float on both backends."""
    return Numeric(precision=38, scale=18, asdecimal=False)


def _ms(name: str, *, nullable: bool = True) -> Column:
    return Column(name, BigInteger, nullable=nullable)


def _pct_check(table: str, *columns: str) -> list[CheckConstraint]:
    return [CheckConstraint(f"{c} BETWEEN 0 AND 100", name=f"ck_{table}_{c}_pct") for c in columns]


def _nonneg_check(table: str, *columns: str) -> list[CheckConstraint]:
    return [CheckConstraint(f"{c} >= 0", name=f"ck_{table}_{c}_nonneg") for c in columns]


# --------------------------------------------------------------------------------------------------
# Shared
# --------------------------------------------------------------------------------------------------

system_state = Table(
    "system_state",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
    _ms("updated_at_ms"),
)

# --------------------------------------------------------------------------------------------------
# Copy-trader (spec/copytrader.md §6)
# --------------------------------------------------------------------------------------------------

processed_txs = Table(
    "processed_txs",
    metadata,
    Column("tx_hash", Text, nullable=False),
    Column("event_index", BigInteger, nullable=False),  # a fill id can exceed 32 bits (PostgreSQL INTEGER)
    Column("symbol", Text, nullable=False),
    _ms("timestamp_ms", nullable=False),
    Column("is_replay", Boolean, nullable=False, server_default=false()),
    Column("action_type", Text),
    Column("prev_target", quantity()),
    Column("next_target", quantity()),
    Column("expected_price", quantity()),
    Column("state", Text, nullable=False),
    Column("decision_reason", Text),
    _ms("created_at_ms"),
    _ms("updated_at_ms"),
    PrimaryKeyConstraint("tx_hash", "event_index", "symbol"),
    Index("ix_processed_txs_state_timestamp", "state", "timestamp_ms"),
)

ingested_fills = Table(
    "ingested_fills",
    metadata,
    Column("tid", BigInteger, primary_key=True, autoincrement=False),
    Column("tx_hash", Text),
    Column("coin", Text),
    Column("side", Text),
    Column("sz", quantity()),
    Column("px", quantity()),
    Column("start_position", quantity()),
    _ms("time_ms"),
    Column("event_key", Text, nullable=False),
    # Hourly retention prunes by age.
    Index("ix_ingested_fills_time_ms", "time_ms"),
    # Each fetch looks its transactions' fills up by hash (dedup by content): a seek, not a scan (issue 12).
    Index("ix_ingested_fills_tx_hash", "tx_hash"),
)

ingest_skips = Table(
    # Venue data the ingest did not turn into events, one row per skipped item (issue 11 §2): the
    # key makes the second sighting (the overlap refetch) a no-op, so each is logged and counted once.
    "ingest_skips",
    metadata,
    Column("skip_key", Text, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("detail", Text),
    Column("tx_hash", Text),
    Column("coin", Text),
    _ms("recorded_at_ms", nullable=False),
    Index("ix_ingest_skips_recorded_at_ms", "recorded_at_ms"),
)

order_intents = Table(
    "order_intents",
    metadata,
    Column("correlation_id", Text, primary_key=True),
    Column("client_order_id", Text, nullable=False, unique=True),
    Column("event_key", Text),
    Column("intent_payload", Text, nullable=False),  # canonical JSON, immutable once written
    _ms("created_at_ms"),
    Index("ix_order_intents_event_key", "event_key"),  # an event's intents, read per settle (issue 12)
)

order_results = Table(
    "order_results",
    metadata,
    Column("correlation_id", Text, ForeignKey("order_intents.correlation_id"), primary_key=True),
    Column("exchange_order_id", Text),
    Column("status", Text),
    Column("filled_qty", quantity()),
    Column("avg_price", quantity()),
    Column("error_code", Text),
    Column("error_message", Text),
    Column("contract_version", Text, nullable=False),
    Column("query_attempts", Integer, nullable=False, server_default="0"),
    _ms("first_unknown_ms"),
    _ms("created_at_ms"),  # kept on upsert: see hlcore.storage.db.upsert(keep=...)
    _ms("updated_at_ms"),
    *_nonneg_check("order_results", "query_attempts"),
    Index("ix_order_results_status", "status"),
    Index("ix_order_results_exchange_order_id", "exchange_order_id"),
    Index("ix_order_results_updated_at_ms", "updated_at_ms"),  # local positions fold in only new results
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _ms("timestamp_ms", nullable=False),
    Column("category", Text, nullable=False),
    Column("entity_id", Text),
    Column("machine", Text),
    Column("instance", Text),
    Column("from_state", Text),
    Column("to_state", Text),
    Column("event", Text),
    Column("reason_code", Text),
    Column("reason_message", Text),
    Column("event_id", Text),
    Column("facts", Text),  # canonical JSON
    Column("policy_hash", Text),
    Column("metadata", Text),  # canonical JSON
    Index("ix_audit_log_category", "category"),
    Index("ix_audit_log_entity_id", "entity_id"),
    Index("ix_audit_log_timestamp_ms", "timestamp_ms"),
)

reconcile_runs = Table(
    "reconcile_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _ms("ts_ms", nullable=False),
    Column("context", Text),
    Column("raw_result", Text),
    Column("max_drift", quantity()),
    Column("drifts", Text),  # canonical JSON
    Column("missing_local", Text),  # canonical JSON
    Column("missing_exchange", Text),  # canonical JSON
    _ms("snapshot_age_ms"),
    Column("mode_before", Text),
    Column("mode_after", Text),
    Column("reason_after", Text),
    Index("ix_reconcile_runs_ts_ms", "ts_ms"),
)

baseline_snapshots = Table(
    "baseline_snapshots",
    metadata,
    Column("baseline_id", Text, primary_key=True),
    _ms("created_at_ms"),
    Column("operator", Text),
    Column("reason_message", Text),
    Column("active", Boolean, nullable=False, server_default=false()),
)
# "At most one active baseline": a partial unique index over the active rows only.
Index(
    "uq_baseline_snapshots_one_active",
    baseline_snapshots.c.active,
    unique=True,
    sqlite_where=baseline_snapshots.c.active == true(),
    postgresql_where=baseline_snapshots.c.active == true(),
)

baseline_positions = Table(
    "baseline_positions",
    metadata,
    Column(
        "baseline_id",
        Text,
        ForeignKey("baseline_snapshots.baseline_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("symbol", Text, nullable=False),
    Column("qty", quantity()),
    PrimaryKeyConstraint("baseline_id", "symbol"),
)

# --------------------------------------------------------------------------------------------------
# Wallet monitor (spec/monitor.md §6); every *_ts / created_at / updated_at is epoch ms
# --------------------------------------------------------------------------------------------------

wallet_universe_runs = Table(
    "wallet_universe_runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    _ms("as_of_ts"),
    Column("status", Text, nullable=False),
    Column("source", Text),
    Column("n_requested", Integer),
    Column("n_received", Integer),
    Column("n_invalid", Integer),
    Column("entered_count", Integer),
    Column("exited_count", Integer),
    Column("churn_warning_count", Integer),
    Column("churn_pct", Float),
    _ms("duration_ms"),
    Column("error", Text),
    _ms("created_at"),
    CheckConstraint("n_requested > 0", name="ck_wallet_universe_runs_n_requested_pos"),
    *_nonneg_check(
        "wallet_universe_runs",
        "n_received",
        "n_invalid",
        "entered_count",
        "exited_count",
        "churn_warning_count",
    ),
)

wallet_universe_current = Table(
    "wallet_universe_current",
    metadata,
    Column("wallet_id", Text, primary_key=True),
    Column("rank", Integer, nullable=False, unique=True),
    Column("month_pnl", quantity()),
    Column("month_roi", Float),
    Column("account_value", quantity()),
    Column("display_name", Text),
    _ms("as_of_ts", nullable=False),
    Column("run_id", Text),
    _ms("updated_at"),
    CheckConstraint("rank > 0", name="ck_wallet_universe_current_rank_pos"),
)

wallet_universe_members = Table(
    "wallet_universe_members",
    metadata,
    Column(
        "run_id",
        Text,
        ForeignKey("wallet_universe_runs.run_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("wallet_id", Text, nullable=False),
    Column("rank", Integer, nullable=False),
    Column("month_pnl", quantity()),
    Column("month_roi", Float),
    Column("account_value", quantity()),
    _ms("created_at"),
    PrimaryKeyConstraint("run_id", "wallet_id"),
    CheckConstraint("rank > 0", name="ck_wallet_universe_members_rank_pos"),
)

ingest_runs = Table(
    "ingest_runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    _ms("snapshot_ts", nullable=False),
    Column("status", Text),
    # The counts may stay NULL until the run finishes; once all three are set they must add up.
    Column("wallets_expected", Integer),
    Column("wallets_succeeded", Integer),
    Column("wallets_failed", Integer),
    Column("rows_expected", Integer),
    Column("rows_written", Integer),
    Column("coverage_pct", Float),
    Column("nonnull_pct_hype", Float),
    Column("nonnull_pct_btc", Float),
    Column("nonnull_pct_eth", Float),
    Column("dirty_marked", Integer),
    Column("concurrency", Integer),
    Column("rate_limited_count", Integer),
    Column("universe_run_id", Text),
    _ms("duration_ms"),
    Column("error", Text),
    _ms("created_at"),
    UniqueConstraint("snapshot_ts", name="uq_ingest_runs_snapshot_ts"),
    CheckConstraint(
        "wallets_succeeded + wallets_failed = wallets_expected",
        name="ck_ingest_runs_wallets_add_up",
    ),
    *_nonneg_check(
        "ingest_runs",
        "wallets_expected",
        "wallets_succeeded",
        "wallets_failed",
        "rows_expected",
        "rows_written",
        "dirty_marked",
        "rate_limited_count",
    ),
    *_pct_check("ingest_runs", "coverage_pct", "nonnull_pct_hype", "nonnull_pct_btc", "nonnull_pct_eth"),
)

wallet_snapshots = Table(
    "wallet_snapshots",
    metadata,
    _ms("snapshot_ts", nullable=False),
    Column("wallet_id", Text, nullable=False),
    Column("asset", Text, nullable=False),
    Column("position_szi", quantity()),
    Column("entry_px", quantity()),
    Column("liq_px", quantity()),
    Column("leverage", Float),
    Column("margin_used", quantity()),
    Column("is_dirty", Boolean, nullable=False, server_default=false()),
    Column("dirty_reason", Text),
    # SET NULL: ingest_runs are pruned on their own retention clock; raw snapshots must survive it.
    Column("ingest_run_id", Text, ForeignKey("ingest_runs.run_id", ondelete="SET NULL")),
    _ms("created_at"),
    PrimaryKeyConstraint("snapshot_ts", "wallet_id", "asset"),
    CheckConstraint(
        "(is_dirty AND dirty_reason IS NOT NULL) OR (NOT is_dirty AND dirty_reason IS NULL)",
        name="ck_wallet_snapshots_dirty_reason_iff_dirty",
    ),
    Index("ix_wallet_snapshots_asset_ts", "asset", "snapshot_ts"),
    Index("ix_wallet_snapshots_wallet_asset_ts", "wallet_id", "asset", "snapshot_ts"),
)
Index(
    "ix_wallet_snapshots_dirty",
    wallet_snapshots.c.asset,
    wallet_snapshots.c.snapshot_ts,
    sqlite_where=wallet_snapshots.c.is_dirty == true(),
    postgresql_where=wallet_snapshots.c.is_dirty == true(),
)

snapshot_anomalies = Table(
    "snapshot_anomalies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _ms("detected_at"),
    _ms("snapshot_ts", nullable=False),
    Column("wallet_id", Text, nullable=False),
    Column("asset", Text, nullable=False),
    Column("anomaly_type", Text, nullable=False),
    Column("details", Text),  # canonical JSON
    Index("ix_snapshot_anomalies_detected_at", "detected_at"),
)

ingest_health = Table(
    "ingest_health",
    metadata,
    Column("health_ts", BigInteger, primary_key=True, autoincrement=False),
    _ms("last_success_snapshot_ts"),
    Column("snapshot_status", Text),
    Column("coverage_pct", Float),
    Column("health_state", Text),
    Column("health_reason", Text),
    Column("latched", Boolean),
    Column("clean_streak", Integer),
    Column("error", Text),
    _ms("created_at"),
    *_pct_check("ingest_health", "coverage_pct"),
    *_nonneg_check("ingest_health", "clean_streak"),
)

signals = Table(
    "signals",
    metadata,
    _ms("signal_ts", nullable=False),
    Column("asset", Text, nullable=False),
    Column("alignment_score", Float),
    Column("dispersion_index", Float),
    Column("exit_cluster_score", Float),
    Column("alignment_trend", Text),
    Column("allowed_playbook", Text),
    Column("risk_mode", Text),
    Column("add_exposure", Boolean),
    Column("tighten_stops", Boolean),
    Column("wallet_count", Integer),
    Column("expected_count", Integer),
    Column("missing_count", Integer),
    Column("dirty_count", Integer),
    Column("dirty_rate_pct", Float),
    Column("snapshot_slots", Integer),
    Column("is_degraded", Boolean, nullable=False, server_default=false()),
    Column("degraded_reason", Text),
    Column("health_state", Text),
    _ms("computation_ms"),
    _ms("created_at"),
    PrimaryKeyConstraint("signal_ts", "asset"),
    *_pct_check("signals", "alignment_score", "dispersion_index", "exit_cluster_score"),
    *_nonneg_check("signals", "wallet_count", "expected_count", "missing_count", "dirty_count"),
    CheckConstraint("snapshot_slots BETWEEN 0 AND 5", name="ck_signals_snapshot_slots_range"),
    CheckConstraint(
        "(is_degraded AND degraded_reason IS NOT NULL) OR (NOT is_degraded AND degraded_reason IS NULL)",
        name="ck_signals_degraded_reason_iff_degraded",
    ),
)

signal_contributors = Table(
    "signal_contributors",
    metadata,
    _ms("signal_ts", nullable=False),
    Column("asset", Text, nullable=False),
    Column("pct_add_long", Float),
    Column("pct_add_short", Float),
    Column("pct_reducers", Float),
    Column("pct_flat", Float),
    Column("count_add_long", Integer),
    Column("count_add_short", Integer),
    Column("count_reducers", Integer),
    Column("count_flat", Integer),
    Column("total_wallets", Integer),
    PrimaryKeyConstraint("signal_ts", "asset"),
    *_pct_check("signal_contributors", "pct_add_long", "pct_add_short", "pct_reducers", "pct_flat"),
    # Rows are written only when N_total > 0 (monitor §4.5), so rounded shares sum to ~100.
    CheckConstraint(
        "pct_add_long + pct_add_short + pct_reducers + pct_flat BETWEEN 99 AND 101",
        name="ck_signal_contributors_pct_sum",
    ),
    *_nonneg_check(
        "signal_contributors", "count_add_long", "count_add_short", "count_reducers", "count_flat"
    ),
)

asset_positioning = Table(
    "asset_positioning",
    metadata,
    _ms("signal_ts", nullable=False),
    Column("asset", Text, nullable=False),
    Column("net_szi", quantity()),
    Column("long_count", Integer),
    Column("short_count", Integer),
    Column("flat_count", Integer),
    Column("long_pct", Float),
    Column("short_pct", Float),
    Column("flat_pct", Float),
    Column("top10_share_pct", Float),
    PrimaryKeyConstraint("signal_ts", "asset"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _ms("alert_ts", nullable=False),
    _ms("signal_ts"),  # NULL for system alerts
    Column("asset", Text),  # NULL for system alerts
    Column("alert_type", Text, nullable=False),
    Column("severity", Text),
    Column("message", Text),
    Column("signal_snapshot", Text),  # canonical JSON
    _ms("cooldown_until"),
    Column("suppressed", Boolean, nullable=False, server_default=false()),
    Column("suppressed_reason", Text),
    _ms("created_at"),
    # Dedup; NULLs are distinct, so system alerts get one row per activation.
    UniqueConstraint("asset", "alert_type", "signal_ts", name="uq_alerts_asset_type_signal_ts"),
    CheckConstraint(
        "(suppressed AND suppressed_reason IS NOT NULL) OR (NOT suppressed AND suppressed_reason IS NULL)",
        name="ck_alerts_suppressed_reason_iff_suppressed",
    ),
    # The daily cap counts an asset's recent alerts; retention deletes by age.
    Index("ix_alerts_asset_alert_ts", "asset", "alert_ts"),
    Index("ix_alerts_alert_ts", "alert_ts"),
)

alert_state = Table(
    "alert_state",
    metadata,
    Column("asset", Text, nullable=False),
    Column("alert_type", Text, nullable=False),
    Column("is_active", Boolean, nullable=False, server_default=false()),
    _ms("last_triggered_ts"),
    _ms("cooldown_until"),
    Column("daily_count", Integer, nullable=False, server_default="0"),
    _ms("daily_window_start"),
    Column("confirmed_playbook", Text),
    Column("pending_playbook", Text),
    Column("pending_periods", Integer, nullable=False, server_default="0"),
    _ms("last_signal_ts"),
    _ms("updated_at"),
    PrimaryKeyConstraint("asset", "alert_type"),
    *_nonneg_check("alert_state", "daily_count", "pending_periods"),
)

ops_events = Table(
    "ops_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _ms("ts", nullable=False),
    Column("command", Text, nullable=False),
    Column("operator", Text),
    Column("reason", Text),
    Column("before", Text),  # canonical JSON
    Column("after", Text),  # canonical JSON
    Index("ix_ops_events_ts", "ts"),
)

# --------------------------------------------------------------------------------------------------
# Engine (hlcore's own state; not in the runbooks)
# --------------------------------------------------------------------------------------------------

machine_states = Table(
    "machine_states",
    metadata,
    Column("machine", Text, nullable=False),
    Column("instance", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("reason", Text),
    _ms("since_ms", nullable=False),
    Column("vars", Text, nullable=False, server_default="{}"),  # canonical JSON
    _ms("updated_at_ms"),
    PrimaryKeyConstraint("machine", "instance"),
)

engine_tallies = Table(
    "engine_tallies",
    metadata,
    # A surrogate key: two observations of one tally may share a millisecond.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("instance", Text, nullable=False),
    _ms("ts_ms", nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_engine_tallies_name_instance_ts", "name", "instance", "ts_ms"),
)

COPYTRADER_TABLES: tuple[str, ...] = (
    "system_state",
    "processed_txs",
    "ingested_fills",
    "ingest_skips",
    "order_intents",
    "order_results",
    "audit_log",
    "reconcile_runs",
    "baseline_snapshots",
    "baseline_positions",
)
MONITOR_TABLES: tuple[str, ...] = (
    "system_state",
    "wallet_universe_current",
    "wallet_universe_runs",
    "wallet_universe_members",
    "wallet_snapshots",
    "snapshot_anomalies",
    "ingest_runs",
    "ingest_health",
    "signals",
    "signal_contributors",
    "asset_positioning",
    "alerts",
    "alert_state",
    "ops_events",
)
ENGINE_TABLES: tuple[str, ...] = ("machine_states", "engine_tallies")
