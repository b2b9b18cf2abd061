"""The CI timeline report (tests/support/timeline_report.py) names a worker left idle at the end
and splits a test's wall into CPU, run-queue wait and blocked time (issue 12's evidence)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.timeline_report import _blocked, main, simulate


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _test(name: str, t0: float, t1: float, cpu: float, child: float = 0.0, wait: float = 0.0) -> dict[str, object]:
    return {"kind": "test", "id": name, "t0": t0, "t1": t1, "cpu": cpu, "child": child, "run": cpu, "wait": wait}


def test_blocked_is_wall_less_cpu_children_and_run_queue_wait_never_negative() -> None:
    assert _blocked(_test("a", 0.0, 10.0, cpu=2.0, child=3.0, wait=1.0)) == pytest.approx(4.0)
    assert _blocked(_test("b", 0.0, 1.0, cpu=0.9, wait=0.5)) == 0.0


def test_a_worker_idle_after_its_last_test_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "main.jsonl", [{"kind": "session", "id": "", "t0": 0.0, "t1": 100.0, "cpu": 1.0,
                                      "child": 0.0, "run": 1.0, "wait": 0.0}])
    _write(tmp_path / "gw0.jsonl", [_test("tests/a.py::long", 5.0, 95.0, cpu=60.0, wait=10.0)])
    _write(tmp_path / "gw1.jsonl", [_test("tests/b.py::short", 5.0, 15.0, cpu=10.0),
                                    _test("tests/b.py::sleepy", 15.0, 25.0, cpu=1.0)])
    main([str(tmp_path), "--bucket", "10"])
    out = capsys.readouterr().out
    assert "gw0: 1 tests; before first    5.0 s, in tests    90.0 s, gaps    0.0 s, after last    5.0 s" in out
    assert "gw1: 2 tests; before first    5.0 s, in tests    20.0 s, gaps    0.0 s, after last   75.0 s" in out
    assert "blocked/asleep    20.0 s" in out and "blocked/asleep     9.0 s" in out
    strips = {line.split("|")[0].strip(): line.split("|")[1] for line in out.splitlines()
              if line.startswith("  gw") and "|" in line}
    assert strips["gw0"].strip() and strips["gw1"][4:].strip() == ""  # gw1 has nothing to do after 25 s


def test_xdists_first_batch_puts_every_long_test_first_in_line_on_one_worker() -> None:
    """16 long tests sorted first, then 200 short ones: the default first batch (a quarter of 108
    = 27 consecutive tests per worker) gives worker 0 all 16; one at a time splits them."""
    durations = [10.0] * 16 + [0.05] * 200
    default = simulate(durations, 2, first_batch=True)
    one_at_a_time = simulate(durations, 2, first_batch=False)
    assert default[0] >= 160.0 and default[1] < 10.0
    assert max(one_at_a_time) == pytest.approx(sum(durations) / 2, abs=0.1)
    assert sum(default) == pytest.approx(sum(durations)) == pytest.approx(sum(one_at_a_time))
