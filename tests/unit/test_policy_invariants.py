"""The dangerous policy edits of issue 13: each loads fine, but breaks a safety invariant, so
`hlcore validate` exits 1 naming the invariant, at file:line, with a counter-example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hlcore_cli import app
from tests.support.policy_copies import copy_policy, mutate

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def validate(policy: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", "--policy", str(policy), *extra])
    return result.exit_code, result.output


# (edits, invariant, file the violation is reported in, text the message must hold)
Edit = tuple[str, str, str]
DANGEROUS: list = [
    pytest.param(
        [("machines/safety.yaml", "  unhalted: {operator: true",
          "  reconciled_ok: {operator: true}\n  unhalted: {operator: true"),
         ("machines/safety.yaml", "{event: reconciled_ok, source: ARMED_LIVE,",
          "{event: reconciled_ok, source: [ARMED_LIVE, HALT],")],
        "operator-events-are-operator-only", "machines/safety.yaml",
        r"counter-example: fact reconcile_completed -> rule reconcile_safety\.live_ok \(rules/reconcile_safety\.yaml:"
        r"\d+\) -> transition safety\.transitions\[9\] 'reconciled_ok'",
        id="reconciled_ok-marked-operator"),
    pytest.param(
        [("rules/safety.yaml", "      - {allowlisted: halt_recovery, machine: safety}",
          "      - any: [{allowlisted: halt_recovery, machine: safety}, {fact: fetch_ok, eq: true}]")],
        "halt-exit-guarded", "machines/safety.yaml",
        r"'recovered' leaves halt state HALT for 'ARMED_SAFE' .*counter-example: fact reconcile_completed -> "
        r"rule reconcile_safety\.auto_recovery",
        id="allowlisted-hidden-in-any"),
    pytest.param(
        [("machines/safety.yaml", "    allows: [reconcile, heartbeat]\n    halt: true\n",
          "    allows: [reconcile, heartbeat]\n")],
        "halt-declared", "machines/safety.yaml", r"state 'HALT' must be declared `halt: true`",
        id="halt-flag-deleted"),
    pytest.param(
        [("machines/safety.yaml", "    allows: [reconcile, heartbeat]\n    halt: true",
          "    allows: [reconcile, heartbeat, order.open]\n    halt: true")],
        "halt-closes-order-gates", "machines/safety.yaml", r"halt state 'HALT' allows 'order\.open'",
        id="halt-allows-order-open"),
    pytest.param(
        [("machines/safety.yaml", "fallback: {state: HALT,", "fallback: {state: ARMED_LIVE,")],
        "fallback-is-safest", "machines/safety.yaml", r"fallback state 'ARMED_LIVE' .* is not the safest state 'HALT'",
        id="fallback-armed-live"),
    pytest.param(
        [("rules/safety.yaml", "  - id: storage_unavailable\n    on: storage_failed\n"
          "    when: {fact: app, eq: copytrader}\n    then: {event: faulted, reason: STORAGE_UNAVAILABLE}\n", "")],
        "storage-failure-halts", "rules/invariants.yaml",
        r"rollback reason STORAGE_UNAVAILABLE does not take safety from ARMED_(LIVE|SAFE) to a halt state .*"
        r"no rule raises it on storage_failed",
        id="storage-halt-rule-deleted"),
    pytest.param(
        [("rules/reconcile.yaml", "  - id: critical_drift\n    on: reconcile_completed\n"
          "    when: {fact: max_drift, gte: {config: safety.critical_threshold}}\n"
          "    then: {event: classified_critical, reason: RECONCILE_CRITICAL}\n", ""),
         ("rules/reconcile.yaml", "    then: {event: classified_warn, reason: RECONCILE_WARN}\n",
          "    then: {event: classified_warn, reason: RECONCILE_WARN}\n  - id: critical_drift\n"
          "    on: reconcile_completed\n    when: {fact: max_drift, gte: {config: safety.critical_threshold}}\n"
          "    then: {event: classified_critical, reason: RECONCILE_CRITICAL}\n")],
        "rules-live", "rules/reconcile.yaml",
        r"rule 'critical_drift' can never match: the earlier rule 'warn_drift' \(rules/reconcile\.yaml:\d+\) "
        r"matches whenever it would",
        id="critical-rule-after-warn"),
    pytest.param(
        [("rules/reconcile_safety.yaml", "        - {state: reconcile, eq: CRIT}\n        - {state: safety, ne: HALT}\n"
          "    then: {event: faulted, reason: RECONCILE_CRITICAL}",
          "        - {state: reconcile, eq: CRIT}\n        - {state: safety, ne: HALT}\n"
          "        - {state: reconcile, eq: OK}\n    then: {event: faulted, reason: RECONCILE_CRITICAL}")],
        "rules-live", "rules/reconcile_safety.yaml", r"rule 'critical' can never match: its conditions .* contradict",
        id="critical-rule-contradiction"),
    pytest.param(
        [("machines/safety.yaml", "    allows: [ingest, decide, order.reduce, reconcile, heartbeat]",
          "    allows: [ingest, decide, order.reduse, reconcile, heartbeat]")],
        "known-gates", "machines/safety.yaml", r"state 'ARMED_SAFE' allows 'order\.reduse', which is not a gate",
        id="gate-name-typo"),
    pytest.param(
        [("machines/safety.yaml", "initial: ARMED_SAFE", "initial: ARMED_LIVE")],
        "initial-is-safest", "machines/safety.yaml", r"initial state 'ARMED_LIVE' is less safe than 'ARMED_SAFE'",
        id="initial-not-safest"),
    pytest.param(
        [("machines/safety.yaml", "  - event: faulted\n    source: [ARMED_LIVE, ARMED_SAFE]",
          "  - event: faulted\n    source: [ARMED_LIVE]")],
        "rollback-reasons-reach-halt", "rules/invariants.yaml",
        r"rollback reason SCHEMA_VERSION_MISMATCH|rollback reason EXECUTION_ADAPTER_NOT_IMPLEMENTED does not take "
        r"safety from ARMED_SAFE to a halt state",
        id="rollback-reason-misses-a-state"),
    pytest.param(
        [("rules/operator.yaml", "  - id: unhalt_not_halt\n    on: operator_command\n"
          "    when: {all: [{fact: command, eq: unhalt}, {state: safety, ne: HALT}]}\n"
          "    then: {effects: [{kind: refused, code: safety_mode_not_halt}]}\n", ""),
         ("rules/operator.yaml", "    then: {event: unhalted, reason: MANUAL_UNHALT}\n",
          "    then: {event: unhalted, reason: MANUAL_UNHALT}\n  - id: unhalt_not_halt\n    on: operator_command\n"
          "    when: {all: [{fact: command, eq: unhalt}, {state: safety, ne: HALT}]}\n"
          "    then: {effects: [{kind: refused, code: safety_mode_not_halt}]}\n")],
        "rules-live", "rules/operator.yaml", r"rule 'unhalt_not_halt' can never match: the earlier rule 'unhalt'",
        id="shadowed-rule-row"),
    pytest.param(
        [("machines/safety.yaml", "    dest: ARMED_SAFE\n    guards: [halt_recovery_allowed]",
          "    dest: ARMED_LIVE\n    guards: [halt_recovery_allowed]")],
        "halt-exit-one-step", "machines/safety.yaml",
        r"'recovered' leaves halt state HALT straight for 'ARMED_LIVE'.*counter-example: fact reconcile_completed",
        id="recovery-straight-to-live"),
]


@pytest.mark.parametrize(("edits", "invariant", "file", "expected"), DANGEROUS)
def test_dangerous_edit_fails_validation_naming_the_invariant(tmp_path: Path, edits: list[Edit], invariant: str,
                                                              file: str, expected: str) -> None:
    policy = copy_policy(tmp_path)
    for edit in edits:
        mutate(policy, *edit)
    code, output = validate(policy, "--strict")
    assert code == 1, output
    assert "Traceback" not in output
    lines = [ln for ln in output.splitlines() if f"[invariant {invariant}]" in ln]
    assert lines, f"invariant {invariant} not reported in:\n{output}"
    assert any(re.search(expected, ln) for ln in lines), f"{expected!r} not in:\n" + "\n".join(lines)
    located = [ln for ln in lines if re.match(rf"^violation: {re.escape(file)}:\d+: ", ln)]
    assert located, f"no violation located in {file}:LINE in:\n" + "\n".join(lines)
    assert "(invariant declared at rules/invariants.yaml:" in located[0]


def test_default_policy_holds_every_invariant_with_no_warning() -> None:
    code, output = validate(ROOT, "--strict")
    assert code == 0, output
    assert "violation" not in output
    assert "warnings=0" in output


def test_operator_can_declare_another_invariant(tmp_path: Path) -> None:
    """Invariants are data: a new entry (dashboard's HALT closes its decision surface) is enforced."""
    policy = copy_policy(tmp_path)
    mutate(policy, "rules/invariants.yaml", "  - id: rules-live\n",
           "  - id: dashboard-halt\n    check: halt_declared\n    machine: dashboard_view\n    states: [HALT]\n"
           "  - id: rules-live\n")
    code, output = validate(policy)
    assert code == 1, output
    assert re.search(r"^violation: machines/dashboard_view\.yaml:\d+: states\.HALT: state 'HALT' must be declared "
                     r"`halt: true`.*\[invariant dashboard-halt\]$", output, re.M), output


def test_invariant_naming_an_unknown_machine_is_bad_input(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    mutate(policy, "rules/invariants.yaml", "    machine: safety\n    states: [HALT]",
           "    machine: safty\n    states: [HALT]")
    code, output = validate(policy)
    assert code == 2, output
    assert re.search(r"rules/invariants\.yaml:\d+: invariants\[1\]\.machine: unknown machine 'safty'", output), output


def test_operator_flag_on_a_fact_a_job_feeds_is_what_is_trusted(tmp_path: Path) -> None:
    """Declaring the job's fact operator-only is the only way to make that event pass: the
    invariant reads the catalog, not the event's flag."""
    policy = copy_policy(tmp_path)
    mutate(policy, "machines/safety.yaml", "  unhalted: {operator: true",
           "  reconciled_ok: {operator: true}\n  unhalted: {operator: true")
    code, output = validate(policy)
    assert code == 1 and "[invariant operator-events-are-operator-only]" in output, output


def test_diff_labels_a_removed_invariant_looser(tmp_path: Path) -> None:
    from hlcore.config.settings import load_settings
    from hlcore.diff.semantic import LOOSER, STRICTER, diff_policies
    from hlcore.policy.loader import build_policy, read_sources

    config = load_settings(None)
    base = build_policy(read_sources(ROOT), config)
    policy = copy_policy(tmp_path)
    mutate(policy, "rules/invariants.yaml", "  - id: halt-exit-one-step\n    check: halt_exit_one_step\n",
           "  - id: halt-exit-one-step-renamed\n    check: halt_exit_one_step\n")
    head = build_policy(read_sources(policy), config)
    labels = {(c.subject, c.action): c.label for c in diff_policies(base, head) if c.area == "invariant"}
    assert labels == {("halt-exit-one-step", "removed"): LOOSER, ("halt-exit-one-step-renamed", "added"): STRICTER}
