"""`hlcore diff`, behavioural part, on made-up journals: what counts as a changed drill and what
the report says about it (the real replays are in tests/integration/test_diff_drills.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hlcore.diff.behaviour import MASK, Replayed, _mask, compare
from hlcore.diff.semantic import canonical

SHA_A = "a" * 64
SHA_B = "b" * 64


def replayed(entries: list[dict[str, Any]], verdict: str = "pass") -> Replayed:
    lines = (*(canonical(e) for e in entries), canonical({"summary": {"verdict": verdict}}))
    return Replayed("d", verdict, (), lines, tuple(entries))


def move(run: str, to: str, reason: str | None, t: str = "+0.000s") -> dict[str, Any]:
    return {"kind": "transition", "run": run, "t": t, "machine": "m", "instance": "m", "from": None, "to": to,
            "reason": reason}


def test_hashes_are_masked_wherever_they_appear() -> None:
    secrets = frozenset({SHA_A})
    entry = {"policy_hash": SHA_A, "output": [f"config_hash={SHA_B}", "exit=0"], "n": 3}
    assert _mask(entry, secrets) == {"policy_hash": MASK, "output": [f"config_hash={MASK}", "exit=0"], "n": 3}
    base = replayed([_mask({"kind": "operator", "output": [f"config_hash={SHA_A}"]}, secrets)])
    head = replayed([_mask({"kind": "operator", "output": [f"config_hash={SHA_B}"]}, frozenset({SHA_B}))])
    assert compare(Path("fixtures/d"), base, head) is None


def test_same_journal_is_no_change() -> None:
    journal = [move("base", "A", "X"), move("base", "B", "Y", "+1.000s")]
    assert compare(Path("fixtures/d"), replayed(journal), replayed(list(journal))) is None


def test_changed_journal_reports_first_line_final_states_alerts_and_verdict() -> None:
    base = replayed([move("base", "A", "X"), move("v1", "A", "X"),
                     {"kind": "alert", "run": "base", "status": "delivered"}])
    head = replayed([move("base", "A", "X"), move("v1", "B", "Y"),
                     {"kind": "alert", "run": "base", "status": "suppressed"}], verdict="fail")
    change = compare(Path("fixtures/d"), base, head)
    assert change is not None
    assert change.verdict == ("pass", "fail")
    assert change.first_difference["line"] == 2
    assert '"to":"A"' in change.first_difference["base"] and '"to":"B"' in change.first_difference["head"]
    assert change.states == [{"run": "v1", "instance": "m", "base": ["A", "X"], "head": ["B", "Y"]}]
    assert change.alerts == {"alert:delivered": (1, 0), "alert:suppressed": (0, 1)}


def test_a_longer_journal_points_past_the_shorter_end() -> None:
    base = replayed([move("base", "A", "X")])
    head = replayed([move("base", "A", "X"), move("base", "B", None, "+5.000s")])
    change = compare(Path("fixtures/d"), base, head)
    assert change is not None
    assert change.first_difference["line"] == 2
    assert change.first_difference["base"].startswith('{"summary"')
    assert change.states == [{"run": "base", "instance": "m", "base": ["A", "X"], "head": ["B", None]}]


def test_identical_policy_and_settings_replay_nothing(tmp_path: Path) -> None:
    """Same hashes on both sides: the drills would replay identically, so none is run."""
    from contextlib import ExitStack

    from hlcore.diff.sides import load_side
    from replay.behaviour import behaviour_diff

    root = Path(__file__).resolve().parents[2]
    with ExitStack() as stack:
        side = load_side(str(root), stack, cwd=root)
        report = behaviour_diff(side, side, root / "fixtures")
    assert report.replayed == 0 and report.changed == [] and "none was run" in report.notes[0]


def test_alert_rows_count_as_delivered_or_suppressed_with_reason() -> None:
    """The monitor journals each `alerts` row; the diff counts them per type and outcome."""
    def alert(suppressed: bool, reason: str | None) -> dict[str, Any]:
        return {"kind": "row", "run": "base", "table": "alerts",
                "row": {"alert_type": "exit_cluster", "suppressed": suppressed, "suppressed_reason": reason}}

    base = replayed([move("base", "A", "X"), alert(False, None), alert(True, "cooldown")])
    head = replayed([move("base", "A", "X"), alert(True, "daily_cap"), alert(True, "cooldown")])
    change = compare(Path("fixtures/d"), base, head)
    assert change is not None
    assert change.alerts == {"exit_cluster delivered": (1, 0), "exit_cluster suppressed/cooldown": (1, 1),
                             "exit_cluster suppressed/daily_cap": (0, 1)}


def test_no_drills_is_said_loudly_in_every_format(tmp_path: Path) -> None:
    """Issue 11: a repository with no drills gets a warning, not a quiet "0 drills replayed"."""
    import json
    import shutil
    from contextlib import ExitStack

    from hlcore.diff.render import Report, render
    from hlcore.diff.semantic import semantic_diff
    from hlcore.diff.sides import load_side
    from replay.behaviour import behaviour_diff

    root = Path(__file__).resolve().parents[2]
    head_dir = tmp_path / "head"
    for sub in ("machines", "rules"):
        shutil.copytree(root / sub, head_dir / sub)
    rules = head_dir / "rules" / "health.yaml"
    rules.write_text(rules.read_text(encoding="utf-8").replace("order: 10", "order: 11"), encoding="utf-8")
    empty = tmp_path / "fixtures"
    empty.mkdir()
    with ExitStack() as stack:
        base, head = load_side(str(root), stack, cwd=root), load_side(str(head_dir), stack, cwd=root)
        assert base.policy.hash != head.policy.hash
        report = Report(base, head, semantic_diff(base, head))
        report.behaviour = behaviour_diff(base, head, empty)
        assert report.behaviour.no_drills and report.behaviour.replayed == 0
        assert "NO DRILLS" in render(report, "text") and "WARNING" in render(report, "text")
        assert "**WARNING**" in render(report, "md")
        doc = json.loads(render(report, "json"))
    assert doc["drills"]["no_drills"] is True and doc["drills"]["warnings"][0].startswith("NO DRILLS")
