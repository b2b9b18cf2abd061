"""Layering (issue 16 item 6), by reading every import statement (AST), lazy ones included:

hlcore/ (core)  <-  replay/  <-  backtest/  <-  hlcore_cli/ (the one composition of the CLI)

Nothing under hlcore/ imports replay, backtest or the composition; replay/ does not import
backtest or the composition; backtest/ does not import the composition.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "hlcore": {"replay", "backtest", "hlcore_cli"},
    "replay": {"backtest", "hlcore_cli"},
    "backtest": {"hlcore_cli"},
}


def imported_packages(source: str, filename: str) -> set[tuple[str, int]]:
    """(top-level package, line) of every absolute import in a module, at any depth of the tree."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
              and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
              in ("import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add((node.args[0].value.split(".")[0], node.lineno))  # importlib.import_module("replay.x")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no sources under {package}/"
    bad = [f"{path.relative_to(ROOT)}:{line} imports {top}"
           for path in files
           for top, line in sorted(imported_packages(path.read_text(encoding="utf-8"), str(path)))
           if top in FORBIDDEN[package]]
    assert not bad, "layering broken:\n" + "\n".join(bad)


def test_the_scan_sees_lazy_and_dynamic_imports() -> None:
    """The scanner itself: an import inside a function or by name counts (else the test above proves nothing)."""
    source = ("def f():\n    from replay.runner import replay\n"
              "def g():\n    import backtest.cli as b\n"
              "def h():\n    importlib.import_module('hlcore_cli')\n"
              "from . import sibling\nfrom hlcore.errors import BadInput\n")
    assert {top for top, _ in imported_packages(source, "x.py")} == {"replay", "backtest", "hlcore_cli", "hlcore"}


def test_the_console_script_is_the_composition() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'hlcore = "hlcore_cli:main"' in text
