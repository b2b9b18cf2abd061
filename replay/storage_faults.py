"""Storage faults for drills, injected at the database driver like HTTP faults at the transport:
`down` (every statement fails as SQLite does when the disk or lock is gone) and `kill` triggers
(the process dies at a commit that wrote a given table: `before` it lands, or right `after`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from replay.transport import ProcessKilled

_WRITE = re.compile(r"^\s*(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+\"?(\w+)", re.I)


@dataclass
class Kill:
    table: str
    when: str  # before | after


@dataclass
class StorageFaults:
    down: bool = False
    kills: list[Kill] = field(default_factory=list)
    _written: set[str] = field(default_factory=set)
    _armed_after: bool = False
    _engines: list[Any] = field(default_factory=list)

    def attach(self, db: Any) -> None:
        engine = db.engine
        event.listen(engine, "before_cursor_execute", self._before_execute)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)
        self._engines.append(engine)

    def detach(self, db: Any) -> None:
        engine = db.engine
        if engine in self._engines:
            event.remove(engine, "before_cursor_execute", self._before_execute)
            event.remove(engine, "commit", self._commit)
            event.remove(engine, "rollback", self._rollback)
            self._engines.remove(engine)
        self._written.clear()
        self._armed_after = False

    def _before_execute(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                        executemany: bool) -> None:
        if self._armed_after:
            self._armed_after = False
            raise ProcessKilled("killed just after a commit")
        if self.down:
            raise OperationalError(statement[:60], parameters, Exception("disk I/O error (scripted storage outage)"))
        match = _WRITE.match(statement)
        if match:
            self._written.add(match.group(1).lower())

    def _commit(self, conn: Any) -> None:
        written, self._written = self._written, set()
        for kill in list(self.kills):
            if kill.table in written:
                self.kills.remove(kill)
                if kill.when == "before":
                    raise ProcessKilled(f"killed at the commit of {kill.table}")
                self._armed_after = True

    def _rollback(self, conn: Any) -> None:
        self._written.clear()
