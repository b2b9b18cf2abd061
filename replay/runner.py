"""Replay a drill: the real app (`service.start`: its jobs, the policy engine, the shared
scheduler) on a temporary SQLite database, a scripted clock (freezegun pins the wall clock to
it, so even the operator CLI reads drill time) and the drill transport; play the timeline,
check the expectations at their times and write the journal (canonical JSON lines,
byte-identical across runs)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from freezegun import freeze_time
from sqlalchemy import select

from hlcore import consulted
from hlcore.app import DATABASE_URL_ENV, AppContext, database_url
from hlcore.config.hashing import redact_url
from hlcore.config.settings import load_settings
from hlcore.engine import trace
from hlcore.engine.clock import ManualClock
from hlcore.engine.scheduler import Scheduler
from hlcore.errors import BadInput, Problem
from hlcore.jobs.copytrade.service import Wiring
from hlcore.policy.loader import load_policy
from hlcore.resources import resolve_policy_dir
from hlcore.storage.db import Database, driver_url, open_database
from hlcore.storage.repos import load_json
from hlcore.storage.schema import audit_log, metadata
from hlcore.workspace import Workspace
from hlcore.yamlsource import load_yaml
from replay.cassettes import CassetteDeck
from replay.drill import CASSETTE_DIR, Drill, Expectation, Run, Step, deep_merge, load_drill
from replay.registry import CHECKS, GIVENS, STEPS
from replay.storage_faults import StorageFaults
from replay.template_db import fresh_database
from replay.transport import DrillTransport, ProcessKilled
from replay.worlds.copytrade import CopytraderDriver
from replay.worlds.monitor import MonitorDriver

DRIVERS: dict[str, Any] = {"copytrader": CopytraderDriver, "monitor": MonitorDriver}


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _json_cell(value: Any) -> Any:
    """A watched row's cell: a JSON column decoded; text that only looks like JSON (an alert
    message such as "[BTC] Regime Change: ...") stays text."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return load_json(value)
        except ValueError:
            return value
    return value


def fmt_offset(ms: int) -> str:
    sign = "-" if ms < 0 else "+"
    ms = abs(ms)
    return f"{sign}{ms // 1000}.{ms % 1000:03d}s"


def wall_time(ms: int) -> datetime:
    """The frozen wall clock for drill time `ms`: half a millisecond in, so readers that floor
    (`time.time_ns() // 1_000_000`, through freezegun's float) get exactly `ms`."""
    return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(microseconds=(ms % 1000) * 1000 + 500)


class ScriptedChance(random.Random):
    """Retry jitter in a drill: always the middle of its range, whatever thread asks first."""

    def random(self) -> float:
        return 0.5

    def getrandbits(self, k: int) -> int:
        return 1 << (k - 1) if k > 0 else 0


class DrillClock(ManualClock):
    """The scripted clock; thread-safe (snapshot workers sleep on it) and dragging the frozen
    wall clock along so nothing that reads `time.time()` sees another instant."""

    def __init__(self, start_ms: int):
        super().__init__(start_ms)
        self.lock = threading.RLock()  # advance() holds it while calling set()
        self.frozen: Any = None
        self.owner = threading.current_thread()  # the player's thread: its sleeps move the clock
        self.workers = 0  # > 0 while `SideBySide` runs the snapshot workers on the player's thread

    def set(self, now_ms: int) -> None:
        with self.lock:
            super().set(now_ms)
            if self.frozen is not None:
                self.frozen.move_to(wall_time(now_ms))

    def advance(self, ms: int) -> int:
        with self.lock:
            self.set(self.now_ms() + ms)
            return self.now_ms()

    def sleep(self, seconds: float) -> None:
        """The player's thread (a job's own retry wait) moves the clock. A snapshot worker's retry
        wait does not: the workers wait side by side, and adding each one's wait to the shared clock
        would make time (and the journal) depend on how the threads interleave. The same workers
        run by `SideBySide` on the player's thread are workers all the same."""
        if threading.current_thread() is self.owner and not self.workers:
            self.advance(max(0, round(seconds * 1000)))

    @contextlib.contextmanager
    def side_by_side(self) -> Iterator[None]:
        """Sleeps in this block are a snapshot worker's (they do not move the clock)."""
        self.workers += 1
        try:
            yield
        finally:
            self.workers -= 1


class SideBySide:
    """The snapshot job's fan-out in a drill or backtest (`hlcore.jobs.monitor.snapshots.FanOut`):
    the workers' fetches one after another on the player's thread, as workers (their retry waits
    do not move the clock, as on worker threads). The client answers in-process, so threads only
    added lock hand-offs (issue 12, 16); universe order
    is one of the orders the threads could take, and nothing a drill judges depends on which."""

    def __init__(self, clock: DrillClock):
        self.clock = clock

    def __call__(self, fetch: Callable[[str], Any], wallets: Sequence[str], workers: int) -> list[Any]:
        with self.clock.side_by_side():
            return [fetch(w) for w in wallets]


@dataclass
class Outcome:
    drill: str
    runbook: str
    policy_hash: str
    fixture_hash: str
    entries: list[dict[str, Any]] = field(default_factory=list)  # journal lines, sorted, no summary
    failures: list[str] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)  # rule rows matched (coverage)
    words: list[str] = field(default_factory=list)  # the drill vocabulary it uses (coverage; not journaled)
    consulted: dict[str, list[str]] = field(default_factory=dict)  # kind -> names read (hlcore.consulted)

    @property
    def verdict(self) -> str:
        return "fail" if self.failures else "pass"

    def summary(self) -> dict[str, Any]:
        return {"summary": {"drill": self.drill, "verdict": self.verdict, "policy_hash": self.policy_hash,
                            "fixture_hash": self.fixture_hash, "failures": self.failures}}

    def journal(self) -> str:
        return "".join(canonical(e) + "\n" for e in [*self.entries, self.summary()])


# A run's scratch folder: memory-backed when the machine has /dev/shm (a drill's database needs no
# durability across a power cut; the process-crash steps it does test are unaffected).
_SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _public(step: Step) -> dict[str, Any]:
    """A step's arguments for the journal: environment values never go there (only names)."""
    if step.do != "env":
        return step.args
    return {"set": sorted(step.args.get("set") or {}), "unset": sorted(step.args.get("unset") or [])}


class _LogTap(logging.Handler):
    """WARNING and above from hlcore's loggers, for the journal."""

    def __init__(self, player: Player):
        super().__init__(logging.WARNING)
        self.player = player

    def emit(self, record: logging.LogRecord) -> None:
        with self.player.lock:
            self.player.pending_logs.append((self.player.clock.now_ms(), record.name, record.levelname,
                                             record.getMessage()))


class Player:
    """One run: process lifecycle (boot, crash, restart), the clock, the world, the journal and
    the checks. Steps and checks (replay.steps, replay.checks, replay.worlds.*) act through it."""

    def __init__(self, drill: Drill, run: Run, policy: Path | None, config: Path | None, tmp: Path,
                 database: str | None = None):
        self.drill, self.run, self.tmp = drill, run, tmp
        self.database = database  # a server database the run uses instead of the SQLite db_path
        self.driver = DRIVERS[run.app]
        self.start_ms = run.start_ms
        self.policy = policy.resolve() if policy is not None else None
        self.settings_file = tmp / "settings.yaml"
        self.base_config: dict[str, Any] = {}
        if config is not None:
            self.base_config = load_yaml(config).data or {}
        self.config: dict[str, Any] = deep_merge(self.base_config, run.config or {})
        self.write_settings()
        self.env: dict[str, str] = {**self.driver.env}
        for key, value in (run.env or {}).items():
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = value
        self.clock = DrillClock(run.start_ms)
        self.lock = threading.RLock()
        self.world = self.driver.world(self.clock)
        deck = CassetteDeck([drill.directory / CASSETTE_DIR / name for name in run.cassettes])
        self.transport = DrillTransport(self.clock, self.world, deck,
                                        on_call=None if self.driver.threaded else self.flush)
        self.wiring = Wiring(self.clock, self.clock.sleep, ScriptedChance(),
                             lambda _venue: self.transport.drill_session(), self.env)  # type: ignore[arg-type,return-value]
        self.ws: Any = None
        self.db: Database | None = None
        self.db_id: tuple[int, int] | None = None
        self.ctx: AppContext | None = None
        self.scheduler: Scheduler | None = None
        self.storage = StorageFaults()
        self.seq = 0
        self.last_audit_id = 0
        self.watch_ids: dict[str, int] = {}
        self.calls_seen = 0
        self.pending_logs: list[tuple[int, str, str, str]] = []
        self.entries: list[tuple[int, int, dict[str, Any]]] = []
        self.failures: list[str] = []
        self.operator_results: list[dict[str, Any]] = []
        self.exit_code: int | None = None

    # ------------------------------------------------------------------ setup
    def write_settings(self) -> None:
        self.settings_file.write_text(yaml.safe_dump(self.config, sort_keys=True), encoding="utf-8")

    def open_workspace(self) -> Workspace:
        """What `open_workspace` gives live (the loader keeps parsed policies between runs)."""
        mode = self.run.mode if self.run.app == "copytrader" else None
        settings = load_settings(self.settings_file, mode=mode)
        assert self.policy is not None
        return Workspace(self.policy, self.settings_file, settings, load_policy(self.policy, settings))

    def now(self) -> int:
        return self.clock.now_ms()

    def scrub(self, text: str) -> str:
        """`text` with the run's scratch folder as `<tmp>` and a server database named as the SQLite
        file it stands in for, so a journal is the same on either backend."""
        if self.database is not None:
            prefix = "monitor." if self.run.app == "monitor" else ""
            settings = self.ws.settings if self.ws is not None else self.open_workspace().settings
            stand_in = f"sqlite:///{settings.path(prefix + 'db_path').resolve()}"
            for shown in {self.database, redact_url(self.database),
                          driver_url(self.database).render_as_string(hide_password=True)}:
                text = text.replace(shown, stand_in)
        return text.replace(str(self.tmp), "<tmp>")

    # ------------------------------------------------------------------ journal
    def add(self, ts_ms: int, entry: dict[str, Any]) -> None:
        with self.lock:
            self.seq += 1
            self.entries.append((ts_ms, self.seq, {"run": self.run.name, "t": fmt_offset(ts_ms - self.start_ms),
                                                   "ts_ms": ts_ms, **entry}))

    def flush(self) -> None:
        """Move new venue calls, log lines and committed rows into the journal. Calls and logs of
        one batch are ordered canonically, so worker threads cannot reorder a journal."""
        with self.lock:
            calls = self.transport.calls[self.calls_seen:]
            self.calls_seen = len(self.transport.calls)
            logs, self.pending_logs = self.pending_logs, []
        for c in sorted(calls, key=lambda c: (c.ts_ms, c.venue, c.method, c.path, c.op or "", c.user or "",
                                               c.served)):
            self.add(c.ts_ms, {"kind": "venue_call", "venue": c.venue, "method": c.method, "path": c.path,
                               "op": c.op, "served": c.served})
        for ts, name, level, message in sorted(logs):
            self.add(ts, {"kind": "log", "logger": name, "level": level, "message": message})
        if self.db is None:
            return
        with self.db.transaction() as conn:
            rows = conn.execute(select(audit_log).where(audit_log.c.id > self.last_audit_id)
                                .order_by(audit_log.c.id)).mappings().all()
            watched = []
            for name in self.driver.watch:
                table = metadata.tables[name]
                new = conn.execute(select(table).where(table.c.id > self.watch_ids.get(name, 0))
                                   .order_by(table.c.id)).mappings().all()
                watched += [(name, dict(r)) for r in new]
        for row in rows:
            self.last_audit_id = row["id"]
            self.add(row["timestamp_ms"], {
                "kind": "transition" if row["from_state"] != row["to_state"] else "audit",
                "category": row["category"], "machine": row["machine"], "instance": row["instance"],
                "from": row["from_state"], "to": row["to_state"], "event": row["event"],
                "reason": row["reason_code"], "facts": load_json(row["facts"])})
        for name, row in watched:
            self.watch_ids[name] = row.pop("id")
            self.add(self.now(), {"kind": "row", "table": name, "row": {k: _json_cell(v)
                                                                        for k, v in sorted(row.items())}})

    # ------------------------------------------------------------------ world
    def seed(self) -> None:
        self.ws = self.open_workspace()
        self.db = fresh_database(database_url(self.ws.settings, self.run.app), self.start_ms, _SCRATCH)
        self.db_id = self.db_file_id()
        for key in sorted(self.run.given):
            GIVENS[key].handler(self, self.run.given[key])

    def db_file_id(self) -> tuple[int, int] | None:
        """(device, inode) of the SQLite file behind `self.db` (None: not a file, or gone)."""
        path = self.db.engine.url.database if self.db is not None else None
        try:
            st = os.stat(path) if path and path != ":memory:" else None
        except OSError:
            return None
        return (st.st_dev, st.st_ino) if st else None

    def storage_touched(self) -> None:
        """After an operator command: drop pooled connections so a database file the command
        replaced (`ops rebuild-db`) is read afresh; a new file restarts the journal's audit and
        watched-row positions (its ids start again at 1)."""
        if self.db is None:
            return
        self.flush()  # what the command wrote into the file the journal has been reading
        self.db.dispose()
        now_id = self.db_file_id()
        if now_id != self.db_id:
            self.last_audit_id, self.watch_ids = 0, {}
        self.db_id = now_id

    # ------------------------------------------------------------------ process
    def boot(self) -> None:
        if self.ctx is not None:
            self.stop("crash")
        self.ws = self.open_workspace()
        self.add(self.now(), {"kind": "process", "event": "boot", "app": self.run.app, "mode": self.run.mode})
        try:
            self.ctx, self.scheduler, code = self.driver.start(self)
        except BadInput as exc:
            self.exit_code = 2
            self.add(self.now(), {"kind": "process", "event": "exit 2",
                                  "problems": [str(p) for p in exc.problems]})
            self.flush()
            return
        except ProcessKilled as exc:
            self.ctx = None
            self.flush()
            self.add(self.now(), {"kind": "process", "event": "killed", "detail": str(exc)})
            return
        self.storage.attach(self.ctx.db)
        self.exit_code = None
        self.flush()
        if code != 0:
            self.exit_code = code
            self.stop(f"exit {code}")

    def stop(self, event: str = "crash", detail: str | None = None) -> None:
        """The process ends (crash: nothing more is written; storage keeps what was committed)."""
        self.flush()
        if self.ctx is not None:
            self.storage.detach(self.ctx.db)
            self.ctx.close()
        self.ctx = self.scheduler = None
        entry: dict[str, Any] = {"kind": "process", "event": event}
        if detail:
            entry["detail"] = detail
        self.add(self.now(), entry)

    def advance_to(self, ts_ms: int) -> None:
        self.flush()
        if ts_ms > self.clock.now_ms():  # a retry's sleep may already have moved the clock on
            self.clock.set(ts_ms)

    def until(self, at_ms: int) -> None:
        target = self.start_ms + at_ms
        if self.scheduler is not None:
            try:
                self.scheduler.run_until(target, self.advance_to)
            except ProcessKilled as exc:
                self.stop("killed", str(exc))
                self.advance_to(target)
        else:
            self.advance_to(target)
        self.flush()

    # ------------------------------------------------------------------ checks
    def fail(self, exp: Expectation, message: str) -> None:
        at = "" if exp.at_ms is None else f" at {fmt_offset(exp.at_ms)}"
        self.failures.append(f"{self.run.name}: {self.drill.file}:{exp.line}{at}: {exp.describe()}: {message}")

    def check(self, exp: Expectation) -> None:
        for message in CHECKS[exp.kind].handler(self, exp) or ():
            self.fail(exp, message)

    # ------------------------------------------------------------------ play
    def play(self) -> None:
        log = logging.getLogger("hlcore")
        tap, propagate = _LogTap(self), log.propagate
        log.addHandler(tap)
        log.propagate = False
        try:
            with self.frozen():
                self._play()
        finally:
            log.removeHandler(tap)
            log.propagate = propagate
            if self.ctx is not None:
                self.storage.detach(self.ctx.db)
                self.ctx.close()
                self.ctx = None
            if self.db is not None:
                self.db.dispose()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        freezer = freeze_time(wall_time(self.start_ms))
        self.clock.frozen = freezer.start()
        database_env = os.environ.pop(DATABASE_URL_ENV, None)  # the drill's storage, never the operator's
        if self.database is not None:
            os.environ[DATABASE_URL_ENV] = self.database  # the app reads it as live would (one path)
        try:
            yield
        finally:
            os.environ.pop(DATABASE_URL_ENV, None)
            if database_env is not None:
                os.environ[DATABASE_URL_ENV] = database_env
            self.clock.frozen = None
            freezer.stop()

    def _play(self) -> None:
        self.seed()
        timed = sorted((e for e in self.run.expect if e.at_ms is not None), key=lambda e: e.at_ms or 0)
        for step in self.run.timeline:
            while timed and (timed[0].at_ms or 0) < step.at_ms:
                exp = timed.pop(0)
                self.until(exp.at_ms or 0)
                self.check(exp)
            self.until(step.at_ms)
            self.add(self.now(), {"kind": "step", "do": step.do, **({"args": _public(step)} if step.args else {}),
                                  **({"repeat": step.repeat} if step.repeat else {})})
            try:
                STEPS[step.do].handler(self, step.args)
            except BadInput as exc:  # a step's argument bad for this run (e.g. a slot off the grid): locate it
                raise BadInput([Problem(self.drill.file, f"timeline ({step.do})", p.message, step.line)
                                if not p.file else p for p in exc.problems]) from None
            self.flush()
        for exp in timed:
            self.until(exp.at_ms or 0)
            self.check(exp)
        for exp in self.run.expect:
            if exp.at_ms is None:
                self.check(exp)
        self.flush()
        deck = self.transport.deck
        if deck.cassettes:
            self.add(self.now(), {"kind": "cassettes", "files": self.run.cassettes, "unplayed": deck.unplayed()})

    def journal(self) -> list[dict[str, Any]]:
        return [e for _, _, e in sorted(self.entries, key=lambda x: (x[0], x[1]))]


def keep_database(player: Player, keep_db: Path) -> Path | None:
    """Copy a finished run's SQLite database to `keep_db/<run>/<app>.db` (to serve it with
    `hlcore dashboard`); the copy is taken after the run closed its connections."""
    path = player.db.engine.url.database if player.db is not None else None
    if not path or path == ":memory:" or not Path(path).is_file():
        return None
    target = keep_db / player.run.name / f"{player.run.app}.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return target


def empty_database(url: str) -> None:
    """Drop every hlcore table at `url`, so a run on a server database starts as on a new file."""
    db = open_database(url)
    try:
        with db.transaction() as conn:
            metadata.drop_all(conn)
    finally:
        db.dispose()


def replay(directory: Path, policy: Path | None = None, config: Path | None = None,
           coverage: bool = False, keep_db: Path | None = None, runs: set[str] | None = None,
           database: str | None = None) -> Outcome:
    """`_replay`, noting what the runs consulted (`Outcome.consulted`, for `hlcore diff`'s selection)."""
    with consulted.collecting() as seen:
        outcome = _replay(directory, policy, config, coverage, keep_db, runs, database)
    outcome.consulted = {kind: sorted(names) for kind, names in sorted(seen.items())}
    return outcome


def _replay(directory: Path, policy: Path | None = None, config: Path | None = None,
            coverage: bool = False, keep_db: Path | None = None, runs: set[str] | None = None,
            database: str | None = None) -> Outcome:
    """Load and play every run of the drill in `directory` (bad input raises BadInput).
    `policy` is a directory holding machines/ and rules/; `config` a settings file the drill's
    own `config` overrides are merged over (default: the packaged defaults); `keep_db` a folder
    each run's final database is copied into; `runs` only these runs (by name: base, a variant);
    `database` a PostgreSQL URL each run uses (emptied of hlcore's tables first) instead of a
    SQLite file."""
    drill = load_drill(directory)
    policy = resolve_policy_dir(policy.resolve() if policy is not None else None)  # before the chdir below
    config = config.resolve() if config is not None else None
    keep_db = keep_db.resolve() if keep_db is not None else None
    outcome: Outcome | None = None
    cwd = Path.cwd()
    hits: Counter[str] = Counter()
    for run in (r for r in drill.runs if runs is None or r.name in runs):
        with tempfile.TemporaryDirectory(prefix="hlcore-drill-", dir=_SCRATCH) as tmp:
            os.chdir(tmp)  # relative data/ and logs/ paths land in the temporary folder
            try:
                with trace.collecting(hits) if coverage else contextlib.nullcontext():
                    if database is not None:
                        empty_database(database)
                    player = Player(drill, run, policy, config, Path(tmp), database)
                    if outcome is None:
                        outcome = Outcome(drill.name, drill.runbook, player.open_workspace().policy.hash,
                                          drill.fixture_hash, words=drill.words)
                    player.play()
                    if keep_db is not None:
                        keep_database(player, keep_db)
            finally:
                os.chdir(cwd)
            outcome.entries.extend(player.journal())
            outcome.failures.extend(player.failures)
    assert outcome is not None
    outcome.hits = hits
    return outcome
