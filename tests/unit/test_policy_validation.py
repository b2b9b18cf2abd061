"""Bad policies are rejected before anything runs: exit 2, file:line, path, one-line reason.

Each case copies the default policy and breaks one thing (a good/bad fixture pair, promtool
style); the default policy itself is the good fixture.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hlcore_cli import app
from tests.support.policy_copies import copy_policy, mutate

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def validate(policy: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", "--policy", str(policy)])
    return result.exit_code, result.output


def test_default_policy_is_valid() -> None:
    code, output = validate(ROOT)
    assert code == 0, output
    assert output.strip().endswith("OK")
    assert "machines=13" in output


CASES = [
    pytest.param(
        "machines/safety.yaml",
        "- {event: unhalted, source: HALT, dest: ARMED_SAFE,",
        "- {event: unhalted, source: HALT, dest: HALTED,",
        r"transitions\[14\]\.dest: unknown state 'HALTED' \(known: ARMED_LIVE, ARMED_SAFE, HALT\)",
        id="unknown-dest-state",
    ),
    pytest.param(
        "machines/safety.yaml",
        "  HALT:\n    description: No trading;",
        "  LIMBO:\n    description: Nothing leads here.\n    final: true\n  HALT:\n    description: No trading;",
        r"states\.LIMBO: state 'LIMBO' is unreachable from the initial state 'ARMED_SAFE' \[unreachable-state\]",
        id="unreachable-state",
    ),
    pytest.param(
        "rules/alerts.yaml",
        "    fire: {config: monitor.alerts.exit_fire_pct}\n    reset: {config: monitor.alerts.exit_reset_pct}",
        "    fire: {config: monitor.alerts.exit_reset_pct}\n    reset: {config: monitor.alerts.exit_fire_pct}",
        r"bands\.exit_cluster: band 'exit_cluster' is upside down: it fires above 20 but resets at 25",
        id="hysteresis-upside-down",
    ),
    pytest.param(
        "rules/gap.yaml",
        "    then: {event: gap_exceeded, reason: BACKFILL_WINDOW_EXCEEDED}\n  - id: history_limit",
        "    then: {event: gap_exceeded, reason: BACKFILL_WINDOW_EXCEEDED\n  - id: history_limit",
        r"YAML syntax error",
        id="yaml-syntax-error",
    ),
    pytest.param(
        "rules/health.yaml",
        "when: {fact: coverage_pct, lt: {config: monitor.health.stale_coverage_pct}}",
        "when: {fact: coverage_percent, lt: {config: monitor.health.stale_coverage_pct}}",
        r"when\.fact: unknown fact field 'coverage_percent'",
        id="unknown-fact-field",
    ),
    pytest.param(
        "rules/health.yaml",
        "when: {fact: coverage_pct, lt: {config: monitor.health.stale_coverage_pct}}",
        "when: {fact: coverage_pct, lt: {config: monitor.health.stale_coverage}}",
        r"when\.lt\.config: unknown config key 'monitor\.health\.stale_coverage'",
        id="unknown-config-key",
    ),
    pytest.param(
        "machines/safety.yaml",
        "guards: [halt_recovery_allowed]",
        "guards: [halt_recovery_alowed]",
        r"guards\[0\]: unknown guard 'halt_recovery_alowed'",
        id="unknown-guard",
    ),
    pytest.param(
        "rules/gap.yaml",
        "    then: {event: gap_exceeded, reason: BACKFILL_WINDOW_EXCEEDED}\n  - id: history_limit",
        "    then: {event: gap_exceded, reason: BACKFILL_WINDOW_EXCEEDED}\n  - id: history_limit",
        r"then\.event: unknown event 'gap_exceded' of machine 'safety'",
        id="unknown-event",
    ),
    pytest.param(
        "rules/gap.yaml",
        "    then: {event: gap_exceeded, reason: BACKFILL_WINDOW_EXCEEDED}\n  - id: history_limit",
        "    then: {event: gap_exceeded, reason: BACKFILL_WINDOW_EXCEDED}\n  - id: history_limit",
        r"then\.reason: undeclared reason code 'BACKFILL_WINDOW_EXCEDED'",
        id="undeclared-reason",
    ),
    pytest.param(
        "rules/reconcile.yaml",
        "  - id: critical_drift",
        "  - id: stale",
        r"duplicate rule id 'stale'",
        id="duplicate-rule-id",
    ),
    pytest.param(
        "rules/reasons.yaml",
        "  OK: {severity: info, text: All checks pass.}",
        "  OK: {severity: info, text: All checks pass.}\n  BOOTSTRAP: {severity: info}",
        r"duplicate key 'BOOTSTRAP'|duplicate reason code 'BOOTSTRAP'",
        id="duplicate-reason-code",
    ),
    pytest.param(
        "rules/alert_delivery.yaml",
        "order: 60",
        "order: sixty",
        r"order: must be of integer type",
        id="wrong-type",
    ),
    pytest.param(
        "machines/health.yaml",
        "initial: STALE",
        "initial: STALE\nstart_in: HEALTHY",
        r"start_in: unknown key 'start_in'",
        id="unknown-top-level-key",
    ),
    pytest.param(
        "rules/health.yaml",
        "when: {fact: coverage_pct, lt: {config: monitor.health.stale_coverage_pct}}",
        "when: {fact: coverage_pct, below: {config: monitor.health.stale_coverage_pct}}",
        r"when\.below: unknown key 'below'",
        id="unknown-operator",
    ),
    pytest.param(
        "machines/system_stale.yaml",
        "  - {event: episode_ended, source: ACTIVE, dest: INACTIVE, reason: SYSTEM_STALE_CLEARED}",
        "  - {event: episode_ended, source: ACTIVE, dest: ACTIVE, reason: SYSTEM_STALE_CLEARED}",
        r"states\.ACTIVE: state 'ACTIVE' has no way out and is not declared final: true \[trap-state\]",
        id="trap-state",
    ),
    pytest.param(
        "machines/safety.yaml",
        "    guards: [halt_recovery_allowed]\n    reason: HALT_RECOVERY_AUTO",
        "    reason: HALT_RECOVERY_AUTO",
        r"'recovered' leaves HALT for 'ARMED_SAFE' but is neither an operator event .* nor guarded by a "
        r"recovery allowlist \[halt-exit\]",
        id="halt-exit-bypasses-allowlist",
    ),
    pytest.param(
        "machines/safety.yaml",
        "  - {event: drift_warned, source: ARMED_LIVE, dest: ARMED_SAFE, description: \"S12\"}",
        "  - {event: drift_warned, source: ARMED_LIVE, dest: ARMED_SAFE, description: \"S12\"}\n"
        "  - {event: drift_warned, source: ARMED_LIVE, dest: HALT}",
        r"both take 'drift_warned' from 'ARMED_LIVE' with overlapping guards and no priority \[nondeterminism\]",
        id="nondeterminism",
    ),
    pytest.param(
        "rules/dashboard.yaml",
        "  - id: halt_storage",
        "  - id: always_first\n    on: dashboard_refresh\n    when: {always: true}\n"
        "    then: {event: show_normal, reason: OK}\n  - id: halt_storage",
        r"rule 'halt_storage' can never match: the earlier rule 'always_first' always matches",
        id="shadowed-rule",
    ),
    pytest.param(
        "machines/order.yaml",
        "allows: [order.sweep], stored_as: UNKNOWN}",
        "allows: [order.sweep], stored_as: LOST}",
        r"states\.PARKED\.stored_as: unknown state 'LOST' \(known: NONE, ",
        id="stored-as-unknown-state",
    ),
    pytest.param(
        "machines/order.yaml",
        "    dest: PARKED\n    reason: RETRY_BUDGET_EXCEEDED\n",
        "    dest: PARKED\n    reason: {fact: error_code}\n",
        r"transitions\[8\]\.reason: a transition into 'PARKED' \(stored as 'UNKNOWN'\) needs a literal reason",
        id="stored-as-needs-literal-reason",
    ),
    pytest.param(
        "rules/execution.yaml",
        "    then: {event: parked, reason: RETRY_BUDGET_EXCEEDED}",
        "    then: {event: parked, reason: TIMEOUT}",
        r"'PARKED' is stored as 'UNKNOWN' and told apart by its reason 'RETRY_BUDGET_EXCEEDED': a rule may not",
        id="stored-as-rule-reason",
    ),
]


@pytest.mark.parametrize(("file", "old", "new", "expected"), CASES)
def test_bad_policy_exits_2_with_location(tmp_path: Path, file: str, old: str, new: str, expected: str) -> None:
    policy = copy_policy(tmp_path)
    mutate(policy, file, old, new)
    code, output = validate(policy)
    assert code == 2, output
    assert "Traceback" not in output
    matching = [line for line in output.splitlines() if re.search(expected, line)]
    assert matching, f"no line matches {expected!r} in:\n{output}"
    # file:line: every reported problem names the file and a line number
    assert re.match(rf"^(error: )?{re.escape(file)}:\d+: ", matching[0]), matching[0]


def test_unknown_dest_names_the_exact_line(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    line = mutate(policy, "machines/safety.yaml", "- {event: unhalted, source: HALT, dest: ARMED_SAFE,",
                  "- {event: unhalted, source: HALT, dest: HALTED,")
    code, output = validate(policy)
    assert code == 2
    assert f"machines/safety.yaml:{line}: transitions[14].dest: unknown state 'HALTED'" in output


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    (policy / "rules" / "broken.yaml").write_text("table: broken\nrules:\n  - id: x\n    when: {always: true\n",
                                                  encoding="utf-8")
    code, output = validate(policy)
    assert code == 2
    assert re.search(r"rules/broken\.yaml:\d+: YAML syntax error: ", output), output
    assert len([ln for ln in output.splitlines() if ln.strip()]) == 1  # one line, one reason


def test_unused_reason_is_a_warning_not_an_error(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    mutate(policy, "rules/reasons.yaml", "  OK: {severity: info, text: All checks pass.}",
           "  OK: {severity: info, text: All checks pass.}\n  NEVER_RAISED: {severity: low}")
    code, output = validate(policy)
    assert code == 0, output
    assert "reason code 'NEVER_RAISED' is declared but nothing raises it" in output
    strict = runner.invoke(app, ["validate", "--policy", str(policy), "--strict"])
    assert strict.exit_code == 1


def test_not_a_policy_directory(tmp_path: Path) -> None:
    code, output = validate(tmp_path)
    assert code == 2
    assert "not a policy directory: missing machines/, rules/" in output
