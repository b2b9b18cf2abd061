"""`hlcore backtest --app copytrader --format html`: one self-contained page holding the plots."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from hlcore_cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
EXTERNAL = re.compile(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|<script|<link|<img|<iframe|@import|url\(", re.I)


def _synth(out: Path) -> None:
    r = runner.invoke(app, ["history", "synth", "--app", "copytrader", "--days", "2", "--seed", "5",
                            "--fills-per-day", "20", "--out", str(out)])
    assert r.exit_code == 0, r.output


def test_html_report_is_self_contained_with_the_plots(tmp_path: Path) -> None:
    hist = tmp_path / "hist"
    _synth(hist)
    r = runner.invoke(app, ["backtest", "--app", "copytrader", "--history", str(hist), "--format", "html",
                            "--policy", str(ROOT), "--set", "decision.sizing.proportional_ratio=0.003",
                            "--out", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    page = r.output
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert (tmp_path / "res" / "report.html").read_text(encoding="utf-8") == page
    # per side: a safety strip, the BTC position plot (the only mapped coin), a P&L-per-day plot
    assert page.count("<h2>Positions, ") == 2 and page.count('<svg class="positions"') == 2
    assert page.count('<svg class="pnl"') == 2 and page.count("<title>mirror 2026-01-0") == 4  # 2 days x 2 sides
    strip = page.split("<h2>Safety mode timeline</h2>", 1)[1].split("<h2>", 1)[0]
    assert strip.count("<svg") == 2 and "<rect" in strip
    positions = page.split('<svg class="positions"', 2)[1]
    # two step lines with many corners: the mirror moved, and so did the target
    lines = re.findall(r'points="([^"]+)"', positions.split("</svg>", 1)[0])
    assert len(lines) == 2 and all(len(p.split()) > 4 for p in lines)
    assert "ratio 0.003 x target" in page and "ratio 0.001 x target" in page
    assert "## Tracking error, base" in page  # the report's tables follow the plots


def test_two_parameter_sweep_html_has_heatmaps(tmp_path: Path) -> None:
    hist = tmp_path / "hist"
    _synth(hist)
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid:\n  decision.sizing.proportional_ratio: [0.001, 0.002]\n"
                    "  decision.sizing.max_qty: [0.001, 1.0]\n", encoding="utf-8")
    r = runner.invoke(app, ["backtest", "--app", "copytrader", "--history", str(hist), "--sweep", str(grid),
                            "--until", "2026-01-01T12:00:00Z", "--format", "html", "--policy", str(ROOT)])
    assert r.exit_code == 0, r.output
    page = r.output
    assert not EXTERNAL.search(page)
    assert "pnl.mirror over decision.sizing.max_qty (columns) x decision.sizing.proportional_ratio (rows)" in page
    assert "tracking.BTCUSDT.p95 over" in page
    cells = re.findall(r'fill="rgb\((\d+),(\d+),255\)"', page)
    assert len(cells) == 8 and all(0 <= int(a) <= 255 for a, _ in cells)  # 2 heatmaps x 4 variants, valid colours
