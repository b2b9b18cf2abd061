"""The runbooks' own queries run verbatim (issue 15): every `psql` statement of the seeds through the
real `psql` client against a PostgreSQL database named as the runbook names it (`hyperliquid`),
every `sqlite3 <db_path>` one through the `sqlite3` client against a SQLite file, both databases
written by drills. Zero errors, apart from the runbook bugs listed here and in docs/decisions.md."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from replay.runner import replay
from tests.support import pg
from tests.support.runbook_sql import Statement, statements

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT.parent / "shared" / "seeds"
if not SEEDS.is_dir():  # CI lays shared/ beside the clone; a worktree has it two levels up
    SEEDS = Path("/work/shared/seeds")

# Statements wrong in the runbook itself: they fail on any schema (docs/decisions.md, issue 15).
RUNBOOK_BUGS = {
    "dashboard_runbooks.md:861": "each UNION ALL branch has its own ORDER BY … LIMIT without parentheses: "
                                 "a syntax error in PostgreSQL whatever the schema",
}
MONITOR_DRILL = "dashboard_degraded_view"  # fills ingest_runs, wallet_snapshots, signals, alerts, universe
COPYTRADER_DRILL = "crash_resume_exactly_once"  # audit_log, order_intents, order_results, system_state


def _run(statement: Statement, env: dict[str, str], db_path: Path, pid: int) -> subprocess.CompletedProcess[str]:
    assert statement.sql is not None
    if statement.client == "psql":
        sql = statement.sql.replace("<pid>", str(pid))
        argv = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", statement.database, "-c", sql]
    else:
        argv = ["sqlite3", "-bail", str(db_path), statement.sql]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_every_runbook_statement_runs_verbatim(pg_server: str, tmp_path: Path) -> None:
    assert shutil.which("psql") and shutil.which("sqlite3"), "the psql and sqlite3 clients run the runbooks"
    found = statements(SEEDS)
    assert len(found) == 51 and sum(s.client == "psql" for s in found) == 37  # the seeds as read
    assert [s.where for s in found if s.sql is None] == []
    databases = {s.database for s in found if s.client == "psql"}
    assert databases == {"hyperliquid"}
    url = pg.create_database(pg_server, "hyperliquid")
    assert replay(ROOT / "fixtures" / MONITOR_DRILL, database=url).verdict == "pass"
    db_path = tmp_path / "hlcore.db"
    assert replay(ROOT / "fixtures" / COPYTRADER_DRILL, database=f"sqlite:///{db_path}").verdict == "pass"
    parsed = make_url(url)
    env = {**os.environ, "PGHOST": str(parsed.host), "PGPORT": str(parsed.port), "PGUSER": str(parsed.username)}
    with psycopg.connect(parsed.set(drivername="postgresql").render_as_string(hide_password=False)) as victim:
        pid = int(victim.info.backend_pid)  # what `pg_terminate_backend(<pid>)` is given: a spare session
        results = {s.where: _run(s, env, db_path, pid) for s in found}
    failed = {where: r.stderr.strip().splitlines()[0] for where, r in results.items() if r.returncode != 0}
    assert {w: e for w, e in failed.items() if w not in RUNBOOK_BUGS} == {}
    assert sorted(failed) == sorted(RUNBOOK_BUGS)  # a listed bug that stops failing must leave the list
    rows = [line for line in results["dashboard_runbooks.md:79"].stdout.splitlines() if "|" in line]
    assert len(rows) == 1 + 5  # header + the five latest ingest runs the drill wrote, with their timestamps
    assert results["copytrader_runbook.md:77"].stdout.strip() not in ("", "0")  # audit rows were written
