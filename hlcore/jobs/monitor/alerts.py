"""Alert rows from the policy's verdicts (spec/monitor.md §3.4, §4.6, §6 `alerts`, `alert_state`).

The alert machines (machines/exit_cluster.yaml, regime_change.yaml, system_stale.yaml) and the
delivery table (rules/alert_delivery.yaml) decide whether an alert fires and whether it surfaces;
they answer with `alert_surfaced` / `alert_suppressed` effects. This module only stores those
answers: one `alerts` row per effect (message rendered from the effect's own template) and the
seven `alert_state` rows mirrored from the machines, in the caller's transaction so a machine's
state and the rows it produced commit together.

Which machine is which alert type is read from the policy (the transitions that emit
`alert_fired` or carry an `alert_surfaced` effect with a fixed `alert_type`), so no alert-type
name is spelled here (house rule 4).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from hlcore import consulted
from hlcore.app import AppContext
from hlcore.engine.decision import Decision, Effect
from hlcore.policy.model import Policy
from hlcore.storage.monitor_signals import SYSTEM_ASSET, AlertStore, SignalStore

log = logging.getLogger("hlcore.monitor.alerts")

# The policy contract read here: effect, fact and machine names, and variable names that map onto
# `alert_state` columns (not states, reasons or alert types).
ALERT_SURFACED = "alert_surfaced"
ALERT_SUPPRESSED = "alert_suppressed"
ALERT_FIRED = "alert_fired"
DELIVERY = "alert_delivery"
VAR_CONFIRMED = "confirmed"
VAR_PENDING = "pending"
VAR_COOLDOWN_UNTIL = "cooldown_until"
VAR_LAST_TRIGGERED = "last_triggered_ts"

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS


@dataclass(frozen=True)
class AlertMachine:
    """One alert machine of the policy and the alert type it raises.

    Attributes:
        machine: the machine's name.
        alert_type: the `alert_type` its firing transition gives.
        per_asset: keyed by asset (behavioural, goes through delivery) or a singleton (system).
        initial: the machine's initial state (anything else is "active" unless it tracks a pending
            candidate, see `AlertWriter.state_rows`).
        has_pending: the machine keeps confirmed/pending variables (regime persistence).
    """

    machine: str
    alert_type: str
    per_asset: bool
    initial: str
    has_pending: bool


@consulted.derived
def alert_machines(policy: Policy) -> tuple[AlertMachine, ...]:
    """The policy's alert machines in a stable order: behavioural ones first, by alert type."""
    found: dict[str, AlertMachine] = {}
    for m in policy.machines.values():
        for t in m.transitions:
            types = [e.get("with", {}).get("alert_type") for e in t.emit if e.get("fact") == ALERT_FIRED]
            types += [e.get("alert_type") for e in t.effects if e.get("kind") == ALERT_SURFACED]
            for alert_type in types:
                if isinstance(alert_type, str):
                    found[alert_type] = AlertMachine(m.name, alert_type, bool(m.key), m.initial,
                                                     VAR_PENDING in m.vars and VAR_CONFIRMED in m.vars)
    return tuple(sorted(found.values(), key=lambda a: (not a.per_asset, a.alert_type)))


def render(template: str | None, fields: Mapping[str, Any]) -> str:
    """The alert text: the effect's `template` formatted with its own fields, plus `minutes` =
    floor(age_ref_ms / 60 000) for the system alert (§4.6 M). A template that does not render
    is stored raw and logged: an alert row with an odd message beats a lost alert."""
    if not template:
        return ""
    values = dict(fields)
    if values.get("age_ref_ms") is not None:
        values["minutes"] = int(values["age_ref_ms"]) // MINUTE_MS
    try:
        return template.format(**values)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        log.error("alert template did not render (%s): %s", exc, template)
        return template


class AlertWriter:
    """Stores the alert effects of decisions and mirrors the alert machines into `alert_state`."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.engine = ctx.runtime.engine
        self.store = AlertStore(ctx.db)
        self.signals = SignalStore(ctx.db)
        self.machines = alert_machines(ctx.workspace.policy)
        self.assets: tuple[str, ...] = tuple(ctx.settings.get("monitor.assets"))
        self.window_ms = int(float(ctx.settings.get("monitor.alerts.daily_window_hours")) * HOUR_MS)

    def write(self, decisions: Iterable[Decision], *, conn: Connection | None = None) -> list[dict[str, Any]]:
        """Insert one `alerts` row per `alert_surfaced` / `alert_suppressed` effect (a row already
        stored is skipped: UNIQUE (asset, alert_type, signal_ts), one system row per activation),
        then refresh `alert_state`. Returns the rows inserted."""
        decisions = list(decisions)
        written: list[dict[str, Any]] = []
        with self.ctx.db.begin_or_join(conn) as c:
            for d in decisions:
                for effect in d.effects:
                    if effect.kind not in (ALERT_SURFACED, ALERT_SUPPRESSED):
                        continue
                    row = self._row(d, effect, c)
                    if self.store.insert(row, conn=c):
                        written.append(row)
            now = max((d.at_ms for d in decisions), default=self.ctx.clock.now_ms())
            self.store.upsert_state(self.state_rows(now, conn=c), conn=c)
        return written

    def _row(self, decision: Decision, effect: Effect, conn: Connection) -> dict[str, Any]:
        data = effect.data
        asset = data.get("asset")
        signal_ts = data.get("signal_ts")
        snapshot: Any = None
        if asset is not None and signal_ts is not None:
            snapshot = self.signals.signal_row(int(signal_ts), asset, conn=conn)
        if snapshot is None:
            snapshot = {k: v for k, v in data.items() if k != "template"}
        suppressed = effect.kind == ALERT_SUPPRESSED
        return {
            "alert_ts": decision.at_ms,
            "signal_ts": None if signal_ts is None else int(signal_ts),
            "asset": asset,
            "alert_type": data["alert_type"],
            "severity": data.get("severity"),
            "message": render(data.get("template"), data),
            "signal_snapshot": snapshot,
            "cooldown_until": None if data.get("cooldown_until") is None else int(data["cooldown_until"]),
            "suppressed": suppressed,
            "suppressed_reason": data.get("suppressed_reason") if suppressed else None,
            "created_at": decision.at_ms,
        }

    def state_rows(self, now_ms: int, *, conn: Connection | None = None) -> list[dict[str, Any]]:
        """The seven `alert_state` rows (§6): each behavioural type per asset, and the system row.

        `is_active` is the latch (a state other than the initial one) or, for a machine that
        tracks a candidate, whether a candidate is pending. `daily_count` mirrors A5's rolling
        count (surfaced alerts of the asset with `alert_ts > now − window`) and
        `daily_window_start` is that window's start."""
        rows = []
        window_start = now_ms - self.window_ms
        # per asset, read once for every alert type (2 queries, not 2 per row)
        daily = self.store.surfaced_counts(self.assets, window_start, conn=conn)
        last_signal = self.signals.latest_signal_ts_by_asset(self.assets, conn=conn)
        for am in self.machines:
            if not am.per_asset:
                state = self.engine.state(am.machine)
                rows.append(_state_row(SYSTEM_ASSET, am.alert_type, now_ms, is_active=state != am.initial,
                                       last_triggered_ts=self.store.latest_ts(am.alert_type, None, conn=conn)))
                continue
            for asset in self.assets:
                key = {"asset": asset}
                pending = self.engine.var(am.machine, VAR_PENDING, **key) if am.has_pending else None
                active = pending is not None if am.has_pending else self.engine.state(am.machine, **key) != am.initial
                delivery = {"asset": asset, "alert_type": am.alert_type}
                rows.append(_state_row(
                    asset, am.alert_type, now_ms,
                    is_active=active,
                    last_triggered_ts=self.engine.var(DELIVERY, VAR_LAST_TRIGGERED, **delivery),
                    cooldown_until=self.engine.var(DELIVERY, VAR_COOLDOWN_UNTIL, **delivery),
                    daily_count=daily[asset],
                    daily_window_start=window_start,
                    confirmed_playbook=self.engine.var(am.machine, VAR_CONFIRMED, **key) if am.has_pending else None,
                    pending_playbook=pending,
                    pending_periods=1 if pending is not None else 0,
                    last_signal_ts=last_signal[asset],
                ))
        return rows


def _state_row(asset: str, alert_type: str, now_ms: int, *, is_active: bool, last_triggered_ts: Any = None,
               cooldown_until: Any = None, daily_count: int = 0, daily_window_start: int | None = None,
               confirmed_playbook: str | None = None, pending_playbook: str | None = None,
               pending_periods: int = 0, last_signal_ts: int | None = None) -> dict[str, Any]:
    return {
        "asset": asset,
        "alert_type": alert_type,
        "is_active": bool(is_active),
        "last_triggered_ts": None if last_triggered_ts is None else int(last_triggered_ts),
        "cooldown_until": None if cooldown_until is None else int(cooldown_until),
        "daily_count": int(daily_count),
        "daily_window_start": daily_window_start,
        "confirmed_playbook": confirmed_playbook,
        "pending_playbook": pending_playbook,
        "pending_periods": pending_periods,
        "last_signal_ts": last_signal_ts,
        "updated_at": now_ms,
    }


__all__ = ["ALERT_SUPPRESSED", "ALERT_SURFACED", "AlertMachine", "AlertWriter", "alert_machines", "render"]
