"""Replay a drill: the real copy-trader (`service.start`, its jobs and the shared scheduler) on a
temporary SQLite database, a scripted clock and the drill transport; check the expectations at
their times and write the journal (canonical JSON lines, byte-identical across runs)."""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select

from hlcore.app import AppContext
from hlcore.engine.clock import ManualClock
from hlcore.engine.scheduler import Scheduler
from hlcore.jobs.copytrade.service import Wiring, start
from hlcore.storage.copytrade import Baselines
from hlcore.storage.db import Database, open_database
from hlcore.storage.repos import MachineStateStore, SystemState, load_json
from hlcore.storage.schema import audit_log, metadata
from hlcore.workspace import open_workspace
from replay.drill import NEVER, Drill, Expectation, Run, load_drill
from replay.transport import DrillVenues

WALLET = "0x" + "cd" * 20
ENV = {"HYPERLIQUID_TARGET_WALLET": WALLET, "BINANCE_API_KEY": "K" * 64, "BINANCE_API_SECRET": "S" * 64}
SEED = 5  # the retry jitter's random source: fixed, so two replays are identical


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def fmt_offset(ms: int) -> str:
    sign = "-" if ms < 0 else "+"
    ms = abs(ms)
    return f"{sign}{ms // 1000}.{ms % 1000:03d}s"


@dataclass
class Outcome:
    drill: str
    runbook: str
    policy_hash: str
    fixture_hash: str
    entries: list[dict[str, Any]] = field(default_factory=list)  # journal lines, sorted, no summary
    failures: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "fail" if self.failures else "pass"

    def summary(self) -> dict[str, Any]:
        return {"summary": {"drill": self.drill, "verdict": self.verdict, "policy_hash": self.policy_hash,
                            "fixture_hash": self.fixture_hash, "failures": self.failures}}

    def journal(self) -> str:
        return "".join(canonical(e) + "\n" for e in [*self.entries, self.summary()])


class _Player:
    """One run: process lifecycle (boot, crash), the clock, the journal and the checks."""

    def __init__(self, drill: Drill, run: Run, policy: Path | None, tmp: Path):
        self.drill, self.run = drill, run
        self.start_ms = run.start_ms
        settings = tmp / "settings.yaml"
        settings.write_text(yaml.safe_dump(run.config or {}, sort_keys=True), encoding="utf-8")
        self.ws = open_workspace(policy, settings, mode=run.mode)
        self.url = f"sqlite:///{tmp / 'drill.db'}"
        self.clock = ManualClock(run.start_ms)
        self.venues = DrillVenues(self.clock, WALLET, on_call=self.flush)
        self.venues.account.positions = {k: Decimal(str(v)) for k, v in (run.given.get("exchange") or {}).items()}
        self.db: Database = open_database(self.url)
        self.ctx: AppContext | None = None
        self.scheduler: Scheduler | None = None
        self.seq = 0
        self.last_audit_id = 0
        self.calls_seen = 0
        self.entries: list[tuple[int, int, dict[str, Any]]] = []
        self.failures: list[str] = []

    # ------------------------------------------------------------------ journal
    def add(self, ts_ms: int, entry: dict[str, Any]) -> None:
        self.seq += 1
        self.entries.append((ts_ms, self.seq, {"run": self.run.name, "t": fmt_offset(ts_ms - self.start_ms),
                                               "ts_ms": ts_ms, **entry}))

    def flush(self) -> None:
        """Move new venue calls and committed audit rows into the journal, in that order."""
        for call in self.venues.calls[self.calls_seen:]:
            self.add(call.ts_ms, {"kind": "venue_call", "venue": call.venue, "method": call.method,
                                  "path": call.path, "op": call.op})
        self.calls_seen = len(self.venues.calls)
        with self.db.transaction() as conn:
            rows = conn.execute(select(audit_log).where(audit_log.c.id > self.last_audit_id)
                                .order_by(audit_log.c.id)).mappings().all()
        for row in rows:
            self.last_audit_id = row["id"]
            self.add(row["timestamp_ms"], {
                "kind": "transition" if row["from_state"] != row["to_state"] else "audit",
                "category": row["category"], "machine": row["machine"], "instance": row["instance"],
                "from": row["from_state"], "to": row["to_state"], "event": row["event"],
                "reason": row["reason_code"], "facts": load_json(row["facts"])})

    # ------------------------------------------------------------------ world
    def seed(self) -> None:
        given, now = self.run.given, self.start_ms
        self.db.create_schema(now)
        if given.get("system_state"):
            SystemState(self.db).set_many(given["system_state"], now)
        safety = given.get("safety")
        if safety:
            machine = self.ws.policy.machines["safety"]
            MachineStateStore(self.db).save([{"machine": "safety", "instance": "safety", "state": safety["state"],
                                              "reason": safety.get("reason"), "since_ms": now, "vars": {}}], now)
            mirror = machine.mirror or {}
            values = {mirror["state"]: safety["state"]} if "state" in mirror else {}
            if "reason" in mirror:
                values[mirror["reason"]] = safety.get("reason") or ""
            if "since" in mirror:
                values[mirror["since"]] = str(now)
            SystemState(self.db).set_many(values, now)
        if given.get("baseline"):
            Baselines(self.db).sync({k: Decimal(str(v)) for k, v in given["baseline"].items()}, "drill",
                                    "drill given", now)

    def advance_to(self, ts_ms: int) -> None:
        self.flush()
        if ts_ms > self.clock.now_ms():  # a retry's sleep may already have moved the clock on
            self.clock.set(ts_ms)

    def until(self, at_ms: int) -> None:
        target = self.start_ms + at_ms
        if self.scheduler is not None:
            self.scheduler.run_until(target, self.advance_to)
        else:
            self.advance_to(target)
        self.flush()

    def boot(self) -> None:
        if self.ctx is not None:
            self.crash()
        wiring = Wiring(self.clock, lambda s: self.clock.advance(round(s * 1000)), random.Random(SEED),
                        lambda _venue: self.venues.session(), ENV)
        self.add(self.clock.now_ms(), {"kind": "process", "event": "boot", "mode": self.run.mode})
        self.ctx, _jobs, scheduler, _loop, code = start(self.ws, self.run.mode, wiring, db_url=self.url)
        self.flush()
        self.scheduler = scheduler if code == 0 else None
        if code != 0:
            self.crash(event=f"exit {code}")

    def crash(self, event: str = "crash") -> None:
        self.flush()
        if self.ctx is not None:
            self.ctx.close()
        self.ctx = self.scheduler = None
        self.add(self.clock.now_ms(), {"kind": "process", "event": event})

    # ------------------------------------------------------------------ checks
    def fail(self, exp: Expectation, message: str) -> None:
        at = "" if exp.at_ms is None else f" at {fmt_offset(exp.at_ms)}"
        self.failures.append(f"{self.run.name}: {self.drill.file}:{exp.line}{at}: {exp.describe()}: {message}")

    def machine(self, name: str) -> tuple[str | None, str | None]:
        if self.ctx is not None:
            engine = self.ctx.runtime.engine
            return engine.state(name), engine.reason(name)
        for row in MachineStateStore(self.db).load():
            if row["machine"] == name and row["instance"] == name:
                return row["state"], row["reason"]
        return None, None

    def check(self, exp: Expectation) -> None:
        spec = exp.spec
        reason = spec.get("reason", ...)
        if "state" in spec:
            for name, want in sorted(spec["state"].items()):
                got, got_reason = self.machine(name)
                if got != want or (reason is not ... and got_reason != reason):
                    self.fail(exp, f"{name} is {got}/{got_reason}")
        elif "transition" in spec:
            ts = self.start_ms + (exp.at_ms or 0)
            for name, want in sorted(spec["transition"].items()):
                hits = [e for t, _, e in self.entries if t == ts and e["kind"] == "transition"
                        and e["machine"] == name and e["to"] == want and (reason is ... or e["reason"] == reason)]
                if not hits:
                    seen = [f"{e['t']} {e['from']}->{e['to']}/{e['reason']}" for _, _, e in self.entries
                            if e["kind"] == "transition" and e["machine"] == name]
                    self.fail(exp, f"no such {name} transition (saw: {'; '.join(seen) or 'none'})")
        elif "system_state" in spec:
            have = SystemState(self.db).all()
            for key, want in sorted(spec["system_state"].items()):
                if have.get(key) != str(want):
                    self.fail(exp, f"{key} is {have.get(key)!r}")
        elif "rows" in spec:
            with self.db.transaction() as conn:
                for table, want in sorted(spec["rows"].items()):
                    if table not in metadata.tables:
                        self.fail(exp, f"unknown table {table}")
                        continue
                    got = conn.execute(select(func.count()).select_from(metadata.tables[table])).scalar_one()
                    if got != want:
                        self.fail(exp, f"{table} has {got} rows")
        elif "never" in spec:
            what = spec["never"]
            if what == "intent":
                with self.db.transaction() as conn:
                    got = conn.execute(select(func.count()).select_from(metadata.tables["order_intents"])).scalar_one()
                if got:
                    self.fail(exp, f"{got} order intent(s) written")
                return
            if what == "order_submitted":
                match = [c for c in self.venues.calls if c.method == "POST" and c.path == "/fapi/v1/order"]
            else:
                match = [c for c in self.venues.calls if what in (c.op, f"{c.method} {c.path}", c.path)]
            if match:
                self.fail(exp, f"{len(match)} call(s), first at {fmt_offset(match[0].ts_ms - self.start_ms)}")

    # ------------------------------------------------------------------ play
    def play(self) -> None:
        self.seed()
        timed = sorted((e for e in self.run.expect if e.at_ms is not None), key=lambda e: (e.at_ms or 0))
        for step in self.run.timeline:
            while timed and (timed[0].at_ms or 0) < step.at_ms:
                exp = timed.pop(0)
                self.until(exp.at_ms or 0)
                self.check(exp)
            self.until(step.at_ms)
            if step.do == "boot":
                self.boot()
            elif step.do == "crash":
                self.crash()
        for exp in timed:
            self.until(exp.at_ms or 0)
            self.check(exp)
        for exp in self.run.expect:
            if exp.at_ms is None:
                self.check(exp)
        self.flush()
        if self.ctx is not None:
            self.ctx.close()
        self.db.dispose()

    def journal(self) -> list[dict[str, Any]]:
        return [e for _, _, e in sorted(self.entries, key=lambda x: (x[0], x[1]))]


def replay(directory: Path, policy: Path | None = None) -> Outcome:
    """Load and play every run of the drill in `directory` (bad input raises BadInput)."""
    drill = load_drill(directory)
    outcome: Outcome | None = None
    for run in drill.runs:
        with tempfile.TemporaryDirectory(prefix="hlcore-drill-") as tmp:
            player = _Player(drill, run, policy, Path(tmp))
            if outcome is None:
                outcome = Outcome(drill.name, drill.runbook, player.ws.policy.hash, drill.fixture_hash)
            try:
                player.play()
            finally:
                player.db.dispose()
            outcome.entries.extend(player.journal())
            outcome.failures.extend(player.failures)
    assert outcome is not None
    return outcome


def timeline_text(outcome: Outcome) -> str:
    """Readable timeline: time, machine, from -> to, reason (transitions and process events)."""
    lines = [f"drill {outcome.drill} ({outcome.runbook})"]
    run = None
    for e in outcome.entries:
        if e["run"] != run:
            run = e["run"]
            lines.append(f"-- run {run}")
        if e["kind"] == "transition" and e["event"] != "seeded":
            lines.append(f"  {e['t']:>10}  {e['machine']:<10} {e['from'] or '-'} -> {e['to']}  {e['reason'] or ''}"
                         .rstrip())
        elif e["kind"] == "process":
            lines.append(f"  {e['t']:>10}  process    {e['event']}")
    calls: dict[str, int] = {}
    for e in outcome.entries:
        if e["kind"] == "venue_call":
            key = f"{e['venue']} {e['method']} {e['path']}" + (f" {e['op']}" if e["op"] else "")
            calls[key] = calls.get(key, 0) + 1
    lines.append("venue calls: " + (", ".join(f"{k} x{n}" for k, n in sorted(calls.items())) or "none"))
    for failure in outcome.failures:
        lines.append(f"FAIL {failure}")
    lines.append(f"verdict: {outcome.verdict}")
    return "\n".join(lines) + "\n"


__all__ = ["NEVER", "Outcome", "replay", "timeline_text"]
