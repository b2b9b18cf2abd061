"""`hlcore diff` on the command line: exit codes, sides (directories and git revisions), output
formats, the textconv driver and `--history`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hlcore.yamlsource import parse_yaml
from hlcore_cli import app
from tests.support.policy_copies import copy_repo_policy, edit

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
WIDEN = ("    RECONCILE_CRITICAL: {always: true}\n",
         "    RECONCILE_CRITICAL: {always: true}\n    SCHEMA_VERSION_MISMATCH: {always: true}\n")



def diff(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["diff", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return copy_repo_policy(tmp_path / "base"), copy_repo_policy(tmp_path / "head")


# --------------------------------------------------------------------------- exit codes


def test_looser_allowlist_fails_with_fail_on_looser(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "rules/safety.yaml", *WIDEN)
    code, out, _ = diff(str(base), str(head), "--no-drills")
    assert code == 0
    assert "looser    allowlist halt_recovery.SCHEMA_VERSION_MISMATCH added" in out
    assert "1 change (1 looser, 0 stricter, 0 neutral)" in out
    assert diff(str(base), str(head), "--no-drills", "--fail-on", "looser")[0] == 1
    assert diff(str(head), str(base), "--no-drills", "--fail-on", "looser")[0] == 0  # the reverse is stricter
    assert diff(str(head), str(base), "--no-drills", "--fail-on", "any")[0] == 1


def test_no_change_exits_0_even_with_fail_on_any(pair: tuple[Path, Path]) -> None:
    base, head = pair
    code, out, _ = diff(str(base), str(head), "--no-drills", "--fail-on", "any")
    assert code == 0 and "0 changes" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "html"], "--format: expected one of text, md, json"),
    (["--fail-on", "stricter"], "--fail-on: expected looser or any"),
])
def test_bad_options_exit_2(pair: tuple[Path, Path], args: list[str], message: str) -> None:
    code, _, err = diff(str(pair[0]), str(pair[1]), "--no-drills", *args)
    assert code == 2 and message in err


def test_a_side_that_is_neither_directory_nor_revision_exits_2(pair: tuple[Path, Path], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # not a git work tree
    code, out, err = diff("no-such-thing", str(pair[1]), "--no-drills")
    assert code == 2 and out == ""
    assert "no-such-thing: neither a directory nor a git revision" in err
    assert "Traceback" not in err


def test_a_side_that_does_not_validate_exits_2_naming_it(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "machines/safety.yaml", "dest: ARMED_SAFE, description: \"S2: never start live\"",
         "dest: ARMED_SAVE, description: \"S2: never start live\"")
    code, _, err = diff(str(base), str(head), "--no-drills")
    assert code == 2
    assert f"{head}/machines/safety.yaml:" in err and "unknown state 'ARMED_SAVE'" in err


def test_a_directory_without_machines_exits_2(pair: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = diff(str(tmp_path / "empty"), str(pair[1]), "--no-drills")
    assert code == 2 and "not a policy directory: missing machines/, rules/" in err


# --------------------------------------------------------------------------- git revisions


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false",
                    *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = copy_repo_policy(tmp_path / "repo")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "policy")
    monkeypatch.chdir(root)
    return root


def test_default_base_is_head_and_head_is_the_working_tree(repo: Path) -> None:
    assert diff("--no-drills", "--fail-on", "any")[0] == 0
    edit(repo / "config/settings.yaml", "stale_age_sec: 600 ", "stale_age_sec: 900 ")
    code, out, _ = diff("--no-drills", "--fail-on", "looser", "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert (report["base"]["label"], report["base"]["kind"]) == ("HEAD", "git")
    assert report["head"]["label"] == "working tree"
    assert [(c["subject"], c["label"], c["before"], c["after"]) for c in report["changes"]] == [
        ("monitor.health.stale_age_sec", "looser", 600, 900)]


def test_two_revisions_and_a_subdirectory_prefix(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edit(repo / "rules/safety.yaml", *WIDEN)
    git(repo, "commit", "-q", "-am", "widen")
    code, out, _ = diff("HEAD~1", "HEAD", "--no-drills", "--format", "json")
    assert code == 0
    changes = json.loads(out)["changes"]
    assert [(c["subject"], c["label"]) for c in changes] == [("halt_recovery.SCHEMA_VERSION_MISMATCH", "looser")]
    # from a subdirectory holding the policy, revisions are read under that prefix
    sub = repo / "ops"
    sub.mkdir()
    for name in ("machines", "rules", "config"):
        shutil.move(repo / name, sub / name)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "move")
    monkeypatch.chdir(sub)
    assert diff("HEAD~1", "HEAD", "--no-drills", "--fail-on", "any")[0] == 2  # HEAD~1 has no ops/machines
    assert diff("HEAD", "--no-drills", "--fail-on", "any")[0] == 0


def test_a_revision_whose_policy_is_broken_names_the_revision(repo: Path) -> None:
    edit(repo / "machines/safety.yaml", "initial: ARMED_SAFE", "initial: ARMED_SAVE")
    git(repo, "commit", "-q", "-am", "broken")
    code, _, err = diff("HEAD", "HEAD~1", "--no-drills")
    assert code == 2
    assert "HEAD:machines/safety.yaml:" in err and "unknown state 'ARMED_SAVE'" in err


# --------------------------------------------------------------------------- formats and textconv


def test_markdown_is_a_table_ready_for_a_pull_request(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "rules/safety.yaml", *WIDEN)
    edit(head / "rules/reasons.yaml", "  RECONCILE_WARN: {severity: medium", "  RECONCILE_WARN: {severity: high")
    code, out, _ = diff(str(base), str(head), "--no-drills", "--format", "md")
    assert code == 0
    assert out.startswith("### hlcore diff: ")
    assert "**1 looser**, 1 stricter, 0 neutral" in out.replace(" · ", ", ")
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| Safety | Change |")
    assert "looser" in rows[1] and "halt_recovery.SCHEMA_VERSION_MISMATCH" in rows[1]  # looser first
    assert "stricter" in rows[2] and "RECONCILE_WARN" in rows[2]


def test_textconv_prints_the_same_text_for_a_reformatted_file(tmp_path: Path) -> None:
    original = (ROOT / "machines/safety.yaml").read_text(encoding="utf-8")
    data = parse_yaml(original, "safety.yaml").data
    reformatted = tmp_path / "safety.yaml"
    reformatted.write_text(json.dumps(data, indent=7), encoding="utf-8")  # JSON is YAML: other layout, no comments
    code_a, a, _ = diff("--textconv", str(ROOT / "machines/safety.yaml"))
    code_b, b, _ = diff("--textconv", str(reformatted))
    assert code_a == code_b == 0
    assert a == b and "safety_order:" in a and "#" not in a
    assert parse_yaml(a, "x").data == data


def test_textconv_shows_invalid_yaml_as_is(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n", encoding="utf-8")
    code, out, _ = diff("--textconv", str(bad))
    assert code == 0 and out.startswith("# hlcore: not valid YAML") and out.endswith("a: [1, 2\n")


# --------------------------------------------------------------------------- history


T0 = 1_769_248_800_000


def tape(path: Path, ages_s: list[int]) -> Path:
    """One health evaluation a minute; a clean, fresh run unless the age says otherwise."""
    lines = []
    for i, age in enumerate(ages_s):
        at = T0 + i * 60_000
        fields = {"storage_ok": True, "has_usable_run": True, "latest_status": "success", "age_ms": age * 1000,
                  "age_ref_ms": age * 1000, "coverage_pct": 100, "min_nonnull_pct": 100, "clean_streak": 2,
                  "latest_run_ts": at - age * 1000}
        lines.append(json.dumps({"at_ms": at, "kind": "health_evaluated", "fields": fields}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_history_reports_time_in_state_and_effect_changes(pair: tuple[Path, Path], tmp_path: Path) -> None:
    base, head = pair
    edit(head / "config/settings.yaml", "stale_age_sec: 600 ", "stale_age_sec: 900 ")
    history = tape(tmp_path / "tape.jsonl", [30, 30, 700, 760, 820, 30, 30, 30, 30, 30])
    code, out, _ = diff(str(base), str(head), "--no-drills", "--history", str(history), "--format", "json")
    assert code == 0
    h = json.loads(out)["history"]
    assert h["facts"] == 10 and h["span_ms"] == 9 * 60_000
    stale_b = h["base"]["time_in_state_ms"]["health"].get("STALE", 0)
    stale_h = h["head"]["time_in_state_ms"]["health"].get("STALE", 0)
    assert stale_b > stale_h  # 700 s old data is STALE under 600 s, only DEGRADED under 900 s
    assert h["head"]["time_in_state_ms"]["health"]["DEGRADED"] > h["base"]["time_in_state_ms"]["health"].get(
        "DEGRADED", 0)
    total_b = sum(sum(s.values()) for m, s in h["base"]["time_in_state_ms"].items() if m == "health")
    assert total_b == 9 * 60_000  # every millisecond of the tape is in exactly one health state
    code, text, _ = diff(str(base), str(head), "--no-drills", "--history", str(history))
    assert "time in state (base -> head):" in text and "health.STALE:" in text


def test_history_bad_line_exits_2_with_file_and_line(pair: tuple[Path, Path], tmp_path: Path) -> None:
    history = tape(tmp_path / "tape.jsonl", [30, 30])
    with history.open("a", encoding="utf-8") as f:
        f.write('{"at_ms": "soon", "kind": "health_evaluated"}\n')
    code, _, err = diff(str(pair[0]), str(pair[1]), "--no-drills", "--history", str(history))
    assert code == 2 and f"{history}:3: at_ms: expected an integer" in err


def test_history_unknown_fact_exits_2(pair: tuple[Path, Path], tmp_path: Path) -> None:
    history = tmp_path / "tape.jsonl"
    history.write_text('{"at_ms": 1, "kind": "no_such_fact", "fields": {}}\n', encoding="utf-8")
    code, _, err = diff(str(pair[0]), str(pair[1]), "--no-drills", "--history", str(history))
    assert code == 2 and f"{history}:1:" in err and "unknown fact 'no_such_fact'" in err


def test_parquet_without_pyarrow_is_a_clear_bad_input(pair: tuple[Path, Path], tmp_path: Path) -> None:
    history = tmp_path / "tape.parquet"
    history.write_bytes(b"PAR1")
    try:
        import pyarrow  # type: ignore[import-not-found]  # noqa: F401
        has_pyarrow = True
    except ImportError:
        has_pyarrow = False
    code, _, err = diff(str(pair[0]), str(pair[1]), "--no-drills", "--history", str(history))
    assert code == 2
    if not has_pyarrow:
        assert "parquet history needs pyarrow" in err
