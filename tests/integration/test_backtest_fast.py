"""Issue 16, the fast path: its outcome tables equal the exact path's (faults, dirt, a swept setting),
its feature cache is keyed by exactly the settings the measuring half reads, and the CLI says which
path ran. The month-long parity runs in benchmarks/backtest.py."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backtest.exact import Task, outcome_tables, run_exact
from backtest.fast.decide import run_fast
from backtest.fast.features import ensure, feature_key, load, task_settings
from backtest.history.dataset import open_history
from backtest.history.synth import SynthSpec, synth
from hlcore.errors import BadInput
from hlcore.resources import resolve_policy_dir
from hlcore_cli import app

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOURS = 4  # the exact side takes ~20 s on a loaded 2-core machine


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rough day for 12 wallets: exit clusters, dirty collapses, fetch-fault episodes and outages."""
    out = tmp_path_factory.mktemp("fast") / "hist"
    synth(SynthSpec(days=1, wallets=12, seed=21, clusters_per_day=120, dirty_per_day=400, fault_episodes_per_day=24,
                    outages_per_day=6), out)
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


def task(history: Path, cache: Path, *overrides: tuple[str, object]) -> Task:
    return Task(str(history), str(resolve_policy_dir(None)), None, (("monitor.universe.size", 12), *overrides),
                until_ms=START + HOURS * 3_600_000, path="fast", cache_dir=str(cache))


def dumped(outcome: object) -> str:
    return json.dumps(outcome_tables(outcome), sort_keys=True)  # type: ignore[arg-type]


def test_fast_equals_exact_through_faults_and_dirt(history: Path, cache: Path) -> None:
    t = task(history, cache)
    exact, fast = run_exact(t), run_fast(t)
    assert dumped(fast) == dumped(exact)
    assert fast.logs == exact.logs and fast.feed == exact.feed and fast.path == "fast" and exact.path == "exact"
    # the window holds what the parity is about
    assert exact.run_status.get("failed", 0) > 0 and exact.run_status.get("partial", 0) > 0  # fetch faults
    entry = load(ensure(t, task_settings(t))[0])
    assert sum(r.run.dirty_marked for r in entry.runs.values()) > 0  # S6 dirty collapses
    assert any(x.dirty > 0 for x in entry.slots.values())
    assert any(a["suppressed"] for a in exact.alerts) and any(not a["suppressed"] for a in exact.alerts)
    assert {tr["machine"] for tr in exact.transitions} >= {"health", "signal_lock", "exit_cluster"}


def test_a_swept_setting_reuses_the_features_and_still_equals_exact(history: Path, cache: Path) -> None:
    base = task(history, cache)
    head = task(history, cache, ("monitor.alerts.exit_fire_pct", 27), ("monitor.alerts.exit_cooldown_min", 90),
                ("monitor.alerts.daily_cap", 1))
    ensure(base, task_settings(base))  # the base's entry, whichever worker ran the test before this one
    before = sorted(p.name for p in cache.iterdir())
    _, built = ensure(head, task_settings(head))
    assert not built and sorted(p.name for p in cache.iterdir()) == before  # alert settings: same entry
    exact, fast = run_exact(head), run_fast(head)
    assert dumped(fast) == dumped(exact)
    assert dumped(fast) != dumped(run_fast(base))  # the sweep moved something


def test_pruned_snapshot_rows_are_never_read(history: Path, cache: Path) -> None:
    """The measuring half drops snapshot rows older than the ε lookback + margin; with a 1 h lookback
    the 4 h window prunes, and the outcome still equals the exact path's (which prunes nothing)."""
    t = task(history, cache, ("monitor.signals.epsilon_lookback_hours", 1))
    assert dumped(run_fast(t)) == dumped(run_exact(t))


def test_cache_key_holds_feature_settings_only(history: Path, cache: Path) -> None:
    h = open_history(history)
    t = task(history, cache)

    def key(*over: tuple[str, object]) -> dict[str, object]:
        v = replace(t, overrides=t.overrides + over)
        return feature_key(v, task_settings(v), h)

    plain = key()
    for alert_side in [("monitor.alerts.exit_fire_pct", 30), ("monitor.alerts.daily_cap", 2),
                       ("monitor.health.stale_age_sec", 900), ("monitor.dirty.sustained_pct", 30)]:
        assert key(alert_side) == plain, alert_side
    for feature_side in [("monitor.signals.epsilon_rel", 0.05), ("monitor.dirty.collapse_ratio", 0.02),
                         ("monitor.health.healthy_coverage_pct", 95), ("monitor.universe.size", 11)]:
        assert key(feature_side) != plain, feature_side
    assert key(("monitor.signals.epsilon_rel", 0.05))["history"] == h.content_hash


def test_cli_defaults_to_the_fast_path_and_says_so(history: Path, cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HLCORE_CACHE_DIR", str(cache))
    args = ["backtest", "--history", str(history), "--set", "monitor.universe.size=12", "--until",
            "2026-01-01T00:40:00Z", "--format", "json"]
    fast = CliRunner().invoke(app, args)
    exact = CliRunner().invoke(app, [*args, "--exact"])
    assert fast.exit_code == 0 and exact.exit_code == 0, fast.stderr + exact.stderr
    f, e = json.loads(fast.stdout), json.loads(exact.stdout)
    assert any(a.startswith("Fast path:") for a in f["assumptions"])
    assert any(a.startswith("Exact path:") for a in e["assumptions"])
    f.pop("assumptions"), e.pop("assumptions")
    assert f == e  # same report otherwise


def test_features_that_do_not_cover_the_window_are_a_clear_error(history: Path, cache: Path) -> None:
    short = replace(task(history, cache), until_ms=START + 20 * 60_000)
    entry = load(ensure(short, task_settings(short))[0])
    with pytest.raises(BadInput) as exc:
        run_fast(replace(short, until_ms=START + 30 * 60_000), features=entry)
    assert "no snapshot run in the features" in str(exc.value) and str(entry.path) in str(exc.value)
    assert len(str(exc.value).splitlines()) == 1
