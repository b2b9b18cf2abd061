"""`python -m hlcore`: the installed `hlcore` command (its console-script entry point), so the
drill, diff and backtest commands work here too; from a source tree never installed, the core
commands alone. Looked up by entry point, not imported: `hlcore/` names nothing above it."""

from importlib.metadata import entry_points


def _entry() -> object:
    for point in entry_points(group="console_scripts", name="hlcore"):
        return point.load()
    from hlcore.cli import main

    return main


_entry()()  # type: ignore[operator]
