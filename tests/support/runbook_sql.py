"""The SQL statements of the user's runbooks (shared/seeds/*.md), extracted as written.

Every `psql -d NAME -c "…"` and `sqlite3 <db_path> "…"` is one statement; a quote left open at
the end of its code block (or line, in prose) is reported as unterminated (a runbook bug) rather
than swallowing what follows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^\s*```[^\n]*\n(.*?)^\s*```", re.S | re.M)
_COMMAND = re.compile(r'(psql -d (?P<db>\S+) -c|sqlite3 (?P<path><db_path>)) "')


@dataclass(frozen=True)
class Statement:
    """One runbook statement: where it is, which client runs it, and its SQL (None: unterminated)."""

    file: str
    line: int
    client: str  # "psql" or "sqlite3"
    database: str  # the psql -d name, or "<db_path>"
    sql: str | None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def statements(folder: Path) -> list[Statement]:
    """Every runbook statement of every seed under `folder`, in file and line order. A command in a
    fenced block may span lines up to the block's end; one in prose ends with its line."""
    found: list[Statement] = []
    for path in sorted(folder.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        fences = [(m.start(1), m.end(1)) for m in _FENCE.finditer(text)]
        for cmd in _COMMAND.finditer(text):
            limit = next((end for start, end in fences if start <= cmd.start() < end), None)
            if limit is None:
                newline = text.find("\n", cmd.end())
                limit = len(text) if newline < 0 else newline
            close = text.find('"', cmd.end(), limit)
            sql = text[cmd.end():close].strip() if close >= 0 else None
            line = text.count("\n", 0, cmd.start()) + 1
            client = "psql" if cmd.group("db") else "sqlite3"
            found.append(Statement(path.name, line, client, cmd.group("db") or "<db_path>", sql))
    return found
