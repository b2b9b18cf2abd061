"""The `hlcore` command: parses, calls, prints. Exit 0 ok, 1 a check failed, 2 bad input."""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from hlcore.errors import BadInput, CheckFailed, HlcoreError
from hlcore.policy.graph import RENDERERS
from hlcore.policy.lint import lint
from hlcore.resources import default_dir
from hlcore.workspace import open_workspace

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="hlcore: the operational safety policy of a Hyperliquid trading system, as data.")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

PolicyOpt = Annotated[Path | None, typer.Option("--policy", help="Directory holding machines/ and rules/ "
                                                "(default: ./ if it has them, else the packaged policy).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Settings file (default: ./config/settings.yaml "
                                                "if present, else the packaged defaults).")]


def handles_errors(fn: F) -> F:
    """Domain code raises; this edge prints the located problems and maps them to exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BadInput as exc:
            for problem in exc.problems:
                err.print(f"[red]error[/red] {problem}", markup=True) if err.is_terminal else err.print(
                    f"error: {problem}", markup=False)
            raise typer.Exit(code=2) from None
        except CheckFailed as exc:
            err.print(f"failed: {exc}", markup=False)
            raise typer.Exit(code=1) from None
        except HlcoreError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(code=exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@handles_errors
def validate(policy: PolicyOpt = None, config: ConfigOpt = None,
             strict: Annotated[bool, typer.Option(help="Treat lint warnings as failures (exit 1).")] = False) -> None:
    """Validate settings and policy (schema, references) and run the static checks."""
    ws = open_workspace(policy, config)
    findings = lint(ws.policy, ws.settings)
    errors = [f for f in findings if f.level == "error"]
    warnings = [f for f in findings if f.level == "warning"]
    for f in findings:
        (err if f.level == "error" else out).print(f"{f.level}: {f}", markup=False)
    if errors:
        raise typer.Exit(code=2)
    rows = sum(len(t.rows) for t in ws.policy.tables)
    out.print(f"policy={ws.policy_dir} policy_hash={ws.policy.hash}", markup=False)
    out.print(f"config={ws.config_file or 'defaults'} machines={len(ws.policy.machines)} "
              f"tables={len(ws.policy.tables)} rules={rows} warnings={len(warnings)}", markup=False)
    if warnings and strict:
        raise typer.Exit(code=1)
    out.print("OK", markup=False)


@app.command()
@handles_errors
def graph(machine: Annotated[str, typer.Argument(help="Machine name, e.g. safety or health.")],
          format: Annotated[str, typer.Option("--format", help="mermaid or dot.")] = "mermaid",
          policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Print a state machine as a Mermaid or Graphviz diagram."""
    if format not in RENDERERS:
        raise BadInput(f"--format: expected one of {', '.join(RENDERERS)}, got '{format}'")
    ws = open_workspace(policy, config)
    m = ws.policy.machines.get(machine)
    if m is None:
        raise BadInput(f"unknown machine '{machine}' (known: {', '.join(sorted(ws.policy.machines))})")
    sys.stdout.write(RENDERERS[format](m))


@app.command("hash")
@handles_errors
def hash_(policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Print the policy hash and the config hash (settings + policy; secrets never included)."""
    ws = open_workspace(policy, config)
    out.print(f"policy_hash={ws.policy.hash}", markup=False)
    out.print(f"config_hash={ws.config_hash}", markup=False)


@app.command()
@handles_errors
def init(directory: Annotated[Path, typer.Argument(help="Where to put machines/, rules/ and config/.")],
         force: Annotated[bool, typer.Option(help="Overwrite existing policy files.")] = False) -> None:
    """Copy the default policy and settings into an operator's own repository."""
    targets = {"machines": directory / "machines", "rules": directory / "rules",
               "config": directory / "config"}
    existing = [str(p) for p in targets.values() if p.exists() and any(p.iterdir())]
    if existing and not force:
        raise CheckFailed(f"refusing to overwrite {', '.join(existing)} (use --force)")
    for name, target in targets.items():
        target.mkdir(parents=True, exist_ok=True)
        source = default_dir(name)
        for path in sorted(source.glob("*.yaml")):
            if name == "config" and path.name != "settings.yaml":
                continue  # the schema belongs to the installed hlcore, not to the operator
            shutil.copy2(path, target / path.name)
            out.print(f"wrote {target / path.name}", markup=False)
    out.print(f"next: cd {directory} && hlcore validate", markup=False)


@app.command()
@handles_errors
def live(mode: Annotated[str, typer.Option("--mode", help="live, dry-run or backfill-only.")] = "dry-run",
         app_name: Annotated[str, typer.Option("--app", help="copytrader or monitor.")] = "copytrader",
         max_ticks: Annotated[int | None, typer.Option("--max-ticks", help="Stop after N loop ticks.")] = None,
         job: Annotated[str | None, typer.Option("--job", help="monitor: run only this job (universe, "
                                                 "snapshots, health, signals, dashboard).")] = None,
         policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Run the system: startup checks, boot, then the loop on the shared scheduler.

    dry-run never sends an order; backfill-only advances the cursor and sends nothing. SIGINT or
    SIGTERM finish the current step and exit 0."""
    import os
    import random
    import signal
    import time

    from hlcore.config.settings import load_env
    from hlcore.engine.clock import SystemClock
    from hlcore.jobs.copytrade.service import Wiring, start
    from hlcore.ops.baseline import new_session

    if app_name not in ("copytrader", "monitor"):
        raise BadInput(f"--app: expected copytrader or monitor, got '{app_name}'")
    load_env()
    if app_name == "monitor":
        _live_monitor(policy, config, job, max_ticks)
        return
    ws = open_workspace(policy, config, mode=mode if mode == "live" else None)
    wiring = Wiring(SystemClock(), time.sleep, random.Random(), new_session, os.environ)
    from hlcore.logs import configure

    configure(Path(ws.settings.get("app_log_path")), wiring.clock, ws.settings.get("log_level"))
    ctx, _jobs, scheduler, _loop, code = start(ws, mode, wiring,
                                               metrics_path=Path(ws.settings.get("metrics_log_path")))
    try:
        engine = ctx.runtime.engine
        out.print(f"mode={mode} safety_mode={engine.state('safety')} safety_reason_code={engine.reason('safety')} "
                  f"policy_hash={ws.policy.hash}", markup=False)
        if code:
            raise typer.Exit(code=code)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: scheduler.stop())
        scheduler.run_forever(wiring.sleep, max_runs=max_ticks)
    finally:
        ctx.close()


def _live_monitor(policy: Path | None, config: Path | None, job: str | None, max_ticks: int | None) -> None:
    """The wallet monitor's jobs in the foreground (monitor §8 `monitor run --job J` / `--all`)."""
    import os
    import random
    import signal
    import time

    from hlcore.engine.clock import SystemClock
    from hlcore.jobs.copytrade.service import Wiring
    from hlcore.jobs.monitor.service import start as start_monitor
    from hlcore.logs import configure_components
    from hlcore.ops.baseline import new_session

    ws = open_workspace(policy, config)
    wiring = Wiring(SystemClock(), time.sleep, random.Random(), new_session, os.environ)
    interactive = sys.stdout.isatty()
    configure_components(None if interactive else Path("logs"), wiring.clock, ws.settings.get("log_level"))
    ctx, _jobs, scheduler = start_monitor(ws, wiring, only=job)
    try:
        engine = ctx.runtime.engine
        out.print(f"app=monitor health={engine.state('health')} reason={engine.reason('health')} "
                  f"policy_hash={ws.policy.hash}", markup=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: scheduler.stop())
        scheduler.run_forever(wiring.sleep, max_runs=max_ticks)
    finally:
        ctx.close()


ops_app = typer.Typer(no_args_is_help=True, help="Operator commands (copytrader §8, monitor §8). "
                      "Output is key=value lines; exit 0 ok, 1 refused or check failed, 2 bad input.")
app.add_typer(ops_app, name="ops")

OperatorOpt = Annotated[str, typer.Option("--operator", help="Who runs the command (audited).")]
ReasonMsgOpt = Annotated[str | None, typer.Option("--reason-message", help="Why (audited).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the plan; write nothing.")]


def _ops_context(policy: Path | None, config: Path | None) -> Any:
    from hlcore.app import open_app
    from hlcore.engine.clock import SystemClock

    return open_app(open_workspace(policy, config), SystemClock())


def _print_outcome(outcome: Any) -> None:
    for line in outcome.lines() if callable(outcome.lines) else outcome.lines:
        out.print(line, markup=False)
    if outcome.refused:
        raise typer.Exit(code=1)


def _print_report(report: Any) -> None:
    """A read-only report's key=value lines; exit 1 when it found a blocker or failure."""
    for line in report.lines:
        out.print(line, markup=False)
    if not report.ok:
        raise typer.Exit(code=1)


def _run_ops(policy: Path | None, config: Path | None, action: Callable[[Any], Any], *,
             read_only: bool = False) -> None:
    """Open storage (read-only for --dry-run: nothing is ever written), run, print key=value lines,
    exit 1 on a refusal, always close."""
    from hlcore.ops.baseline import read_only_context

    ctx = read_only_context(open_workspace(policy, config)) if read_only else _ops_context(policy, config)
    try:
        _print_outcome(action(ctx))
    finally:
        ctx.close()


@ops_app.command("unhalt")
@handles_errors
def ops_unhalt(operator: OperatorOpt = "operator", reason_message: ReasonMsgOpt = None, dry_run: DryRunOpt = False,
               policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """HALT -> ARMED_SAFE by an operator (S18); refused unless the mode is HALT."""
    from hlcore.ops.safety import run_operator_command

    _run_ops(policy, config, lambda ctx: run_operator_command(
        ctx, "unhalt", operator=operator, reason_message=reason_message, dry_run=dry_run), read_only=dry_run)


@ops_app.command("promote")
@handles_errors
def ops_promote(operator: OperatorOpt = "operator", reason_message: ReasonMsgOpt = None,
                force: Annotated[bool, typer.Option(help="Promote despite failed checks (needs --reason-message).")]
                = False, dry_run: DryRunOpt = False, policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """ARMED_SAFE -> ARMED_LIVE (S19) after the checks of §8: last reconcile OK and recent, no UNKNOWN
    order, no open event."""
    from hlcore.ops.safety import run_operator_command

    if force and not reason_message:
        raise BadInput("--force needs --reason-message (it is audited)")
    from hlcore.config.settings import load_env
    from hlcore.ops.baseline import promote_checks, system_wiring

    load_env()

    def promote(ctx: Any) -> Any:
        outcome = run_operator_command(ctx, "promote", operator=operator, reason_message=reason_message,
                                       force=force, dry_run=dry_run)
        outcome.notes = promote_checks(ctx, system_wiring(ctx.clock))  # the runbook's manual checks
        return outcome

    _run_ops(policy, config, promote, read_only=dry_run)


@ops_app.command("reset-safety")
@handles_errors
def ops_reset_safety(mode: Annotated[str, typer.Option("--mode", help="Target safety mode.")],
                     reason_code: Annotated[str | None, typer.Option(
                         "--reason-code", help="Reason code to record (default: the policy's).")] = None,
                     operator: OperatorOpt = "operator", reason_message: ReasonMsgOpt = None,
                     allow_non_halt: Annotated[bool, typer.Option("--allow-non-halt")] = False,
                     dry_run: DryRunOpt = False, policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Set the safety mode with an audited reason code (S20); from HALT unless --allow-non-halt."""
    from hlcore.ops.safety import run_operator_command

    _run_ops(policy, config, lambda ctx: run_operator_command(
        ctx, "reset", operator=operator, reason_message=reason_message, target_mode=mode, reason_code=reason_code,
        allow_non_halt=allow_non_halt, dry_run=dry_run), read_only=dry_run)


@ops_app.command("maintenance-skip")
@handles_errors
def ops_maintenance_skip(operator: OperatorOpt = "operator", reason_message: ReasonMsgOpt = None,
                         dry_run: DryRunOpt = False,
                         evidence: Annotated[Path | None, typer.Option("--evidence", help="Append evidence here.")]
                         = None, policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Abandon a gap that exceeded the backfill window (copytrader §4.1): the cursor jumps to now,
    audited, with evidence. Refused unless HALT with BACKFILL_WINDOW_EXCEEDED. Never edits config."""
    from hlcore.ops.safety import run_operator_command

    def skip(ctx: Any) -> Any:
        outcome = run_operator_command(ctx, "maintenance_skip", operator=operator, reason_message=reason_message,
                                       dry_run=dry_run)
        if evidence is not None and not outcome.refused and not dry_run:
            with evidence.open("a", encoding="utf-8") as fh:
                fh.write("\n".join([*outcome.lines(), f"config_hash={ctx.workspace.config_hash}", ""]))
        return outcome

    _run_ops(policy, config, skip, read_only=dry_run)


@ops_app.command("status")
@handles_errors
def ops_status(policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Read-only summary plus blockers (exit 1) and warnings, each with the runbook action."""
    from hlcore.engine.clock import SystemClock
    from hlcore.ops.reports import status_report

    ws = open_workspace(policy, config)
    report = status_report(ws, SystemClock().now_ms())
    for line in report.lines:
        out.print(line, markup=False)
    monitor_ok = True
    if monitor_database_exists(ws):  # the monitor's section, when this machine runs it (monitor §8)
        from hlcore.ops.monitor import open_monitor, status

        ctx = open_monitor(ws, SystemClock(), read_only=True)
        try:
            result = status(ctx)
        finally:
            ctx.close()
        for line in result.lines:
            out.print(f"monitor_{line}", markup=False)
        monitor_ok = result.refused is None
    if not report.ok or not monitor_ok:
        raise typer.Exit(code=1)


def monitor_database_exists(ws: Any) -> bool:
    from hlcore.app import database_url

    url = database_url(ws.settings, "monitor")
    return not url.startswith("sqlite") or Path(url.split("///", 1)[-1]).exists()


@ops_app.command("preflight")
@handles_errors
def ops_preflight(exchange_time: Annotated[bool, typer.Option(
                      "--exchange-time", help="Also measure the Binance time offset.")] = False,
                  allow_create_db: Annotated[bool, typer.Option(
                      "--allow-create-db", help="Create the schema if the database is missing (first start only).")]
                  = False,
                  mode: Annotated[str, typer.Option(
                      "--mode", help="Run mode whose env vars are required: live, dry-run or backfill-only.")]
                  = "live",
                  policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Validate + config hash, env presence (never values), local and exchange time, DB schema.
    Prints preflight_ok, or preflight_failed and each failure (exit 1)."""
    from hlcore.config.settings import load_env
    from hlcore.ops.baseline import system_wiring
    from hlcore.ops.reports import preflight_report

    load_env()
    report = preflight_report(open_workspace(policy, config), system_wiring(), mode=mode,
                              exchange_time_check=exchange_time, allow_create_db=allow_create_db)
    _print_report(report)


@ops_app.command("poststart")
@handles_errors
def ops_poststart(metrics_tail: Annotated[int, typer.Option(
                      "--metrics-tail", min=0, help="Last N lines of the metrics log.")] = 5,
                  policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Read-only: safety mode/reason/message, cursor keys, order results by status, audit_log count,
    metrics tail."""
    from hlcore.engine.clock import SystemClock
    from hlcore.ops.reports import poststart_report

    report = poststart_report(open_workspace(policy, config), SystemClock().now_ms(), tail=metrics_tail)
    _print_report(report)


@ops_app.command("validate-run")
@handles_errors
def ops_validate_run(output: Annotated[Path, typer.Option("--output", help="Evidence file (appended to).")],
                     operator: OperatorOpt = "operator",
                     mode: Annotated[str, typer.Option(
                         "--mode", help="The run mode validated: live, dry-run or backfill-only.")] = "live",
                     exchange_time: Annotated[bool, typer.Option(
                         "--exchange-time", help="Also measure the Binance time offset.")] = False,
                     allow_create_db: Annotated[bool, typer.Option(
                         "--allow-create-db", help="Create the schema if the database is missing (first start only).")]
                     = False,
                     metrics_tail: Annotated[int, typer.Option(
                         "--metrics-tail", min=0, help="Last N lines of the metrics log.")] = 5,
                     policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Append the ops validation bundle (preflight + poststart evidence, counts, UNKNOWNs, last reconcile,
    maintenance skip) to --output; status=fail exits 1."""
    from hlcore.config.settings import load_env
    from hlcore.ops.baseline import system_wiring
    from hlcore.ops.reports import validate_run

    load_env()
    report = validate_run(open_workspace(policy, config), system_wiring(), output, operator=operator, mode=mode,
                          exchange_time_check=exchange_time, allow_create_db=allow_create_db, tail=metrics_tail)
    out.print(f"output={output}", markup=False)
    _print_report(report)


@ops_app.command("backup")
@handles_errors
def ops_backup(policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Online copy to backup-YYYYMMDD-HHMM.db beside db_path, verified by reading system_state from
    the copy (PostgreSQL: pg_dump). Schedule daily."""
    from hlcore.engine.clock import SystemClock
    from hlcore.ops.database import backup

    result = backup(open_workspace(policy, config), SystemClock())
    _print_outcome(result)


@ops_app.command("rebuild-db")
@handles_errors
def ops_rebuild_db(backup: Annotated[bool, typer.Option("--backup", help="Copy to <db>.bak-YYYYMMDD-HHMM first "
                                                        "(required).")] = False,
                   force: Annotated[bool, typer.Option("--force", help="Really delete and recreate.")] = False,
                   operator: OperatorOpt = "operator", reason_message: ReasonMsgOpt = None,
                   dry_run: DryRunOpt = False, policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Back up, delete and recreate the SQLite database at schema v4 (runbook Schema Updates).
    Refused without --force and --backup, or while the service holds it (best-effort check)."""
    from hlcore.engine.clock import SystemClock
    from hlcore.ops.database import rebuild

    result = rebuild(open_workspace(policy, config), SystemClock(), force=force, backup_first=backup,
                     operator=operator, reason_message=reason_message, dry_run=dry_run)
    _print_outcome(result)


@ops_app.command("recover-orders")
@handles_errors
def ops_recover_orders(operator: OperatorOpt = "operator", reason_message: ReasonMsgOpt = None,
                       dry_run: DryRunOpt = False, policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """The UNKNOWN sweep (§4.6): each unresolved or parked order queried once on Binance; the policy
    sets its status. Needs BINANCE_API_KEY / BINANCE_API_SECRET. Exit 1 if any stays unresolved."""
    from hlcore.config.settings import load_env
    from hlcore.ops.baseline import binance_client, recover_orders, system_wiring

    load_env()

    def recover(ctx: Any) -> Any:
        venues = None if dry_run else binance_client(ctx, system_wiring(ctx.clock))[0]
        return recover_orders(ctx, venues, operator=operator, reason_message=reason_message, dry_run=dry_run)

    _run_ops(policy, config, recover, read_only=dry_run)


@ops_app.command("sync-baseline")
@handles_errors
def ops_sync_baseline(replace: Annotated[bool, typer.Option("--replace", help="Replace the active baseline.")]
                      = False,
                      positions: Annotated[Path | None, typer.Option(
                          "--positions", help="Offline path: YAML {SYMBOL: qty} instead of Binance positionRisk.")]
                      = None,
                      operator: OperatorOpt = "operator", reason_message: ReasonMsgOpt = None,
                      dry_run: DryRunOpt = False, policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Capture live positions (positionRisk) as the active baseline; refused while one is active
    unless --replace. Audited BASELINE_SYNCED / BASELINE_REPLACED."""
    from hlcore.config.settings import load_env
    from hlcore.ops.baseline import (
        binance_client,
        load_positions,
        sync_baseline,
        system_wiring,
        venue_positions,
    )

    snapshot = load_positions(positions) if positions is not None else None
    if snapshot is None:
        load_env()
    def sync(ctx: Any) -> Any:
        captured = snapshot if snapshot is not None else venue_positions(
            binance_client(ctx, system_wiring(ctx.clock))[1])
        source = "binance_position_risk" if snapshot is None else f"file:{positions}"
        return sync_baseline(ctx, captured, source=source, operator=operator, reason_message=reason_message,
                             replace=replace, dry_run=dry_run)

    _run_ops(policy, config, sync, read_only=dry_run)


@ops_app.command("reset-baseline")
@handles_errors
def ops_reset_baseline(operator: OperatorOpt = "operator", reason_message: ReasonMsgOpt = None,
                       dry_run: DryRunOpt = False, policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Deactivate the active baseline (audited BASELINE_RESET); refused when none is active."""
    from hlcore.ops.baseline import reset_baseline

    _run_ops(policy, config, lambda ctx: reset_baseline(
        ctx, operator=operator, reason_message=reason_message, dry_run=dry_run), read_only=dry_run)



# ---- wallet monitor operator commands (monitor §8) -------------------------------------------------

report_app = typer.Typer(no_args_is_help=True, help="Monitor reports (monitor §8): dirty, alerts, universe. "
                         "Read-only key=value lines.")
ops_app.add_typer(report_app, name="report")


def _run_monitor(policy: Path | None, config: Path | None, action: Callable[[Any], Any], *,
                 read_only: bool) -> None:
    """Open the existing monitor database (read-only: the engine start is not persisted), run,
    print key=value lines, exit 1 on a refusal or failed check, always close."""
    from hlcore.engine.clock import SystemClock
    from hlcore.ops.monitor import open_monitor

    ctx = open_monitor(open_workspace(policy, config), SystemClock(), read_only=read_only)
    try:
        result = action(ctx)
    finally:
        ctx.close()
    _print_outcome(result)


@ops_app.command("halt")
@ops_app.command("monitor-halt")
@handles_errors
def ops_monitor_halt(reason: Annotated[str, typer.Option("--reason", help="Why (audited in ops_events).")],
                     operator: OperatorOpt = "operator", dry_run: DryRunOpt = False,
                     policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Runbook 8 full halt: health STALE MANUAL_HALT; signals and alerts stop, ingestion continues."""
    from hlcore.ops.monitor import monitor_command

    if not reason.strip():
        raise BadInput("--reason: must not be empty (it is audited)")
    _run_monitor(policy, config, lambda ctx: monitor_command(ctx, "halt", reason=reason, operator=operator,
                                                             dry_run=dry_run), read_only=dry_run)


@ops_app.command("resume")
@ops_app.command("monitor-resume")
@handles_errors
def ops_monitor_resume(reason: Annotated[str | None, typer.Option("--reason", help="Why (audited).")] = None,
                       operator: OperatorOpt = "operator", dry_run: DryRunOpt = False,
                       policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Clear a manual halt: health RECOVERING; the latch then needs clean runs after the resume.
    Refused unless halted."""
    from hlcore.ops.monitor import monitor_command

    _run_monitor(policy, config, lambda ctx: monitor_command(ctx, "resume", reason=reason, operator=operator,
                                                             dry_run=dry_run), read_only=dry_run)


@ops_app.command("monitor-status")
@handles_errors
def ops_monitor_status(policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Read-only: health + reason, latch, system_stale, last 5 runs, job heartbeats, DB. Exit 0 only
    when health is the fully healthy state."""
    from hlcore.ops.monitor import status

    _run_monitor(policy, config, status, read_only=True)


@report_app.command("dirty")
@handles_errors
def ops_report_dirty(hours: Annotated[int, typer.Option("--hours", help="Window: 1 or 6 hours.")] = 1,
                     policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Dirty % per asset and per hour; latest anomalies."""
    from hlcore.ops.monitor import report_dirty

    _run_monitor(policy, config, lambda ctx: report_dirty(ctx, hours), read_only=True)


@report_app.command("alerts")
@handles_errors
def ops_report_alerts(hours: Annotated[int, typer.Option("--hours", help="Window in hours.")] = 24,
                      policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Alert counts per asset/type/hour with suppressed counts by reason; alert_state; signals near
    thresholds."""
    from hlcore.ops.monitor import report_alerts

    _run_monitor(policy, config, lambda ctx: report_alerts(ctx, hours), read_only=True)


@report_app.command("universe")
@handles_errors
def ops_report_universe(policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Last 10 universe refresh runs (counts, churn, warnings, error); current size."""
    from hlcore.ops.monitor import report_universe

    _run_monitor(policy, config, report_universe, read_only=True)


@ops_app.command("retention")
@handles_errors
def ops_retention(snapshot_days: Annotated[int, typer.Option(
                      "--snapshot-days", help="Snapshot retention in days (never below 7).")] = 7,
                  operator: OperatorOpt = "operator", reason_message: ReasonMsgOpt = None,
                  dry_run: DryRunOpt = False, policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Delete monitor rows by age (monitor §6); --dry-run prints the counts only."""
    from hlcore.ops.monitor import retention

    _run_monitor(policy, config, lambda ctx: retention(ctx, snapshot_days=snapshot_days, dry_run=dry_run,
                                                       operator=operator, reason=reason_message),
                 read_only=dry_run)


@ops_app.command("db-check")
@handles_errors
def ops_db_check(policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Monitor DB: connectivity, table row counts, indexes present, free disk (< 20 % -> exit 1)."""
    from hlcore.engine.clock import SystemClock
    from hlcore.ops.monitor import db_check

    result = db_check(open_workspace(policy, config), SystemClock())
    _print_outcome(result)


# --------------------------------------------------------------------------- hlcore diff (docs/diff.md)


@app.command("diff")
@handles_errors
def diff_(base: Annotated[str | None, typer.Argument(help="Git revision or directory (default: HEAD).")] = None,
          head: Annotated[str | None, typer.Argument(help="Git revision or directory (default: the working tree)."
                                                     )] = None,
          format: Annotated[str, typer.Option("--format", help="text, md (a pull-request comment) or json.")] = "text",
          fail_on: Annotated[str | None, typer.Option("--fail-on", help="Exit 1 on a 'looser' change, or on 'any' "
                                                      "change (CI).")] = None,
          drills: Annotated[bool, typer.Option("--drills/--no-drills", help="Replay every drill under both sides "
                                               "(--no-drills: the semantic diff alone, fast).")] = True,
          fixtures: Annotated[Path | None, typer.Option("--fixtures", help="Drill folders (default: ./fixtures)."
                                                        )] = None,
          history: Annotated[Path | None, typer.Option("--history", help="A recorded tape of facts (JSONL) to run "
                                                       "through both sides.")] = None,
          jobs: Annotated[int | None, typer.Option("--jobs", help="Drill replays in parallel (default: CPUs).")] = None,
          drill_timeout: Annotated[float, typer.Option("--drill-timeout", help="Seconds one drill replay may take "
                                                       "before it is reported as an error.")] = 300,
          textconv: Annotated[Path | None, typer.Option("--textconv", help="Print one policy file normalised (the "
                                                        "git diff textconv driver) and exit.")] = None) -> None:
    """Semantic and behavioural diff of two policies, each change labelled stricter, looser or neutral."""
    from contextlib import ExitStack

    from hlcore.diff.behaviour import behaviour_diff
    from hlcore.diff.history import history_diff
    from hlcore.diff.render import FORMATS, Report, normalised_yaml, render
    from hlcore.diff.semantic import LOOSER, semantic_diff
    from hlcore.diff.sides import load_side

    if textconv is not None:
        try:
            text = textconv.read_text(encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"{textconv}: cannot read file: {exc.strerror}") from None
        sys.stdout.write(normalised_yaml(text, str(textconv)))
        return
    if format not in FORMATS:
        raise BadInput(f"--format: expected one of {', '.join(FORMATS)}, got '{format}'")
    if fail_on not in (None, "looser", "any"):
        raise BadInput(f"--fail-on: expected looser or any, got '{fail_on}'")
    with ExitStack() as stack:
        base_side = load_side(base if base is not None else "HEAD", stack)
        head_side = load_side(head, stack)
        report = Report(base_side, head_side, semantic_diff(base_side, head_side))
        if history is not None:
            report.history = history_diff(base_side, head_side, history)
        if drills:
            report.behaviour = behaviour_diff(base_side, head_side, fixtures or Path.cwd() / "fixtures", jobs,
                                              drill_timeout)
        sys.stdout.write(render(report, format))
        sys.stdout.flush()
    if (fail_on == "looser" and any(c.label == LOOSER for c in report.changes)) or (
            fail_on == "any" and report.changed()):
        raise typer.Exit(code=1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()


from replay.cli import register as _register_drills  # noqa: E402 - needs the helpers above

_register_drills(app)

from backtest.cli import register as _register_backtest  # noqa: E402 - needs the helpers above

_register_backtest(app)
