"""`hlcore drill`: the suite runner's exit codes, summary and coverage report (issue 5)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import yaml
from typer.testing import CliRunner

from hlcore_cli import app

ROOT = Path(__file__).resolve().parents[2]


def _fixtures(tmp_path: Path, *names: str) -> Path:
    target = tmp_path / "fixtures"
    for name in names:
        shutil.copytree(ROOT / "fixtures" / name, target / name)
    return target


def test_drill_passes_and_summarises(tmp_path: Path) -> None:
    fixtures = _fixtures(tmp_path, "gap_exceeded")
    result = CliRunner().invoke(app, ["drill", "--fixtures", str(fixtures), "--journals", str(tmp_path / "j")])
    assert result.exit_code == 0, result.output
    assert "gap_exceeded" in result.stdout and "1/1 drills passed" in result.stdout
    assert (tmp_path / "j" / "gap_exceeded.jsonl").read_text().endswith('"verdict":"pass"}}\n')


def test_an_edited_threshold_fails_the_drill_and_names_the_expectation(tmp_path: Path) -> None:
    """One YAML line (the backfill window) widened by 1 ms: gap_exceeded no longer halts."""
    fixtures = _fixtures(tmp_path, "gap_exceeded")
    settings = yaml.safe_load((ROOT / "config" / "settings.yaml").read_text(encoding="utf-8"))
    settings["ingest"]["backfill_window_ms"] = 600_001
    edited = tmp_path / "settings.yaml"
    edited.write_text(yaml.safe_dump(settings), encoding="utf-8")
    result = CliRunner().invoke(app, ["drill", "--fixtures", str(fixtures), "--config", str(edited)])
    assert result.exit_code == 1, result.output
    drill_file = fixtures / "gap_exceeded" / "drill.yaml"
    lines = drill_file.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "transition: {safety: HALT}" in text)
    assert f"FAIL gap_exceeded: base: {drill_file}:{line} at +0.000s" in result.stdout
    assert "0/1 drills passed (" in result.stdout and "), 1 failed" in result.stdout


def test_a_bad_drill_file_exits_2_with_its_location(tmp_path: Path) -> None:
    fixtures = _fixtures(tmp_path, "gap_exceeded")
    path = fixtures / "gap_exceeded" / "drill.yaml"
    path.write_text(path.read_text().replace("\n  - {at: 250s, do: advance}\n", "\n  - {at: 250s, do: advance}\n"
                                             "  - {at: 1s, do: advance}\n", 1), encoding="utf-8")
    result = CliRunner().invoke(app, ["drill", "--fixtures", str(fixtures)])
    assert result.exit_code == 2
    assert "drill.yaml:" in result.stderr and "time goes backwards" in result.stderr


def test_pattern_selects_and_an_empty_selection_is_bad_input(tmp_path: Path) -> None:
    fixtures = _fixtures(tmp_path, "gap_exceeded")
    result = CliRunner().invoke(app, ["drill", "--fixtures", str(fixtures), "-k", "no_such_drill"])
    assert result.exit_code == 2 and "no drill under" in result.stderr


def test_coverage_lists_unexercised_transitions_and_fails(tmp_path: Path) -> None:
    """One drill cannot exercise the whole policy: --coverage names what is missing and exits 1."""
    fixtures = _fixtures(tmp_path, "gap_exceeded")
    result = CliRunner().invoke(app, ["drill", "--fixtures", str(fixtures), "--coverage"])
    assert result.exit_code == 1, result.output
    assert "coverage: transitions" in result.stdout
    assert "not exercised: order:" in result.stdout  # gap_exceeded never places an order
    assert "not exercised: safety: ARMED_LIVE,ARMED_SAFE -> HALT on gap_exceeded" not in result.stdout
    # the vocabulary it uses, and the words no drill here uses (issue 18)
    assert "vocabulary: " in result.stdout and "words used" in result.stdout
    assert "  gap_exceeded: check:never, check:never_state," in result.stdout
    assert "unused word: step:repeat" in result.stdout and "unused word: step:boot" not in result.stdout


def test_a_flipped_position_fails_the_new_lifecycle_drill(tmp_path: Path) -> None:
    """The partial fill really is 0.001 until +10 s: claiming 0.002 at +8 s fails, naming the line."""
    fixtures = _fixtures(tmp_path, "order_partial_fill_lifecycle")
    path = fixtures / "order_partial_fill_lifecycle" / "drill.yaml"
    old = '  - {at: 8s, position: {BTCUSDT: "0.001"}}\n'
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, old.replace("0.001", "0.002"), 1), encoding="utf-8")
    result = CliRunner().invoke(app, ["drill", "--fixtures", str(fixtures)])
    assert result.exit_code == 1, result.output
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "{at: 8s, position" in t)
    assert f"{path}:{line} at +8.000s" in result.stdout and "local BTCUSDT is 0.001" in result.stdout


def test_replay_keep_db_copies_each_runs_database(tmp_path: Path) -> None:
    """`hlcore replay --keep-db DIR`: each run's final database lands in DIR/<run>/<app>.db (issue 14)."""
    keep = tmp_path / "kept"
    result = CliRunner().invoke(app, ["replay", str(ROOT / "fixtures" / "gap_exceeded"), "--keep-db", str(keep)])
    assert result.exit_code == 0, result.output
    runs = sorted(p.name for p in keep.iterdir())
    assert "base" in runs and len(runs) == 4  # base + 3 variants
    with sqlite3.connect(keep / "base" / "copytrader.db") as conn:
        mode = conn.execute("SELECT value FROM system_state WHERE key = 'safety_mode'").fetchone()
    assert mode == ("HALT",)  # gap_exceeded halts: the copy is the run's final state
