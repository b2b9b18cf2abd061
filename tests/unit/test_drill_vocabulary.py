"""The drill words of issue 18: their validation (bad input located by file:line), the loader's
expansion of `repeat` and `each`, the transport's time-taking faults and latency, the scripted
order lifecycle, and the vocabulary coverage report."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from hlcore.engine.clock import ManualClock
from hlcore.errors import BadInput
from replay.cassettes import CassetteDeck
from replay.drill import Drill, load_drill
from replay.registry import Kind, vocabulary
from replay.runner import Outcome
from replay.suite import words_used
from replay.transport import DrillTransport, Fault, Reply
from replay.worlds.copytrade import CopytradeWorld

HEAD = """\
drill: d
runbook: r
app: {app}
clock: {{start: "2026-01-24T10:00:00Z"}}
timeline:
  - {{at: 0s, do: boot}}
"""


def _write(tmp_path: Path, body: str, app: str = "copytrader") -> Path:
    target = tmp_path / "d"
    target.mkdir(exist_ok=True)
    (target / "drill.yaml").write_text(HEAD.format(app=app) + body, encoding="utf-8")
    return target


def _load(tmp_path: Path, body: str, app: str = "copytrader") -> Drill:
    return load_drill(_write(tmp_path, body, app))


def _problems(tmp_path: Path, body: str, app: str = "copytrader") -> list[str]:
    with pytest.raises(BadInput) as info:
        _load(tmp_path, body, app)
    return [str(p) for p in info.value.problems]


def _line(tmp_path: Path, needle: str) -> int:
    text = (tmp_path / "d" / "drill.yaml").read_text(encoding="utf-8")
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _located(problems: list[str], tmp_path: Path, needle: str, *words: str) -> None:
    """One problem names drill.yaml at the line holding `needle` and each of `words`."""
    where = f"drill.yaml:{_line(tmp_path, needle)}:"
    assert any(where in p and all(w in p for w in words) for p in problems), problems


EXPECT = "expect:\n  - {at: 1s, process: running}\n"


# ---------------------------------------------------------------------- validation (file:line)
@pytest.mark.parametrize(("step", "words"), [
    ("{at: 1s, do: fault, kind: timeout, takes: 10 seconds}", ("takes",)),
    ("{at: 1s, do: latency, ms: -5}", ("ms", ">= 0")),
    ("{at: 1s, do: latency, ms: 300, host: x}", ("host", "unknown")),
    ("{at: 1s, do: order_lifecycle, statuses: [PARTIALLY_FILLED, DONE]}", ("statuses", "DONE")),
    ("{at: 1s, do: order_lifecycle, statuses: []}", ("statuses", "empty")),
    ("{at: 1s, do: repeat, every: soon, times: 2, steps: [{do: advance}]}", ("every",)),
    ("{at: 1s, do: repeat, every: 5m, times: 0, steps: [{do: advance}]}", ("times",)),
])
def test_a_bad_step_is_located(tmp_path: Path, step: str, words: tuple[str, ...]) -> None:
    problems = _problems(tmp_path, f"  - {step}\n" + EXPECT)
    _located(problems, tmp_path, step.split(",")[1].strip(), *words)


def test_a_repeat_inner_step_is_checked_like_any_step(tmp_path: Path) -> None:
    body = """\
      - at: 1m
        do: repeat
        every: 5m
        times: 3
        steps:
          - {do: fault, kind: timeout, match: GET /fapi/v1/order, colour: red}
          - {at: 6m, do: advance}
          - {do: repeat, every: 1m, times: 2, steps: [{do: advance}]}
          - {do: teleport}
    """
    problems = _problems(tmp_path, textwrap.indent(textwrap.dedent(body), "  ") + EXPECT)
    _located(problems, tmp_path, "colour: red", "steps[0]", "colour")
    _located(problems, tmp_path, "{at: 6m, do: advance}", "under 5m")
    _located(problems, tmp_path, "times: 2, steps", "steps[2].do")  # no repeat inside a repeat
    _located(problems, tmp_path, "teleport", "teleport")


def test_set_signal_inputs_is_a_monitor_word_with_checked_scores(tmp_path: Path) -> None:
    step = "{at: 1s, do: set_signal_inputs, asset: BTC, set: {exit_cluster_score: 25.01}}"
    _located(_problems(tmp_path, f"  - {step}\n" + EXPECT), tmp_path, "set_signal_inputs", "do", "expected one of")
    bad = ("  - {at: 1s, do: set_signal_inputs, asset: DOGE, slot: 5 min, "
           "set: {exit_cluster_score: 101, alignment_trend: up, wallets: 3}}\n")
    problems = _problems(tmp_path, bad + EXPECT, app="monitor")
    for word in ("asset", "slot", "exit_cluster_score", "alignment_trend", "wallets"):
        _located(problems, tmp_path, "set_signal_inputs", word)


@pytest.mark.parametrize(("check", "words"), [
    ("{at: 1s, position: {btcusdt: 1}}", ("position", "btcusdt")),
    ("{at: 1s, drift: {BTCUSDT: 0.001}, result: [WARN]}", ("result",)),
    ("{never_state: {regime_change: ACTIVE}, instance: 7}", ("instance",)),
    ("{at: 1s, each: {every: 5m}, process: running}", ("each", "times")),
    ("{at: 1s, each: {every: never, times: 2}, process: running}", ("every",)),
    ("{each: {every: 5m, times: 2}, process: running}", ("needs an `at`",)),
])
def test_a_bad_expectation_is_located(tmp_path: Path, check: str, words: tuple[str, ...]) -> None:
    problems = _problems(tmp_path, f"expect:\n  - {check}\n")
    _located(problems, tmp_path, check, *words)


# ---------------------------------------------------------------------- expansion
def test_repeat_expands_into_its_occurrences_in_time_order(tmp_path: Path) -> None:
    body = """\
      - {at: 10m, do: repeat, every: 5m, times: 3, steps: [{do: advance}, {at: 2m, do: storage, down: true}]}
      - {at: 12m, do: storage, down: false}
    """
    drill = _load(tmp_path, textwrap.indent(textwrap.dedent(body), "  ") + EXPECT)
    got = [(s.at_ms // 60_000, s.do, s.repeat) for s in drill.runs[0].timeline]
    assert got == [(0, "boot", None), (10, "advance", "1/3"), (12, "storage", "1/3"), (12, "storage", None),
                   (15, "advance", "2/3"), (17, "storage", "2/3"), (20, "advance", "3/3"), (22, "storage", "3/3")]
    assert drill.runs[0].timeline[2].args == {"down": True}
    assert drill.words == ["check:process", "step:advance", "step:boot", "step:repeat", "step:storage"]


def test_each_repeats_a_timed_check_and_moves_its_since(tmp_path: Path) -> None:
    drill = _load(tmp_path, "expect:\n  - {at: 5m, each: {every: 5m, times: 3}, since: 1m, calls: {binance: 2}}\n")
    got = [(e.at_ms, e.spec["since"], e.kind) for e in drill.runs[0].expect]
    assert got == [(300_000, 60_000, "calls"), (600_000, 360_000, "calls"), (900_000, 660_000, "calls")]
    assert all("each" not in e.spec for e in drill.runs[0].expect)
    assert "modifier:each" in drill.words and "check:calls" in drill.words


# ---------------------------------------------------------------------- transport
class _World:
    def venue_of(self, host: str) -> str | None:
        return "binance" if "binance" in host else "hyperliquid"

    def answer(self, venue: str, method: str, path: str, params: object, payload: object) -> Reply:
        return Reply(200, {"ok": True})


URL = "https://fapi.binance.com/fapi/v1/order"


def test_a_fault_that_takes_time_moves_the_scripted_clock() -> None:
    clock = ManualClock(1_000)
    t = DrillTransport(clock, _World(), CassetteDeck([]))
    t.faults.append(Fault("timeout", match="GET /fapi/v1/order", takes_ms=10_000))
    with pytest.raises(requests.Timeout):
        t.session().get(URL)
    assert clock.now_ms() == 11_000 and t.calls[0].ts_ms == 1_000  # the call started at 1 s, failed at 11 s
    t.session().get(URL)
    assert clock.now_ms() == 11_000  # the fault was for one call; no latency configured


def test_latency_delays_matching_answers_only() -> None:
    clock = ManualClock(0)
    t = DrillTransport(clock, _World(), CassetteDeck([]))
    t.delays.append(Fault("latency", venue="binance", times=None, takes_ms=300))
    s = t.session()
    s.get(URL)
    s.post("https://api.hyperliquid.xyz/info", json={"type": "meta"})
    s.get(URL)
    assert clock.now_ms() == 600 and [c.ts_ms for c in t.calls] == [0, 300, 300]


# ---------------------------------------------------------------------- the order lifecycle
def test_a_scripted_order_walks_its_statuses_one_answer_at_a_time() -> None:
    clock = ManualClock(1_000)
    world = CopytradeWorld(clock)
    world.account.lifecycles.append(["PARTIALLY_FILLED", "PARTIALLY_FILLED", "FILLED"])
    s = DrillTransport(clock, world, CassetteDeck([])).session()
    body = "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.004&newClientOrderId=c1"
    first = s.post(URL, data=body).json()
    assert (first["status"], first["executedQty"]) == ("PARTIALLY_FILLED", "0.002")
    assert world.account.positions["BTCUSDT"] == Decimal("-0.002")
    seen = [s.get(URL, params={"origClientOrderId": "c1"}).json() for _ in range(3)]
    assert [(o["status"], o["executedQty"]) for o in seen] == [
        ("PARTIALLY_FILLED", "0.002"), ("FILLED", "0.004"), ("FILLED", "0.004")]
    assert world.account.positions["BTCUSDT"] == Decimal("-0.004")
    # the next order is not scripted: the account's default outcome again
    assert s.post(URL, data=body.replace("c1", "c2")).json()["status"] == "FILLED"


# ---------------------------------------------------------------------- coverage
def test_coverage_lists_every_word_and_the_drills_using_it() -> None:
    used = dict(words_used([Outcome("a", "r", "p", "f", words=["step:boot", "check:position"]),
                            Outcome("b", "r", "p", "f", words=["step:boot"])]))
    assert used["step:boot"] == ["a", "b"] and used["check:position"] == ["a"]
    assert used["step:set_signal_inputs"] == [] and used["modifier:each"] == []


# ---------------------------------------------------------------------- the documented examples
def _example_drill(table: str, kind: Kind) -> str:
    app = kind.apps[0] if kind.apps else "copytrader"
    given, steps, expect = "", "", "  - {at: 0s, process: running}\n"
    if table == "given":
        given = f"given:\n  {kind.example}\n"
    elif table == "step":
        steps = f"  - {kind.example}\n"
    else:
        expect = f"  - {kind.example}\n"
    return HEAD.format(app=app) + steps + given + "expect:\n" + expect


@pytest.mark.parametrize(("table", "name"), [(t, n) for t, kinds in vocabulary().items() for n in sorted(kinds)])
def test_every_word_has_an_example_the_loader_accepts(tmp_path: Path, table: str, name: str) -> None:
    """docs/drills.md shows each word with a one-line example: it must be a valid drill line."""
    kind = vocabulary()[table][name]
    assert kind.example, f"{table} {name} has no example"
    target = tmp_path / "d"
    target.mkdir()
    (target / "drill.yaml").write_text(_example_drill(table, kind), encoding="utf-8")
    drill = load_drill(target)
    assert f"{table}:{name}" in drill.words


def test_a_pin_off_the_slot_grid_is_bad_input_located_at_its_step(tmp_path: Path) -> None:
    """The clock starts 09:59:30: `slot: 1m` is 10:00:30, no 5-minute slot; exit 2 at the step's line."""
    from replay.runner import replay

    body = ("  - {at: 1s, do: set_signal_inputs, asset: BTC, slot: 1m, set: {exit_cluster_score: 25.01}}\n"
            "expect:\n  - {at: 0s, process: running}\n")
    target = _write(tmp_path, body, app="monitor")
    text = (target / "drill.yaml").read_text(encoding="utf-8").replace("10:00:00Z", "09:59:30Z")
    (target / "drill.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(BadInput) as info:
        replay(target)
    (problem,) = info.value.problems
    assert problem.line == _line(tmp_path, "set_signal_inputs") and problem.file.endswith("drill.yaml")
    assert "slot 1m" in problem.message and "not a signal slot" in problem.message
