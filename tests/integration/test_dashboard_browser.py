"""The real page in a real browser: `hlcore dashboard` serves dashboard_mask_stale's kept database
on a loopback port, headless Chromium loads it and the DOM is checked. In HALT no decision-surface
element exists at all (no panel, score, chart or positioning); in NORMAL all three panels do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.browser import chromium, dashboards
from tests.support.dashboard import NORMAL_AT, ROOT

SURFACE = ("[class*='st-key-hl-panel-']", "[class*='st-key-hl-chart-']", "[class*='st-key-hl-positioning-']",
           "[data-testid='stVegaLiteChart']", ".st-key-hl-banner", ".st-key-hl-alerts")


def open_page(context: Any, url: str) -> Any:
    page = context.new_page()
    page.goto(url)
    return page


def test_halt_and_normal_pages_in_headless_chromium(mask_stale_monitor_db: Path, tmp_path: Path) -> None:
    db = str(mask_stale_monitor_db)
    fast = tmp_path / "settings.yaml"
    fast.write_text("monitor: {dashboard: {refresh_sec: 1}}\n", encoding="utf-8")
    # HALT on the real clock (the drill's data are long stale), refreshing every second; NORMAL as of 10:01:30
    with dashboards(("--db", db, "--config", str(fast)), ("--db", db, "--now", NORMAL_AT), cwd=ROOT) as urls, \
            chromium() as context:
        halt_url, normal_url = urls
        normal = open_page(context, normal_url)
        normal.wait_for_selector(".st-key-hl-chart-ETH-24h [data-testid='stVegaLiteChart']", timeout=60_000)
        for asset in ("HYPE", "BTC", "ETH"):
            panel = normal.locator(f".st-key-hl-panel-{asset}")
            assert panel.count() == 1 and "Long-only" in panel.inner_text() and "CAS 100" in panel.inner_text()
        assert normal.locator(".st-key-hl-halt-box").count() == 0
        assert normal.locator("[class*='st-key-hl-chart-']").count() == 6
        assert "SYSTEM HALT" not in normal.content()
        normal.close()

        halt = open_page(context, halt_url)  # opened second: its 1 s reruns do not slow the NORMAL page down
        # the episode opened at 10:10:30 on 2026-01-24 is still open: its alert is shown, however old
        halt.wait_for_selector(".st-key-hl-system-alerts :text('[SYSTEM] Data Stale')", timeout=60_000)  # drawn last
        dom = halt.content()
        assert "SYSTEM HALT: DATA STALE" in dom and "AGE_STALE" in dom
        assert halt.locator(".st-key-hl-halt-box").count() == 1
        for selector in SURFACE:
            assert halt.locator(selector).count() == 0, selector
        for word in ("Long-only", "CAS 100", "Dispersion", "positioning", "Context only"):
            assert word not in dom, word
        # refresh_sec 1: the fragment reruns in place (same document, new "Refreshed" time), no page reload
        halt.evaluate("window.hlMarker = 'same document'")
        before = halt.inner_text(".st-key-hl-refreshed")
        halt.wait_for_function("old => document.querySelector('.st-key-hl-refreshed').innerText !== old",
                               arg=before, timeout=30_000)
        assert halt.evaluate("window.hlMarker") == "same document"
        assert halt.locator("[class*='st-key-hl-panel-']").count() == 0
