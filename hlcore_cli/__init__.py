"""The `hlcore` command as shipped: the core commands plus the layers above the core.

Layering (enforced by tests/unit/test_layering.py): `hlcore/` (policy, engine, jobs, adapters,
storage, ops, config, dashboard, the semantic diff) imports nothing above it; `replay/` (drills,
`hlcore diff`'s behavioural half) builds on `hlcore`; `backtest/` builds on both; this package
sits on top and is the only place that knows all three. Each layer adds its commands through a
`register(app)` function; the composition is explicit, in one place, rather than discovered.
"""

from __future__ import annotations

import typer

import hlcore.cli as core
from backtest.cli import register as register_backtest
from replay.cli import register as register_drills
from replay.diff_cli import register as register_diff

__all__ = ["app", "build", "main"]


def build() -> typer.Typer:
    """A new app: the core's commands and groups (in their order), then replay's, diff and backtest's.
    The core app itself is left as it is (it stays usable, and testable, alone)."""
    composed = typer.Typer(add_completion=False, no_args_is_help=True, help=core.app.info.help)
    composed.registered_callback = core.app.registered_callback  # --version
    composed.registered_commands = list(core.app.registered_commands)
    composed.registered_groups = list(core.app.registered_groups)
    for register in (register_drills, register_diff, register_backtest):
        register(composed)
    return composed


app = build()


def main() -> None:
    """The `hlcore` console script."""
    core.run(app)
