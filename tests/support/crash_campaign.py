"""The crash campaign of issue 10, shared by the CI test (tests/integration/test_crash_campaign.py)
and the long run (benchmarks/crash_campaign.py): the real `hlcore live --mode live` subprocess
against loopback venue stubs, killed with SIGKILL at random points (fixed seed), then measured.

Counts, per case:
- duplicates: client order ids POSTed more than once at the Binance stub;
- lost: target fills never ingested, or whose event never settled (not DONE) after a clean drain;
- stuck: orders not in a final state after the drain (UNKNOWN, parked, NEW, or an intent without
  a result);
- bricked: the database no longer boots (a clean start fails or `PRAGMA integrity_check` is not ok).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.forkserver import ForkServer, Life
from tests.support.loopback import LoopbackVenues

ROOT = Path(__file__).resolve().parents[2]
ORDER_QTY = 0.002  # the loopback target's 2 BTC fills, mirrored at the default ratio
FINAL_ORDER_STATES = ("FILLED", "CANCELED", "EXPIRED", "REJECTED", "SIMULATED")
Proc = subprocess.Popen[str] | Life  # a new interpreter, or a life forked by the fork server


@dataclass
class Counts:
    case: str
    kills: int = 0
    fills: int = 0
    orders: int = 0
    duplicates: int = 0
    lost: int = 0
    stuck: int = 0
    bricked: int = 0
    promotions: int = 0  # `ops promote` runs between lives (random_kills)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.case:<16} kills={self.kills:<4} fills={self.fills:<5} orders={self.orders:<5} "
                f"promotions={self.promotions:<3} "
                f"duplicates={self.duplicates} lost={self.lost} stuck={self.stuck} bricked={self.bricked}")


class Rig:
    """One copy-trader installation in `home`: a config folder with a relative `db_path` (it must
    resolve against the config file, not the working directory the process is started from)."""

    def __init__(self, home: Path, venues: LoopbackVenues):
        self.home = home
        self.venues = venues
        self.config_dir = home / "etc"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.config = self.config_dir / "settings.yaml"
        self.elsewhere = home / "cwd"  # processes run from here: db_path must not follow the cwd
        self.elsewhere.mkdir(exist_ok=True)
        settings: dict[str, Any] = {
            "db_path": "data/ct.db", "metrics_log_path": str(home / "metrics.log"),
            "app_log_path": str(home / "app.log"), "log_level": "WARNING",
            "safety": {"startup_policy": "auto", "reconcile_interval_sec": 1},
            "orchestrator": {"loop_idle_sleep_sec": 0.05, "loop_max_idle_sleep_sec": 0.1,
                             "writer_lock_wait_sec": 0.5},
            **venues.settings(),
        }
        self.config.write_text(yaml.safe_dump(settings, sort_keys=True), encoding="utf-8")
        self.db = self.config_dir / "data" / "ct.db"
        self.env = {**os.environ, **venues.env(), "PYTHONPATH": str(ROOT)}
        self.spawned = 0
        self.stderr_files: dict[int, Path] = {}

    def spawn(self, *extra: str, allow_create: bool = False, max_ticks: int | None = None,
              server: ForkServer | None = None) -> Proc:
        """`hlcore live` as a new interpreter, or forked by `server` (a `Life`; see forkserver.py)."""
        argv = ["live", "--mode", "live", "--config", str(self.config), "--policy", str(ROOT), *extra]
        if allow_create:
            argv.append("--allow-create-db")
        if max_ticks is not None:
            argv += ["--max-ticks", str(max_ticks)]
        self.spawned += 1
        err = self.home / f"stderr-{self.spawned}.txt"  # a file, not a pipe: a full pipe would block the process
        if server is not None:
            life = server.spawn(argv, self.elsewhere, self.env, err)
            self.stderr_files[life.pid] = err
            return life
        argv = [sys.executable, "-m", "hlcore", *argv]
        with err.open("w", encoding="utf-8") as fh:
            proc = subprocess.Popen(argv, cwd=self.elsewhere, env=self.env, stdout=subprocess.DEVNULL, stderr=fh,
                                    text=True)
        self.stderr_files[proc.pid] = err
        return proc

    def stderr(self, proc: Proc) -> str:
        return self.stderr_files[proc.pid].read_text(encoding="utf-8")

    def ticking(self, proc: Proc, since_s: float) -> bool:
        """`proc` holds the lock and its loop has ticked since `since_s` (wall time)."""
        return self.holds_lock(proc) and int(self.state().get("loop_last_tick_ms", 0)) > since_s * 1000

    def state(self) -> dict[str, str]:
        """system_state, read-only (empty when there is no readable database)."""
        if not self.db.exists():
            return {}
        try:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=2)
            try:
                return dict(conn.execute("SELECT key, value FROM system_state").fetchall())
            finally:
                conn.close()
        except sqlite3.Error:
            return {}

    def wait_for(self, proc: Proc, what: str, ready: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            if ready():
                return True
            time.sleep(0.05)
        raise TimeoutError(f"{what}: not ready after {timeout_s} s")

    def promote_if_safe(self) -> int | None:
        """The operator's part between two lives: a kill between an order's POST and its result
        leaves a drift that the next startup reconcile reports (RECONCILE_WARN => ARMED_SAFE, which
        only an operator lifts: a boot auto-promotes only from BOOTSTRAP). Without this, one WARN
        would end every later order of the campaign. Runs `hlcore ops promote` (its own checks
        decide); returns its exit code, None when nothing was to be done.

        In this process (the CLI's own entry, `CliRunner`), not a new interpreter: the operator is
        not what the campaign kills, and a spawn cost an import and a policy load per promotion,
        long enough on a loaded machine that the check "last reconcile within 2 intervals" refused
        it and the campaign's later lives sent nothing."""
        state = self.state()
        if state.get("safety_mode") != "ARMED_SAFE" or state.get("safety_reason_code") == "BOOTSTRAP":
            return None
        from typer.testing import CliRunner

        from hlcore_cli import app

        done = CliRunner().invoke(app, ["ops", "promote", "--operator", "campaign",
                                        "--reason-message", "crash campaign: drift resolved by the restart",
                                        "--config", str(self.config), "--policy", str(ROOT)],
                                  env=self.venues.env())
        if done.exception is not None and not isinstance(done.exception, SystemExit):
            raise RuntimeError(f"ops promote raised {done.exception!r}: {done.output}")
        return done.exit_code

    def holds_lock(self, proc: Proc) -> bool:
        """The process wrote itself into the writer lock: imports and settings are behind it, and
        from here on every step writes (boot, reconcile, sweep, the loop)."""
        try:
            return json.loads(self.db.with_name(self.db.name + ".lock").read_text(encoding="utf-8"))["pid"] == proc.pid
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def first_boot(self) -> None:
        """A clean first start (--allow-create-db) that reaches the loop, then SIGTERM."""
        proc = self.spawn(allow_create=True)
        ok = self.wait_for(proc, "first boot", lambda: self.ticking(proc, 0), 120)
        stop(proc)
        if not ok:
            raise RuntimeError(f"first boot failed: {self.stderr(proc)}")

    def settled(self) -> bool:
        """Every fill ingested, every event DONE, every order final (the drain's goal)."""
        m = self.measure_db()
        return m is not None and m["lost"] == 0 and m["stuck"] == 0

    def drain(self, timeout_s: float = 180) -> bool:
        """A clean run until everything settled, then SIGTERM; False if it never got there."""
        proc = self.spawn()
        try:
            return self.wait_for(proc, "drain", self.settled, timeout_s)
        except TimeoutError:
            return False
        finally:
            stop(proc)

    def measure_db(self) -> dict[str, Any] | None:
        if not self.db.exists():
            return None
        try:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        except sqlite3.Error:
            return None
        try:
            tids = {r[0] for r in conn.execute("SELECT tid FROM ingested_fills")}
            not_done = conn.execute("SELECT count(*) FROM processed_txs WHERE state != 'DONE'").fetchone()[0]
            placeholders = ",".join("?" * len(FINAL_ORDER_STATES))
            open_orders = conn.execute(
                f"SELECT count(*) FROM order_intents i LEFT JOIN order_results r USING (correlation_id) "
                f"WHERE r.status IS NULL OR r.status NOT IN ({placeholders})", FINAL_ORDER_STATES).fetchone()[0]
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.Error as exc:
            return {"lost": -1, "stuck": -1, "integrity": str(exc)}
        finally:
            conn.close()
        fills = {f["tid"] for f in self.venues.fills()}
        return {"lost": len(fills - tids) + not_done + self.unrecorded_orders(), "stuck": open_orders,
                "integrity": integrity}

    def unrecorded_orders(self) -> int:
        """Orders the venue filled that the database does not show filled (every order here is a
        0.002 BTC buy): a fill lost between the venue and storage."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            local = conn.execute("SELECT coalesce(sum(filled_qty), 0) FROM order_results "
                                 "WHERE status IN ('FILLED', 'PARTIALLY_FILLED')").fetchone()[0]
        finally:
            conn.close()
        with self.venues.lock:
            venue = self.venues.world.account.positions.get("BTCUSDT", 0)
        return round(abs(float(venue) - float(local)) / ORDER_QTY)


def stop(proc: Proc, timeout_s: float = 20) -> int:
    """SIGTERM, then SIGKILL if it does not stop in time; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def kill(proc: Proc) -> int | None:
    """SIGKILL (what a crash looks like); None if it was still running, else its own exit code."""
    code = proc.poll()
    if code is None:
        proc.kill()
        proc.wait()
    return code


class Trader:
    """The target wallet trading in the background at a steady pace while the campaign runs."""

    def __init__(self, venues: LoopbackVenues, every_s: float):
        self.venues, self.every_s = venues, every_s
        self.running = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Trader:
        self.running.set()
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.running.clear()
        self.thread.join()

    def _run(self) -> None:
        while self.running.is_set():
            self.venues.trade()
            time.sleep(self.every_s)


def finish(counts: Counts, rig: Rig) -> Counts:
    """Drain, then count; a database that cannot be drained or checked is bricked."""
    if not rig.drain():
        counts.notes.append("drain did not settle")
    measured = rig.measure_db()
    counts.fills = len(rig.venues.fills())
    counts.orders = sum(rig.venues.posts.values())
    counts.duplicates = rig.venues.duplicates()
    if measured is None or measured["integrity"] != "ok":
        counts.bricked += 1
        counts.notes.append(f"integrity: {measured and measured['integrity']}")
        return counts
    counts.lost, counts.stuck = measured["lost"], measured["stuck"]
    return counts


def random_kills(home: Path, kills: int, seed: int, *, max_alive_s: float = 1.5) -> Counts:
    """`kills` starts of `hlcore live`, each SIGKILLed at a random time (seeded): every other life
    after it took the writer lock (boot, startup reconcile, parked sweep), the others after its
    loop has ticked (ingest, decide, orders on the wire); the target trades twice in each life
    (once as the window opens, once halfway to the kill); then a clean drain. The first boot and
    the drain are new interpreters; the lives in between are forked by a warm fork server
    (forkserver.py: the imports and policy load before the writer lock, done once)."""
    rng = random.Random(seed)
    venues = LoopbackVenues()
    counts = Counts("random_kills")
    server: ForkServer | None = None
    try:
        rig = Rig(home, venues)
        rig.first_boot()
        server = ForkServer(ROOT, rig.config, rig.env)
        for i in range(kills):
            if rig.promote_if_safe() is not None:
                counts.promotions += 1
            proc = rig.spawn(server=server)
            spawned = time.time()
            delay = rng.uniform(0.0, max_alive_s)
            # even lives die during boot (reconcile, sweep, re-queries), odd ones once the loop runs
            ready = (lambda proc=proc: rig.holds_lock(proc)) if i % 2 == 0 else \
                (lambda proc=proc, spawned=spawned: rig.ticking(proc, spawned))
            with contextlib.suppress(TimeoutError):
                rig.wait_for(proc, "writer lock", ready, 60)
            venues.trade()
            time.sleep(delay / 2)
            venues.trade()
            time.sleep(delay / 2)
            code = kill(proc)
            if code is None:
                counts.kills += 1
            else:
                counts.notes.append(f"exited by itself with {code}")
        server.close()
        server = None
        return finish(counts, rig)
    finally:
        if server is not None:
            server.close()
        venues.close()


def two_writers(home: Path, seconds: float = 4.0) -> tuple[Counts, str, int]:
    """Two `hlcore live` on one database: the second must exit 2 naming the first. Returns the
    counts, the second's stderr and its exit code."""
    venues = LoopbackVenues()
    counts = Counts("two_writers")
    try:
        rig = Rig(home, venues)
        rig.first_boot()
        first = rig.spawn()
        spawned = time.time()
        rig.wait_for(first, "first writer", lambda: rig.ticking(first, spawned), 120)
        with Trader(venues, 0.1):  # trades only while the two meet, so the drain stays short
            second = rig.spawn()
            try:
                code = second.wait(120)
            finally:
                kill(second)
            err = rig.stderr(second)
            time.sleep(seconds)
        stop(first)
        if code != 2 or f"pid={first.pid}" not in err:
            counts.notes.append(f"second writer: exit {code}: {err.strip()}")
        return finish(counts, rig), err, code
    finally:
        venues.close()


def first_boot_kills(home: Path, kills: int, seed: int, max_alive_s: float = 0.5) -> Counts:
    """Kill the very first start (--allow-create-db) at random points, `kills` times on fresh
    installations; after each, a clean first start must boot (bricked otherwise)."""
    rng = random.Random(seed)
    venues = LoopbackVenues()
    counts = Counts("first_boot_kills")
    try:
        for i in range(kills):
            rig = Rig(home / f"install-{i}", venues)
            proc = rig.spawn(allow_create=True)
            delay = rng.uniform(0.0, max_alive_s)
            with contextlib.suppress(TimeoutError):
                rig.wait_for(proc, "writer lock", lambda proc=proc, rig=rig: rig.holds_lock(proc), 60)
            time.sleep(delay)
            if kill(proc) is None:
                counts.kills += 1
            again = rig.spawn(allow_create=True)
            try:
                ok = rig.wait_for(again, "boot after a first-boot kill",
                                  lambda rig=rig, again=again: rig.ticking(again, 0), 120)
            except TimeoutError:
                ok = False
            code = stop(again)
            measured = rig.measure_db()
            if not ok or measured is None or measured["integrity"] != "ok":
                counts.bricked += 1
                counts.notes.append(f"install-{i}: exit {code}, {measured}")
        counts.orders = sum(venues.posts.values())
        counts.duplicates = venues.duplicates()
        return counts
    finally:
        venues.close()


def deleted_database(home: Path, run_s: float = 2.0) -> tuple[Counts, dict[str, Any]]:
    """Delete the database under a running `live`: no order may follow (beyond one already on the
    wire), the process must HALT, and a restart must refuse (exit 2) rather than create an empty
    one. Returns counts plus what was seen."""
    venues = LoopbackVenues()
    counts = Counts("deleted_db")
    seen: dict[str, Any] = {}
    try:
        rig = Rig(home, venues)
        rig.first_boot()
        with Trader(venues, 0.1):
            proc = rig.spawn()
            rig.wait_for(proc, "live", lambda: len(venues.post_times) >= 3, 120)
            for suffix in ("", "-wal", "-shm"):
                side = Path(f"{rig.db}{suffix}")
                if side.exists():
                    side.unlink()
            deleted_at = time.time()
            time.sleep(run_s)
            seen["orders_after_delete"] = sum(1 for t, _ in venues.post_times if t > deleted_at + 0.5)
            stop(proc)
        logged = (home / "app.log").read_text(encoding="utf-8") if (home / "app.log").exists() else ""
        seen["halt_logged"] = "database is not the one this process booted on" in logged
        restart = rig.spawn()
        try:
            seen["restart_exit"] = restart.wait(120)
        finally:
            kill(restart)
        seen["restart_stderr"] = rig.stderr(restart)
        seen["recreated"] = rig.db.exists()
        counts.orders = sum(venues.posts.values())
        counts.duplicates = venues.duplicates()
        counts.lost = seen["orders_after_delete"]
        counts.bricked = int(seen["recreated"])
        return counts, seen
    finally:
        venues.close()


def as_json(counts: Counts) -> str:
    return json.dumps(counts.__dict__, sort_keys=True)
