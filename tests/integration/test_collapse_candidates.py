"""Dirty detection reads only the neighbouring slots' pairs that can have collapsed (issue 12):
`Snapshots.collapse_candidates(t0, t1)` plus the cycle's own rows at T must convict exactly the
rows a full read of the three slots (`szi_at`) convicts, whatever the sizes (NULL, zero, signs,
ratios at the boundaries) and whichever rows are missing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hlcore.jobs.monitor.snapshots import is_transient_collapse
from hlcore.storage.db import open_database
from hlcore.storage.monitor import SnapshotRow, Snapshots

T0, T1, T2 = 60_000, 120_000, 180_000
EPS = {"BTC": 0.001, "ETH": 0.0}
SIZE = st.one_of(st.none(), st.sampled_from([0.0, 0.001, -0.001, 0.0099, 0.01, 1.0, -1.0, 0.5, 0.51, 2.0, -3.0]))
PAIR = st.tuples(st.sampled_from(["0xa", "0xb", "0xc", "0xd"]), st.sampled_from(sorted(EPS)))


def _convicted(series: dict[tuple[str, str], dict[int, float | None]], ratio: float, recovery: float) -> set:
    return {key for key, by_ts in series.items() if all(t in by_ts for t in (T0, T1, T2))
            and is_transient_collapse(by_ts[T0], by_ts[T1], by_ts[T2], epsilon_abs=EPS[key[1]],
                                      collapse_ratio=ratio, recovery_ratio=recovery)}


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.dictionaries(st.tuples(st.sampled_from([T0, T1, T2]), PAIR), SIZE, max_size=24),
       st.sampled_from([0.01, 0.5, 1.0]), st.sampled_from([0.5, 0.9]))
def test_candidates_and_the_current_rows_convict_what_a_full_read_does(
        rows: dict[tuple[int, tuple[str, str]], float | None], ratio: float, recovery: float) -> None:
    db = open_database("sqlite://")
    db.create_schema(0)
    snapshots = Snapshots(db)
    for ts in (T0, T1, T2):
        at = [SnapshotRow(w, a, szi) for (t, (w, a)), szi in sorted(rows.items(), key=str) if t == ts]
        if at:
            snapshots.upsert(ts, at, None, ts)
    current = [SnapshotRow(w, a, szi) for (t, (w, a)), szi in rows.items() if t == T2]
    narrow = snapshots.collapse_candidates(T0, T1)
    for row in current:
        if (row.wallet_id, row.asset) in narrow:
            narrow[(row.wallet_id, row.asset)][T2] = row.position_szi
    assert _convicted(narrow, ratio, recovery) == _convicted(snapshots.szi_at((T0, T1, T2)), ratio, recovery)
