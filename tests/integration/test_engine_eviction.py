"""Final instances leave the engine's memory once committed, and come back from storage (issue 12:
flat latency). Eviction must never change what the engine decides: a later fact for an evicted
instance sees the state storage has (not the machine's initial state), and a run with eviction
decides exactly what a run without it decides."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from hlcore.engine.clock import ManualClock
from hlcore.engine.runtime import Runtime
from hlcore.storage.db import open_database, sqlite_url
from hlcore.storage.repos import MachineStateStore

T0 = 1_769_248_800_000
ANSWERS = ["FILLED", "CANCELED", "REJECTED", "NEW", "PARTIALLY_FILLED", "UNKNOWN", "NOT_FOUND", "EXPIRED"]
ERRORS = [None, "TIMEOUT", "NETWORK_ERROR"]


def runtime(path: Path, policy: Any, settings: Any, now: int = T0, evict: bool = True) -> tuple[Runtime, ManualClock]:
    db = open_database(sqlite_url(path))
    if db.schema_status() == "missing":
        db.create_schema(now)
    clock = ManualClock(now)
    rt = Runtime(db, policy, settings, clock)
    if not evict:
        rt.engine.restore = None  # the engine as it was: every instance kept for the process's life
    rt.start()
    return rt, clock


def answered(cid: str, answer: str, error: str | None = None, attempts: int = 0, age: int | None = None) -> dict:
    return {"correlation_id": cid, "answer": answer, "error_code": error, "query_attempts": attempts,
            "first_unknown_ms": None, "order_age_ms": age}


def test_a_filled_order_leaves_memory_and_comes_back_as_storage_has_it(tmp_path: Path, default_policy: Any,
                                                                      default_settings: Any) -> None:
    rt, _ = runtime(tmp_path / "e.db", default_policy, default_settings)
    rt.observe("order_answered", answered("c1", "FILLED"))
    assert ("c1",) not in rt.engine._instances["order"]  # committed and final: evicted
    assert rt.engine._evicted["order"] == {("c1",): "FILLED"}
    # what storage says wins, not the state it was evicted in, and never the initial NONE
    with rt.db.transaction() as conn:
        conn.execute(text("UPDATE machine_states SET state = 'CANCELED', reason = 'X' WHERE instance = 'order/c1'"))
    assert (rt.engine.state("order", correlation_id="c1"), rt.engine.reason("order", correlation_id="c1")) == \
        ("CANCELED", "X")
    assert ("c1",) in rt.engine._instances["order"] and not rt.engine._evicted["order"]


def test_a_later_fact_for_an_evicted_order_is_decided_on_its_stored_state(tmp_path: Path, default_policy: Any,
                                                                          default_settings: Any) -> None:
    rt, clock = runtime(tmp_path / "e.db", default_policy, default_settings)
    rt.observe("order_answered", answered("c1", "FILLED"))
    clock.advance(1_000)
    late = rt.observe("order_answered", answered("c1", "CANCELED"))
    assert not late.transitions  # FILLED is final: re-seeded as NONE it would have moved to CANCELED
    assert rt.engine.state("order", correlation_id="c1") == "FILLED"


def test_an_evicted_order_whose_row_is_gone_keeps_its_final_state(tmp_path: Path, default_policy: Any,
                                                                  default_settings: Any) -> None:
    rt, _ = runtime(tmp_path / "e.db", default_policy, default_settings)
    rt.observe("order_answered", answered("c1", "CANCELED"))
    with rt.db.transaction() as conn:
        conn.execute(text("DELETE FROM machine_states WHERE instance = 'order/c1'"))
    assert rt.engine.state("order", correlation_id="c1") == "CANCELED"
    rt.persist(rt.engine.observe("order_answered", answered("c2", "NEW")))
    assert {r["instance"]: r["state"] for r in MachineStateStore(rt.db).load()}["order/c1"] == "CANCELED"


def test_open_and_unsaved_instances_stay(tmp_path: Path, default_policy: Any, default_settings: Any) -> None:
    rt, _ = runtime(tmp_path / "e.db", default_policy, default_settings)
    rt.observe("order_answered", answered("c1", "NEW"))  # SUBMITTED: not final
    rt.engine.observe("order_answered", answered("c2", "FILLED"))  # final but not persisted
    assert not rt.engine.evict("order", ("c1",)) and not rt.engine.evict("order", ("c2",))
    assert {("c1",), ("c2",)} <= set(rt.engine._instances["order"])


def test_a_restart_does_not_load_final_instances_and_restores_them_when_named(
        tmp_path: Path, default_policy: Any, default_settings: Any) -> None:
    rt, _ = runtime(tmp_path / "e.db", default_policy, default_settings)
    rt.observe("order_answered", answered("c1", "FILLED"))
    rt.observe("order_answered", answered("c2", "NEW"))
    rt.db.dispose()
    again, _ = runtime(tmp_path / "e.db", default_policy, default_settings, now=T0 + 60_000)
    assert set(again.engine._instances["order"]) == {("c2",)}
    assert again.engine.state("order", correlation_id="c1") == "FILLED"
    assert again.engine.state("order", correlation_id="c2") == "SUBMITTED"


def test_key_less_gates_and_in_state_counts_still_see_evicted_instances(
        tmp_path: Path, default_policy: Any, default_settings: Any) -> None:
    kept, _ = runtime(tmp_path / "k.db", default_policy, default_settings, evict=False)
    rt, _ = runtime(tmp_path / "e.db", default_policy, default_settings)
    for r in (kept, rt):
        r.observe("order_answered", answered("c1", "FILLED"))
        r.observe("order_answered", answered("c2", "NEW"))
    assert rt.engine._evicted["order"]
    for gate in ("order.poll", "order.query", "order.submit"):
        assert rt.engine.may(gate) == kept.engine.may(gate)
    ctx = rt.engine._ctx
    kctx = kept.engine._ctx
    for states in (frozenset({"FILLED"}), frozenset({"FILLED", "SUBMITTED"}), frozenset({"NONE"})):
        assert ctx.count_in_state("order", states) == kctx.count_in_state("order", states)


def _stored(rt: Runtime) -> dict[str, tuple[Any, ...]]:
    return {r["instance"]: (r["state"], r["reason"], r["since_ms"], r["vars"]) for r in MachineStateStore(rt.db).load()}


STEP = st.tuples(st.sampled_from(["c1", "c2", "c3"]), st.sampled_from(ANSWERS), st.sampled_from(ERRORS),
                 st.integers(0, 6), st.sampled_from([None, 0, 5_000, 600_000]), st.integers(0, 120_000),
                 st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=25))
def test_eviction_decides_exactly_what_keeping_every_instance_decides(default_policy: Any, default_settings: Any,
                                                                       steps: list[tuple[Any, ...]]) -> None:
    """The incremental (evicting) engine against the full one: same decisions, same stored rows,
    across restarts too (`restart` re-reads storage, the point where final rows stop being loaded)."""
    with tempfile.TemporaryDirectory() as tmp:
        full, full_clock = runtime(Path(tmp) / "full.db", default_policy, default_settings, evict=False)
        lean, lean_clock = runtime(Path(tmp) / "lean.db", default_policy, default_settings)
        for cid, answer, error, attempts, age, advance, restart in steps:
            full_clock.advance(advance)
            lean_clock.advance(advance)
            if restart:
                now = lean_clock.now_ms()
                full.db.dispose()
                lean.db.dispose()
                full, full_clock = runtime(Path(tmp) / "full.db", default_policy, default_settings, now, evict=False)
                lean, lean_clock = runtime(Path(tmp) / "lean.db", default_policy, default_settings, now)
            fact = answered(cid, answer, error, attempts, age)
            assert lean.observe("order_answered", fact) == full.observe("order_answered", fact)
            assert _stored(lean) == _stored(full)
        for cid in ("c1", "c2", "c3"):
            assert lean.engine.state("order", correlation_id=cid) == full.engine.state("order", correlation_id=cid)
        full.db.dispose()
        lean.db.dispose()
