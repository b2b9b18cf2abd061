"""Regenerate docs/img/dashboard_*.png: the three monitor views of dashboard_mask_stale's kept
database (NORMAL 10:01:30, DEGRADED 10:05, HALT 10:12:30) and the copy-trader page of
reconcile_critical_halt's, served by `hlcore dashboard` and shot by headless Chromium.

Run from the repository root: .venv/bin/python scripts/dashboard_screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from replay.runner import replay  # noqa: E402
from tests.support.browser import chromium, dashboards  # noqa: E402
from tests.support.dashboard import DEGRADED_AT, HALT_AT, NORMAL_AT, mask_stale_db  # noqa: E402

OUT = ROOT / "docs" / "img"
CHARTS_DRAWN = ".st-key-hl-chart-ETH-24h [data-testid='stVegaLiteChart']"  # the last element of a full view
LAST = {"halt": ".st-key-hl-system-alerts", "degraded": CHARTS_DRAWN, "normal": CHARTS_DRAWN,
        "copytrader": ".st-key-hl-ct-page [data-testid='stDataFrame']"}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        monitor = str(mask_stale_db(Path(tmp) / "monitor"))
        replay(ROOT / "fixtures" / "reconcile_critical_halt", keep_db=Path(tmp) / "ct", runs={"base"})
        config = Path(tmp) / "settings.yaml"
        config.write_text(f"db_path: {Path(tmp) / 'ct' / 'base' / 'copytrader.db'}\n", encoding="utf-8")
        shots = {"halt": HALT_AT, "degraded": DEGRADED_AT, "normal": NORMAL_AT, "copytrader": HALT_AT}
        args = [("--db", monitor, "--now", at, "--config", str(config)) for at in shots.values()]
        with dashboards(*args, cwd=ROOT) as urls, chromium(height=2600) as context:
            for (name, _), url in zip(shots.items(), urls, strict=True):
                page = context.new_page()  # type: ignore[attr-defined]
                page.goto(url + ("?page=Copy-trader" if name == "copytrader" else ""))
                page.wait_for_selector(LAST[name], timeout=60_000)
                page.wait_for_timeout(1500)  # charts finish drawing
                page.screenshot(path=str(OUT / f"dashboard_{name}.png"))
                print(f"wrote {OUT / f'dashboard_{name}.png'}")


if __name__ == "__main__":
    main()
