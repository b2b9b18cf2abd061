"""Copy-trader operator commands that touch the safety mode (copytrader §8): unhalt, promote,
reset-safety, maintenance-skip.

Each measures what the policy's operator table needs (last reconcile, open UNKNOWNs, open
events), observes one `operator_command` fact and reports what the policy said: a refusal
(exit 1, nothing written) or the change, persisted with an `ops` audit row carrying the
operator's reason. `--dry-run` evaluates the same decision and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hlcore.app import AppContext
from hlcore.jobs.copytrade.jobs import ORDER
from hlcore.jobs.copytrade.order_status import OrderStatuses
from hlcore.storage.copytrade import CopytradeKey, CopytradeState, Events, Orders, ReconcileRuns
from hlcore.storage.repos import AuditLog

SAFETY = "safety"  # the machine the operator table drives (contract name, like a fact kind)
EVENT = "event"


@dataclass
class OpsOutcome:
    command: str
    refused: str | None
    before: dict[str, Any]
    after: dict[str, Any]
    effects: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)  # extra key=value lines (promote's manual checks, §8)

    def lines(self) -> list[str]:
        out = [f"command={self.command}"]
        out += [f"before_{k}={v}" for k, v in sorted(self.before.items())]
        if self.refused:
            out.append(f"refused={self.refused}")
            for e in self.effects:  # what the refusing rule says would be accepted (e.g. the allowed codes)
                if e.get("kind") == "refused" and e.get("allowed") is not None:
                    allowed = e["allowed"]
                    shown = (",".join(sorted(str(a) for a in allowed))
                             if isinstance(allowed, list | tuple | set | frozenset) else allowed)
                    out.append(f"allowed={shown}")
        else:
            out += [f"after_{k}={v}" for k, v in sorted(self.after.items())]
        if self.dry_run:
            out.append("dry_run=true (nothing written)")
        return [*out, *self.notes]


def safety_snapshot(ctx: AppContext) -> dict[str, Any]:
    engine = ctx.runtime.engine
    return {"safety_mode": engine.state(SAFETY), "safety_reason_code": engine.reason(SAFETY),
            "halt_recovery_noncritical_count": engine.var(SAFETY, "recovery_count")}


def measurements(ctx: AppContext) -> dict[str, Any]:
    """What the promote gate reads (copytrader §8): last reconcile, UNKNOWN orders, open events."""
    policy = ctx.workspace.policy
    last = ReconcileRuns(ctx.db).last()
    statuses = OrderStatuses.of(policy, ORDER)
    orders = Orders(ctx.db)
    open_states = [name for name, s in policy.machines[EVENT].states.items() if not s.final]
    return {
        "last_reconcile_result": last["raw_result"] if last else None,
        "last_reconcile_ms": last["ts_ms"] if last else None,
        # parked results are UNKNOWN + RETRY_BUDGET_EXCEEDED (§3.3): an UNKNOWN for the gate too
        "unknown_count": len(statuses.unresolved_results(orders)) + len(statuses.parked_results(orders)),
        "open_event_count": len(Events(ctx.db).unsettled(open_states)),
    }


def run_operator_command(ctx: AppContext, command: str, *, operator: str, reason_message: str | None,
                         target_mode: str | None = None, reason_code: str | None = None, force: bool = False,
                         allow_non_halt: bool = False, dry_run: bool = False) -> OpsOutcome:
    before = safety_snapshot(ctx)
    fields = {"command": command, "target_mode": target_mode, "reason_code": reason_code, "force": force,
              "allow_non_halt": allow_non_halt, **measurements(ctx)}
    decision = ctx.runtime.observe("operator_command", fields, persist=False)
    refused = next((e.data.get("code") for e in decision.effects if e.kind == "refused"), None)
    outcome = OpsOutcome(command, refused, before, safety_snapshot(ctx),
                         [e.to_dict() for e in decision.effects], dry_run)
    if refused or dry_run:
        return outcome
    now = ctx.clock.now_ms()
    with ctx.db.transaction() as conn:
        if any(e.kind == "maintenance_skip" for e in decision.effects):
            evidence = CopytradeState(ctx.db).maintenance_skip(now, conn=conn)
            outcome.after.update({
                "cursor_before": evidence.before_cursor.event_key if evidence.before_cursor else None,
                "cursor_after": evidence.after_cursor.event_key if evidence.after_cursor else None,
                "abandoned_from_ms": evidence.abandoned_from_ms, "abandoned_to_ms": evidence.abandoned_to_ms,
                "maintenance_skip_applied_ms": now})
        ctx.runtime.persist(decision, conn=conn)
        if reason_message and decision.transitions:  # the operator's words beat the reason's declared text
            CopytradeState(ctx.db).set_many({CopytradeKey.SAFETY_REASON_MESSAGE: reason_message}, now, conn=conn)
        ctx.runtime.announce(conn)
        AuditLog(ctx.db).write({
            "timestamp_ms": now, "category": "ops", "entity_id": SAFETY, "from_state": before["safety_mode"],
            "to_state": outcome.after["safety_mode"], "event": command,
            "reason_code": outcome.after["safety_reason_code"], "reason_message": reason_message,
            "event_id": command, "facts": fields, "policy_hash": ctx.workspace.policy.hash,
            "metadata": {"operator": operator, "effects": outcome.effects},
        }, conn=conn)
    return outcome
