"""Schema migrations: each step upgrades a database in place by one `schema_version`, with
Alembic's operations (`alembic.operations.Operations`), on SQLite and PostgreSQL alike.

hlcore never migrates silently: a start on an older version still HALTs with
SCHEMA_VERSION_MISMATCH, and only `hlcore ops migrate` (backup first) runs these steps. The
version stays where it always was, `system_state.schema_version` (no `alembic_version` table):
the start-up check, `ops status` and the runbooks read it there. Steps run in one transaction, so
a failed migration leaves the database as it was (PostgreSQL DDL is transactional; on SQLite the
steps are ALTER TABLE ADD COLUMN, also transactional).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import BigInteger, Connection, Integer, inspect, update

from hlcore.storage.db import Database
from hlcore.storage.runbook_columns import add_runbook_columns
from hlcore.storage.schema import (
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    ingest_skips,
    ingested_fills,
    metadata,
    order_intents,
    order_results,
    system_state,
)


@dataclass(frozen=True)
class Step:
    """One migration: from `version` to `version + 1`, described for `--dry-run`."""

    version: int
    summary: str
    apply: Callable[[Operations, Connection], None]


def _v4_to_v5(op: Operations, conn: Connection) -> None:
    if conn.dialect.name == "postgresql":  # SQLite's INTEGER is already 64-bit
        op.alter_column("processed_txs", "event_index", type_=BigInteger(), existing_type=Integer(),
                        existing_nullable=False)
    # tables and indexes this release added (ingest_skips, issue 11; order_results by update time, issue 12)
    metadata.create_all(conn, tables=[ingest_skips], checkfirst=True)
    for table in (order_results, ingested_fills, order_intents):  # lookups that must not scan (issue 12)
        existing = {ix["name"] for ix in inspect(conn).get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in existing:
                index.create(conn)
    for table in metadata.sorted_tables:
        add_runbook_columns(conn, table)


STEPS: tuple[Step, ...] = (
    Step(4, "processed_txs.event_index BIGINT (PostgreSQL); table ingest_skips; index on "
            "order_results.updated_at_ms, ingested_fills.tx_hash and order_intents.event_key; "
            "the runbooks' generated columns (timestamp, wallet_success_count, wallet_fail_count, "
            "last_triggered)", _v4_to_v5),
)


class MigrationError(Exception):
    """The database's version has no path to this code's version."""


def plan(stored: str | None) -> list[Step]:
    """The steps from `stored` to SCHEMA_VERSION ([] when already there); MigrationError if none."""
    if stored is None or not stored.isdigit():
        raise MigrationError(f"schema_version {stored!r} is not a version hlcore can migrate from")
    version = int(stored)
    if version > SCHEMA_VERSION:
        raise MigrationError(f"schema_version {version} is newer than this code ({SCHEMA_VERSION}); "
                             "upgrade hlcore instead")
    steps = {s.version: s for s in STEPS}
    out = []
    while version < SCHEMA_VERSION:
        if version not in steps:
            raise MigrationError(f"no migration from schema_version {version} (oldest supported: "
                                 f"{min(steps)}); restore from a backup or rebuild")
        out.append(steps[version])
        version += 1
    return out


def migrate(db: Database, steps: list[Step], now_ms: int) -> None:
    """Apply `steps` and record the new `schema_version`, all in one transaction."""
    with db.transaction() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.exec_driver_sql("SAVEPOINT hlcore_migrate")  # pysqlite would autocommit each DDL
        op = Operations(MigrationContext.configure(conn))
        for step in steps:
            step.apply(op, conn)
        conn.execute(update(system_state).where(system_state.c["key"] == SCHEMA_VERSION_KEY)
                     .values(value=str(SCHEMA_VERSION), updated_at_ms=now_ms))
        if sqlite:
            conn.exec_driver_sql("RELEASE hlcore_migrate")
