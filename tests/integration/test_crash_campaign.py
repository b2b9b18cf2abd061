"""Never twice, never lost (issue 10): the real `hlcore live --mode live` subprocess against
loopback venue stubs, killed with SIGKILL at random points, run twice on one database, killed
during its first boot, and its database deleted under it. The long version (>= 200 kills) is
benchmarks/crash_campaign.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.crash_campaign import deleted_database, first_boot_kills, random_kills, two_writers

SEED = 10


@pytest.mark.slow
def test_thirty_random_kills_lose_nothing_and_send_nothing_twice(tmp_path: Path) -> None:
    counts = random_kills(tmp_path, kills=30, seed=SEED, max_alive_s=0.8)
    assert counts.kills == 30, counts.notes
    assert counts.orders > 0, "no order was sent: the campaign exercised nothing"
    assert (counts.duplicates, counts.lost, counts.stuck, counts.bricked) == (0, 0, 0, 0), counts.notes
    assert counts.notes == []


def test_second_live_on_one_database_exits_2_naming_the_first(tmp_path: Path) -> None:
    counts, err, code = two_writers(tmp_path, seconds=2.0)
    assert code == 2
    assert "writer_lock_held" in err and "pid=" in err and "host=" in err and "since=" in err
    assert "Traceback" not in err
    assert counts.orders > 0 and counts.duplicates == 0  # the stub saw each client order id once
    assert (counts.lost, counts.stuck, counts.bricked) == (0, 0, 0), counts.notes


def test_kills_during_first_boot_never_brick_the_database(tmp_path: Path) -> None:
    counts = first_boot_kills(tmp_path, kills=3, seed=SEED)
    assert counts.bricked == 0, counts.notes
    assert not list(tmp_path.glob("install-*/etc/data/*.half-made-*"))  # nothing half-made to set aside


def test_deleted_database_halts_at_once_and_is_never_recreated(tmp_path: Path) -> None:
    counts, seen = deleted_database(tmp_path, run_s=2.0)
    assert seen["orders_after_delete"] == 0
    assert seen["halt_logged"]
    assert seen["restart_exit"] == 2 and "--allow-create-db" in seen["restart_stderr"]
    assert str(tmp_path / "etc" / "data" / "ct.db") in seen["restart_stderr"]  # the resolved path, named
    assert not seen["recreated"]
    assert counts.duplicates == 0
