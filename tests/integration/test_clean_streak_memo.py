"""The health meter keeps the last clean streak it counted and extends it by the next minute's run
(issue 12: not re-read from its start at every evaluation). Whatever runs arrive (clean or not,
minutes skipped), whatever instants are evaluated (repeated, later, earlier) and however many of
the oldest runs retention deletes, the kept count must equal a fresh meter's full count."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from hlcore.config.settings import Settings
from hlcore.jobs.monitor.health import HealthMeter
from hlcore.policy.model import Policy
from hlcore.storage.db import open_database
from hlcore.storage.monitor import IngestRun, IngestRuns
from hlcore.storage.schema import ingest_runs

M = 60_000

STEP = st.one_of(
    st.tuples(st.just("run"), st.integers(1, 2), st.sampled_from(["success", "partial"]),
              st.sampled_from([100.0, 50.0])),
    st.tuples(st.just("prune"), st.integers(1, 4)),
    st.tuples(st.just("look"), st.integers(0, 3)),
)


def _run(ts: int, status: str, nonnull: float) -> IngestRun:
    return IngestRun(run_id=f"r{ts}", snapshot_ts=ts, status=status, wallets_expected=1, wallets_succeeded=1,
                     wallets_failed=0, rows_expected=3, rows_written=3, coverage_pct=100.0,
                     nonnull_pct={"BTC": nonnull, "ETH": 100.0, "HYPE": 100.0})


@settings(max_examples=120, deadline=None, derandomize=True, database=None)
@given(st.lists(STEP, min_size=1, max_size=60))
def test_kept_streak_equals_a_full_count(default_policy: Policy, default_settings: Settings,
                                         steps: list[tuple[Any, ...]]) -> None:
    db = open_database("sqlite://")
    db.create_schema(0)
    runs = IngestRuns(db)
    meter = HealthMeter(db, default_policy, default_settings)
    ts = 0
    for step in steps:
        if step[0] == "run":
            ts += step[1] * M
            runs.insert(_run(ts, step[2], step[3]), ts)
        elif step[0] == "prune":
            with db.transaction() as c:
                c.execute(delete(ingest_runs).where(ingest_runs.c.snapshot_ts <= step[1] * M))
        at = ts - (step[1] * M if step[0] == "look" else 0)
        latest = runs.latest(at_or_before=at)
        expected = HealthMeter(db, default_policy, default_settings).clean_streak(latest)
        assert meter.clean_streak(latest) == expected, (step, at)
