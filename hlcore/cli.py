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
from rich.markup import escape

from hlcore.errors import BadInput, CheckFailed, HlcoreError
from hlcore.policy.graph import RENDERERS
from hlcore.policy.lint import lint
from hlcore.resources import default_dir
from hlcore.workspace import open_workspace

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="hlcore: the operational safety policy of a Hyperliquid trading system, as data.")
# emoji=False: user text such as "settings.yaml:100: ..." must never print as "settings.yaml💯 ...".
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

F = TypeVar("F", bound=Callable[..., Any])

PolicyOpt = Annotated[Path | None, typer.Option("--policy", help="Directory holding machines/ and rules/ "
                                                "(default: ./ if it has them, else the packaged policy).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Settings file (default: ./config/settings.yaml "
                                                "if present, else the packaged defaults).")]
DEFAULT_MODE = "dry-run"  # hlcore.config.settings.DEFAULT_MODE (the safe one), the same for every command


def _check_mode(mode: str) -> str:
    """One message for a bad --mode in every command (exit 2)."""
    from hlcore.config.settings import RUN_MODES

    if mode not in RUN_MODES:
        raise BadInput(f"--mode: expected one of {', '.join(RUN_MODES)}, got '{mode}'")
    return mode


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out.print(f"hlcore {version('hlcore')}", markup=False)
        except PackageNotFoundError:  # run from a source tree that was never installed
            out.print("hlcore (not installed)", markup=False)
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the hlcore version and exit.")] = False) -> None:
    """hlcore: the operational safety policy of a Hyperliquid trading system, as data."""


def handles_errors(fn: F) -> F:
    """Domain code raises; this edge prints the located problems and maps them to exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BadInput as exc:
            for problem in exc.problems:
                err.print(f"[red]error[/red] {escape(str(problem))}", markup=True) if err.is_terminal else err.print(
                    f"error: {problem}", markup=False)
            raise typer.Exit(code=2) from None
        except CheckFailed as exc:
            err.print(f"failed: {exc}", markup=False)
            raise typer.Exit(code=1) from None
        except HlcoreError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(code=exc.exit_code) from None
        except OSError as exc:  # a path the user gave that the OS refuses (too long, a loop, no access)
            err.print(f"error: {_os_problem(exc)}", markup=False)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def _os_problem(exc: OSError) -> str:
    """`NAME: reason`, the name cut short (a 5,000-character path is itself the problem)."""
    name = str(exc.filename) if exc.filename is not None else ""
    if len(name) > 80:
        name = f"{name[:60]}...({len(name)} characters)"
    reason = (exc.strerror or type(exc).__name__).lower()
    return f"{name}: {reason}" if name else reason


@app.command()
@handles_errors
def validate(policy: PolicyOpt = None, config: ConfigOpt = None,
             strict: Annotated[bool, typer.Option(help="Treat lint warnings as failures (exit 1).")] = False) -> None:
    """Validate settings and policy (schema, references) and run the static checks."""
    ws = open_workspace(policy, config)
    findings = lint(ws.policy, ws.settings)
    errors = [f for f in findings if f.level == "error"]
    violations = [f for f in findings if f.level == "violation"]
    warnings = [f for f in findings if f.level == "warning"]
    for f in findings:
        (out if f.level == "warning" else err).print(f"{f.level}: {f}", markup=False)
    for problem in ws.settings.checks_off:  # allowed by the schema (meta.off), but a reviewer must see it
        out.print(f"warning: {problem} [setting-off]", markup=False)
    n_warnings = len(warnings) + len(ws.settings.checks_off)
    if errors:
        raise typer.Exit(code=2)
    if violations:
        err.print(f"failed: {len(violations)} safety invariant violation(s)", markup=False)
        raise typer.Exit(code=1)
    rows = sum(len(t.rows) for t in ws.policy.tables)
    out.print(f"policy={ws.policy_dir} policy_hash={ws.policy.hash}", markup=False)
    out.print(f"config={ws.config_file or 'defaults'} machines={len(ws.policy.machines)} "
              f"tables={len(ws.policy.tables)} rules={rows} warnings={n_warnings}", markup=False)
    if n_warnings and strict:
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
def dashboard(port: Annotated[int, typer.Option("--port", help="Port to serve on.")] = 8501,
              address: Annotated[str, typer.Option("--address", help="Interface to bind.")] = "127.0.0.1",
              db: Annotated[str | None, typer.Option("--db", help="Monitor database: a SQLite file or a URL "
                                                     "(default: DATABASE_URL, else the settings).")] = None,
              now: Annotated[str | None, typer.Option("--now", help="Show the page as of this ISO UTC instant "
                                                      "(review a drill's database; default: the clock).")] = None,
              policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Serve the read-only dashboard (Streamlit): the monitor view (HALT / DEGRADED / NORMAL, monitor
    §3.5, §4.7) and a copy-trader page, refreshed every monitor.dashboard.refresh_sec."""
    from hlcore.dashboard.cli import run

    run(port, address, config, policy, db, now)


@app.command()
@handles_errors
def init(directory: Annotated[Path, typer.Argument(help="Where to put machines/, rules/ and config/.")],
         force: Annotated[bool, typer.Option(help="Overwrite existing policy files.")] = False) -> None:
    """Copy the default policy, settings and drills into an operator's own repository (the drills,
    so that `hlcore drill` and `hlcore diff` there replay what the policy does)."""
    targets = {"machines": directory / "machines", "rules": directory / "rules",
               "config": directory / "config", "fixtures": directory / "fixtures"}
    existing = [str(p) for p in targets.values() if p.exists() and any(p.iterdir())]
    if existing and not force:
        raise CheckFailed(f"refusing to overwrite {', '.join(existing)} (use --force)")
    for name, target in targets.items():
        target.mkdir(parents=True, exist_ok=True)
        source = default_dir(name)
        if name == "fixtures":  # one folder per drill: drill.yaml + cassettes/
            drills = sorted(p.parent for p in source.glob("*/drill.yaml"))
            for drill in drills:
                shutil.copytree(drill, target / drill.name, dirs_exist_ok=True)
            if (source / "README.md").is_file():
                shutil.copy2(source / "README.md", target / "README.md")
            out.print(f"wrote {len(drills)} drills under {target}", markup=False)
            continue
        for path in sorted(source.glob("*.yaml")):
            if name == "config" and path.name != "settings.yaml":
                continue  # the schema belongs to the installed hlcore, not to the operator
            shutil.copy2(path, target / path.name)
            out.print(f"wrote {target / path.name}", markup=False)
    out.print(f"next: cd {directory} && hlcore validate", markup=False)


@app.command()
@handles_errors
def live(mode: Annotated[str, typer.Option("--mode", help="live, dry-run or backfill-only (copytrader; "
                                            "default dry-run: never sends an order).")] = DEFAULT_MODE,
         app_name: Annotated[str, typer.Option("--app", help="copytrader or monitor.")] = "copytrader",
         max_ticks: Annotated[int | None, typer.Option("--max-ticks", help="Stop after N loop ticks.")] = None,
         job: Annotated[str | None, typer.Option("--job", help="monitor: run only this job (universe, "
                                                 "snapshots, health, signals, dashboard).")] = None,
         allow_create_db: Annotated[bool, typer.Option(
             "--allow-create-db", help="Create the database if it is missing (first start only).")] = False,
         policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Run the system: startup checks, boot, then the loop on the shared scheduler.

    Holds the system's writer lock for its life (a second `live` on the same database exits 2
    naming the first); never creates a database without --allow-create-db. dry-run never sends an
    order; backfill-only advances the cursor and sends nothing. SIGINT or SIGTERM finish the current
    step and exit 0."""
    import os
    import random
    import time

    from hlcore.config.settings import load_env
    from hlcore.engine.clock import SystemClock
    from hlcore.jobs.copytrade.service import Wiring, settle_heap, start
    from hlcore.ops.baseline import new_session

    if app_name not in ("copytrader", "monitor"):
        raise BadInput(f"--app: expected copytrader or monitor, got '{app_name}'")
    _check_mode(mode)
    if job is not None and app_name != "monitor":
        raise BadInput(f"--job: only with --app monitor (the copy-trader runs as one loop), got --app {app_name}")
    if app_name == "monitor" and mode != DEFAULT_MODE:
        raise BadInput(f"--mode: the monitor has no run modes (it never trades); drop --mode {mode}")
    load_env()
    if app_name == "monitor":
        _live_monitor(policy, config, job, max_ticks, allow_create_db)
        return
    ws = open_workspace(policy, config, mode=mode if mode == "live" else None)
    wiring = Wiring(SystemClock(), time.sleep, random.Random(), new_session, os.environ)
    from hlcore.logs import configure, configure_console, release

    handlers = [configure(Path(ws.settings.get("app_log_path")), wiring.clock, ws.settings.get("log_level")),
                configure_console(wiring.clock)]  # failed cycles (and the recovery) are printed on stderr too
    try:
        ctx, _jobs, scheduler, _loop, code = start(ws, mode, wiring,
                                                   metrics_path=Path(ws.settings.get("metrics_log_path")),
                                                   allow_create_db=allow_create_db)
        try:
            engine = ctx.runtime.engine
            out.print(f"mode={mode} safety_mode={engine.state('safety')} "
                      f"safety_reason_code={engine.reason('safety')} policy_hash={ws.policy.hash}", markup=False)
            if code:
                raise typer.Exit(code=code)
            _jobs.prime()  # the fill -> order path walked once: nothing sent, nothing kept (issue 12)
            settle_heap()
            scheduler.run_forever(_stoppable(scheduler), max_runs=max_ticks)
        finally:
            ctx.close()
    finally:
        release(handlers)


def _stoppable(scheduler: Any) -> Any:
    """SIGINT/SIGTERM stop the scheduler: the loop ends after the order in flight (its jobs ask
    between events and orders), and the idle wait is cut short instead of sleeping on (issue 10 §7).
    Returns the sleep `run_forever` uses."""
    import signal
    import threading

    woken = threading.Event()

    def stop(*_: Any) -> None:
        scheduler.stop()
        woken.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    return woken.wait


def _live_monitor(policy: Path | None, config: Path | None, job: str | None, max_ticks: int | None,
                  allow_create_db: bool) -> None:
    """The wallet monitor's jobs in the foreground (monitor §8 `monitor run --job J` / `--all`)."""
    import os
    import random
    import time

    from hlcore.engine.clock import SystemClock
    from hlcore.jobs.copytrade.service import Wiring
    from hlcore.logs import configure_components, configure_console, release
    from hlcore.ops.baseline import new_session

    ws = open_workspace(policy, config)
    wiring = Wiring(SystemClock(), time.sleep, random.Random(), new_session, os.environ)
    interactive = sys.stdout.isatty()
    handlers = configure_components(None if interactive else Path("logs"), wiring.clock, ws.settings.get("log_level"))
    if not interactive:
        handlers.append(configure_console(wiring.clock))  # warnings and errors stay visible where the process runs
    try:
        _serve_monitor(ws, wiring, job, max_ticks, allow_create_db)
    finally:
        release(handlers)


def _serve_monitor(ws: Any, wiring: Any, job: str | None, max_ticks: int | None, allow_create_db: bool) -> None:
    import signal

    from hlcore.jobs.monitor.service import start as start_monitor

    ctx, _jobs, scheduler = start_monitor(ws, wiring, only=job, allow_create_db=allow_create_db)
    try:
        from hlcore.jobs.monitor.health import health_at

        verdict = health_at(ctx.db, ws.policy, ws.settings, wiring.clock.now_ms())  # health(now), not the stored row
        out.print(f"app=monitor health={verdict.state} reason={verdict.reason} "
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


def _ops_context(policy: Path | None, config: Path | None, command: str) -> Any:
    """A writing operator command's context, under the copy-trader's writer lock (or as a guest of
    the running service, which adopts the audited write: see `hlcore.app.lock_system`)."""
    from hlcore.app import open_app, operator_lock
    from hlcore.engine.clock import SystemClock

    ws = open_workspace(policy, config)
    clock = SystemClock()
    lock = operator_lock(ws, "copytrader", command=command, since_ms=clock.now_ms())
    try:
        return open_app(ws, clock, lock=lock)
    except BaseException:
        lock.release()
        raise


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
             read_only: bool = False, command: str = "ops") -> None:
    """Open storage (read-only for --dry-run: nothing is ever written), run, print key=value lines,
    exit 1 on a refusal, always close. `command` names this process in the writer lock."""
    from hlcore.ops.baseline import read_only_context

    ctx = read_only_context(open_workspace(policy, config)) if read_only else _ops_context(policy, config, command)
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
        ctx, "unhalt", operator=operator, reason_message=reason_message, dry_run=dry_run), read_only=dry_run,
        command="ops unhalt")


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

    _run_ops(policy, config, promote, read_only=dry_run, command="ops promote")


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
        allow_non_halt=allow_non_halt, dry_run=dry_run), read_only=dry_run, command="ops reset-safety")


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

    _run_ops(policy, config, skip, read_only=dry_run, command="ops maintenance-skip")


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
                      "--mode", help="Run mode whose env vars are required: live, dry-run or backfill-only "
                      "(default dry-run, as for hlcore live).")]
                  = DEFAULT_MODE,
                  policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Validate + config hash, env presence (never values), local and exchange time, DB schema.
    Prints preflight_ok, or preflight_failed and each failure (exit 1)."""
    from hlcore.config.settings import load_env
    from hlcore.ops.baseline import system_wiring
    from hlcore.ops.reports import preflight_report

    load_env()
    report = preflight_report(open_workspace(policy, config), system_wiring(), mode=_check_mode(mode),
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
                         "--mode", help="The run mode validated: live, dry-run or backfill-only (default "
                         "dry-run, as for hlcore live).")] = DEFAULT_MODE,
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
    """Back up, delete and recreate the SQLite database at this release's schema (runbook Schema Updates).
    Refused without --force and --backup, or while the service holds it (best-effort check)."""
    from hlcore.app import lock_system
    from hlcore.engine.clock import SystemClock
    from hlcore.ops.database import rebuild
    from hlcore.storage.writer_lock import ProcessLocalLock

    ws = open_workspace(policy, config)
    clock = SystemClock()
    # replacing the file under a running service is never a guest's write: the lock or exit 2
    lock = ProcessLocalLock() if dry_run or not (force and backup) else \
        lock_system(ws, "copytrader", command="ops rebuild-db", since_ms=clock.now_ms())
    try:
        result = rebuild(ws, clock, force=force, backup_first=backup, operator=operator,
                         reason_message=reason_message, dry_run=dry_run)
    finally:
        lock.release()
    _print_outcome(result)


@ops_app.command("migrate")
@handles_errors
def ops_migrate(dry_run: DryRunOpt = False, policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Upgrade the copy-trader database in place to this release's schema (a start on an older schema
    HALTs with SCHEMA_VERSION_MISMATCH until this runs): verified backup first (SQLite copy, or
    pg_dump), then the migration steps in one transaction. Refused while the service runs."""
    from hlcore.app import lock_system
    from hlcore.engine.clock import SystemClock
    from hlcore.ops.database import migrate_db
    from hlcore.storage.writer_lock import ProcessLocalLock

    ws = open_workspace(policy, config)
    clock = SystemClock()
    lock = ProcessLocalLock() if dry_run else \
        lock_system(ws, "copytrader", command="ops migrate", since_ms=clock.now_ms())
    try:
        result = migrate_db(ws, clock, dry_run=dry_run)
    finally:
        lock.release()
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

    _run_ops(policy, config, recover, read_only=dry_run, command="ops recover-orders")


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

    _run_ops(policy, config, sync, read_only=dry_run, command="ops sync-baseline")


@ops_app.command("reset-baseline")
@handles_errors
def ops_reset_baseline(operator: OperatorOpt = "operator", reason_message: ReasonMsgOpt = None,
                       dry_run: DryRunOpt = False, policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Deactivate the active baseline (audited BASELINE_RESET); refused when none is active."""
    from hlcore.ops.baseline import reset_baseline

    _run_ops(policy, config, lambda ctx: reset_baseline(
        ctx, operator=operator, reason_message=reason_message, dry_run=dry_run), read_only=dry_run,
        command="ops reset-baseline")



# ---- wallet monitor operator commands (monitor §8) -------------------------------------------------

report_app = typer.Typer(no_args_is_help=True, help="Monitor reports (monitor §8): dirty, alerts, universe. "
                         "Read-only key=value lines.")
ops_app.add_typer(report_app, name="report")


def _run_monitor(policy: Path | None, config: Path | None, action: Callable[[Any], Any], *,
                 read_only: bool, command: str = "ops monitor") -> None:
    """Open the existing monitor database (read-only: the engine start is not persisted), run,
    print key=value lines, exit 1 on a refusal or failed check, always close."""
    from hlcore.app import operator_lock
    from hlcore.engine.clock import SystemClock
    from hlcore.ops.monitor import open_monitor
    from hlcore.storage.writer_lock import ProcessLocalLock

    ws = open_workspace(policy, config)
    clock = SystemClock()
    lock = ProcessLocalLock() if read_only else operator_lock(ws, "monitor", command=command,
                                                              since_ms=clock.now_ms())
    try:
        ctx = open_monitor(ws, clock, read_only=read_only)
        try:
            result = action(ctx)
        finally:
            ctx.close()
    finally:
        lock.release()
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
                                                             dry_run=dry_run), read_only=dry_run, command="ops halt")


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
                                                             dry_run=dry_run), read_only=dry_run, command="ops resume")


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
                 read_only=dry_run, command="ops retention")


@ops_app.command("db-check")
@handles_errors
def ops_db_check(policy: PolicyOpt = None, config: ConfigOpt = None) -> None:
    """Monitor DB: connectivity, table row counts, indexes present, free disk (< 20 % -> exit 1)."""
    from hlcore.engine.clock import SystemClock
    from hlcore.ops.monitor import db_check

    result = db_check(open_workspace(policy, config), SystemClock())
    _print_outcome(result)


def run(cli: typer.Typer) -> None:
    """The console entry of a composed app: a usage error (unknown flag, missing argument) is one line
    and exit 2. `hlcore_cli` calls it with the full command set."""
    try:
        rv = cli(standalone_mode=False, prog_name="hlcore")
    except typer.Abort:
        err.print("aborted", markup=False)
        sys.exit(130)
    except Exception as exc:  # the CLI framework's usage errors carry a message and an exit code
        message, code = getattr(exc, "format_message", None), getattr(exc, "exit_code", None)
        if not callable(message) or not isinstance(code, int):
            raise
        ctx = getattr(exc, "ctx", None)
        command = getattr(ctx, "command_path", None) or "hlcore"
        text = str(message()).strip()
        if text:  # (no arguments at all: the help was printed, nothing more to say)
            err.print(f"error: {text} (see: {command} --help)", markup=False)
        sys.exit(code)
    sys.exit(rv if isinstance(rv, int) else 0)


def main() -> None:
    """The core commands alone (`python -m hlcore` without an installed `hlcore`); the `hlcore`
    console script is `hlcore_cli:main`, which adds the drill, diff and backtest commands."""
    run(app)


if __name__ == "__main__":
    main()
