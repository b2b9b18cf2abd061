"""The exact path: the monitor's own jobs, engine and scheduler over recorded history.

`run_exact(task)` is a pure function of its inputs (policy files, settings overrides, history,
window): it opens a scratch SQLite database, boots the monitor with `service.start` exactly as
`hlcore live --app monitor` does, but with the drill's scripted clock and chance and with
`HistoryFeed` as its Hyperliquid client, plays the scheduler through the window and reads the
outcome tables back (transitions with reason codes, alert rows, snapshot-run statuses). Nothing
here judges anything: every verdict is the policy's, reached by the production code path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from backtest.feed import HistoryFeed
from backtest.history.dataset import DAY_MS, open_history
from hlcore.config.settings import Settings, load_settings
from hlcore.errors import BadInput, Problem
from hlcore.jobs.copytrade.service import Wiring
from hlcore.jobs.monitor.service import start
from hlcore.policy.loader import load_policy
from hlcore.storage.db import sqlite_url
from hlcore.storage.schema import alerts, audit_log, ingest_runs
from hlcore.workspace import Workspace
from replay.drill import deep_merge
from replay.runner import DrillClock, ScriptedChance, SideBySide

_SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


@dataclass(frozen=True)
class Task:
    """One backtest run, everything it depends on as plain values (a sweep ships these to workers)."""

    history: str
    policy_root: str
    settings_file: str | None
    overrides: tuple[tuple[str, Any], ...] = ()
    since_ms: int | None = None
    until_ms: int | None = None
    label: str = "head"
    app: str = "monitor"          # which system's exact path (backtest.copytrade for the copy-trader)
    slippage_bps: float = 2.0     # copy-trader only: the simulated venue's fill slippage
    faults: str | None = None     # copy-trader only: a YAML file of venue fault episodes
    path: str = "exact"           # monitor only: "exact" (every job per minute) or "fast" (backtest.fast)
    cache_dir: str | None = None  # fast path: the feature cache (default: backtest.fast.features.cache_root())


@dataclass
class Outcome:
    """What a run did, as rows: transitions (with reason), alerts, snapshot-run statuses, logs."""

    label: str
    since_ms: int
    until_ms: int
    policy_hash: str
    history_hash: str
    transitions: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    run_status: dict[str, int] = field(default_factory=dict)
    logs: dict[str, int] = field(default_factory=dict)
    initial_states: dict[str, str] = field(default_factory=dict)
    feed: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    path: str = "exact"  # which path produced it (the report's assumptions say so)


def parse_sets(items: list[str]) -> tuple[tuple[str, Any], ...]:
    """`KEY=VALUE` (VALUE read as YAML: 27, 0.5, [1, 2], true) -> ((key, value), ...)."""
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(Problem("--set", item, "expected KEY=VALUE, e.g. monitor.alerts.exit_fire_pct=27"))
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise BadInput(Problem("--set", key, f"value is not YAML: {raw!r}")) from None
        out.append((key.strip(), value))
    return tuple(out)


def nest(overrides: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in overrides:
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


def check_keys(settings: Settings, overrides: tuple[tuple[str, Any], ...]) -> None:
    """Every override names a leaf setting (a typo must not become a silently ignored key)."""
    for key, _ in overrides:
        if not settings.has(key) or isinstance(settings.get(key), dict):
            raise BadInput(Problem("--set", key, "unknown setting (see config/settings.yaml for the keys)"))


def workspace(task: Task, folder: Path) -> Workspace:
    """The task's policy with its settings file and overrides merged and validated as usual."""
    base: dict[str, Any] = {}
    if task.settings_file:
        base = yaml.safe_load(Path(task.settings_file).read_text(encoding="utf-8")) or {}
    check_keys(load_settings(Path(task.settings_file) if task.settings_file else None), task.overrides)
    merged = deep_merge(base, nest(task.overrides))
    settings_file = folder / "settings.yaml"
    settings_file.write_text(yaml.safe_dump(merged, sort_keys=True), encoding="utf-8")
    try:
        settings = load_settings(settings_file)
    except BadInput as exc:  # name the run and its overrides, not a scratch file
        raise BadInput([Problem(f"{task.label} ({', '.join(f'{k}={v}' for k, v in task.overrides)})", p.path,
                                p.message) for p in exc.problems]) from None
    root = Path(task.policy_root)
    return Workspace(root, settings_file, settings, load_policy(root, settings))


class _LogCount(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.name} {record.levelname}"] += 1


@contextlib.contextmanager
def quiet_logs() -> Iterator[_LogCount]:
    """The jobs log each failed fetch; a backtest counts those lines instead of printing them."""
    log = logging.getLogger("hlcore")
    tap, propagate = _LogCount(), log.propagate
    log.addHandler(tap)
    log.propagate = False
    try:
        yield tap
    finally:
        log.removeHandler(tap)
        log.propagate = propagate


def window(task: Task, history: Any) -> tuple[int, int]:
    """The task's window of the history: [since, until), until exclusive."""
    since = task.since_ms if task.since_ms is not None else history.since_ms
    until = task.until_ms if task.until_ms is not None else history.until_ms + 60_000
    return since, until


def boot(ws: Workspace, history: Any, clock: DrillClock, db_path: Path) -> tuple[Any, Any, Any, HistoryFeed]:
    """The monitor as `live` starts it, reading the history at the client seam and making no HTTP call."""
    interval = int(ws.settings.get("monitor.snapshots.interval_sec")) * 1000
    feed = HistoryFeed(history, clock, clock.sleep, ScriptedChance(), interval)

    def no_session(venue: str) -> Any:
        raise RuntimeError(f"the backtest makes no HTTP call ({venue})")

    wiring = Wiring(clock, clock.sleep, ScriptedChance(), no_session, {})
    ctx, jobs, scheduler = start(ws, wiring, db_url=sqlite_url(db_path), allow_create_db=True,
                                 client=feed, fan_out=SideBySide(clock))  # type: ignore[arg-type]
    return ctx, jobs, scheduler, feed


def play(scheduler: Any, clock: DrillClock, since: int, until: int, step_ms: int,
         progress: Callable[[int, int], None] | None, after_step: Callable[[], None] | None = None) -> None:
    """Run the scheduler over [since, until) in steps (progress after each; `until` is exclusive)."""
    total = max(1, (until - since + step_ms - 1) // step_ms)
    for step in range(total):
        scheduler.run_until(min(until - 1, since + (step + 1) * step_ms),
                            lambda ts: clock.set(max(ts, clock.now_ms())))
        if after_step is not None:
            after_step()
        if progress is not None:
            progress(step + 1, total)


def run_exact(task: Task, progress: Callable[[int, int], None] | None = None) -> Outcome:
    """Play the monitor over the task's window of history; return its outcome tables."""
    history = open_history(Path(task.history))
    since, until = window(task, history)
    with tempfile.TemporaryDirectory(prefix="hlcore-backtest-", dir=_SCRATCH) as tmp, quiet_logs() as tap:
        ws = workspace(task, Path(tmp))
        clock = DrillClock(since)
        ctx, _jobs, scheduler, feed = boot(ws, history, clock, Path(tmp) / "monitor.db")
        try:
            play(scheduler, clock, since, until, DAY_MS // 4, progress)
            outcome = outcome_of(task, ws, history, ctx.db, since, until, feed.stats)
        finally:
            ctx.close()
        outcome.logs = dict(sorted(tap.counts.items()))
    return outcome


def outcome_of(task: Task, ws: Workspace, history: Any, db: Any, since: int, until: int,
               feed: Mapping[str, Any]) -> Outcome:
    """The outcome tables a played window left in its database."""
    initial = {name: m.initial for name, m in ws.policy.machines.items()}
    outcome = Outcome(task.label, since, until, ws.policy.hash, history.content_hash,
                      initial_states={k: str(v) for k, v in sorted(initial.items())})
    read_outcome(db, outcome, since)
    outcome.feed = dict(feed)
    outcome.settings = {"monitor.universe.size": ws.settings.get("monitor.universe.size")}
    return outcome


def read_outcome(db: Any, outcome: Outcome, since: int) -> None:
    with db.transaction() as conn:
        for row in conn.execute(select(audit_log).where(audit_log.c.from_state != audit_log.c.to_state)
                                .order_by(audit_log.c.id)).mappings():
            outcome.transitions.append({"ts_ms": int(row["timestamp_ms"]), "machine": row["machine"],
                                        "instance": row["instance"], "from": row["from_state"],
                                        "to": row["to_state"], "reason": row["reason_code"]})
        for row in conn.execute(select(alerts).order_by(alerts.c.alert_ts, alerts.c.id)).mappings():
            outcome.alerts.append({"alert_ts": int(row["alert_ts"]),
                                   "signal_ts": None if row["signal_ts"] is None else int(row["signal_ts"]),
                                   "asset": row["asset"], "alert_type": row["alert_type"],
                                   "severity": row["severity"], "suppressed": bool(row["suppressed"]),
                                   "suppressed_reason": row["suppressed_reason"]})
        counts: Counter[str] = Counter()
        for (status,) in conn.execute(select(ingest_runs.c.status).where(ingest_runs.c.snapshot_ts >= since)):
            counts[str(status)] += 1
        outcome.run_status = dict(sorted(counts.items()))


def outcome_tables(outcome: Outcome) -> Mapping[str, list[dict[str, Any]]]:
    """The tables two paths (or two worker counts) must agree on, byte for byte once serialised."""
    return {"transitions": outcome.transitions, "alerts": outcome.alerts,
            "run_status": [{"status": k, "runs": v} for k, v in outcome.run_status.items()]}
