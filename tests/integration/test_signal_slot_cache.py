"""`SignalStore.clean_slots` (issue 12 item 3) keeps the slots it has seen sealed and reads only
the newer ones plus the window's dirty marks; whatever the order of slot writes, dirty marks (on
any slot, sealed or not, in either direction) and sliding windows, what it returns must equal a
full read of the window (`latest_clean` / `clean_history`, the reference queries), and so must the
ε lookback `LookbackBook` keeps sorted across reads."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, update

from hlcore.jobs.monitor import formulas as f
from hlcore.jobs.monitor.signals import LookbackBook, _history
from hlcore.storage.db import open_database
from hlcore.storage.monitor_signals import SignalStore
from hlcore.storage.schema import wallet_snapshots

M = 60_000
WALLETS = ("0xa", "0xb", "0xc")
SIZES = st.one_of(st.none(), st.sampled_from([0.0, 1.0, -2.5, 3.25, 0.1, 2.5, -1.0]))

# One step: write the next slot (after a gap of 1–3 minutes, some wallets missing), flip a dirty
# flag on a row already written, or ask for the window (lookback minutes) ending at the newest slot.
STEP = st.one_of(
    st.tuples(st.just("write"), st.integers(1, 3), st.lists(st.tuples(st.sampled_from(WALLETS), SIZES),
                                                             max_size=3)),
    st.tuples(st.just("dirty"), st.integers(0, 30), st.sampled_from(WALLETS), st.booleans()),
    st.tuples(st.just("read"), st.integers(1, 12), st.integers(0, 2)),
)


def _reference(store: SignalStore, after: int, up_to: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    history = {w: sorted(v) for w, v in store.clean_history("BTC", after, up_to).items()}
    return history, store.latest_clean("BTC", after, up_to)


def _from_slots(slots: list[tuple[int, dict[str, float]]]) -> tuple[dict[str, list[float]], dict[str, float]]:
    history: dict[str, list[float]] = {}
    latest: dict[str, float] = {}
    for _, rows in slots:
        for w, v in rows.items():
            history.setdefault(w, []).append(v)
        latest.update(rows)
    return {w: sorted(v) for w, v in history.items()}, latest


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, min_size=1, max_size=40))
def test_cached_slots_equal_a_full_read_of_the_window(steps: list[tuple[Any, ...]]) -> None:
    db = open_database("sqlite://")
    db.create_schema(0)
    cached, fresh = SignalStore(db), SignalStore(db)
    book = LookbackBook()
    written: list[tuple[int, str]] = []
    ts = 0
    for step in steps:
        if step[0] == "write":
            ts += step[1] * M
            rows = {w: szi for w, szi in step[2]}
            with db.transaction() as c:
                if rows:
                    c.execute(insert(wallet_snapshots), [
                        {"snapshot_ts": ts, "wallet_id": w, "asset": a, "position_szi": szi}
                        for w, szi in rows.items() for a in ("BTC", "ETH")])
            written += [(ts, w) for w in rows]
        elif step[0] == "dirty" and written:
            at, wallet = written[-1 - step[1] % len(written)]
            with db.transaction() as c:
                c.execute(update(wallet_snapshots)
                          .where(wallet_snapshots.c.snapshot_ts == at, wallet_snapshots.c.wallet_id == wallet,
                                 wallet_snapshots.c.asset == "BTC")
                          .values(is_dirty=step[3], dirty_reason="test" if step[3] else None))
        elif step[0] == "read":
            up_to = ts - step[2] * M
            after = up_to - step[1] * M
            slots = cached.clean_slots("BTC", after, up_to)
            assert _from_slots(slots) == _reference(fresh, after, up_to)
            # the ε lookback kept across reads (issue 16) equals the one collected afresh
            eps_after = up_to - step[1] * M // 2  # a lookback inside the window read, as measure cuts it
            kept = book.update(slots, eps_after, up_to)
            full = fresh.clean_history("BTC", eps_after, up_to)
            assert {w: list(v) for w, v in kept.items()} == {w: sorted(abs(x) for x in v) for w, v in full.items()}
            for w in WALLETS:
                assert f.epsilon_of_sorted(kept.get(w, ()), 0.5, 0.1) == f.epsilon(full.get(w, ()), 0.5, 0.1)
            assert [t for t, _ in cached.clean_slots("BTC", after, up_to)] == sorted(
                {t for t, _ in written if after < t <= up_to})


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 8), st.booleans(), st.integers(0, 40)), min_size=1,
                max_size=60))
def test_the_kept_lookback_slides_like_a_fresh_one(steps: list[tuple[int, int, bool, int]]) -> None:
    """`LookbackBook` against `_history` + `epsilon` on every read of a sliding window: slots enter and
    leave, a slot's rows object is replaced (a dirty mark set or cleared), the window jumps back."""
    sizes = [0.0, 1.0, -1.0, 2.5, -2.5, 0.1, 3.25]
    book = LookbackBook()
    slots: list[tuple[int, dict[str, float]]] = []
    up_to = 0
    for gap, span, remark, seed in steps:
        up_to += gap * M
        slots.append((up_to, {w: sizes[(seed + i * up_to // M) % len(sizes)] for i, w in enumerate(WALLETS)
                              if (seed + i) % 4}))
        if remark and len(slots) > 1:  # an older slot comes back with other clean rows (a new object)
            k = seed % len(slots)
            ts, rows = slots[k]
            slots[k] = (ts, {w: v for w, v in rows.items() if w != WALLETS[seed % len(WALLETS)]})
        end = up_to - (seed % 3) * M if seed % 5 else up_to - 10 * M  # now and then a window further back
        after = end - span * M
        kept = book.update(slots, after, end)
        full = _history(slots, after, end, WALLETS)
        for w in WALLETS:
            assert list(kept.get(w, ())) == sorted(abs(v) for v in full[w])
            assert f.epsilon_of_sorted(kept.get(w, ()), 0.5, 0.1) == f.epsilon(full[w], 0.5, 0.1)
