"""The copy-trader page's view model: what the copy-trader runbook's verification and incident
steps query by hand (safety mode and reason, allowed gates, cursor and lag, parked / UNKNOWN
orders, reconcile drift, the last audit rows, config and policy hash).

`load_copytrader` reads (the ops reports' own snapshot plus the audit tail, read-only);
`copytrader_page` is pure: the Streamlit script draws the `CopytraderPage` it returns. Whether
the banner is a halt or a safe-mode banner comes from the policy's `safety` machine (`halt:` and
the gates a state allows), never from state names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from hlcore.ops.reports import Snapshot, safety_class, take_snapshot
from hlcore.storage.copytrade import CopytradeKey
from hlcore.storage.db import StorageUnavailable, open_read_only
from hlcore.storage.repos import load_json
from hlcore.storage.schema import audit_log
from hlcore.workspace import Workspace

SAFETY = "safety"
AUDIT_ROWS = 50  # the copy-trader runbook's "last 50 audit rows"
AUDIT_COLUMNS = ("timestamp_ms", "machine", "instance", "from_state", "to_state", "event", "reason_code")


@dataclass(frozen=True)
class CopytraderData:
    snapshot: Snapshot
    audit: tuple[Mapping[str, Any], ...]
    audit_error: str | None = None


@dataclass(frozen=True)
class CopytraderPage:
    readable: bool
    db: str
    banner: str | None          # halt / safe-mode banner text
    banner_level: str | None    # "error" (halt) or "warning" (safe, not live)
    facts: tuple[tuple[str, str], ...]  # label -> value, in display order
    allowed_gates: tuple[str, ...]
    orders: tuple[Mapping[str, Any], ...]  # parked and UNKNOWN orders
    audit: tuple[Mapping[str, Any], ...]
    error: str | None = None

    def lines(self) -> list[str]:
        out = [self.banner] if self.banner else []
        out += [f"{k}: {v}" for k, v in self.facts]
        out.append("Allowed gates: " + (", ".join(self.allowed_gates) or "none"))
        out += [f"Order {o['correlation_id']} {o['status']} {o['error_code'] or ''}".rstrip() for o in self.orders]
        out.append(f"Audit rows: {len(self.audit)}")
        return out


def utc(ms: Any) -> str:
    """Epoch ms (int or digit string) as `YYYY-MM-DD HH:MM:SS UTC`; anything else as given."""
    if ms is None or ms == "":
        return "N/A"
    try:
        return datetime.fromtimestamp(int(ms) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError):
        return str(ms)


def load_copytrader(ws: Workspace, now_ms: int) -> CopytraderData:
    """The copy-trader database as the ops reports read it, plus its last audit rows (read-only)."""
    snap = take_snapshot(ws, now_ms)
    if not snap.readable:
        return CopytraderData(snap, ())
    db = open_read_only(snap.target.url)
    try:
        with db.transaction() as conn:
            rows = conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(AUDIT_ROWS)).mappings().all()
        return CopytraderData(snap, tuple(dict(r) for r in rows))
    except StorageUnavailable as exc:
        return CopytraderData(snap, (), snap.target.scrub(str(exc)))
    finally:
        db.dispose()


def copytrader_page(data: CopytraderData, ws: Workspace, now_ms: int) -> CopytraderPage:
    """The page for `data` at `now_ms` (pure)."""
    snap, policy = data.snapshot, ws.policy
    if not snap.readable:
        return CopytraderPage(False, snap.target.display, f"Copy-trader database {snap.schema_status}: nothing to show",
                              "error", (("Database", snap.target.display), ("Config hash", ws.config_hash),
                                        ("Policy hash", policy.hash)), (), (), (), snap.error)
    mode = snap.get(CopytradeKey.SAFETY_MODE)
    is_halt, is_live, halt_name = safety_class(policy, mode)
    shown = mode if mode in policy.machines[SAFETY].states else halt_name
    allows = tuple(policy.machines[SAFETY].states[shown].allows)
    reason = snap.get(CopytradeKey.SAFETY_REASON_CODE) or ""
    message = snap.get(CopytradeKey.SAFETY_REASON_MESSAGE) or ""
    banner, level = None, None
    if is_halt:
        banner, level = f"{shown}: trading halted — {reason} {message}".strip(), "error"
    elif not is_live:
        banner, level = f"{shown}: safe mode, no new exposure — {reason} {message}".strip(), "warning"
    cursor_ts = snap.get(CopytradeKey.LAST_PROCESSED_TIMESTAMP_MS)
    lag = "N/A" if not (cursor_ts or "").isdigit() else f"{max(0, now_ms - int(cursor_ts or 0)) // 1000} s"
    last = snap.last_reconcile or {}
    facts = (
        ("Safety mode", shown), ("Reason code", reason or "N/A"), ("Reason message", message or "N/A"),
        ("Since", utc(snap.get(CopytradeKey.SAFETY_CHANGED_AT_MS))),
        ("last_processed_timestamp_ms", utc(cursor_ts)),
        ("last_processed_event_key", snap.get(CopytradeKey.LAST_PROCESSED_EVENT_KEY) or "N/A"),
        ("Cursor lag", lag),
        ("Last ingest success", utc(snap.get(CopytradeKey.LAST_INGEST_SUCCESS_MS))),
        ("UNKNOWN orders", str(len(snap.unresolved))), ("Parked orders", str(len(snap.parked))),
        ("Last reconcile", utc(last.get("ts_ms"))), ("Reconcile result", str(last.get("raw_result") or "N/A")),
        ("Reconcile max drift", "N/A" if last.get("max_drift") is None else f"{float(last['max_drift']):g}"),
        ("Config hash", ws.config_hash), ("Policy hash", policy.hash),
        ("Stored config hash", snap.get(CopytradeKey.CONFIG_HASH) or "N/A"),
    )
    orders = tuple({"correlation_id": r.correlation_id, "status": r.status, "error_code": r.error_code,
                    "query_attempts": r.query_attempts, "first_unknown": utc(r.first_unknown_ms)}
                   for r in [*snap.unresolved, *snap.parked])
    audit = tuple(_audit_row(r) for r in data.audit)
    return CopytraderPage(True, snap.target.display, banner, level, facts, allows, orders, audit, data.audit_error)


def _audit_row(row: Mapping[str, Any]) -> Mapping[str, Any]:
    out: dict[str, Any] = {k: row.get(k) for k in AUDIT_COLUMNS}
    out["timestamp_ms"] = utc(row.get("timestamp_ms"))
    meta = row.get("metadata")
    out["severity"] = (load_json(meta) or {}).get("severity") if isinstance(meta, str) and meta else None
    return out


__all__ = ["CopytraderPage", "copytrader_page", "load_copytrader"]
