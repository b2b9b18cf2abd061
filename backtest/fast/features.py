"""Features: what the monitor's measuring half produces, computed once per (history, settings, code).

The measuring half is the part of the monitor whose output does not depend on anything a reviewer
sweeps in the alert / decision layer: the universe job, the snapshot job (fetch outcomes, snapshot
QA verdict, S6 dirty marks -> one `ingest_runs` row per minute) and the signal job's `measure`
(sets, epsilon, behaviour counts, EC, Di, positioning, dirty and usable-run counts per asset and slot).
`build` runs exactly that production code under the same scheduler and clock as the exact path, with
the deciding jobs (health, dashboard, the signal cycle's verdicts) left out, and measures every slot
whether or not the signal lock would be open. CAS and its trend are *not* features: CAS is capped by
`monitor.alerts.exit_fire_pct` and the trend reads the CAS of committed rows, so both are recomputed
per variant by `backtest.fast.decide` with `formulas.py`.

Cache key: the history's content hash, the window, the values of exactly the settings the measuring
code reads (`FEATURE_SETTINGS`), the policy files (the snapshot and universe verdicts are policy
tables) and a hash of the measuring code's source. Entries are written per day and renamed into
place atomically, so concurrent builders never see half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import delete

import backtest
import hlcore
from backtest.exact import _SCRATCH, Task, boot, play, quiet_logs, window, workspace
from backtest.history.dataset import History, day_of, open_history
from hlcore.jobs.monitor.signals import SignalJob
from hlcore.storage.monitor import IngestRun, IngestRuns
from hlcore.storage.schema import wallet_snapshots
from replay.runner import DrillClock

HOUR_MS = 3_600_000
FORMAT = 1
"""Bumped when the stored columns change."""

FEATURE_SETTINGS = (
    "monitor.assets",
    "monitor.universe",            # universe job: size, completeness, churn, refresh cadence
    "monitor.snapshots",           # snapshot job: cadence, concurrency, retries, deadline
    "monitor.dirty.collapse_ratio",  # S6 dirty marks
    "monitor.dirty.recovery_ratio",
    "monitor.health.nonnull_ok_pct",        # the snapshot job's clean run (concurrency ramp)
    "monitor.health.healthy_coverage_pct",  # the snapshot verdict's success bar (rules/snapshots.yaml)
    "monitor.signals",             # measure: interval, epsilon, ratio clamp, min ratios, trend periods
)
"""Every setting the measuring half reads (SnapshotJob, UniverseJob, SignalSettings minus the alert
bounds). Not here, because `decide` reads them per variant: `monitor.alerts.*` (exit_fire_pct enters
CAS there), the rest of `monitor.health.*` and `monitor.dirty.*`, `monitor.dashboard.*`."""

CODE = ("backtest/fast/features.py", "backtest/feed.py", "hlcore/jobs/monitor/__init__.py",
        "hlcore/jobs/monitor/snapshots.py", "hlcore/jobs/monitor/universe.py", "hlcore/jobs/monitor/signals.py",
        "hlcore/jobs/monitor/formulas.py", "hlcore/jobs/monitor/service.py", "hlcore/storage/monitor.py",
        "hlcore/storage/monitor_signals.py", "hlcore/adapters/hyperliquid/parse.py")
"""The source files whose code computes features (their bytes are part of the cache key)."""

SLOT_INTS = ("slot_ts", "dirty", "dirty_total", "expected", "total", "usable_runs", "dirty_count", "add_long",
             "add_short", "reducers", "flat", "long_count", "short_count", "flat_count")
SLOT_FLOATS = ("missing_pct", "dirty_rate_pct", "ec", "di", "net_szi", "long_pct", "short_pct", "flat_pct",
               "top10_share_pct")


def cache_root() -> Path:
    """`$HLCORE_CACHE_DIR` or ~/.cache/hlcore/backtest-features."""
    env = os.environ.get("HLCORE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "hlcore" / "backtest-features"


def _code_hash() -> str:
    roots = {"backtest": Path(backtest.__file__).parent.parent, "hlcore": Path(hlcore.__file__).parent.parent}
    h = hashlib.sha256()
    for rel in CODE:
        h.update(rel.encode())
        h.update((roots[rel.split("/")[0]] / rel).read_bytes())
    return h.hexdigest()


def _policy_hash(root: Path) -> str:
    h = hashlib.sha256()
    for sub in ("machines", "rules"):
        for path in sorted((root / sub).rglob("*.yaml")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def feature_key(task: Task, settings: Any, history: History) -> dict[str, Any]:
    """Everything the features depend on, as plain values (hashed into the entry's name)."""
    since, until = window(task, history)
    return {"format": FORMAT, "history": history.content_hash, "since_ms": since, "until_ms": until,
            "settings": {k: settings.get(k) for k in FEATURE_SETTINGS},
            "policy": _policy_hash(Path(task.policy_root)), "code": _code_hash()}


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class RunFeature:
    """One snapshot run as the deciding half sees it: the stored row and the clock after the run."""

    run: IngestRun
    end_ms: int


@dataclass(frozen=True)
class SlotFeature:
    """One asset at one signal slot: `Measured` without CAS and trend, plus the dirty_check counts."""

    slot_ts: int
    asset: str
    dirty: int
    dirty_total: int
    expected: int
    total: int
    missing_pct: float
    usable_runs: int
    dirty_count: int
    dirty_rate_pct: float
    add_long: int
    add_short: int
    reducers: int
    flat: int
    ec: float
    di: float
    net_szi: float
    long_count: int
    short_count: int
    flat_count: int
    long_pct: float
    short_pct: float
    flat_pct: float
    top10_share_pct: float


@dataclass
class Features:
    """A loaded cache entry."""

    key: dict[str, Any]
    runs: dict[int, RunFeature]
    slots: dict[tuple[int, str], SlotFeature]
    logs: dict[str, int]
    feed: dict[str, int]
    path: Path


_RUN_COLUMNS = ("run_id", "snapshot_ts", "status", "wallets_expected", "wallets_succeeded", "wallets_failed",
                "rows_expected", "rows_written", "coverage_pct", "dirty_marked", "concurrency", "rate_limited_count",
                "universe_run_id", "duration_ms", "error", "created_at")


class _DayWriter:
    """Rows buffered for one UTC day, written as two parquet files when the day ends (bounded memory)."""

    def __init__(self, folder: Path):
        self.folder, self.day = folder, None
        self.runs: list[dict[str, Any]] = []
        self.slots: list[dict[str, Any]] = []

    def _roll(self, ts: int) -> None:
        day = day_of(ts)
        if self.day is not None and day != self.day:
            self.flush()
        self.day = day

    def run(self, feature: RunFeature) -> None:
        self._roll(feature.run.snapshot_ts)
        row = {k: getattr(feature.run, k) for k in _RUN_COLUMNS}
        row["nonnull_pct"] = json.dumps(dict(feature.run.nonnull_pct), sort_keys=True)
        row["end_ms"] = feature.end_ms
        self.runs.append(row)

    def slot(self, feature: SlotFeature) -> None:
        self._roll(feature.slot_ts)
        self.slots.append(asdict(feature))

    def flush(self) -> None:
        if self.day is None:
            return
        for name, rows in (("runs", self.runs), ("slots", self.slots)):
            if rows:
                pq.write_table(pa.Table.from_pylist(rows), self.folder / f"{name}-{self.day}.parquet")
        self.runs, self.slots = [], []


def build(task: Task, target: Path, progress: Callable[[int, int], None] | None = None) -> None:
    """Run the measuring half over the task's window and write the features to `target` (a new folder)."""
    history = open_history(Path(task.history))
    since, until = window(task, history)
    target.mkdir(parents=True)
    days = _DayWriter(target)
    with tempfile.TemporaryDirectory(prefix="hlcore-features-", dir=_SCRATCH) as tmp, quiet_logs() as tap:
        ws = workspace(task, Path(tmp))
        clock = DrillClock(since)
        ctx, jobs, scheduler, feed = boot(ws, history, clock, Path(tmp) / "features.db")
        try:
            _measuring_half(jobs, scheduler, clock, days)
            keep = _horizon_ms(ws.settings)
            play(scheduler, clock, since, until, HOUR_MS, progress, lambda: _prune(ctx.db, clock.now_ms() - keep))
            days.flush()
            feed_stats = dict(feed.stats)
        finally:
            ctx.close()
        logs = dict(sorted(tap.counts.items()))
    key = feature_key(task, ws.settings, history)
    (target / "meta.json").write_text(json.dumps({"key": key, "logs": logs, "feed": feed_stats}, indent=1,
                                                 sort_keys=True, default=str), encoding="utf-8")


def _measuring_half(jobs: Any, scheduler: Any, clock: DrillClock, days: _DayWriter) -> None:
    """Keep the universe and snapshot jobs and the signal job's slot cadence; drop the deciding jobs
    (health, dashboard) and replace the signal cycle by a recorder of `SignalJob.measure`."""
    runs = IngestRuns(jobs.ctx.db)
    signals: SignalJob = jobs.signals
    assets = signals.cfg.assets

    def snapshot(at_ms: int) -> None:
        jobs.ctx.runtime.sync()
        jobs.snapshots.run(at_ms)
        stored = runs.get(at_ms)
        if stored is None:
            raise RuntimeError(f"the snapshot run {at_ms} was not stored (the fast path needs its row)")
        days.run(RunFeature(stored, clock.now_ms()))

    def signal_cycle(slot_ts: int) -> None:
        cfg = signals.cfg
        for asset in assets:
            dirty, total = signals.store.dirty_counts(asset, slot_ts - 2 * cfg.interval_ms, slot_ts)
            m = signals.measure(asset, slot_ts)
            c, p = m.counts, m.positioning
            days.slot(SlotFeature(slot_ts, asset, dirty, total, m.expected, m.total, m.missing_pct, m.usable_runs,
                                  m.dirty_count, m.dirty_rate_pct, c.add_long, c.add_short, c.reducers, c.flat, m.ec,
                                  m.di, p.net_szi, p.long_count, p.short_count, p.flat_count, p.long_pct, p.short_pct,
                                  p.flat_pct, p.top10_share_pct))

    scheduler.jobs = [j for j in scheduler.jobs if j.name in ("universe", "snapshots", "signals")]
    for job in scheduler.jobs:
        if job.name == "snapshots":
            job.run = snapshot
    jobs.signal_cycle = signal_cycle  # the signals job's tick keeps its own slot arithmetic


def _horizon_ms(settings: Any) -> int:
    """How far back the measuring code reads snapshot rows: the ε lookback (the longest window),
    plus the dirty-rate and S6 windows and an hour of margin."""
    lookback = int(float(settings.get("monitor.signals.epsilon_lookback_hours")) * HOUR_MS)
    signal = int(settings.get("monitor.signals.interval_sec")) * 1000
    minute = int(settings.get("monitor.snapshots.interval_sec")) * 1000
    return lookback + 2 * signal + 3 * minute + HOUR_MS


def _prune(db: Any, before_ms: int) -> None:
    """Drop snapshot rows no measurement can read any more (the scratch database would otherwise hold
    the whole month: ~26 M rows for 30 d x 200 wallets, in tmpfs)."""
    with db.transaction() as conn:
        conn.execute(delete(wallet_snapshots).where(wallet_snapshots.c.snapshot_ts <= before_ms))


def _read(folder: Path, name: str) -> Iterator[dict[str, Any]]:
    for path in sorted(folder.glob(f"{name}-*.parquet")):
        yield from pq.read_table(path).to_pylist()


def load(folder: Path) -> Features:
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    runs: dict[int, RunFeature] = {}
    for row in _read(folder, "runs"):
        nonnull = json.loads(row.pop("nonnull_pct"))
        end = int(row.pop("end_ms"))
        run = IngestRun(**{**row, "nonnull_pct": nonnull})
        runs[run.snapshot_ts] = RunFeature(run, end)
    slots = {(int(r["slot_ts"]), str(r["asset"])): SlotFeature(**r) for r in _read(folder, "slots")}
    return Features(meta["key"], runs, slots, meta["logs"], meta["feed"], folder)


def task_settings(task: Task) -> Any:
    """The task's settings (its settings file with its overrides), validated as the runs validate them."""
    with tempfile.TemporaryDirectory(prefix="hlcore-settings-", dir=_SCRATCH) as tmp:
        return workspace(task, Path(tmp)).settings


def prebuild(base: Task, tasks: list[Task], progress: Callable[[int, int], None] | None = None) -> None:
    """Build, before a sweep fans out, the entries its variants need: the base's, and one per variant
    that overrides a feature setting (the others share the base's)."""
    ensure(base, task_settings(base), progress)
    for t in tasks:
        if any(k == s or k.startswith(s + ".") for k, _ in t.overrides[len(base.overrides):] for s in FEATURE_SETTINGS):
            ensure(t, task_settings(t), progress)


def ensure(task: Task, settings: Any, progress: Callable[[int, int], None] | None = None,
           root: Path | None = None) -> tuple[Path, bool]:
    """The cache entry for the task with `settings` (built if missing); returns (folder, built now)."""
    history = open_history(Path(task.history))
    key = feature_key(task, settings, history)
    base = root or (Path(task.cache_dir) if task.cache_dir else cache_root())
    folder = base / key_digest(key)
    if (folder / "meta.json").is_file():
        return folder, False
    base.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".building-", dir=base))
    try:
        build(task, scratch / "entry", progress)
        try:
            os.rename(scratch / "entry", folder)
        except OSError:  # another builder won the race: its entry is the same bytes
            if not (folder / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder, True
