"""`hlcore diff`, semantic part: each kind of change gets the label its declared direction gives.

Every test builds two copies of the repository's policy (machines/, rules/, config/) in tmp_path,
edits one, and reads the labelled changes back.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from hlcore.config.settings import load_settings
from hlcore.diff.semantic import (
    LOOSER,
    NEUTRAL,
    STRICTER,
    UNDECLARED,
    Change,
    safer_declarations,
    semantic_diff,
    setting_label,
    setting_leaves,
    settings_schema,
)
from hlcore.diff.sides import load_side
from hlcore.errors import BadInput
from hlcore.policy.loader import load_policy
from hlcore.yamlsource import parse_yaml
from tests.support.policy_copies import copy_repo_policy, edit

ROOT = Path(__file__).resolve().parents[2]



@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return copy_repo_policy(tmp_path / "base"), copy_repo_policy(tmp_path / "head")


def changes(base: Path, head: Path) -> list[Change]:
    with ExitStack() as stack:
        return semantic_diff(load_side(str(base), stack), load_side(str(head), stack))


def only(found: list[Change], **match: Any) -> Change:
    hits = [c for c in found if all(getattr(c, k) == v for k, v in match.items())]
    assert len(hits) == 1, f"want one change matching {match}, got {found}"
    return hits[0]


# --------------------------------------------------------------------------- settings


def test_threshold_up_is_looser_and_names_where_it_is_read(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "config/settings.yaml", "stale_age_sec: 600 ", "stale_age_sec: 900 ")
    found = changes(base, head)
    assert len(found) == 1
    c = found[0]
    assert (c.area, c.subject, c.before, c.after, c.label) == ("setting", "monitor.health.stale_age_sec", 600, 900,
                                                               LOOSER)
    assert re.fullmatch(r"config/settings\.yaml:\d+", c.where)
    assert any(r.startswith("rules/health.yaml:") for r in c.refs)


def test_threshold_down_is_stricter(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "config/settings.yaml", "stale_age_sec: 600 ", "stale_age_sec: 300 ")
    assert only(changes(base, head), subject="monitor.health.stale_age_sec").label == STRICTER


def test_a_higher_is_safer_threshold_lowered_is_looser(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "config/settings.yaml", "healthy_coverage_pct: 90 ", "healthy_coverage_pct: 85 ")
    c = only(changes(base, head), subject="monitor.health.healthy_coverage_pct")
    assert c.label == LOOSER and "safer: higher" in c.why


def test_cooldown_shortened_is_looser_and_lengthened_stricter(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "config/settings.yaml", "exit_cooldown_min: 60", "exit_cooldown_min: 15")
    assert only(changes(base, head), subject="monitor.alerts.exit_cooldown_min").label == LOOSER
    assert only(changes(head, base), subject="monitor.alerts.exit_cooldown_min").label == STRICTER


def test_off_value_turning_a_check_on_is_stricter(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "config/settings.yaml", "max_stale_ms: 0 ", "max_stale_ms: 5000 ")
    assert only(changes(base, head), subject="decision.max_stale_ms").label == STRICTER
    assert only(changes(head, base), subject="decision.max_stale_ms").label == LOOSER  # 0 = off: loosest


def test_flags_and_modes_use_their_declared_safe_value(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "config/settings.yaml", "startup_policy: manual", "startup_policy: auto")
    edit(head / "config/settings.yaml", "maintenance_skip_gap: false", "maintenance_skip_gap: true")
    found = changes(base, head)
    assert only(found, subject="safety.startup_policy").label == LOOSER
    assert only(found, subject="ingest.maintenance_skip_gap").label == LOOSER


def test_a_setting_without_a_direction_is_neutral_and_says_so() -> None:
    assert setting_label(1, 2, {}) == (NEUTRAL, UNDECLARED)
    assert setting_label(1, 2, {"safer": "neutral"})[0] == NEUTRAL
    assert setting_label(5, 2, {"safer": "higher"})[0] == LOOSER


def test_every_numeric_setting_declares_a_direction() -> None:
    """A new threshold cannot silently miss its safety direction (config/schema.yaml meta.safer)."""
    defaults = load_settings(None).data
    missing = []
    for key, value, meta in setting_leaves(settings_schema(), defaults):
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        numeric_list = isinstance(value, list) and value and all(isinstance(v, int | float) for v in value)
        if (numeric or numeric_list) and meta.get("safer") not in ("lower", "higher", "neutral"):
            missing.append(key)
    assert missing == []
    assert len([k for k, v, _ in setting_leaves(settings_schema(), defaults) if isinstance(v, int | float)]) > 90


def test_every_allowlist_declares_a_direction() -> None:
    settings = load_settings(None)
    policy = load_policy(ROOT, settings)
    declared = safer_declarations(policy)
    assert set(policy.allowlists) <= set(declared["allowlists"])
    assert declared["severity"] in ("higher", "lower")


# --------------------------------------------------------------------------- policy structure


def test_allowlist_widened_is_looser_and_narrowed_stricter(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "rules/safety.yaml", "    RECONCILE_CRITICAL: {always: true}\n",
         "    RECONCILE_CRITICAL: {always: true}\n    SCHEMA_VERSION_MISMATCH: {always: true}\n")
    found = changes(base, head)
    assert len(found) == 1
    c = only(found, area="allowlist")
    assert (c.subject, c.action, c.label) == ("halt_recovery.SCHEMA_VERSION_MISMATCH", "added", LOOSER)
    assert c.where.startswith("rules/safety.yaml:")
    assert only(changes(head, base), area="allowlist").label == STRICTER


def test_new_halt_exit_is_looser(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "machines/safety.yaml", "  - {event: promoted, source: ARMED_SAFE, dest: ARMED_LIVE, reason: "
         "MANUAL_PROMOTE}\n", "  - {event: promoted, source: ARMED_SAFE, dest: ARMED_LIVE, reason: MANUAL_PROMOTE}\n"
         "  - {event: promoted, source: HALT, dest: ARMED_LIVE, reason: MANUAL_PROMOTE}\n")
    found = changes(base, head)
    c = only(found, area="transition")
    assert c.subject == "safety: HALT --promoted--> ARMED_LIVE"
    assert (c.action, c.label) == ("added", LOOSER)
    assert "safety_order" in c.why


def test_guard_removed_from_a_halt_exit_is_looser(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "machines/safety.yaml", "    guards: [halt_recovery_allowed]\n", "")
    c = only(changes(base, head), area="transition")
    assert (c.subject, c.action, c.label) == ("safety: HALT --recovered--> ARMED_SAFE", "changed", LOOSER)
    assert (c.before, c.after) == (["halt_recovery_allowed"], [])


def test_state_added_with_a_way_into_it(pair: tuple[Path, Path]) -> None:
    """A new state is neutral by itself; the way into it carries the direction. PAUSED allows no
    gate, a strict subset of HEALTHY's, so it is the safer state: the new way in is stricter."""
    base, head = pair
    edit(head / "machines/health.yaml", "transitions:\n",
         "  PAUSED:\n    allows: []\ntransitions:\n  - {event: stale_detected, source: HEALTHY, dest: PAUSED}\n"
         "  - {event: released, source: PAUSED, dest: HEALTHY, reason: OK}\n")
    found = changes(base, head)
    assert only(found, area="state").action == "added"
    assert only(found, area="state").label == NEUTRAL
    into = only(found, subject="health: HEALTHY --stale_detected--> PAUSED")
    assert (into.action, into.label) == ("added", STRICTER) and "allowed gates" in into.why
    assert only(found, subject="health: PAUSED --released--> HEALTHY").label == LOOSER
    # `source: "*"` now also covers PAUSED: an implicit new way out of it, towards STALE
    assert only(found, subject="health: PAUSED --stale_detected--> STALE").action == "added"


def test_state_removed_reports_the_lost_ways(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(base / "machines/health.yaml", "transitions:\n",
         "  PAUSED:\n    allows: []\ntransitions:\n  - {event: stale_detected, source: HEALTHY, dest: PAUSED}\n"
         "  - {event: released, source: PAUSED, dest: HEALTHY, reason: OK}\n")
    found = changes(base, head)
    assert (only(found, area="state").action, only(found, area="state").subject) == ("removed", "health.PAUSED")
    lost = only(found, subject="health: HEALTHY --stale_detected--> PAUSED")
    assert (lost.action, lost.label) == ("removed", LOOSER)  # one way to the safer state fewer


def test_gate_granted_in_another_state_is_looser(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "machines/health.yaml", "allows: [signals.compute, dashboard.full]",
         "allows: [signals.compute, dashboard.full, trading]")
    c = only(changes(base, head), area="gate")
    assert (c.subject, c.action, c.label) == ("health.DEGRADED allows trading", "added", LOOSER)


def test_severity_lowered_is_looser_and_raised_stricter(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "rules/reasons.yaml", "  AGE_STALE: {severity: critical", "  AGE_STALE: {severity: high")
    edit(head / "rules/reasons.yaml", "  RECONCILE_WARN: {severity: medium", "  RECONCILE_WARN: {severity: high")
    found = changes(base, head)
    assert len(found) == 2
    assert only(found, subject="AGE_STALE").label == LOOSER
    assert only(found, subject="RECONCILE_WARN").label == STRICTER


def test_rule_removed_takes_the_reverse_direction_of_its_event(pair: tuple[Path, Path]) -> None:
    base, head = pair
    text = (head / "rules/health.yaml").read_text(encoding="utf-8")
    start = text.index("  - id: age_stale\n")
    end = text.index("  - id: coverage_stale\n")
    (head / "rules/health.yaml").write_text(text[:start] + text[end:], encoding="utf-8")
    c = only(changes(base, head), area="rule")
    assert (c.subject, c.action) == ("health.age_stale", "removed")
    # stale_detected only ever moves towards STALE (or holds there): one way to safety fewer
    assert c.label == LOOSER and "health.stale_detected" in c.why


def test_rule_added_takes_its_event_direction_and_a_mixed_event_is_neutral(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(head / "rules/health.yaml", "  - id: age_stale\n", "  - id: extra_probe\n    on: health_evaluated\n"
         "    when: {fact: age_ms, gt: 1}\n    then: {event: released, reason: OK}\n  - id: age_stale\n")
    c = only(changes(base, head), area="rule")
    assert (c.subject, c.action, c.label) == ("health.extra_probe", "added", LOOSER)  # STALE -> HEALTHY only
    edit(head / "rules/health.yaml", "then: {event: released, reason: OK}\n  - id: age_stale",
         "then: {event: toggled, reason: OK}\n  - id: age_stale")
    edit(head / "machines/health.yaml", "transitions:\n", "transitions:\n"
         "  - {event: toggled, source: STALE, dest: HEALTHY}\n  - {event: toggled, source: HEALTHY, dest: STALE}\n")
    c = only(changes(base, head), area="rule")
    assert c.label == NEUTRAL and UNDECLARED in c.why


# --------------------------------------------------------------------------- normalisation


def _reformat(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _reformat(node[k]) for k in reversed(list(node))}
    if isinstance(node, list):
        return [_reformat(x) for x in node]
    return node


def test_reordering_keys_and_reindenting_every_file_is_no_change(pair: tuple[Path, Path]) -> None:
    base, head = pair
    files = [*head.glob("machines/*.yaml"), *head.glob("rules/*.yaml"), head / "config/settings.yaml"]
    for path in files:
        data = parse_yaml(path.read_text(encoding="utf-8"), path.name).data  # YAML 1.2, as hlcore reads
        path.write_text(yaml.safe_dump(_reformat(data), sort_keys=False, indent=4, width=70,
                                       default_flow_style=False, allow_unicode=True), encoding="utf-8")
    assert (head / "machines/safety.yaml").read_text() != (base / "machines/safety.yaml").read_text()
    assert changes(base, head) == []


def test_an_anchor_expanded_by_hand_is_no_change(pair: tuple[Path, Path]) -> None:
    base, head = pair
    edit(base / "machines/safety.yaml", "states:\n  ARMED_LIVE:\n", "states:\n  ARMED_LIVE: &live\n")
    edit(base / "machines/safety.yaml", "  ARMED_SAFE:\n", "  ARMED_SAFE:\n    <<: *live\n")
    assert changes(base, head) == []


# --------------------------------------------------------------------------- metadata validation


def test_safety_order_naming_an_unknown_state_is_bad_input(pair: tuple[Path, Path]) -> None:
    _, head = pair
    edit(head / "machines/safety.yaml", "safety_order: [HALT, ARMED_SAFE, ARMED_LIVE]",
         "safety_order: [HALT, ARMED_SAFE, ARMED_LYVE]")
    with pytest.raises(BadInput) as exc:
        load_policy(head, load_settings(None))
    assert "machines/safety.yaml" in str(exc.value) and "ARMED_LYVE" in str(exc.value)


def test_safer_naming_an_unknown_allowlist_is_bad_input(pair: tuple[Path, Path]) -> None:
    _, head = pair
    edit(head / "rules/safety.yaml", "allowlists: {halt_recovery: fewer}", "allowlists: {halt_recovery: fewer, "
         "hlat_recovery: fewer}")
    with pytest.raises(BadInput, match="unknown allowlist 'hlat_recovery'"):
        load_policy(head, load_settings(None))


def test_a_direction_outside_the_vocabulary_is_bad_input(pair: tuple[Path, Path]) -> None:
    _, head = pair
    edit(head / "rules/safety.yaml", "allowlists: {halt_recovery: fewer}", "allowlists: {halt_recovery: less}")
    with pytest.raises(BadInput, match="halt_recovery"):
        load_policy(head, load_settings(None))


