"""A drill run's fresh SQLite database: a copy of one template file per process (the schema
created once) instead of creating every table per run. The copy then reads as `create_schema`
would have left it: only `schema_version`'s `updated_at_ms` is per run."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.engine import make_url

from hlcore.storage.db import Database, new_identity, open_database
from hlcore.storage.schema import DB_IDENTITY_KEY, SCHEMA_VERSION_KEY, system_state

_TEMPLATE: list[Path] = []  # the process's template file, made on first use


def _template(scratch: str | None) -> Path:
    if not _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="hlcore-template-", dir=scratch))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "template.db"
        db = open_database(f"sqlite:///{path}")
        db.create_schema(0)
        db.dispose()  # checkpoints the WAL into the file before it is copied
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


def fresh_database(url: str, now_ms: int, scratch: str | None) -> Database:
    """`open_database(url)` with the schema created at `now_ms`; a new SQLite file is a template copy."""
    parsed = make_url(url)
    target = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if not target or target == ":memory:" or Path(target).exists():
        db = open_database(url)
        db.create_schema(now_ms)
        return db
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template(scratch), target)
    db = open_database(url)
    with db.transaction() as conn:
        conn.execute(update(system_state).where(system_state.c["key"] == SCHEMA_VERSION_KEY)
                     .values(updated_at_ms=now_ms))
        conn.execute(update(system_state).where(system_state.c["key"] == DB_IDENTITY_KEY)
                     .values(value=new_identity(now_ms), updated_at_ms=now_ms))  # each run its own database
    return db
