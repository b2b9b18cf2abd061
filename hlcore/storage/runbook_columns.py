"""The columns the user's runbooks query by name, kept by the database beside hlcore's own.

The monitor's runbooks (shared/seeds/dashboard_runbooks.md) run `psql` statements such as
`WHERE timestamp > NOW() - INTERVAL '1 hour'` and read `wallet_success_count` and
`last_triggered`; hlcore stores epoch-millisecond integers under other names (`snapshot_ts`,
`wallets_succeeded`, `last_triggered_ts`), which keep journals byte-identical on both backends.
Rather than renaming columns under every repository, each runbook name is a generated column
computed from its source column by the database itself, so it can never disagree with it and no
repository writes it: TIMESTAMPTZ (`to_timestamp(ms / 1000.0)`, STORED) on PostgreSQL, ISO-8601 UTC
text (VIRTUAL) on SQLite; a renamed count is the same value under the runbook's name.

They are added right after each table is created and are not in the SQLAlchemy `Table`s, so
hlcore's own reads (`select(table)`), journals and rebuild copies never see them. The full mapping
is documented in docs/runbook_columns.md.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, event

from hlcore.storage.schema import metadata

# (table, runbook column, source column, kind): "time" = epoch ms shown as a timestamp, "same" = a rename.
RUNBOOK_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("ingest_runs", "timestamp", "snapshot_ts", "time"),
    ("ingest_runs", "wallet_success_count", "wallets_succeeded", "same"),
    ("ingest_runs", "wallet_fail_count", "wallets_failed", "same"),
    ("wallet_snapshots", "timestamp", "snapshot_ts", "time"),
    ("signals", "timestamp", "signal_ts", "time"),
    ("alerts", "timestamp", "alert_ts", "time"),
    ("alert_state", "last_triggered", "last_triggered_ts", "time"),
)


def column_ddl(table: Table, name: str, source: str, kind: str, dialect: str) -> str:
    """The `ALTER TABLE … ADD COLUMN … GENERATED` statement for one runbook column."""
    src = f'"{source}"'
    if dialect == "postgresql":
        if kind == "time":
            return (f'ALTER TABLE "{table.name}" ADD COLUMN "{name}" TIMESTAMPTZ '
                    f"GENERATED ALWAYS AS (to_timestamp({src} / 1000.0)) STORED")
        return f'ALTER TABLE "{table.name}" ADD COLUMN "{name}" INTEGER GENERATED ALWAYS AS ({src}) STORED'
    if kind == "time":  # SQLite can only add VIRTUAL generated columns to an existing table
        return (f'ALTER TABLE "{table.name}" ADD COLUMN "{name}" TEXT GENERATED ALWAYS AS '
                f"(strftime('%Y-%m-%dT%H:%M:%fZ', {src} / 1000.0, 'unixepoch')) VIRTUAL")
    return f'ALTER TABLE "{table.name}" ADD COLUMN "{name}" INTEGER GENERATED ALWAYS AS ({src}) VIRTUAL'


def add_runbook_columns(conn: Connection, table: Table) -> None:
    """Add the runbook columns of `table` that it lacks (idempotent: an upgrade adds them too)."""
    wanted = [c for c in RUNBOOK_COLUMNS if c[0] == table.name]
    if not wanted:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        have = {row[0] for row in conn.exec_driver_sql(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            f"AND table_name = '{table.name}'")}
    else:
        have = {row[1] for row in conn.exec_driver_sql(f'PRAGMA table_xinfo("{table.name}")')}
    for _table, name, source, kind in wanted:
        if name not in have:
            conn.exec_driver_sql(column_ddl(table, name, source, kind, dialect))


def _after_create(table: Table, conn: Connection, **_kw: Any) -> None:
    add_runbook_columns(conn, table)


for _name in sorted({c[0] for c in RUNBOOK_COLUMNS}):
    event.listen(metadata.tables[_name], "after_create", _after_create)
