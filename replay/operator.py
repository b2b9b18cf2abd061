"""Operator commands in a drill: the real `hlcore` CLI in-process, reading drill time (the
wall clock is frozen to it), the drill's settings and policy, the drill's environment, and
the drill transport for any venue call (through the sessions seam of `hlcore.ops.baseline`)."""

from __future__ import annotations

from typing import Any

import typer
import typer.main
import typer.testing
from typer.testing import CliRunner

import hlcore.ops.baseline as ops_wiring

# Commands whose options include --policy/--config (every `ops` command and the checks).
_TAKES_WORKSPACE = ("ops", "validate", "hash")


_COMMANDS: dict[int, Any] = {}


def _built(app: typer.Typer) -> Any:
    """`typer.main.get_command`, kept: the CLI's click tree does not change within a process."""
    command = _COMMANDS.get(id(app))
    if command is None:
        command = _COMMANDS[id(app)] = typer.main.get_command(app)
    return command


def run_command(player: Any, argv: list[str]) -> dict[str, Any]:
    from hlcore.cli import app

    if argv and argv[0] == "hlcore":
        argv = argv[1:]
    full = list(argv)
    if full and full[0] in _TAKES_WORKSPACE:
        if player.policy is not None:
            full += ["--policy", str(player.policy)]
        full += ["--config", str(player.settings_file)]
    player.flush()
    env = {k: player.env.get(k) for k in sorted(set(player.env) | set(player.driver.env))}
    original, get_command = ops_wiring.new_session, typer.testing._get_command
    ops_wiring.new_session = lambda _venue: player.transport.drill_session()
    typer.testing._get_command = _built  # the click command tree once per process, not per command
    try:
        result = CliRunner().invoke(app, full, env=env, catch_exceptions=True)
    finally:
        ops_wiring.new_session, typer.testing._get_command = original, get_command
    output = player.scrub(result.output)
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        lines.append(f"exception: {type(result.exception).__name__}: {result.exception}")
    return {"exit": result.exit_code, "output": lines}
