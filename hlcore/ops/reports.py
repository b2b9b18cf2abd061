"""The copy-trader's read-only operator reports (copytrader §8, runbook "Startup" and "Ops
Validation Bundle"): `ops status`, `ops preflight`, `ops poststart`, `ops validate-run`.

Every report is a list of `key=value` lines built from one `Snapshot` of the database, read
without writing: no file is created for a missing database, the engine is not started, no row is
touched (`preflight --allow-create-db` is the one exception: it creates the empty schema, as the
runbook's first-time bootstrap does, and `validate-run` appends to its output file).

State names are read from the policy, never spelled here: the HALT blocker is the safety mode
whose state is declared `halt: true` (a missing or unknown mode reads as that state, §3.1); a
mode is "live" when it allows every gate any safety mode allows, so any other non-halt mode
is a warning; unresolved and parked order states come from the policy lists
`unresolved_order_states` / `parked_order_states`, and a parked result is found the way the order
machine stores it (`stored_as` + the parking reason as error_code, §3.3). Blocker and warning
names are the operator vocabulary of §8, each printed with the runbook action for it.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from hlcore.adapters.http import VenueError
from hlcore.app import prepare_database
from hlcore.config.settings import BINANCE_KEY_ENV, BINANCE_SECRET_ENV, WALLET_ENV, check_env, secret_env_status
from hlcore.jobs.copytrade.jobs import ORDER, SAFETY
from hlcore.jobs.copytrade.order_status import OrderStatuses
from hlcore.jobs.copytrade.service import Wiring
from hlcore.ops.baseline import exchange_time
from hlcore.ops.database import DbTarget, utc_iso
from hlcore.policy.lint import lint
from hlcore.policy.model import Policy
from hlcore.storage.copytrade import (
    MAINTENANCE_SYMBOL,
    MAINTENANCE_TX_HASH,
    CopytradeKey,
    Events,
    OrderResult,
    Orders,
    ReconcileRuns,
    parse_event_key,
)
from hlcore.storage.db import Database, StorageUnavailable, open_database
from hlcore.storage.ingest_skips import IngestSkips
from hlcore.storage.repos import AuditLog, SystemState
from hlcore.storage.schema import audit_log, processed_txs
from hlcore.workspace import Workspace

ENV_NAMES = (WALLET_ENV, BINANCE_KEY_ENV, BINANCE_SECRET_ENV)  # shown SET/UNSET, never a value

# Runbook actions, by blocker / warning name (operator output, copytrader §8 and the seed runbook).
ACTIONS = {
    "db_missing": "first start only: hlcore ops preflight --allow-create-db; otherwise check db_path / db_url "
                  "(runbook Startup)",
    "db_unavailable": "storage unreachable: check db_url, credentials and the server; do not start "
                      "(runbook Incident Response 2)",
    "schema_version_mismatch": "stop the service; hlcore ops backup; hlcore ops rebuild-db --backup --force "
                               "(runbook Schema Updates: rebuild, never reuse old DBs)",
    "halt": "stop trading; read safety_reason_code; fix the root cause; auto-recovery (allowlisted reasons), "
            "hlcore ops maintenance-skip (gap), or hlcore ops unhalt (runbook Incident Response 2)",
    "halt_unset": "no readable safety mode stored (never booted, or unreadable): it reads as the halt mode; "
                  "start the service once (boot seeds the initial mode) and run status again (copytrader §3.1)",
    "unknown_burst": "rate limit outage or connectivity issue: roll back (disable trading), check exchange status "
                     "and API keys, then hlcore ops recover-orders (runbook Rollback Triggers, Incident Response 4)",
    "cursor_event_missing": "the cursor's event is not in processed_txs: run --mode backfill-only before live "
                            "(runbook Cursor Recovery)",
    "restricted_mode": "read safety_reason_code and its time; verify positions and open orders; "
                       "hlcore ops promote after verification (runbook Incident Response 1, Maintenance restart)",
    "maintenance_skip_gap": "set ingest.maintenance_skip_gap=false after the single controlled restart "
                            "(runbook Long Downtime Recovery step 6)",
    "parked_unknown": "UNKNOWN orders past their retry budget: check exchange connectivity, then "
                      "hlcore ops recover-orders (runbook Incident Response 3, Order State Recovery)",
    "time_offset": "fix the host's time sync (NTP) before starting (runbook Scripted Preflight)",
    "no_ingest_since_boot": "no Hyperliquid fetch has succeeded since the last boot: check the network, "
                            "ingest.hyperliquid.rest_url and the live process's stderr (runbook Incident Response 2)",
}


@dataclass
class Report:
    """`key=value` lines plus what they concluded; `failures`/`blockers` make the command exit 1."""

    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, key: str, value: Any) -> None:
        self.lines.append(f"{key}={'' if value is None else value}")

    def blocker(self, name: str, action_key: str | None = None) -> None:
        self.blockers.append(name)
        self.add("blocker", name)
        self.add(f"action_{name}", ACTIONS[action_key or name])

    def warning(self, name: str, action_key: str | None = None, shown: str | None = None) -> None:
        self.warnings.append(name)
        self.add("warning", shown or name)
        self.add(f"action_{name}", ACTIONS[action_key or name])

    @property
    def ok(self) -> bool:
        return not self.failures and not self.blockers


# --------------------------------------------------------------------------------------------------
# One read of the database
# --------------------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """What the reports read, in one pass; `schema_status` is ok, missing, mismatch or unavailable."""

    target: DbTarget
    schema_status: str
    schema_version: str | None = None
    error: str | None = None
    state: dict[str, str] = field(default_factory=dict)
    results_by_status: dict[str, int] = field(default_factory=dict)
    events_by_state: dict[str, int] = field(default_factory=dict)
    audit_count: int | None = None
    last_reconcile: dict[str, Any] | None = None
    unresolved: list[OrderResult] = field(default_factory=list)
    parked: list[OrderResult] = field(default_factory=list)
    burst_count: int = 0
    cursor_event_missing: bool = False
    skips_since_boot: dict[str, int] = field(default_factory=dict)  # ingest_skips per reason (issue 11 §2)

    @property
    def readable(self) -> bool:
        return self.schema_status in ("ok", "mismatch")

    def get(self, key: str) -> str | None:
        return self.state.get(str(key))


def _try(fn: Any, default: Any) -> Any:
    """Read one part; an old or foreign schema leaves that part empty instead of failing the report."""
    try:
        return fn()
    except Exception:
        return default


def take_snapshot(ws: Workspace, now_ms: int) -> Snapshot:
    target = DbTarget.of(ws.settings)
    if target.file_missing():
        return Snapshot(target, "missing")
    try:
        db = open_database(target.url)
        status = db.schema_status()
    except StorageUnavailable as exc:
        return Snapshot(target, "unavailable", error=target.scrub(str(exc)))
    try:
        snap = Snapshot(target, status)
        if status == "missing":
            return snap
        snap.schema_version = _try(db.stored_schema_version, None)
        snap.state = _try(lambda: SystemState(db).all(), {})
        _read_tables(ws.policy, db, snap, now_ms, int(ws.settings.get("safety.unknown_burst_window_sec")) * 1000)
        return snap
    finally:
        db.dispose()


def _read_tables(policy: Policy, db: Database, snap: Snapshot, now_ms: int, burst_window_ms: int) -> None:
    orders = Orders(db)
    snap.results_by_status = {str(k): v for k, v in _try(orders.results_by_status, {}).items()}
    snap.events_by_state = _try(lambda: _count_by(db, processed_txs.c.state), {})
    snap.audit_count = _try(lambda: AuditLog(db).count(), None)
    snap.last_reconcile = _try(lambda: ReconcileRuns(db).last(), None)
    snap.unresolved = _try(lambda: OrderStatuses.of(policy, ORDER).unresolved_results(orders), [])
    snap.parked = _try(lambda: OrderStatuses.of(policy, ORDER).parked_results(orders), [])
    snap.burst_count = _try(lambda: _unknown_burst(policy, db, now_ms, burst_window_ms), 0)
    boot_ms = snap.get(CopytradeKey.BOOT_MS)
    snap.skips_since_boot = _try(lambda: IngestSkips(db).counts_since(int(boot_ms or 0)), {})
    snap.cursor_event_missing = _try(lambda: _cursor_event_missing(db, snap.get(
        CopytradeKey.LAST_PROCESSED_EVENT_KEY)), False)


def _count_by(db: Database, column: Any) -> dict[str, int]:
    with db.transaction() as conn:
        rows = conn.execute(select(column, func.count()).group_by(column)).all()
    return {str(k): int(n) for k, n in sorted(rows, key=lambda r: str(r[0]))}


def _unknown_burst(policy: Policy, db: Database, now_ms: int, window_ms: int) -> int:
    """Audit transitions of the order machine into an unresolved state with a burst code, in the
    window ending now (§4.9 `unknown_burst`)."""
    unresolved = list(policy.lists.get("unresolved_order_states", ()))
    codes = list(policy.lists.get("unknown_burst_codes", ()))
    if not unresolved or not codes:
        return 0
    t = audit_log
    query = select(func.count()).select_from(t).where(
        t.c.category == policy.machines[ORDER].audit_category, t.c.machine == ORDER,
        t.c.to_state.in_(unresolved), t.c.reason_code.in_(codes),
        t.c.timestamp_ms > now_ms - window_ms, t.c.timestamp_ms <= now_ms)
    with db.transaction() as conn:
        return int(conn.execute(query).scalar_one())


def _cursor_event_missing(db: Database, key: str | None) -> bool:
    """The cursor names an event that `processed_txs` does not hold (runbook Cursor Recovery).
    A time-only cursor (fresh DB) and the maintenance-skip cursor name no event by design."""
    if not key:
        return False
    try:
        parsed = parse_event_key(key)
    except ValueError:
        return True
    if (parsed.tx_hash, parsed.symbol) == (MAINTENANCE_TX_HASH, MAINTENANCE_SYMBOL):
        return False
    return Events(db).get(key) is None


def safety_class(policy: Policy, mode: str | None) -> tuple[bool, bool, str]:
    """(is_halt, is_live, halt_state_name) of a stored mode, from the policy's safety machine."""
    machine = policy.machines[SAFETY]
    halt_names = [n for n, s in machine.states.items() if s.halt]
    fallback = machine.fallback.get("state") if machine.fallback else None
    halt_name = fallback if fallback in halt_names else (halt_names[0] if halt_names else str(fallback))
    state = machine.states.get(mode) if mode else None
    if state is None:  # missing or unreadable reads as the halt state (§3.1)
        return True, False, halt_name
    return state.halt, set(state.allows) >= machine.gates(), halt_name


# --------------------------------------------------------------------------------------------------
# Shared line groups
# --------------------------------------------------------------------------------------------------


def _db_lines(r: Report, snap: Snapshot) -> None:
    r.add("db", snap.target.display)
    r.add("schema_status", snap.schema_status)
    r.add("schema_version", snap.schema_version)
    if snap.error:
        r.add("db_error", snap.error)


def _safety_lines(r: Report, snap: Snapshot, *, message: bool = False, changed_at: bool = True) -> None:
    r.add("safety_mode", snap.get(CopytradeKey.SAFETY_MODE))
    r.add("safety_reason_code", snap.get(CopytradeKey.SAFETY_REASON_CODE))
    if message:
        r.add("safety_reason_message", snap.get(CopytradeKey.SAFETY_REASON_MESSAGE))
    if changed_at:
        r.add("safety_changed_at_ms", snap.get(CopytradeKey.SAFETY_CHANGED_AT_MS))


def _cursor_lines(r: Report, snap: Snapshot) -> None:
    for key in (CopytradeKey.LAST_PROCESSED_TIMESTAMP_MS, CopytradeKey.LAST_PROCESSED_EVENT_KEY,
                CopytradeKey.LAST_INGEST_SUCCESS_MS):
        r.add(str(key), snap.get(key))


def _skip_lines(r: Report, snap: Snapshot) -> None:
    """Venue items the ingest dropped since this process booted, per reason (issue 11 §2)."""
    r.add("ingest_skips_since_boot", sum(snap.skips_since_boot.values()))
    for reason, n in snap.skips_since_boot.items():
        r.add(f"ingest_skips_{reason}", n)


def _results_lines(r: Report, snap: Snapshot) -> None:
    r.add("order_results_total", sum(snap.results_by_status.values()))
    for status, n in snap.results_by_status.items():
        r.add(f"order_results_{status}", n)


def _reconcile_lines(r: Report, snap: Snapshot) -> None:
    last = snap.last_reconcile
    r.add("last_reconcile_ms", last["ts_ms"] if last else None)
    r.add("last_reconcile_result", last["raw_result"] if last else None)
    if last:
        r.add("last_reconcile_context", last["context"])
        r.add("last_reconcile_max_drift", last["max_drift"])
        r.add("last_reconcile_mode_after", last["mode_after"])


def _unknown_lines(r: Report, snap: Snapshot) -> None:
    r.add("unknown_orders", len(snap.unresolved))
    r.add("parked_orders", len(snap.parked))
    for res in [*snap.unresolved, *snap.parked]:
        r.lines.append(f"unknown_order={res.correlation_id} status={res.status} error_code={res.error_code} "
                       f"query_attempts={res.query_attempts} first_unknown_ms={res.first_unknown_ms}")


def _findings(ws: Workspace, r: Report, snap: Snapshot) -> None:
    """Blockers and warnings of `ops status` (copytrader §8)."""
    if snap.schema_status == "missing":
        r.blocker("db_missing")
        return
    if snap.schema_status == "unavailable":
        r.blocker("db_unavailable")
        return
    if snap.schema_status == "mismatch":
        r.blocker("schema_version_mismatch")
    mode = snap.get(CopytradeKey.SAFETY_MODE)
    is_halt, is_live, halt_name = safety_class(ws.policy, mode)
    if is_halt:
        r.blocker(halt_name, action_key="halt" if mode else "halt_unset")
    if snap.burst_count >= int(ws.settings.get("safety.unknown_burst_count")):
        r.blocker("unknown_burst")
    if snap.cursor_event_missing:
        r.blocker("cursor_event_missing")
    boot, success = snap.get(CopytradeKey.BOOT_MS), snap.get(CopytradeKey.LAST_INGEST_SUCCESS_MS)
    if boot is not None and (success is None or int(success) < int(boot)):  # failure is loud (issue 11)
        r.blocker("no_ingest_since_boot")
    if not is_halt and not is_live and mode:
        r.warning(mode, action_key="restricted_mode")
    if ws.settings.get("ingest.maintenance_skip_gap"):
        r.warning("maintenance_skip_gap", shown="maintenance_skip_gap=true")
    if snap.parked:
        r.warning("parked_unknown")


# --------------------------------------------------------------------------------------------------
# ops status
# --------------------------------------------------------------------------------------------------


def status_report(ws: Workspace, now_ms: int) -> Report:
    """Read-only summary, blockers (exit 1) and warnings, each with its runbook action."""
    snap = take_snapshot(ws, now_ms)
    r = Report()
    _db_lines(r, snap)
    if snap.readable:
        _safety_lines(r, snap)
        _cursor_lines(r, snap)
        _skip_lines(r, snap)
        _results_lines(r, snap)
        _unknown_lines(r, snap)
        r.add("unknown_burst_count", snap.burst_count)
        _reconcile_lines(r, snap)
    _findings(ws, r, snap)
    r.add("blockers", len(r.blockers))
    r.add("warnings", len(r.warnings))
    r.add("status", "ok" if r.ok else "blocked")
    return r


# --------------------------------------------------------------------------------------------------
# ops preflight
# --------------------------------------------------------------------------------------------------


def preflight_report(ws: Workspace, wiring: Wiring, *, mode: str = "live", exchange_time_check: bool = False,
                     allow_create_db: bool = False) -> Report:
    """Config + hash, env presence, local time, optional exchange time, DB schema (runbook
    Scripted Preflight). Ends with `preflight_ok` or `preflight_failed` and one line per failure."""
    r = Report()
    s = ws.settings
    r.add("config", ws.config_file or "defaults")
    errors = [f for f in lint(ws.policy, s) if f.level == "error"]
    for finding in errors:
        r.failures.append(f"config_invalid: {finding}")
    r.add("config_valid", "false" if errors else "true")
    r.add("config_hash", ws.config_hash)
    r.add("policy_hash", ws.policy.hash)
    r.add("mode", mode)
    for name, shown in secret_env_status(ENV_NAMES, wiring.environ).items():
        r.add(f"env_{name}", shown)
    for problem in check_env(mode, s, wiring.environ):  # messages never carry a value
        r.failures.append(f"env_missing: {problem.path} {problem.message}")
    now = wiring.clock.now_ms()
    r.add("local_time_ms", now)
    if exchange_time_check:
        _exchange_time(ws, wiring, r)
    _preflight_db(ws, r, now, allow_create_db)
    for failure in r.failures:
        r.add("failure", failure)
    r.lines.append("preflight_ok" if not r.failures else "preflight_failed")
    return r


def _exchange_time(ws: Workspace, wiring: Wiring, r: Report) -> None:
    sample = exchange_time(ws, wiring)
    if isinstance(sample, VenueError):
        r.failures.append(f"exchange_time_unavailable: {sample.code} {sample.message}")
        return
    offset = sample.offset_ms
    limit = int(ws.settings.get("execution.binance.recv_window_ms"))
    r.add("binance_server_time_ms", sample.server_time_ms)
    r.add("time_offset_ms", offset)
    if abs(offset) >= limit:
        r.failures.append(f"time_offset: |{offset}| ms >= recv_window_ms {limit}")
    elif abs(offset) > (warn := int(ws.settings.get("execution.binance.time_offset_warn_ms"))):
        r.warning("time_offset", shown=f"time_offset |{offset}| ms > {warn}")


def _preflight_db(ws: Workspace, r: Report, now_ms: int, allow_create_db: bool) -> None:
    target = DbTarget.of(ws.settings)
    r.add("db", target.display)
    created = False
    try:
        if target.file_missing() and not allow_create_db:
            status = "missing"
        else:
            if allow_create_db and target.is_sqlite:  # built aside and linked into place (issue 10)
                created = prepare_database(target.url, now_ms, allow_create=True)
            db = open_database(target.creatable_url() if allow_create_db else target.url)
            try:
                status = db.schema_status()
                if status == "missing" and allow_create_db:
                    db.create_schema(now_ms)
                    created = True
                    status = db.schema_status()
                r.add("schema_version", db.stored_schema_version())
            finally:
                db.dispose()
    except StorageUnavailable as exc:
        r.add("schema_status", "unavailable")
        r.failures.append(f"db_unavailable: {target.scrub(str(exc))}")
        return
    r.add("schema_status", status)
    r.add("db_created", "true" if created else "false")
    if status == "missing":
        r.failures.append("db_missing: no database (first start: --allow-create-db)")
    elif status == "incomplete":
        r.failures.append("db_half_made: an interrupted first boot left a half-made database "
                          "(--allow-create-db sets it aside and creates it afresh)")
    elif status != "ok":
        r.failures.append("schema_version_mismatch: rebuild the database (hlcore ops rebuild-db --backup --force)")


# --------------------------------------------------------------------------------------------------
# ops poststart
# --------------------------------------------------------------------------------------------------


def metrics_tail(path: Path, n: int) -> list[str]:
    """The last `n` lines of the metrics log (empty when it does not exist yet)."""
    if n <= 0 or not path.is_file():
        return []
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        return [line.rstrip("\n") for line in deque(fh, maxlen=n)]


def _metrics_lines(ws: Workspace, r: Report, n: int) -> None:
    path = Path(ws.settings.get("metrics_log_path")).expanduser()
    tail = metrics_tail(path, n)
    r.add("metrics_log", path)
    r.add("metrics_tail_lines", len(tail))
    last_ts = None
    for line in tail:
        r.add("metrics_tail", line)
        payload = line.split(" ", 1)[1] if line.startswith("[METRICS] ") else line
        try:
            ts = json.loads(payload).get("ts")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(ts, int):
            last_ts = ts if last_ts is None else max(last_ts, ts)
    r.add("metrics_last_ts_ms", last_ts)


def poststart_report(ws: Workspace, now_ms: int, *, tail: int = 5) -> Report:
    """Safety mode/reason/message, cursor keys, order results by status, audit count, metrics tail."""
    snap = take_snapshot(ws, now_ms)
    r = Report()
    _poststart_lines(ws, r, snap, tail)
    return r


def _poststart_lines(ws: Workspace, r: Report, snap: Snapshot, tail: int) -> None:
    if not snap.readable:
        r.add("db", snap.target.display)
        r.failures.append("db_missing" if snap.schema_status == "missing" else f"db_{snap.schema_status}")
    else:
        _safety_lines(r, snap, message=True, changed_at=False)
        if snap.get(CopytradeKey.SAFETY_MODE) is None:
            r.failures.append("safety_mode_missing: the service has not booted on this database")
        _cursor_lines(r, snap)
        _results_lines(r, snap)
        r.add("audit_log_count", snap.audit_count)
    _metrics_lines(ws, r, tail)
    for failure in r.failures:
        r.add("failure", failure)


# --------------------------------------------------------------------------------------------------
# ops validate-run
# --------------------------------------------------------------------------------------------------


def validate_run(ws: Workspace, wiring: Wiring, output: Path, *, operator: str, mode: str,
                 exchange_time_check: bool = False, allow_create_db: bool = False, tail: int = 5) -> Report:
    """Append the evidence bundle (runbook Ops Validation Bundle) to `output`; `status=fail` when
    preflight failed, poststart could not read the database, or `ops status` has a blocker."""
    now = wiring.clock.now_ms()
    target = DbTarget.of(ws.settings)
    r = Report()
    r.add("date_utc", utc_iso(now))
    r.add("operator", operator)
    r.add("environment", ws.settings.get("environment"))
    r.add("mode", mode)
    r.add("db", target.display)
    r.add("config_hash", ws.config_hash)
    pre = preflight_report(ws, wiring, mode=mode, exchange_time_check=exchange_time_check,
                           allow_create_db=allow_create_db)
    r.lines += [line if "=" not in line else f"preflight_{line}" for line in pre.lines
                if not line.startswith(("db=", "mode=", "config_hash="))]
    r.failures += [f"preflight: {f}" for f in pre.failures]
    r.warnings += pre.warnings
    snap = take_snapshot(ws, wiring.clock.now_ms())
    post = Report()
    _poststart_lines(ws, post, snap, tail)
    r.lines += [line for line in post.lines if not line.startswith("db=")]
    r.failures += [f"poststart: {f}" for f in post.failures]
    if snap.readable:
        for state, n in snap.events_by_state.items():
            r.add(f"processed_txs_{state}", n)
        _unknown_lines(r, snap)
        _reconcile_lines(r, snap)
        r.add(str(CopytradeKey.MAINTENANCE_SKIP_APPLIED_MS), snap.get(CopytradeKey.MAINTENANCE_SKIP_APPLIED_MS))
    r.add("maintenance_skip_gap", str(bool(ws.settings.get("ingest.maintenance_skip_gap"))).lower())
    findings = Report()
    _findings(ws, findings, snap)
    r.lines += findings.lines
    r.blockers += findings.blockers
    r.warnings += findings.warnings
    r.add("status", "ok" if r.ok else "fail")
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("a", encoding="utf-8") as fh:
        fh.write("\n".join([f"# hlcore ops validate-run {utc_iso(now)}", *r.lines, ""]) + "\n")
    return r
