"""`hlcore diff`, behavioural part: a threshold change that alters a drill's outcome names the drill.

gap_exceeded's `boundary_600000` variant restarts exactly 600000 ms after the last ingest: with
the default window (600000, strict) it does not halt. Lowering `ingest.backfill_window_ms` by
one millisecond makes that restart halt, so the drill's journal and verdict change.
"""

from __future__ import annotations

import json
import shutil
from contextlib import ExitStack
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hlcore.diff.sides import load_side
from hlcore_cli import app
from replay.drill import GOLDEN_FILE
from replay.runner import replay
from replay.selection import record_coverage
from tests.support.policy_copies import edit

pytestmark = pytest.mark.slow  # tens of seconds each: started first (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
DRILL = "gap_exceeded"


def copy_policy(dest: Path) -> Path:
    for sub in ("machines", "rules", "config"):
        shutil.copytree(ROOT / sub, dest / sub)
    return dest


def setup(tmp_path: Path, old: str, new: str, golden: bool = True) -> tuple[Path, Path, Path]:
    """Base and head policy copies (`old` → `new` in the head's settings) and the drill copied;
    `golden=False` leaves its golden journal out (then its base side is always replayed or cached)."""
    base, head = copy_policy(tmp_path / "base"), copy_policy(tmp_path / "head")
    settings = head / "config/settings.yaml"
    text = settings.read_text(encoding="utf-8")
    assert old in text
    settings.write_text(text.replace(old, new, 1), encoding="utf-8")
    fixtures = tmp_path / "fixtures"  # just this drill: the test does not depend on the others
    shutil.copytree(ROOT / "fixtures" / DRILL, fixtures / DRILL,
                    ignore=None if golden else shutil.ignore_patterns(GOLDEN_FILE))
    return base, head, fixtures


def run(*args: str) -> tuple[int, str]:
    return run_full(*args)[:2]


def run_full(*args: str) -> tuple[int, str, str]:
    """`hlcore diff ARGS` (no cache unless ARGS name one: a test never writes to ~/.cache)."""
    extra = [] if "--cache-dir" in args else ["--no-cache"]
    result = CliRunner().invoke(app, ["diff", *args, *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_a_narrower_backfill_window_changes_gap_exceeded(tmp_path: Path) -> None:
    base, head, fixtures = setup(tmp_path, "backfill_window_ms: 600000 ", "backfill_window_ms: 599999 ")
    cache = ("--cache-dir", str(tmp_path / "cache"))  # the text report below replays the head only
    code, out = run(str(base), str(head), "--fixtures", str(fixtures), "--format", "json", "--fail-on", "any", *cache)
    assert code == 1
    report = json.loads(out)
    assert [(c["subject"], c["label"]) for c in report["changes"]] == [("ingest.backfill_window_ms", "stricter")]
    drills = report["drills"]
    assert drills["replayed"] == 1 and drills["errors"] == []
    (changed,) = drills["changed"]
    assert changed["drill"] == DRILL
    assert changed["verdict"] == {"base": "pass", "head": "fail"}  # the drill pins the 600000 boundary
    first = changed["first_difference"]
    head_line = json.loads(first["head"])
    assert (head_line["run"], head_line["machine"], head_line["to"], head_line["reason"]) == (
        "boundary_600000", "safety", "HALT", "BACKFILL_WINDOW_EXCEEDED")
    assert json.loads(first["base"])["run"] == "boundary_600000"
    states = {(s["run"], s["instance"]): (s["base"], s["head"]) for s in changed["states"]}
    assert states[("boundary_600000", "safety")][1] == ["HALT", "BACKFILL_WINDOW_EXCEEDED"]
    assert ("base", "safety") not in states  # the base run halts under both policies
    assert changed["failures"]["base"] == [] and changed["failures"]["head"]

    code, text = run(str(base), str(head), "--fixtures", str(fixtures), *cache)
    assert code == 0
    assert f"{DRILL} ({fixtures / DRILL}): verdict pass -> fail" in text
    assert "final boundary_600000/safety: (no transition) -> HALT/BACKFILL_WINDOW_EXCEEDED" in text


def test_a_threshold_no_drill_reads_changes_no_outcome(tmp_path: Path) -> None:
    base, head, fixtures = setup(tmp_path, "stale_age_sec: 600 ", "stale_age_sec: 900 ")
    code, out = run(str(base), str(head), "--fixtures", str(fixtures), "--format", "json", "--fail-on", "looser",
                    "--jobs", "1")
    assert code == 1  # the threshold change itself is looser
    report = json.loads(out)
    # a monitor threshold: the copy-trader drill's recorded coverage never read it, so it is not replayed
    assert report["drills"]["replayed"] == 0 and report["drills"]["changed"] == []
    assert report["drills"]["selection"]["skipped"] == [{"drill": DRILL, "why": "coverage disjoint from the change"}]
    assert report["drills"]["selection"]["change"] == "setting monitor.health.stale_age_sec"
    code, out = run(str(base), str(head), "--fixtures", str(fixtures), "--format", "json", "--jobs", "1", "--all")
    report = json.loads(out)
    assert code == 0 and report["drills"]["replayed"] == 1 and report["drills"]["changed"] == []  # and rightly so
    assert report["drills"]["selection"]["skipped"] == []


def test_the_base_side_is_cached_by_code_policy_settings_and_fixture(tmp_path: Path) -> None:
    """A second diff against the same base replays the head only; the report is the same."""
    base, head, fixtures = setup(tmp_path, "backfill_window_ms: 600000 ", "backfill_window_ms: 599999 ", golden=False)
    args = (str(base), str(head), "--fixtures", str(fixtures), "--format", "json", "--jobs", "1",
            "--cache-dir", str(tmp_path / "cache"))
    code, first, progress = run_full(*args)
    assert code == 0 and "base journals from the cache" not in progress
    assert f"[1/2] {DRILL} (base): pass" in progress or f"[2/2] {DRILL} (base): pass" in progress
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    code, second, progress = run_full(*args)
    assert code == 0 and "1 base journals from the cache" in progress
    assert f"[1/1] {DRILL} (head): fail" in progress
    assert json.loads(second)["drills"] == json.loads(first)["drills"]
    (fixtures / DRILL / "drill.yaml").write_text((fixtures / DRILL / "drill.yaml").read_text() + "\n")
    code, _third, progress = run_full(*args)  # the fixture changed: its base is replayed again
    assert "from the cache" not in progress and f"{DRILL} (base): pass" in progress


def test_a_vouched_golden_journal_is_the_base_side_and_a_stale_one_is_not(tmp_path: Path) -> None:
    """With its coverage recorded under this code and exactly the base side's hashes (as `hlcore drill
    --write-golden` records it), the committed golden journal is the base side: no base replay, the
    same report as replaying it. A base side the golden was not recorded under replays it; a head
    side it was recorded under takes it."""
    base, head, fixtures = setup(tmp_path, "backfill_window_ms: 600000 ", "backfill_window_ms: 599999 ")
    drill = fixtures / DRILL
    with ExitStack() as stack:
        side = load_side(str(base), stack)
        outcome = replay(drill, side.root, config=side.settings_file)
        record_coverage([(drill, outcome)], side.root, side.settings_file)
    args = (str(base), str(head), "--fixtures", str(fixtures), "--format", "json", "--jobs", "1")
    cache = ("--cache-dir", str(tmp_path / "cache"))
    code, from_golden, progress = run_full(*args, *cache)
    assert code == 0 and "1 base journals are the committed golden journals" in progress
    assert f"[1/1] {DRILL} (head): fail" in progress and "(base)" not in progress
    code, replayed, progress = run_full(*args)  # --no-cache: the golden is not used either
    assert code == 0 and "golden" not in progress and f"{DRILL} (base): pass" in progress
    assert json.loads(from_golden)["drills"] == json.loads(replayed)["drills"]
    assert json.loads(from_golden)["drills"]["changed"][0]["verdict"] == {"base": "pass", "head": "fail"}
    # a base side the golden was not recorded under (a setting the drill never reads differs)
    other = copy_policy(tmp_path / "other")
    edit(other / "config/settings.yaml", "stale_age_sec: 600 ", "stale_age_sec: 601 ")
    code, stale, progress = run_full(str(other), *args[1:], *cache)
    assert code == 0 and "golden" not in progress and f"{DRILL} (base): pass" in progress
    assert json.loads(stale)["drills"]["changed"] == json.loads(replayed)["drills"]["changed"]
    # the other way round (a branch diffed against its base): the recorded side is the head side
    code, reverse, progress = run_full(str(head), str(base), *args[2:], *cache)
    assert code == 0 and "1 head journals are the committed golden journals" in progress
    assert f"[1/1] {DRILL} (base): fail" in progress and "(head)" not in progress
    assert json.loads(reverse)["drills"]["changed"][0]["verdict"] == {"base": "fail", "head": "pass"}
