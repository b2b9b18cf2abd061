"""Every drill under fixtures/ passes and replays byte-identically to its committed golden
journal (issue 12: once, not twice; `hlcore drill --write-golden` rewrites them); bad drill files
exit 2 with file:line; a drill whose outcome differs exits 1 naming the expectation (issue 5)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hlcore.diff.behaviour import _alert_counts, _final_states
from hlcore.workspace import open_workspace
from hlcore_cli import app
from replay.behaviour import golden_replayed, reduce_outcome
from replay.golden import first_difference, golden_path
from replay.runner import replay
from replay.suite import _cost_hint

ROOT = Path(__file__).resolve().parents[2]
DRILLS = sorted(p.parent for p in (ROOT / "fixtures").glob("*/drill.yaml"))
# The replay test's order: the longest drills first (the hint `hlcore drill -j N` uses), the long
# ones marked slow so xdist starts them before everything else (tests/conftest.py).
BY_COST = sorted(DRILLS, key=lambda d: -_cost_hint(d))
SLOW_COST = 40


# The "Runbook scenarios as drills" of both specs (copytrader §9: 21, monitor §9: 20), named as there.
SPEC_DRILLS = [
    "startup_bootstrap_safe", "missing_env_live", "schema_version_mismatch", "config_hash_changed", "gap_exceeded",
    "maintenance_skip_auto_recovery", "long_downtime_dry_run_restart", "backfill_overlap_dedup",
    "fresh_fill_not_replay", "restart_catchup_replay_close_only", "crash_resume_exactly_once",
    "fill_aggregation_split", "safety_gating_reduce_only", "retry_budget_exceeded_safe",
    "retry_budget_exceeded_halt", "rate_limit_cooldown", "reconcile_warn_safe", "reconcile_critical_halt",
    "reconcile_critical_auto_recovery", "manual_promote_guarded", "storage_unavailable_halt",
    "universe_refresh_success", "universe_refresh_failure_keeps_last_good", "churn_guard_three_strikes",
    "ingestion_partial_degraded", "ingestion_low_coverage_stale", "ingestion_stale_system_alert",
    "two_cycle_recovery", "health_boundaries", "signal_lock_stale", "dirty_snapshot_spike", "missing_data_forcing",
    "exit_cluster_hysteresis", "regime_change_two_periods", "alert_cooldown", "daily_cap", "dashboard_mask_stale",
    "dashboard_degraded_view", "database_unavailable", "manual_full_halt", "process_crash_restart",
]


def test_every_spec_scenario_has_a_drill_with_cassettes() -> None:
    assert len(SPEC_DRILLS) == 41 == len(set(SPEC_DRILLS))
    names = {d.name for d in DRILLS}
    assert sorted(set(SPEC_DRILLS) - names) == []
    for name in SPEC_DRILLS:
        cassettes = list((ROOT / "fixtures" / name / "cassettes").glob("*.yaml"))
        assert cassettes, f"{name} has no cassette"


# Drills of a SQLite-only operator command (docs/decisions.md, issue 15): on PostgreSQL that command
# refuses with this text instead (rebuild-db replaces the database file; there, pg_dump + migrate).
SQLITE_ONLY = {"schema_version_mismatch": "ops rebuild-db: SQLite only"}


@pytest.mark.parametrize("directory", [
    pytest.param(d, id=d.name, marks=[pytest.mark.slow] if _cost_hint(d) >= SLOW_COST else []) for d in BY_COST])
def test_drill_passes_matches_its_golden_journal_and_replays_identically_on_postgresql(
        directory: Path, pg_database: str) -> None:
    """Each drill passes on SQLite with the committed golden journal, and again on PostgreSQL (the
    worker's own database) with a byte-identical journal: backend parity and determinism at once."""
    first = replay(directory)
    assert first.failures == [] and first.verdict == "pass"
    golden = golden_path(directory)
    assert golden.is_file(), f"no {golden.name}: run `hlcore drill -k {directory.name} --write-golden`"
    difference = first_difference(golden.read_text(encoding="utf-8"), first.journal())
    assert difference is None, (f"{directory.name}: journal differs from {golden.name} (if intended: "
                                f"`hlcore drill -k {directory.name} --write-golden`, review the diff)\n{difference}")
    cassettes = [e for e in first.entries if e["kind"] == "cassettes"]
    assert cassettes and all(e["unplayed"] == 0 for e in cassettes), "every recorded interaction is played"
    # `hlcore diff` takes a vouched golden journal as the base side's replay: it must reduce to
    # exactly what the replay itself reduces to (lines, verdict, final states, alert counts).
    ws = open_workspace(None, None)  # what replay(directory) ran under, as `--write-golden` records it
    direct = reduce_outcome(first, (ws.policy.hash, ws.config_hash))
    read = golden_replayed(golden.read_text(encoding="utf-8"), ws.policy.hash, ws.config_hash, first.fixture_hash)
    assert read is not None and (read.drill, read.verdict, read.failures, read.lines) == \
        (direct.drill, direct.verdict, direct.failures, direct.lines)
    assert (_final_states(read.entries), _alert_counts(read.entries)) == \
        (_final_states(direct.entries), _alert_counts(direct.entries))
    on_postgresql = replay(directory, database=pg_database)
    if directory.name in SQLITE_ONLY:  # the step that does not apply must say so plainly, exit 2
        said = [e for e in on_postgresql.entries if e["kind"] == "operator" and e["exit"] == 2]
        assert said and SQLITE_ONLY[directory.name] in said[0]["output"][0], said
        return
    assert on_postgresql.failures == [] and on_postgresql.verdict == "pass"
    assert on_postgresql.journal() == first.journal()


def test_first_difference_names_the_line_and_both_sides() -> None:
    assert first_difference("a\nb\n", "a\nb\n") is None
    assert first_difference("a\nb\n", "a\nc\n") == "line 2 differs:\n  golden: b\n  replay: c"
    assert first_difference("a\n", "a\nz\n") == "line 2: only the replay has it (1 vs 2 lines):\n  replay: z"
    assert first_difference("a\n", "a") == "the journals differ in line endings or a final newline"


def test_write_golden_writes_each_drills_journal_and_leaves_the_fixture_hash(tmp_path: Path) -> None:
    target = tmp_path / "fixtures" / "gap_exceeded"
    shutil.copytree(ROOT / "fixtures" / "gap_exceeded", target)
    golden_path(target).unlink()
    before = replay(target)
    result = CliRunner().invoke(app, ["drill", "--fixtures", str(tmp_path / "fixtures"), "-j", "1",
                                      "--write-golden"])
    assert result.exit_code == 0, result.output
    assert "golden: 1 journals written, 1 changed" in result.stderr
    assert golden_path(target).read_text(encoding="utf-8") == before.journal()
    assert replay(target).fixture_hash == before.fixture_hash  # the golden file is not an input


def test_gap_exceeded_cli_timeline_and_journal(tmp_path: Path) -> None:
    runner = CliRunner()
    journals = []
    for i in range(2):
        path = tmp_path / f"j{i}.jsonl"
        result = runner.invoke(app, ["replay", str(ROOT / "fixtures" / "gap_exceeded"), "--journal", str(path)])
        assert result.exit_code == 0, result.output
        assert re.search(r"safety\s+ARMED_SAFE -> HALT\s+BACKFILL_WINDOW_EXCEEDED", result.stdout)
        assert "verdict: pass" in result.stdout
        journals.append(path.read_bytes())
    assert journals[0] == journals[1]
    last = journals[0].decode().splitlines()[-1]
    assert last.startswith('{"summary":') and '"verdict":"pass"' in last
    assert "userFillsByTime" not in journals[0].decode().split('"run":"boundary_600000"')[0]
    assert "?" not in "".join(line for line in journals[0].decode().splitlines() if '"venue_call"' in line)


def _copy(tmp_path: Path, edit: tuple[str, str]) -> Path:
    target = tmp_path / "drill"
    shutil.copytree(ROOT / "fixtures" / "gap_exceeded", target)
    path = target / "drill.yaml"
    text = path.read_text(encoding="utf-8")
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    return target


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_unknown_key_exits_2_with_file_and_line(tmp_path: Path) -> None:
    drill = _copy(tmp_path, ("clock:\n", "clokc: {}\nclock:\n"))
    result = CliRunner().invoke(app, ["replay", str(drill)])
    assert result.exit_code == 2
    line = _line_of(drill / "drill.yaml", "clokc")
    assert f"drill.yaml:{line}: clokc: unknown key" in result.stderr


def test_time_going_backwards_exits_2_with_file_and_line(tmp_path: Path) -> None:
    step = "  - {at: 250s, do: advance}\n"
    drill = _copy(tmp_path, (step, step + "  - {at: 10s, do: advance}\n"))
    result = CliRunner().invoke(app, ["replay", str(drill)])
    assert result.exit_code == 2
    line = _line_of(drill / "drill.yaml", "{at: 10s, do: advance}")
    assert f"drill.yaml:{line}" in result.stderr and "backwards" in result.stderr


def test_a_changed_outcome_exits_1_naming_the_expectation(tmp_path: Path) -> None:
    """Widen the window by 1 ms: the base run no longer halts, so the drill fails."""
    drill = _copy(tmp_path, ("config: {}", "config: {ingest: {backfill_window_ms: 600001}}"))
    result = CliRunner().invoke(app, ["replay", str(drill)])
    assert result.exit_code == 1
    line = _line_of(drill / "drill.yaml", "transition: {safety: HALT}")
    assert f"FAIL base: {drill / 'drill.yaml'}:{line} at +0.000s" in result.stdout
    assert "verdict: fail" in result.stdout


def test_committed_coverage_is_recorded_under_this_code_and_fixture() -> None:
    """`hlcore diff` skips a drill only on coverage recorded under the current code; stale files make
    it replay everything (safe, slow) — so CI asks for them to be rewritten with the goldens."""
    import json

    from replay.behaviour import code_hash
    from replay.drill import fixture_hash

    code = code_hash()
    stale = []
    for drill in DRILLS:
        recorded = json.loads((drill / "coverage.json").read_text(encoding="utf-8"))["recorded_under"]
        if recorded["code"] != code or recorded["fixture_hash"] != fixture_hash(drill):
            stale.append(drill.name)
    assert not stale, f"coverage.json stale for {stale}: run `hlcore drill -j 2 --write-golden` and commit"
