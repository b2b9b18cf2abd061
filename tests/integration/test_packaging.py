"""`pip install hlcore` users get the default policy and settings inside the wheel."""

from __future__ import annotations

import zipfile
from pathlib import Path

from hatchling.builders.wheel import WheelBuilder

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_default_policy_and_config(tmp_path: Path) -> None:
    builder = WheelBuilder(str(ROOT))
    (wheel,) = list(builder.build(directory=str(tmp_path), versions=["standard"]))
    names = set(zipfile.ZipFile(wheel).namelist())
    for sub in ("machines", "rules"):
        shipped = {n.rsplit("/", 1)[1] for n in names if n.startswith(f"hlcore/_defaults/{sub}/")}
        assert shipped == {p.name for p in (ROOT / sub).glob("*.yaml")}
    assert "hlcore/_defaults/config/settings.yaml" in names
    assert "hlcore/_defaults/config/schema.yaml" in names
    assert "hlcore/_defaults/fixtures/gap_exceeded/drill.yaml" in names  # `hlcore init` copies the drills
    assert "replay/__init__.py" in names
    assert "backtest/history/synth.py" in names  # hlcore history / backtest need it installed
    assert "backtest/copytrade/venue.py" in names  # the copy-trader backtest (issue 17)
    assert "hlcore_cli/__init__.py" in names  # the composition the console script runs
    assert "replay/behaviour.py" in names and "replay/diff_cli.py" in names  # `hlcore diff` with drills
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "hlcore = hlcore_cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
