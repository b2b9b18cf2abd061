"""Sweeps: a YAML grid over settings keys, every variant one pure task, on joblib or Dask.

A variant is (policy files, settings overrides, history, window) -> metrics: `run_variant` has no
other input and no shared state, so any number of workers on either engine gives the same rows;
results are ordered by variant id before anything is written. `--out` gets one parquet row per
(variant, metric).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from backtest.exact import Outcome, Task, run_exact
from backtest.summary import summarize
from hlcore.errors import BadInput, Problem
from hlcore.jobs.monitor import HEALTH
from hlcore.yamlsource import load_yaml

ENGINES = ("joblib", "dask")


def load_grid(path: Path) -> list[tuple[str, list[Any]]]:
    """`{grid: {KEY: [v1, v2, ...], ...}}` (or the mapping alone) -> sorted (key, values)."""
    src = load_yaml(path)
    data = src.data.get("grid", src.data) if isinstance(src.data, dict) else src.data
    prefix: tuple[str, ...] = ("grid",) if isinstance(src.data, dict) and "grid" in src.data else ()
    if not isinstance(data, dict) or not data:
        raise BadInput(src.problem(prefix, "expected a mapping of setting keys to lists of values"))
    grid = []
    for key in sorted(data):
        values = data[key]
        if not isinstance(values, list) or not values:
            raise BadInput(src.problem((*prefix, key), "expected a non-empty list of values"))
        grid.append((str(key), values))
    return grid


def variants(grid: list[tuple[str, list[Any]]]) -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
    keys = [k for k, _ in grid]
    combos = list(itertools.product(*[v for _, v in grid]))
    width = max(3, len(str(len(combos))))
    return [(f"v{i:0{width}d}", tuple(zip(keys, combo, strict=True))) for i, combo in enumerate(combos)]


def metrics(outcome: Outcome) -> dict[str, float]:
    """The flat numbers a sweep compares (names from the outcome: reasons and states are the policy's)."""
    s = summarize(outcome)
    out: dict[str, float] = {"alerts": s["alerts"], "surfaced": s["surfaced"], "transitions": s["transitions"]}
    out.update({f"suppressed.{r}": n for r, n in s["suppressed"].items()})
    out.update({f"minutes.{HEALTH}.{st}": m for st, m in s["time_in_state_min"].get(HEALTH, {}).items()})
    out.update({f"alerts.{t}": n for t, n in s["alerts_by_type"].items()})
    return dict(sorted(out.items()))


def run_variant(task: Task) -> tuple[str, dict[str, float]]:
    """One variant, pure: the task in, its label and metrics out."""
    if task.app == "copytrader":
        from backtest.copytrade.exact import run_copytrade
        from backtest.copytrade.report import copy_metrics_flat

        return task.label, copy_metrics_flat(run_copytrade(task, task.slippage_bps))
    if task.path == "fast":
        from backtest.fast.decide import run_fast

        return task.label, metrics(run_fast(task))
    return task.label, metrics(run_exact(task))


def run_sweep(base: Task, grid: list[tuple[str, list[Any]]], *, jobs: int = 1, scheduler: str | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Every variant of the grid over `base`; rows sorted by variant id."""
    tasks = [replace(base, overrides=base.overrides + over, label=vid) for vid, over in variants(grid)]
    params = {vid: dict(over) for vid, over in variants(grid)}
    if base.app == "monitor" and base.path == "fast":
        from backtest.fast.features import prebuild

        prebuild(base, tasks, progress)  # once, here: workers then only read the cache
    if scheduler:
        results = _dask(tasks, scheduler)
    elif jobs == 1:
        results = []
        for i, t in enumerate(tasks):
            results.append(run_variant(t))
            if progress is not None:
                progress(i + 1, len(tasks))
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=jobs, backend="loky")(delayed(run_variant)(t) for t in tasks)
    return [{"variant": vid, "params": params[vid], "metrics": m} for vid, m in sorted(results)]


def _dask(tasks: list[Task], address: str) -> list[tuple[str, dict[str, float]]]:
    try:
        from distributed import Client
    except ImportError:
        raise BadInput(Problem("--scheduler", address, "Dask is not installed (pip install -e '.[dask]')")) from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise BadInput(Problem("--scheduler", address, f"cannot reach the Dask scheduler: {exc}")) from None
    try:
        return client.gather(client.map(run_variant, tasks, pure=True, key=[f"hlcore-{t.label}" for t in tasks]))
    finally:
        client.close()


def rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """One row per (variant, metric); params as canonical JSON."""
    out: dict[str, list[Any]] = {"variant": [], "params": [], "metric": [], "value": []}
    for r in rows:
        for name, value in r["metrics"].items():
            out["variant"].append(r["variant"])
            out["params"].append(json.dumps(r["params"], sort_keys=True, separators=(",", ":")))
            out["metric"].append(name)
            out["value"].append(float(value))
    return pa.table(out)


def write_rows(rows: list[dict[str, Any]], out: Path, name: str = "metrics.parquet") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    target = out / name
    pq.write_table(rows_table(rows), target)
    return target
