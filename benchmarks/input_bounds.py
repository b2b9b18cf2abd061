"""How fast hostile inputs are refused (issue 13): prints seconds per case, asserts nothing.

    .venv/bin/python benchmarks/input_bounds.py
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from typer.testing import CliRunner

from hlcore_cli import app

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"billion_laughs": LAUGHS, "deep_brackets": "a: " + "[" * 200_000 + "\n",
                 "deep_blocks": "a:\n" + "".join("  " * i + "-\n" for i in range(1, 120))}
        runner = CliRunner()
        runner.invoke(app, ["validate", "--config", str(Path(tmp) / "missing.yaml")])  # imports, not timed
        for name, text in cases.items():
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(text, encoding="utf-8")
            start = time.perf_counter()
            result = runner.invoke(app, ["validate", "--config", str(path)])
            print(f"{name}: exit={result.exit_code} in-process={time.perf_counter() - start:.3f}s")
        path = Path(tmp) / "billion_laughs.yaml"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "hlcore", "validate", "--config", str(path)],
                              capture_output=True, check=False)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"billion_laughs: exit={done.returncode} subprocess wall={wall:.3f}s cpu={cpu:.3f}s "
              "(interpreter start and imports included)")


if __name__ == "__main__":
    main()
