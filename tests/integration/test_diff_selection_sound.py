"""`hlcore diff`'s default drill selection is sound and useful (issue 12 item 5).

Five small drills (three copy-trader, two monitor) are replayed once under the repository's policy,
recording their coverage as `hlcore drill --write-golden` does. Then, for single-line edits of each
kind a reviewer makes (a threshold, a cooldown, a machine transition, an allowlist entry, a monitor
setting, a copy-trader setting), every drill is replayed under the edited side (what `--all` does):
the drills whose journal differs must all be among those the selection replays (soundness), and
the drills of the other app must be skipped (usefulness). In-process replays: about 35 of them.
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path

import pytest

from hlcore.diff.behaviour import BehaviourReport
from hlcore.diff.sides import Side, load_side
from replay.behaviour import reduce_outcome, select_drills
from replay.drill import COVERAGE_FILE
from replay.runner import replay
from replay.selection import record_coverage
from tests.support.policy_copies import copy_repo_policy, edit

pytestmark = pytest.mark.slow  # tens of seconds each: started first (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
COPYTRADER = ("reconcile_critical_auto_recovery", "reconcile_warn_safe", "rate_limit_cooldown")
MONITOR = ("universe_refresh_success", "ingestion_partial_degraded")

EDITS = {  # label: (file, old, new, the app whose drills it can reach, drills it is known to change)
    "threshold": ("config/settings.yaml", "stale_coverage_pct: 80", "stale_coverage_pct: 86", "monitor",
                  {"ingestion_partial_degraded"}),  # its 85 % runs now read STALE
    "cooldown": ("config/settings.yaml", "cooldown_seconds: 5         # default cooldown",
                 "cooldown_seconds: 9         # default cooldown", "copytrader", set()),  # the 429 has Retry-After
    "transition": ("machines/safety.yaml", "{event: drift_warned, source: ARMED_LIVE, dest: ARMED_SAFE,",
                   "{event: drift_warned, source: ARMED_LIVE, dest: HALT,", "copytrader", {"reconcile_warn_safe"}),
    "allowlist": ("rules/safety.yaml", "    RECONCILE_CRITICAL: {always: true}\n", "", "copytrader",
                  {"reconcile_critical_auto_recovery"}),
    "monitor setting": ("config/settings.yaml", "size: 200                     # top N wallets",
                        "size: 150                     # top N wallets", "monitor", {"universe_refresh_success"}),
    "copytrader setting": ("config/settings.yaml", "warn_threshold: 0.001", "warn_threshold: 0.005", "copytrader",
                           {"reconcile_warn_safe"}),
}


def _lines(drill: Path, side: Side) -> tuple[str, ...]:
    outcome = replay(drill, side.root, config=side.settings_file)
    return reduce_outcome(outcome, (side.policy.hash, side.config_hash)).lines


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict[str, tuple[str, ...]]]:
    """The drills copied (their committed coverage left out), replayed under the repository's policy
    with their coverage recorded, and their base journals."""
    fixtures = tmp_path_factory.mktemp("fixtures")
    drills = []
    for name in (*COPYTRADER, *MONITOR):
        shutil.copytree(ROOT / "fixtures" / name, fixtures / name, ignore=shutil.ignore_patterns(COVERAGE_FILE))
        drills.append(fixtures / name)
    with ExitStack() as stack:
        base = load_side(str(ROOT), stack)
        outcomes = [replay(d, base.root, config=base.settings_file) for d in drills]
        record_coverage(zip(drills, outcomes, strict=True), base.root, base.settings_file)
        lines = {d.name: reduce_outcome(o, (base.policy.hash, base.config_hash)).lines
                 for d, o in zip(drills, outcomes, strict=True)}
    assert all(o.verdict == "pass" for o in outcomes)
    return drills, lines


@pytest.mark.parametrize("label", list(EDITS))
def test_the_selection_holds_every_drill_the_edit_changes(
        label: str, recorded: tuple[list[Path], dict[str, tuple[str, ...]]], tmp_path: Path) -> None:
    drills, base_lines = recorded
    file, old, new, app, known = EDITS[label]
    head_root = copy_repo_policy(tmp_path / "head")
    edit(head_root / file, old, new)
    with ExitStack() as stack:
        base, head = load_side(str(ROOT), stack), load_side(str(head_root), stack)
        report = BehaviourReport()
        selected = {d.name for d in select_drills(base, head, drills, report)}
        changed = {d.name for d in drills if _lines(d, head) != base_lines[d.name]}
    assert changed <= selected, f"{label}: changed {sorted(changed)} but selected only {sorted(selected)}"
    other = set(MONITOR if app == "copytrader" else COPYTRADER)
    skipped = {s["drill"] for s in report.skipped}
    assert other <= skipped, f"{label}: {sorted(other - skipped)} replayed though the edit cannot reach them: " \
        f"{report.selected}"
    assert all(s["why"] for s in report.selected + report.skipped)
    assert known <= changed, f"{label}: the edit no longer changes {sorted(known - changed)} (the check is vacuous)"
