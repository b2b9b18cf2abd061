"""Opening the database: one engine per URL, SQLite pragmas, the schema-version check, error mapping.

Owns the connection side of storage (spec/copytrader.md §6, spec/monitor.md §6): SQLite is the
embedded default (WAL, busy timeout, synchronous=FULL, foreign keys on) and PostgreSQL is supported
with the same semantics. Every driver failure leaves here as `StorageUnavailable`, so the engine can
turn "the database is unreadable" into a fact and fail safe instead of crashing on a raw driver
error. Constraint violations (`IntegrityError`) are not storage failures: they pass through, because
callers use them deliberately (dedup, insert-or-ignore) or they reveal a bug.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect, literal_column, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from hlcore.config.hashing import redact_url
from hlcore.errors import BadInput, HlcoreError
from hlcore.storage.runbook_columns import add_runbook_columns
from hlcore.storage.schema import DB_IDENTITY_KEY, SCHEMA_VERSION, SCHEMA_VERSION_KEY, metadata, system_state

SchemaStatus = Literal["ok", "missing", "incomplete", "mismatch"]

SUPPORTED_BACKENDS = ("sqlite", "postgresql")


class StorageUnavailable(HlcoreError):
    """The database could not be opened, read or written; `cause` is the driver's exception.

    Raised instead of SQLAlchemy's OperationalError/DatabaseError so callers catch one hlcore type
    and report it as a fact (unknown or unreadable storage means the safe state, DESIGN §2.6).
    """

    def __init__(self, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.cause = cause


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Re-raise driver failures inside the block as `StorageUnavailable` naming `what` was tried."""
    try:
        yield
    except IntegrityError:
        raise
    except DBAPIError as exc:
        detail = exc.orig if exc.orig is not None else exc
        raise StorageUnavailable(f"storage unavailable while {what}: {detail}", exc) from exc


class Database:
    """An opened database: the engine plus schema checks and transactions.

    Build it with `open_database`; repositories in `hlcore.storage.repos` take one.
    """

    def __init__(self, engine: Engine):
        self.engine = engine

    @property
    def dialect_name(self) -> str:
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with storage_errors("running a transaction"), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def begin_or_join(self, conn: Connection | None = None) -> Iterator[Connection]:
        """Reuse the caller's transaction if given, else open one; lets repos join a larger unit."""
        if conn is not None:
            with storage_errors("using a transaction"):
                yield conn
        else:
            with self.transaction() as own:
                yield own

    def create_schema(self, now_ms: int | None = None, identity: str | None = None) -> None:
        """Create missing tables and record `schema_version` and the database identity if absent
        (never migrates). One transaction on SQLite too: pysqlite would otherwise autocommit each
        CREATE TABLE, and a crash between them leaves a half-made file (issue 10)."""
        with self.transaction() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("SAVEPOINT hlcore_create_schema")  # opens the transaction for DDL
            metadata.create_all(conn, checkfirst=True)
            for table in metadata.sorted_tables:  # a table made before they existed gets them too
                add_runbook_columns(conn, table)
            stored = dict(conn.execute(
                select(system_state.c["key"], system_state.c.value)
                .where(system_state.c["key"].in_([SCHEMA_VERSION_KEY, DB_IDENTITY_KEY]))
            ).all())
            if SCHEMA_VERSION_KEY not in stored:
                conn.execute(system_state.insert().values(
                    key=SCHEMA_VERSION_KEY, value=str(SCHEMA_VERSION), updated_at_ms=now_ms))
            if DB_IDENTITY_KEY not in stored:
                conn.execute(system_state.insert().values(
                    key=DB_IDENTITY_KEY, value=identity or new_identity(now_ms), updated_at_ms=now_ms))
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("RELEASE hlcore_create_schema")

    def identity(self) -> str | None:
        """The `db_identity` of this database (None: a database made before identities existed)."""
        if system_state.name not in self._existing_tables():
            return None
        with storage_errors("reading the database identity"), self.engine.connect() as conn:
            return conn.execute(
                select(system_state.c.value).where(system_state.c["key"] == DB_IDENTITY_KEY)
            ).scalar_one_or_none()

    def adopt_identity(self, now_ms: int) -> str:
        """The identity, written now if this database predates identities (first boot after upgrade)."""
        with self.transaction() as conn:
            current = conn.execute(
                select(system_state.c.value).where(system_state.c["key"] == DB_IDENTITY_KEY)
            ).scalar_one_or_none()
            if current is not None:
                return str(current)
            value = new_identity(now_ms)
            conn.execute(system_state.insert().values(key=DB_IDENTITY_KEY, value=value, updated_at_ms=now_ms))
            return value

    def _existing_tables(self) -> set[str]:
        with storage_errors("listing tables"), self.engine.connect() as conn:
            return set(inspect(conn).get_table_names())

    def tables_exist(self) -> bool:
        """True when every table of the schema exists."""
        return set(metadata.tables) <= self._existing_tables()

    def stored_schema_version(self) -> str | None:
        """The `schema_version` recorded in `system_state`, or None if the table or key is absent."""
        if system_state.name not in self._existing_tables():
            return None
        with storage_errors("reading the schema version"), self.engine.connect() as conn:
            return conn.execute(
                select(system_state.c.value).where(system_state.c["key"] == SCHEMA_VERSION_KEY)
            ).scalar_one_or_none()

    def schema_status(self) -> SchemaStatus:
        """Compare the database with this code's schema, for the start-up check.

        "missing": no hlcore table yet (run create_schema); "ok": every table and this version;
        "incomplete": a first boot that died while creating it (some of our tables, no version,
        not one row anywhere), safe to re-initialise; "mismatch": anything else (another version,
        or tables with rows but no version), which must stop live use since there is no silent
        migration (copy-trader §6).
        """
        existing = self._existing_tables()
        ours = set(metadata.tables)
        if not existing & ours:
            return "missing"
        version = self.stored_schema_version()
        if version is None and self._all_empty(existing & ours):
            return "incomplete"
        if not ours <= existing:
            return "mismatch"
        return "ok" if version == str(SCHEMA_VERSION) else "mismatch"

    def _all_empty(self, tables: set[str]) -> bool:
        with storage_errors("counting rows"), self.engine.connect() as conn:
            return all(conn.execute(select(literal_column("1")).select_from(metadata.tables[name]).limit(1)).first()
                       is None for name in sorted(tables))

    def dispose(self) -> None:
        """Close pooled connections (for SQLite files: release the file)."""
        self.engine.dispose()


def _sqlite_pragmas(engine: Engine, *, busy_timeout_ms: int, wal: bool) -> None:
    """Set the durability pragmas on every new connection: they are per-connection in SQLite."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if wal:
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()


def open_database(url: str, *, busy_timeout_ms: int = 5000) -> Database:
    """Open `sqlite:///path`, `sqlite://` (in memory) or `postgresql+psycopg://…`.

    Connecting is lazy: an unreachable database raises `StorageUnavailable` on first use.
    An in-memory SQLite keeps a single connection (StaticPool), or each checkout would see an
    empty database; replay relies on that.
    """
    try:
        parsed = driver_url(url)
    except ArgumentError as exc:
        raise BadInput(f"invalid database URL {redact_url(url)!r}: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise BadInput(
            f"unsupported database backend {backend!r}; use one of {', '.join(SUPPORTED_BACKENDS)}"
        )
    try:
        if backend == "sqlite":
            in_memory = parsed.database in (None, "", ":memory:")
            if in_memory:
                engine = create_engine(
                    parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
                )
            else:
                engine = create_engine(parsed)
            _sqlite_pragmas(engine, busy_timeout_ms=busy_timeout_ms, wal=not in_memory)
        else:
            engine = create_engine(parsed, pool_pre_ping=True)
    except (ImportError, NoSuchModuleError) as exc:  # the environment, not the database: bad input
        raise driver_missing(parsed.drivername, exc) from None
    return Database(engine)


def driver_missing(drivername: str, exc: BaseException) -> BadInput:
    """The one-line bad input for a database driver that is not installed (or unknown)."""
    package = DRIVER_PACKAGES.get(drivername, drivername)
    return BadInput(f"db_url: database driver missing or unknown: {drivername} needs {package} ({exc}); "
                    f"install it with: pip install 'hlcore[postgres]'")


DRIVER_PACKAGES = {"postgresql+psycopg": "psycopg (psycopg 3)", "postgresql+psycopg2": "psycopg2"}
"""The pip package behind each driver name, for the one-line "driver missing" error."""


def driver_url(url: str) -> URL:
    """`url` parsed, with a bare `postgresql://` meaning psycopg 3 (the driver `hlcore[postgres]`
    installs) rather than SQLAlchemy's psycopg2 default."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def new_identity(now_ms: int | None) -> str:
    """A database identity: its creation time plus a random part, so two databases created in the
    same millisecond still differ (an identity, not a chance decision: it never reaches a journal)."""
    return f"{now_ms if now_ms is not None else 0}-{uuid.uuid4().hex}"


def create_sqlite_file(path: Path, now_ms: int) -> None:
    """Build a new SQLite database beside `path` and link it into place only when complete.

    A kill at any point leaves either no database at `path` or a whole one (plus a stray
    `.creating` file that the next attempt removes), never a half-made one. Refuses (FileExistsError)
    if a database appeared at `path` meanwhile: a first boot never overwrites anything.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
    for stale in path.parent.glob(f".{path.name}.creating-*"):
        with contextlib.suppress(OSError):
            stale.unlink()
    db = open_database(f"sqlite:///{tmp}")
    try:
        db.create_schema(now_ms)
        with db.engine.connect() as conn:  # fold the WAL into the file before it is linked into place
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.exec_driver_sql("PRAGMA journal_mode = DELETE")
    finally:
        db.dispose()
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # atomic, and fails rather than overwrite
    finally:
        tmp.unlink()
        for suffix in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):
                Path(f"{tmp}{suffix}").unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def sqlite_url(path: str | Path) -> str:
    """The SQLite URL of a file path, creating its parent folder so the first connect can succeed."""
    p = Path(path).expanduser().resolve()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"db_path: cannot create the database folder {p.parent}: "
                       f"{exc.strerror or exc}; point db_path at a writable place") from None
    return f"sqlite:///{p}"


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    keep: Sequence[str] = (),
) -> None:
    """Insert rows, or update them where `keys` already exist, on SQLite and PostgreSQL alike.

    Columns in `keep` are written on insert but left alone on update (e.g. `created_at_ms`).
    Every row must carry the same columns.
    """
    if not rows:
        return
    dialect = conn.dialect.name
    update = tuple(c for c in rows[0] if c not in keys and c not in keep)
    stmt = _conflict_statement(dialect, table, tuple(keys), update, returning=False)
    conn.execute(stmt, [dict(r) for r in rows])


def insert_ignore(conn: Connection, table: Any, row: Mapping[str, Any], keys: Sequence[str]) -> bool:
    """Insert `row` unless a row with the same `keys` exists (dedup, exactly-once writes); True if
    it was inserted. SQLite and PostgreSQL only, like `upsert`."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # psycopg 3 reports rowcount -1 for this statement here: RETURNING says whether a row went in
        stmt = _conflict_statement(dialect, table, tuple(keys), (), returning=True)
        return conn.execute(stmt, dict(row)).first() is not None
    return conn.execute(_conflict_statement(dialect, table, tuple(keys), (), returning=False), dict(row)).rowcount == 1


_CONFLICT_STATEMENTS: dict[tuple[str, int, tuple[str, ...], tuple[str, ...], bool], Any] = {}


def _conflict_statement(dialect: str, table: Table, keys: tuple[str, ...], update: tuple[str, ...],
                        returning: bool) -> Any:
    """The INSERT … ON CONFLICT statement of (dialect, table, keys, updated columns), built once:
    building it costs more than running it (issue 12: copy-trade latency); the values are bound
    at execution, so one statement serves every row."""
    cache_key = (dialect, id(table), keys, update, returning)  # the statement keeps the table alive
    stmt = _CONFLICT_STATEMENTS.get(cache_key)
    if stmt is not None:
        return stmt
    if dialect == "sqlite":
        stmt = sqlite.insert(table)
    elif dialect == "postgresql":
        stmt = postgresql.insert(table)
    else:  # open_database refuses other backends; this guards hand-built engines
        raise BadInput(f"upsert and insert-or-ignore are not supported on {dialect!r}")
    if update:
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in update})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    if returning:
        stmt = stmt.returning(literal_column("1"))
    _CONFLICT_STATEMENTS[cache_key] = stmt
    return stmt


def open_read_only(url: str, *, busy_timeout_ms: int = 5000) -> Database:
    """Open a database for readers that must never write (the dashboard): SQLite files in
    `mode=ro` (a missing file is unreadable, never created), PostgreSQL sessions read-only."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise BadInput(f"invalid database URL {url!r}: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise BadInput(f"unsupported database backend {backend!r}; use one of {', '.join(SUPPORTED_BACKENDS)}")
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            return open_database(url, busy_timeout_ms=busy_timeout_ms)
        path = Path(parsed.database).expanduser().resolve()
        engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")

        return Database(engine)
    try:
        engine = create_engine(parsed, pool_pre_ping=True,
                               connect_args={"options": "-c default_transaction_read_only=on"})
    except ImportError as exc:
        raise StorageUnavailable(f"database driver for {parsed.drivername!r} is not installed: {exc}", exc) from exc
    return Database(engine)
