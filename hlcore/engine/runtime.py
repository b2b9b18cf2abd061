"""An engine bound to storage: restore at start, persist after every decision.

Machine instances live in `machine_states` (and, for machines that declare `mirror:`, in the
`system_state` keys the runbooks query); every transition becomes an `audit_log` row; tally
entries go to `engine_tallies`. State, audit and tallies of one decision commit in one
transaction. If storage fails the decision still stands in memory (a HALT is effective at once)
and the caller turns the `StorageUnavailable` into a fact; the next good write persists it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from weakref import WeakKeyDictionary, WeakSet

from sqlalchemy import Connection, event
from sqlalchemy import Engine as SqlEngine

from hlcore.engine.clock import Clock
from hlcore.engine.core import Engine
from hlcore.engine.decision import AuditRecord, Decision
from hlcore.policy.model import Policy
from hlcore.storage.db import Database, StorageUnavailable, storage_errors
from hlcore.storage.repos import AuditLog, MachineStateStore, SystemState, TallyStore
from hlcore.storage.schema import engine_tallies, machine_states

OPS_REVISION = "ops_revision"  # storage key bumped by operator commands (not policy)


class Runtime:
    def __init__(self, db: Database, policy: Policy, settings: Any, clock: Clock):
        self.db = db
        self.policy = policy
        self.clock = clock
        self.engine = Engine(policy, settings, clock)
        self._states = MachineStateStore(db)
        self._audit = AuditLog(db)
        self._system = SystemState(db)
        self._tallies = TallyStore(db)
        self._unsaved: list[AuditRecord] = []
        self._unsaved_rows: dict[str, dict[str, Any]] = {}
        self._unsaved_tallies: list[dict[str, Any]] = []
        self._revision: str | None = None  # the last operator revision this process has adopted
        self._present: set[str] = set()  # tables seen in storage (see `_has`)
        self.engine.restore = self._restore  # final instances leave memory once committed (engine.evict)
        self._conn: Connection | None = None  # the caller's transaction while `observe` runs in one

    def _restore(self, machine: str, instance: str) -> Mapping[str, Any] | None:
        """An evicted instance's committed row, read in the caller's transaction when it gave one."""
        with storage_errors("restore machine state"):
            return self._states.load_one(machine, instance, conn=self._conn)

    def _has(self, table: str) -> bool:
        """Whether storage has `table` (an older schema may not). A table once seen stays: tables
        are never dropped under a running process, so persist does not reflect the schema each time."""
        if table in self._present:
            return True
        present = self.db._existing_tables()
        self._present |= present
        return table in present

    def start(self, persist: bool = True) -> Decision:
        """Restore every persisted instance (mirrors fill in for an older schema) and seed the rest.
        `persist=False` is for read-only commands: nothing is written."""
        with storage_errors("restore machine states"):
            rows = self._states.load() if self._has(machine_states.name) else []
            system = self._system.all()
            tallies = self._tallies.load(0) if self._has(engine_tallies.name) else []
        have = {r["machine"] for r in rows}
        for m in dict.values(self.policy.machines):  # `mirror` only: noted as `machine_seed` (engine.start)
            mirror = m.mirror
            if m.name in have or not mirror or mirror.get("state") not in system:
                continue
            since = system.get(mirror.get("since", ""))
            rows.append({"machine": m.name, "instance": m.name, "key": [], "state": system[mirror["state"]],
                         "reason": system.get(mirror.get("reason", "")), "since_ms": int(since) if since else None,
                         "vars": {}})
        self._revision = system.get(OPS_REVISION)
        decision = self.engine.start(rows, [{**t, "key": t["instance"] or None} for t in tallies])
        if persist:
            self.persist(decision)
        return decision

    def sync(self) -> bool:
        """Adopt machine states an operator command wrote from another process (it bumps
        `ops_revision`); a running service calls this at the top of each job cycle. One read
        when nothing changed. Returns whether anything was adopted."""
        try:
            with storage_errors("read operator revision"):
                revision = self._system.get(OPS_REVISION)
                if revision == self._revision:
                    return False
                rows = self._states.load() if self._has(machine_states.name) else []
        except StorageUnavailable:
            return False  # the job's own storage handling reports it; nothing can be adopted now
        self._revision = revision
        self.engine.start(rows, ())
        self.engine.drain_changed()  # adopted from storage: nothing to write back
        for row in rows:  # the operator acted on what storage showed: a state this process could not
            self._unsaved_rows.pop(row["instance"], None)  # save earlier must not overwrite it now
        return True

    def announce(self, conn: Connection) -> None:
        """Mark this write as an operator's, for running services to adopt (`sync`)."""
        current = self._system.get(OPS_REVISION, conn=conn)
        self._revision = str(int(current or 0) + 1)
        self._system.set(OPS_REVISION, self._revision, self.clock.now_ms(), conn=conn)

    def observe(self, kind: str, fields: Mapping[str, Any] | None = None, *, persist: bool = True,
                conn: Connection | None = None) -> Decision:
        """Observe a fact and persist what it changed (in `conn`'s transaction when given, so a
        job's own rows and the policy's state commit together)."""
        self._conn = conn
        try:
            decision = self.engine.observe(kind, fields)
        finally:
            self._conn = None
        pending = self._unsaved or self._unsaved_rows or self._unsaved_tallies  # an earlier write that failed
        if persist and (decision.transitions or decision.effects or decision.events or decision.vars or pending):
            self.persist(decision, conn=conn)
        return decision

    def persist(self, decision: Decision, conn: Connection | None = None) -> None:
        """Write state, audit rows and tallies in one transaction (unsaved audit rows are retried)."""
        now = self.clock.now_ms()
        self._unsaved.extend(decision.audit)
        for row in self.engine.drain_changed():
            self._unsaved_rows[row["instance"]] = row  # the latest row of an instance wins
        self._unsaved_tallies.extend(self.engine.drain_new_tallies())
        instances = [self._unsaved_rows[k] for k in sorted(self._unsaved_rows)]
        mirrors: dict[str, str] = {}
        for row in instances:
            # `mirror` is read of every machine at start, noted there as `machine_seed`: not a use of the machine
            mirror = dict.__getitem__(self.policy.machines, row["machine"]).mirror
            if mirror:
                mirrors[mirror["state"]] = row["state"]
                if "reason" in mirror:
                    mirrors[mirror["reason"]] = row["reason"] or ""
                if "since" in mirror:
                    mirrors[mirror["since"]] = str(row["since_ms"])
                if "message" in mirror:  # the reason's declared text, stored with every transition
                    declared = self.policy.reasons.get(row["reason"] or "")
                    mirrors[mirror["message"]] = declared.text if declared else ""
        joined = conn is not None
        with storage_errors("persist decision"), self.db.begin_or_join(conn) as conn:
            if self._has(machine_states.name):
                self._states.save([{k: r[k] for k in ("machine", "instance", "state", "reason", "since_ms", "vars")}
                                   for r in instances], now, conn=conn)
            if mirrors:
                self._system.set_many(mirrors, now, conn=conn)
            for record in self._unsaved:
                self._audit.write(_audit_row(record), conn=conn)
            if self._has(engine_tallies.name):
                for t in self._unsaved_tallies:
                    self._tallies.add(t["name"], "" if t["key"] is None else str(t["key"]), t["ts_ms"], t["value"],
                                     conn=conn)
        written = (len(self._unsaved), dict(self._unsaved_rows), len(self._unsaved_tallies))
        if joined:  # the caller's transaction decides: forget what was written only once it commits
            _after_commit(self.db, conn, lambda: self._forget(*written))
        else:
            self._forget(*written)

    def _forget(self, audits: int, rows: dict[str, dict[str, Any]], tallies: int) -> None:
        """Drop what a committed transaction wrote; anything newer (or rolled back) is kept for the
        next write, so a failed or rolled-back write loses nothing and never writes twice."""
        self._unsaved = self._unsaved[audits:]
        for key, row in rows.items():
            if self._unsaved_rows.get(key) is row:
                del self._unsaved_rows[key]
                if row["key"]:  # committed: a final keyed instance can leave memory (engine.evict)
                    self.engine.evict(row["machine"], tuple(row["key"]))
        self._unsaved_tallies = self._unsaved_tallies[tallies:]


_AFTER_COMMIT: WeakKeyDictionary[Connection, list[Callable[[], None]]] = WeakKeyDictionary()
_WATCHED: WeakSet[SqlEngine] = WeakSet()


def _after_commit(db: Database, conn: Connection, callback: Callable[[], None]) -> None:
    """Run `callback` once `conn`'s transaction commits (never if it rolls back). One listener per
    engine, registered once: a listener per call on the connection cost more than the write (issue 12)."""
    if db.engine not in _WATCHED:
        event.listen(db.engine, "commit", _committed)
        event.listen(db.engine, "rollback", _rolled_back)
        _WATCHED.add(db.engine)
    _AFTER_COMMIT.setdefault(conn, []).append(callback)


def _committed(conn: Connection) -> None:
    for callback in _AFTER_COMMIT.pop(conn, ()):
        callback()


def _rolled_back(conn: Connection) -> None:
    _AFTER_COMMIT.pop(conn, None)


def _audit_row(r: AuditRecord) -> dict[str, Any]:
    return {"timestamp_ms": r.at_ms, "category": r.category, "entity_id": r.instance, "machine": r.machine,
            "instance": r.instance, "from_state": r.from_state, "to_state": r.to_state, "event": r.event,
            "reason_code": r.reason_code, "event_id": r.fact, "facts": r.facts, "policy_hash": r.policy_hash,
            "metadata": {"severity": r.severity}}
