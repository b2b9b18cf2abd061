"""`hlcore backtest`: resolve the sides, run them over the history, build and render the report."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from backtest.exact import Outcome, Task, check_keys, nest, parse_sets, run_exact
from backtest.fast.decide import run_fast
from backtest.history.dataset import History, open_history, parse_instant
from backtest.report import BacktestReport, render
from backtest.sweep import load_grid, metrics, run_sweep, write_rows
from hlcore.diff.semantic import semantic_diff
from hlcore.diff.sides import Side, _load, load_side
from hlcore.errors import BadInput, Problem
from hlcore.resources import resolve_policy_dir
from replay.drill import deep_merge

Progress = Callable[[int, int], None] | None


def resolve_side(spec: str | None, stack: ExitStack) -> Side:
    """A directory or revision; by default ./ when it holds a policy, else the packaged one."""
    if spec is None and not (Path.cwd() / "machines").is_dir():
        return load_side(str(resolve_policy_dir(None)), stack)
    return load_side(spec, stack)


def with_overrides(side: Side, overrides: tuple[tuple[str, Any], ...], folder: Path) -> Side:
    """The side with `--set` values merged over its settings file, validated like any settings file."""
    if not overrides:
        return side
    check_keys(side.settings, overrides)
    base = yaml.safe_load(side.settings_file.read_text(encoding="utf-8")) if side.settings_file else {}
    tree = nest(overrides)
    target = folder / "config" / "settings.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(deep_merge(base or {}, tree), sort_keys=True), encoding="utf-8")
    label = f"{side.label} + " + ", ".join(f"{k}={v}" for k, v in overrides)
    return _load(label, side.kind, side.root, target)


def task_for(side: Side, history: Path, since: int | None, until: int | None, label: str,
             app: str = "monitor", slippage_bps: float = 2.0, faults: Path | None = None, path: str = "exact") -> Task:
    return Task(str(history), str(side.root), str(side.settings_file) if side.settings_file else None, (),
                since, until, label, app, slippage_bps, str(faults) if faults else None, path)


def history_info(h: History) -> dict[str, Any]:
    m = h.manifest
    return {"path": str(h.root), "source": m.get("source"), "universe_size": m.get("universe_size"),
            "content_hash": m.get("content_hash"), "span": m.get("span"), "rows": m.get("rows")}


def run_backtest(stack: ExitStack, *, history: Path, policy: str | None, against: str | None, sets: list[str],
                 sweep: Path | None, since: str | None, until: str | None, fmt: str, breakdown: str,
                 out: Path | None, jobs: int, scheduler: str | None, progress: Progress = None,
                 app: str = "monitor", slippage_bps: float = 2.0, faults: Path | None = None,
                 exact: bool = False) -> str:
    """`exact`: the monitor's exact path (every job per minute) instead of the fast path (cached features)."""
    hist = open_history(history)
    path = "exact" if exact or app != "monitor" else "fast"
    if faults is not None:
        if app != "copytrader":
            raise BadInput(Problem("--faults", str(faults), "only the copy-trader's backtest overlays faults"))
        from backtest.copytrade.faults import load_faults

        load_faults(faults)  # a bad file is one clear error before any run
    if hist.manifest.get("app", "monitor") != app:
        raise BadInput(Problem(str(history / "manifest.json"), "app",
                               f"expected a {app} history, got {hist.manifest.get('app')!r}"))
    lo = parse_instant(since, "--since") if since else None
    hi = parse_instant(until, "--until") if until else None
    if lo is not None and hi is not None and hi <= lo:
        raise BadInput(Problem("--until", until or "", "must be after --since"))
    span = f"the history spans {hist.manifest['span']['since']} .. {hist.manifest['span']['until']}"
    if lo is not None and lo > hist.until_ms:
        raise BadInput(Problem("--since", since or "", f"after the history's end ({span})"))
    if hi is not None and hi <= hist.since_ms:
        raise BadInput(Problem("--until", until or "", f"before the history's start ({span})"))
    overrides = parse_sets(sets)
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hlcore-backtest-sides-")))
    head_plain = resolve_side(policy, stack)
    head = with_overrides(head_plain, overrides, folder)
    base = resolve_side(against, stack) if against is not None else head_plain
    if sweep is not None:
        return _sweep(hist, head, sweep, lo, hi, fmt, out, jobs, scheduler, progress, app, slippage_bps, faults, path)
    two_sides = against is not None or bool(overrides)
    if app == "copytrader":
        return _copytrader(hist, base, head, two_sides, lo, hi, fmt, out, progress, slippage_bps, faults)
    runner = run_fast if path == "fast" else run_exact
    base_out = runner(task_for(base, history, lo, hi, "base" if two_sides else "policy", path=path), progress)
    head_out: Outcome | None = (runner(task_for(head, history, lo, hi, "head", path=path), progress)
                                if two_sides else None)
    report = BacktestReport(history_info(hist), base_out, head_out,
                            semantic_diff(base, head) if two_sides else [], breakdown,
                            sides={"base": base.describe(), **({"head": head.describe()} if two_sides else {})})
    text = render(report, fmt)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"report.{'txt' if fmt == 'text' else fmt}").write_text(text, encoding="utf-8")
        rows = [{"variant": o.label, "params": {}, "metrics": metrics(o)} for o in (base_out, head_out) if o]
        write_rows(rows, out)
    return text


def _copytrader(hist: History, base: Side, head: Side, two_sides: bool, lo: int | None, hi: int | None, fmt: str,
                out: Path | None, progress: Progress, slippage_bps: float, faults: Path | None = None) -> str:
    """The copy-trader's base vs. head: its own exact path on both sides, then its report."""
    from backtest.copytrade.exact import run_copytrade
    from backtest.copytrade.report import copy_metrics_flat, render_copy, report_data

    base_out = run_copytrade(task_for(base, hist.root, lo, hi, "base" if two_sides else "policy", "copytrader",
                                      slippage_bps, faults), slippage_bps, progress)
    head_out = run_copytrade(task_for(head, hist.root, lo, hi, "head", "copytrader", slippage_bps, faults),
                             slippage_bps, progress) if two_sides else None
    data = report_data(history_info(hist), base_out, head_out,
                       {"base": base.describe(), **({"head": head.describe()} if two_sides else {})})
    if fmt == "html":
        from backtest.copytrade.html import copy_page

        text = copy_page(data, base_out, head_out)
    else:
        text = render_copy(data, fmt)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"report.{'txt' if fmt == 'text' else fmt}").write_text(text, encoding="utf-8")
        write_rows([{"variant": o.label, "params": {}, "metrics": copy_metrics_flat(o)}
                    for o in (base_out, head_out) if o], out)
    return text


def _sweep(hist: History, head: Side, grid_file: Path, lo: int | None, hi: int | None, fmt: str,
           out: Path | None, jobs: int, scheduler: str | None, progress: Progress, app: str = "monitor",
           slippage_bps: float = 2.0, faults: Path | None = None, path: str = "exact") -> str:
    grid = load_grid(grid_file)
    rows = run_sweep(task_for(head, hist.root, lo, hi, "head", app, slippage_bps, faults, path), grid, jobs=jobs,
                     scheduler=scheduler, progress=progress)
    data = {"history": history_info(hist), "policy": head.describe(), "grid": {k: v for k, v in grid},
            "variants": rows}
    if out is not None:
        write_rows(rows, out)
    if fmt == "json":
        text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    elif fmt == "html":
        from backtest.html import STYLE, heatmap, table

        names = sorted({m for r in rows for m in r["metrics"]})
        body = [f"<!doctype html><html><head><meta charset='utf-8'><style>{STYLE}</style></head><body>"
                "<h1>Backtest sweep</h1>"]
        if len(grid) == 2 and app == "copytrader":
            from backtest.copytrade.html import sweep_heatmaps

            body.append(sweep_heatmaps(rows, grid[0][0], grid[1][0]))
        elif len(grid) == 2:
            flat = [{**r["params"], "surfaced": r["metrics"].get("surfaced", 0)} for r in rows]
            body.append(heatmap(flat, grid[0][0], grid[1][0], "surfaced"))
        body.append(table(["variant", *[k for k, _ in grid], *names],
                          [[r["variant"], *[r["params"][k] for k, _ in grid], *[r["metrics"].get(n, 0) for n in names]]
                           for r in rows]))
        text = "".join(body) + "</body></html>\n"
    else:
        names = sorted({m for r in rows for m in r["metrics"]})
        header = ["variant", *[k for k, _ in grid], *names]
        cells = [[r["variant"], *[r["params"][k] for k, _ in grid], *[r["metrics"].get(n, 0) for n in names]]
                 for r in rows]
        if fmt == "md":
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in cells]
        else:
            widths = [max(len(str(x)) for x in col) for col in zip(header, *cells, strict=True)]
            lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *cells]]
        text = f"sweep over {len(rows)} variants of {head.label}\n" + "\n".join(lines) + "\n"
    if out is not None:
        (out / f"sweep.{'txt' if fmt == 'text' else fmt}").write_text(text, encoding="utf-8")
    return text
