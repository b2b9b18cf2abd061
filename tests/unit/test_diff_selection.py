"""`hlcore diff`'s drill selection without replaying: what is noted as consulted, how a change is
classified, and when a drill may be skipped (replay.selection, hlcore.consulted)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlcore import consulted
from hlcore.config.hashing import config_hash
from hlcore.config.settings import load_settings
from hlcore.policy.loader import load_policy
from hlcore.policy.model import Policy
from replay.behaviour import code_hash, golden_replayed
from replay.drill import COVERAGE_FILE, GOLDEN_FILE, fixture_hash
from replay.selection import (
    JOURNAL_KEY,
    SEED,
    ChangeSet,
    Recorded,
    change_set,
    close,
    coverage_doc,
    select,
    touches,
    vouched_golden,
)
from tests.support.policy_copies import copy_repo_policy, edit

ROOT = Path(__file__).resolve().parents[2]


def _side(root: Path) -> tuple[Policy, dict]:
    settings = load_settings(root / "config" / "settings.yaml")
    return load_policy(root, settings), settings.data


@pytest.fixture(scope="module")
def base() -> tuple[Policy, dict]:
    return _side(ROOT)


def _head(tmp: Path, file: str, old: str, new: str) -> tuple[Policy, dict]:
    root = copy_repo_policy(tmp / "head")
    edit(root / file, old, new)
    return _side(root)


# ------------------------------------------------------------------ what is noted


def test_reads_are_noted_only_while_collecting_and_not_while_paused() -> None:
    settings = load_settings(None)
    settings.get("safety.warn_threshold")  # nothing collects: nothing to note, nothing fails
    with consulted.collecting() as seen:
        settings.get("safety.warn_threshold")
        settings.get("monitor.alerts")  # a section: covers its subtree
        with consulted.paused():
            settings.get("monitor.health.stale_age_sec")
        config_hash(settings, {})  # a hash is not a use of every setting
    assert seen["settings"] == {"safety.warn_threshold", "monitor.alerts"}
    with consulted.collecting() as seen:
        settings.to_dict()
    assert seen["settings"] == {consulted.ALL}


def test_policy_catalog_lookups_are_noted_by_name(base: tuple[Policy, dict]) -> None:
    policy, _ = base
    with consulted.collecting() as seen:
        policy.reasons.get("OK")
        assert "NOT_A_REASON" not in policy.reasons  # a miss is noted too: a head side could add it
        _ = policy.machines["safety"]
    assert seen == {"reasons": {"OK", "NOT_A_REASON"}, "machines": {"safety"}}
    with consulted.collecting() as seen:
        list(policy.lists)  # walking a catalog consults all of it
    assert seen["lists"] == set(dict.keys(policy.lists))


@given(st.dictionaries(st.text(min_size=1, max_size=4), st.integers(), max_size=6),
       st.lists(st.text(min_size=1, max_size=4), max_size=6))
@settings(max_examples=60, deadline=None)
def test_a_noted_catalog_is_the_dict_it_wraps(data: dict[str, int], reads: list[str]) -> None:
    noted = consulted.Noted("lists", data)
    assert noted == data and dict(noted) == data
    with consulted.collecting() as seen:
        for key in reads:
            assert noted.get(key) == data.get(key)
            assert (key in noted) == (key in data)
    assert seen.get("lists", set()) == set(reads)


def test_closure_brings_in_what_a_consulted_table_names(base: tuple[Policy, dict]) -> None:
    """A run that evaluated `signal_committed` ran the alerts table, whose exit-cluster band reads
    exit_fire_pct, whether or not the band's rows ever matched."""
    policy, data = base
    out = close(policy, data, {"facts": ["signal_committed"]})
    assert "alerts" in out["tables"]
    assert "exit_cluster" in out["bands"]
    assert {"monitor.alerts.exit_fire_pct", "monitor.alerts.exit_reset_pct"} <= set(out["settings"])
    assert "exit_cluster" in out["machines"]
    copy = close(policy, data, {"facts": ["boot"]})
    assert "monitor.alerts.exit_fire_pct" not in copy["settings"]


# ------------------------------------------------------------------ classifying the change


def test_a_setting_change_is_its_key(base: tuple[Policy, dict], tmp_path: Path) -> None:
    head = _head(tmp_path, "config/settings.yaml", "exit_fire_pct: 25", "exit_fire_pct: 27")
    cs = change_set(*base, *head)
    assert cs.settings == {"monitor.alerts.exit_fire_pct"} and not cs.items and not cs.unknown
    assert touches(cs, {"settings": ["monitor.alerts"]}) == ["setting monitor.alerts.exit_fire_pct"]
    assert touches(cs, {"settings": ["monitor.alerts.exit_fire_pct"]})
    assert not touches(cs, {"settings": ["monitor.alerts.exit_reset_pct", "safety"]})


def test_a_transition_change_is_the_machine_not_its_seed(base: tuple[Policy, dict], tmp_path: Path) -> None:
    head = _head(tmp_path, "machines/dirty.yaml", "{event: cleared, source: SUSTAINED, dest: CLEAN, reason: OK}",
                 "{event: cleared, source: SUSTAINED, dest: SUSTAINED, reason: OK}")
    cs = change_set(*base, *head)
    assert cs.items == {("machines", "dirty")} and not cs.settings
    assert not touches(cs, {SEED: ["dirty", "safety"], "machines": ["safety"]})
    assert touches(cs, {"machines": ["dirty"]}) == ["machines dirty"]


def test_an_initial_state_change_reaches_every_engine_that_seeds_it(base: tuple[Policy, dict],
                                                                    tmp_path: Path) -> None:
    head = _head(tmp_path, "machines/safety.yaml", "initial_reason: BOOTSTRAP", "initial_reason: MANUAL_OVERRIDE")
    cs = change_set(*base, *head)
    assert ("machines", "safety") in cs.items and (SEED, "safety") in cs.items
    assert touches(cs, {SEED: ["safety"]})


def test_an_allowlist_entry_is_the_allowlist(base: tuple[Policy, dict], tmp_path: Path) -> None:
    head = _head(tmp_path, "rules/safety.yaml", "    RECONCILE_CRITICAL: {always: true}\n", "")
    cs = change_set(*base, *head)
    assert cs.items == {("allowlists", "halt_recovery")}
    assert touches(cs, {"allowlists": ["halt_recovery"]}) and not touches(cs, {"lists": ["halt_recovery"]})


def test_a_rule_row_change_reaches_drills_that_evaluated_its_facts(base: tuple[Policy, dict],
                                                                    tmp_path: Path) -> None:
    head = _head(tmp_path, "rules/alerts.yaml", "on: [health_evaluated, signal_lock_check]", "on: [health_evaluated]")
    cs = change_set(*base, *head)
    (table, listens), = cs.changed_tables
    assert table == "alerts" and {"health_evaluated", "signal_lock_check", "signal_committed"} <= listens
    assert touches(cs, {"facts": ["signal_lock_check"]}) == ["table alerts"]  # the base side's listener
    assert not touches(cs, {"facts": ["boot", "ingest_tick"]})


def test_what_cannot_be_classified_replays_everything(base: tuple[Policy, dict], tmp_path: Path) -> None:
    policy, data = base
    head_policy = Policy(**{**{f: getattr(policy, f) for f in policy.__dataclass_fields__},
                            "severities": tuple(reversed(policy.severities))})
    cs = change_set(policy, data, head_policy, data)
    assert cs.unknown
    assert select(ROOT / "fixtures" / "gap_exceeded", cs, Recorded("", "", "", "")).replay


# ------------------------------------------------------------------ when a drill may be skipped


def _drill(tmp: Path, consulted_names: dict[str, list[str]], recorded: Recorded | None) -> tuple[Path, Recorded]:
    d = tmp / "fixtures" / "one"
    shutil.copytree(ROOT / "fixtures" / "gap_exceeded", d, ignore=shutil.ignore_patterns(COVERAGE_FILE))
    now = Recorded("code", "policy", "config", fixture_hash(d))
    if recorded is not None:
        (d / COVERAGE_FILE).write_text(coverage_doc(recorded if recorded.code else now, consulted_names))
    return d, now


def test_a_drill_is_skipped_only_with_current_disjoint_coverage(tmp_path: Path) -> None:
    cs = ChangeSet(settings={"monitor.alerts.exit_fire_pct"})
    d, now = _drill(tmp_path, {"settings": ["safety.warn_threshold"]}, Recorded("", "", "", ""))
    assert select(d, cs, now).replay is False
    assert fixture_hash(d) == now.fixture_hash  # the coverage file is an output, not part of the fixture
    for stale, word in ((Recorded("other", "policy", "config", now.fixture_hash), "code"),
                        (Recorded("code", "policy", "other", now.fixture_hash), "base settings"),
                        (Recorded("code", "other", "config", now.fixture_hash), "base policy")):
        (d / COVERAGE_FILE).write_text(coverage_doc(stale, {"settings": []}))
        verdict = select(d, cs, now)
        assert verdict.replay and word in verdict.why
    (d / COVERAGE_FILE).write_text("{not json")
    assert select(d, cs, now).replay
    (d / COVERAGE_FILE).unlink()
    verdict = select(d, cs, now)
    assert verdict.replay and "no coverage.json" in verdict.why


def test_a_drill_that_read_the_setting_is_replayed(tmp_path: Path) -> None:
    cs = ChangeSet(settings={"monitor.alerts.exit_fire_pct"})
    d, now = _drill(tmp_path, {"settings": ["monitor.alerts"]}, Recorded("", "", "", ""))
    verdict = select(d, cs, now)
    assert verdict.replay and "monitor.alerts.exit_fire_pct" in verdict.why


def test_committed_coverage_files_are_well_formed() -> None:
    files = sorted((ROOT / "fixtures").glob(f"*/{COVERAGE_FILE}"))
    assert len(files) == len(list((ROOT / "fixtures").glob("*/drill.yaml")))
    code = code_hash()
    for path in files:
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert set(doc) <= {"version", "recorded_under", "consulted", JOURNAL_KEY}
        assert doc["recorded_under"]["fixture_hash"] == fixture_hash(path.parent), path
        assert doc["consulted"]["facts"], path  # every drill boots an engine
        if doc["recorded_under"]["code"] == code:  # current coverage (stale: tests/drills says so)
            golden = hashlib.sha256((path.parent / GOLDEN_FILE).read_bytes()).hexdigest()
            assert doc.get(JOURNAL_KEY) == golden, f"{path}: the golden is not the recorded run's journal"


# ------------------------------------------------------------------ the golden journal as the base side


def test_a_golden_journal_is_vouched_only_under_exactly_the_hashes_and_journal_it_was_recorded_with(
        tmp_path: Path) -> None:
    """`hlcore diff` takes the committed golden as the base side's journal only when the coverage file
    vouches for it: recorded under this code, this fixture and exactly the base side's policy and
    settings hashes, with the sha256 of that run's journal, which the golden file must still have."""
    d, now = _drill(tmp_path, {}, None)
    golden = (d / GOLDEN_FILE).read_text(encoding="utf-8")
    (d / COVERAGE_FILE).write_text(coverage_doc(now, {}, golden))
    assert vouched_golden(d, now) == golden
    for other in (Recorded("other", now.policy_hash, now.config_hash, now.fixture_hash),
                  Recorded(now.code, "edited base policy", now.config_hash, now.fixture_hash),
                  Recorded(now.code, now.policy_hash, "edited base settings", now.fixture_hash),
                  Recorded(now.code, now.policy_hash, now.config_hash, "edited fixture")):
        assert vouched_golden(d, other) is None, other  # a stale golden is never the base side
    (d / COVERAGE_FILE).write_text(coverage_doc(now, {}))  # no journal hash recorded (an older file)
    assert vouched_golden(d, now) is None
    (d / COVERAGE_FILE).write_text(coverage_doc(now, {}, golden))
    (d / GOLDEN_FILE).write_text(golden.replace('"verdict":"pass"', '"verdict":"pass" '), encoding="utf-8")
    assert vouched_golden(d, now) is None  # the golden was edited after the run was recorded
    (d / GOLDEN_FILE).unlink()
    assert vouched_golden(d, now) is None
    (d / COVERAGE_FILE).write_text("{not json")
    assert vouched_golden(d, now) is None


def test_a_golden_journal_reads_back_only_as_the_passing_run_under_its_hashes(tmp_path: Path) -> None:
    golden = (ROOT / "fixtures" / "gap_exceeded" / GOLDEN_FILE).read_text(encoding="utf-8")
    summary = json.loads(golden.splitlines()[-1])["summary"]
    policy, fixture = summary["policy_hash"], summary["fixture_hash"]
    read = golden_replayed(golden, policy, "config", fixture)
    assert read is not None and read.verdict == "pass" and read.failures == () and read.drill == "gap_exceeded"
    assert len(read.lines) == len(golden.splitlines()) and policy not in "".join(read.lines)
    assert golden_replayed(golden, "another policy", "config", fixture) is None
    assert golden_replayed(golden, policy, "config", "another fixture") is None
    failed = golden.replace('"failures":[]', '"failures":["base: x"]').replace('"verdict":"pass"', '"verdict":"fail"')
    assert golden_replayed(failed, policy, "config", fixture) is None
    assert golden_replayed("", policy, "config", fixture) is None
    assert golden_replayed("{}\n", policy, "config", fixture) is None
