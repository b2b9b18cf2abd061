"""Copy-trade figures: positions per minute from fills, and minutes per safety mode."""

from __future__ import annotations

import numpy as np

from backtest.copytrade.metrics import _positions, time_in_state

M = 60_000


def test_positions_count_a_fill_in_the_minute_it_happens() -> None:
    times = np.arange(0, 5 * M, M)
    pos = _positions(times, [M + 10, 3 * M + 59_999], [2.0, -0.5])
    assert pos.tolist() == [0.0, 2.0, 2.0, 1.5, 1.5]
    assert _positions(times, [], []).tolist() == [0.0] * 5


def test_time_in_state_splits_the_window_at_each_transition() -> None:
    transitions = [{"ts_ms": 10 * M, "machine": "safety", "to": "HALT", "reason": "RECONCILE_CRITICAL"},
                   {"ts_ms": 15 * M, "machine": "order", "to": "FILLED", "reason": None},
                   {"ts_ms": 40 * M, "machine": "safety", "to": "ARMED_SAFE", "reason": "AUTO_RECOVERY"}]
    minutes, entries = time_in_state(transitions, "safety", "ARMED_LIVE", 0, 60 * M)
    assert minutes == {"ARMED_LIVE": 10, "ARMED_SAFE": 20, "HALT": 30}
    assert entries == {"ARMED_SAFE AUTO_RECOVERY": 1, "HALT RECONCILE_CRITICAL": 1}
