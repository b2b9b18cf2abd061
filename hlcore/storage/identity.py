"""Is the database still the one this process booted on? Checked at every tick (issue 10).

SQLite keeps writing into a file that was deleted or renamed away while a connection holds it
open, so a process whose database vanished would go on trading into an orphan, and the next start
would boot an empty database with the cursor at now. The (device, inode) of the resolved path and
the `db_identity` row written at creation catch a deleted, replaced or restored-over database; the
stored `schema_version` catches a re-versioned one. The policy turns the answer into HALT.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from hlcore.storage.db import Database, storage_errors
from hlcore.storage.schema import DB_IDENTITY_KEY, SCHEMA_VERSION, SCHEMA_VERSION_KEY, system_state

FileId = tuple[int, int]


def _file_id(path: Path) -> FileId | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


_IDENTITY_KEYS = select(system_state.c["key"], system_state.c.value).where(
    system_state.c["key"].in_([SCHEMA_VERSION_KEY, DB_IDENTITY_KEY]))
"""Read before every order (issue 10), so built once (issue 12: building costs more than running)."""


@dataclass(frozen=True)
class BootIdentity:
    """What the process saw at boot: the SQLite file (None for PostgreSQL / in memory) and the
    identity row."""

    path: Path | None
    file_id: FileId | None
    identity: str | None

    @classmethod
    def of(cls, db: Database) -> BootIdentity:
        name = db.engine.url.database if db.dialect_name == "sqlite" else None
        path = Path(name).resolve() if name and name != ":memory:" else None
        return cls(path, _file_id(path) if path else None, db.identity())

    def check(self, db: Database) -> dict[str, str]:
        """The `storage_checked` fact's fields; one stat and one read. A read that fails raises
        StorageUnavailable (the storage_failed path), never a wrong answer."""
        if self.path is not None:
            now = _file_id(self.path)
            if now is None:
                return {"identity": "missing", "schema_status": "unknown"}
            if now != self.file_id:
                return {"identity": "replaced", "schema_status": "unknown"}
        with storage_errors("checking the database identity"), db.engine.connect() as conn:
            stored = dict(conn.execute(_IDENTITY_KEYS).all())
        identity = stored.get(DB_IDENTITY_KEY)
        if identity is None:
            return {"identity": "missing", "schema_status": "unknown"}
        if identity != self.identity:
            return {"identity": "replaced", "schema_status": "unknown"}
        return {"identity": "ok",
                "schema_status": "ok" if stored.get(SCHEMA_VERSION_KEY) == str(SCHEMA_VERSION) else "mismatch"}
