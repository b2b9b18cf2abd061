"""`hlcore backtest` end to end on a small synthetic history: report, A/B, errors, sweeps."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from backtest.exact import Task, run_exact
from backtest.history.synth import SynthSpec, synth
from backtest.sweep import load_grid, run_sweep
from hlcore.errors import BadInput
from hlcore.resources import resolve_policy_dir
from hlcore_cli import app
from tests.conftest import ROOT

UNTIL = "2026-01-01T00:50:00Z"
SIZE = "monitor.universe.size=12"


@pytest.fixture(autouse=True, scope="module")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The fast path's feature cache in a scratch folder, not the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HLCORE_CACHE_DIR", str(tmp_path_factory.mktemp("feature-cache")))
        yield


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bt") / "hist"
    synth(SynthSpec(days=1, wallets=12, seed=21, clusters_per_day=24), out)
    return out


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_base_vs_head_report_json_is_stable_and_labelled(history: Path, tmp_path: Path) -> None:
    args = ["backtest", "--history", str(history), "--set", SIZE, "--set", "monitor.alerts.daily_cap=1",
            "--until", UNTIL, "--format", "json"]
    code, first, err = run(*args, "--out", str(tmp_path / "o"))
    assert code == 0, err
    data = json.loads(first)
    assert set(data["sides"]) == {"base", "head"} and set(data["headline"]) == {"base", "head"}
    assert {c["subject"] for c in data["changes"]} == {"monitor.universe.size", "monitor.alerts.daily_cap"}
    assert {c["label"] for c in data["changes"] if c["subject"] == "monitor.alerts.daily_cap"} <= {
        "stricter", "looser", "neutral"}
    # base keeps universe.size 200 over a 12-wallet history: its universe never applies, every run fails
    runs = sum(data["sides"]["head"]["snapshot_runs"].values())
    assert runs == 50 and data["sides"]["base"]["snapshot_runs"] == {"failed": runs}
    assert data["sides"]["head"]["snapshot_runs"].get("success", 0) > 40
    assert any("monitor.universe.size is 200" in a for a in data["assumptions"])
    assert data["sides"]["head"]["time_in_state_min"]["health"]
    metrics = pq.read_table(tmp_path / "o" / "metrics.parquet").to_pylist()
    assert {m["variant"] for m in metrics} == {"base", "head"}
    code, again, _ = run(*args)
    assert again == first  # stable for scripts: same input, same bytes


def test_a_higher_fire_threshold_removes_the_exit_cluster_alert(history: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    for sub in ("machines", "rules"):
        shutil.copytree(ROOT / sub, policy / sub)
    (policy / "config").mkdir()
    (policy / "config" / "settings.yaml").write_text("monitor:\n  universe:\n    size: 12\n", encoding="utf-8")
    code, text, err = run("backtest", "--history", str(history), "--policy", str(policy), "--set",
                          "monitor.alerts.exit_fire_pct=90", "--until", UNTIL, "--format", "json")
    assert code == 0, err
    data = json.loads(text)
    base, head = data["sides"]["base"], data["sides"]["head"]
    assert base["alerts_by_type"].get("exit_cluster", 0) >= 1 and "exit_cluster" not in head["alerts_by_type"]
    assert [c["subject"] for c in data["changes"]] == ["monitor.alerts.exit_fire_pct"]
    assert data["changes"][0]["label"] == "stricter"  # safer: higher
    surfaced = next(d for d in data["deltas"] if d["metric"] == "alerts surfaced")
    assert surfaced["delta"] < 0 and surfaced["label"] == "stricter"
    assert any(k[1] == "exit_cluster" for k in data["alert_changes"]["removed"])


def test_md_and_html_render(history: Path, tmp_path: Path) -> None:
    code, md, err = run("backtest", "--history", str(history), "--set", SIZE, "--until", UNTIL, "--format", "md",
                        "--breakdown", "week")
    assert code == 0, err
    for title in ("## Backtest", "### Base -> head", "### Time in state (minutes)", "### Transitions by reason",
                  "### Alerts surfaced by asset x week", "### Assumptions"):
        assert title in md
    code, page, err = run("backtest", "--history", str(history), "--set", SIZE, "--until", UNTIL, "--format",
                          "html")
    assert code == 0, err
    assert page.startswith("<!doctype html>") and page.count("<svg") >= 3  # two timelines, alerts per period
    assert "<script" not in page and "src=" not in page and "<link" not in page  # self-contained


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "monitor.alerts.exit_fire=27"], "--set: monitor.alerts.exit_fire: unknown setting"),
    (["--set", "nonsense"], "expected KEY=VALUE"),
    (["--format", "pdf"], "--format: expected one of text, md, json, html"),
    (["--since", "yesterday"], "--since: expected an ISO date"),
    (["--until", "2025-12-31"], "--until: 2025-12-31: before the history's start (the history spans"),
    (["--since", "2026-02-01"], "--since: 2026-02-01: after the history's end"),
    (["--app", "copytrader"], "app: expected a copytrader history, got 'monitor'"),  # issue 17
    (["--app", "trader"], "--app: expected monitor or copytrader, got 'trader'"),
])
def test_bad_input_is_one_line_and_exit_2(history: Path, args: list[str], message: str) -> None:
    code, _, err = run("backtest", "--history", str(history), *args)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_history_is_one_line(tmp_path: Path) -> None:
    code, _, err = run("backtest", "--history", str(tmp_path))
    assert code == 2 and "no manifest.json" in err and len(err.strip().splitlines()) == 1


def test_grid_errors_name_file_and_line(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid:\n  monitor.alerts.exit_fire_pct: 27\n", encoding="utf-8")
    with pytest.raises(BadInput) as exc:
        load_grid(grid)
    assert f"{grid}:2: grid.monitor.alerts.exit_fire_pct: expected a non-empty list" in str(exc.value)


@pytest.mark.parametrize("path", ["exact", "fast"])
def test_sweep_is_identical_for_any_worker_count_and_engine(history: Path, tmp_path: Path, path: str) -> None:
    base = Task(str(history), str(resolve_policy_dir(None)), None, (("monitor.universe.size", 12),),
                until_ms=1_767_225_600_000 + 40 * 60_000, path=path, cache_dir=str(tmp_path / "cache"))
    grid = [("monitor.alerts.exit_fire_pct", [22, 35]), ("monitor.alerts.exit_cooldown_min", [30])]
    one = run_sweep(base, grid, jobs=1)
    two = run_sweep(base, grid, jobs=2)
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        dask = run_sweep(base, grid, scheduler=cluster.scheduler_address)
    assert [r["variant"] for r in one] == ["v000", "v001"]
    assert one[0]["params"] == {"monitor.alerts.exit_fire_pct": 22, "monitor.alerts.exit_cooldown_min": 30}
    dumped = json.dumps(one, sort_keys=True)
    assert json.dumps(two, sort_keys=True) == dumped
    assert json.dumps(dask, sort_keys=True) == dumped
    assert one[0]["metrics"] != {} and "surfaced" in one[0]["metrics"]
    if path == "fast":  # built once before the fan-out (the grid sweeps alert settings only)
        assert len(list((tmp_path / "cache").iterdir())) == 1


def test_an_invalid_variant_is_named(history: Path) -> None:
    base = Task(str(history), str(resolve_policy_dir(None)), None, until_ms=1_767_225_600_000 + 60_000)
    with pytest.raises(BadInput) as exc:
        run_sweep(base, [("monitor.alerts.exit_fire_pct", [15])])
    assert str(exc.value).startswith("v000 (monitor.alerts.exit_fire_pct=15): monitor.alerts.exit_fire_pct: must be")


def test_exact_outcome_is_deterministic(history: Path) -> None:
    task = Task(str(history), str(resolve_policy_dir(None)), None, (("monitor.universe.size", 12),),
                until_ms=1_767_225_600_000 + 30 * 60_000)
    a, b = run_exact(task), run_exact(task)
    assert a.transitions == b.transitions and a.alerts == b.alerts and a.run_status == b.run_status
    assert sum(a.run_status.values()) == 30  # minutes 00:00 .. 00:29: --until is exclusive


def test_sweep_cli_writes_one_row_per_variant_and_metric(history: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid:\n  monitor.alerts.exit_fire_pct: [24, 40]\n  monitor.alerts.daily_cap: [2]\n",
                    encoding="utf-8")
    code, page, err = run("backtest", "--history", str(history), "--set", SIZE, "--sweep", str(grid), "--until",
                          "2026-01-01T00:20:00Z", "--format", "html", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "<svg" in page and "monitor.alerts.daily_cap" in page  # two parameters: a heatmap
    rows = pq.read_table(tmp_path / "o" / "metrics.parquet").to_pylist()
    pairs = [(r["variant"], r["metric"]) for r in rows]
    assert len(pairs) == len(set(pairs)) and {v for v, _ in pairs} == {"v000", "v001"}
    assert json.loads(rows[0]["params"]) == {"monitor.alerts.daily_cap": 2, "monitor.alerts.exit_fire_pct": 24}
    assert (tmp_path / "o" / "sweep.html").read_text(encoding="utf-8") == page
