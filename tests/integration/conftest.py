"""Integration fixtures shared by several modules (one drill replay per worker, not per module)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.dashboard import mask_stale_db


@pytest.fixture(scope="session")
def mask_stale_monitor_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dashboard_mask_stale's kept monitor database (see tests/support/dashboard.py)."""
    return mask_stale_db(tmp_path_factory.mktemp("mask-stale-db"))
