"""The replay harness's own parts: drill-file errors, durations, the transport's faults and
cassettes (vcrpy, scrubbed), storage faults, scripted chance and coverage (issue 5)."""

from __future__ import annotations

import json
import shutil
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from hlcore.engine.clock import ManualClock
from hlcore.errors import BadInput
from hlcore.storage.db import open_database
from replay.cassettes import CassetteDeck, scrub_request, write_cassette
from replay.drill import duration_ms, load_drill
from replay.record import recorder
from replay.runner import Outcome, ScriptedChance
from replay.storage_faults import Kill, StorageFaults
from replay.suite import coverage
from replay.transport import DrillTransport, Fault, ProcessKilled, Reply

ROOT = Path(__file__).resolve().parents[2]
INFO = "https://api.hyperliquid.xyz/info"


# ---------------------------------------------------------------------- format
@pytest.mark.parametrize(("text", "ms"), [("250ms", 250), ("30s", 30_000), ("4m", 240_000), ("1h", 3_600_000),
                                          ("1h5m", 3_900_000), ("10m0s1ms", 600_001), (1500, 1500)])
def test_durations(text: Any, ms: int) -> None:
    assert duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["", "5", "m5", "-3s", "1.5s", -1, "5ms3s"])
def test_bad_durations(bad: Any) -> None:
    assert duration_ms(bad) is None


def _drill(tmp_path: Path, old: str, new: str) -> Path:
    target = tmp_path / "d"
    shutil.copytree(ROOT / "fixtures" / "gap_exceeded", target)
    path = target / "drill.yaml"
    body = path.read_text(encoding="utf-8")
    assert old in body
    path.write_text(body.replace(old, new, 1), encoding="utf-8")
    return target


def _problems(directory: Path) -> str:
    with pytest.raises(BadInput) as info:
        load_drill(directory)
    return "\n".join(str(p) for p in info.value.problems)


def test_unknown_verb_is_located(tmp_path: Path) -> None:
    d = _drill(tmp_path, "{at: 250s, do: advance}", "{at: 250s, do: teleport}")
    text_ = _problems(d)
    assert "drill.yaml:" in text_ and "timeline[1].do" in text_ and "teleport" in text_


def test_unknown_verb_argument_is_located(tmp_path: Path) -> None:
    d = _drill(tmp_path, "{at: 250s, do: advance}", "{at: 250s, do: fault, kind: timeout, colour: red}")
    assert "colour: unknown field" in _problems(d) or "colour" in _problems(d)


def test_fault_kind_must_be_known(tmp_path: Path) -> None:
    d = _drill(tmp_path, "{at: 250s, do: advance}", "{at: 250s, do: fault, kind: gremlins}")
    assert "gremlins" in _problems(d)


def test_an_expectation_needs_exactly_one_check(tmp_path: Path) -> None:
    d = _drill(tmp_path, "  - {never: intent}\n", "  - {never: intent, rows: {order_intents: 0}}\n")
    assert "exactly one of" in _problems(d)


def test_unknown_given_and_table_are_located(tmp_path: Path) -> None:
    d = _drill(tmp_path, "  baseline:", "  weather: {sunny: true}\n  rows: {no_such_table: []}\n  baseline:")
    text_ = _problems(d)
    assert "unknown given 'weather'" in text_ and "no_such_table" in text_


def test_missing_cassette_is_an_error(tmp_path: Path) -> None:
    d = _drill(tmp_path, "cassettes: [binance_position_risk.yaml]", "cassettes: [nowhere.yaml]")
    assert "no such cassette: cassettes/nowhere.yaml" in _problems(d)


# ---------------------------------------------------------------------- cassettes
def test_scrub_removes_signing_fields_keys_and_times() -> None:
    from vcr.request import Request

    req = Request("POST", "https://fapi.binance.com/fapi/v1/order?symbol=BTCUSDT&timestamp=1&recvWindow=5000"
                  "&signature=abc123", b'{"type":"userFillsByTime","user":"0xab","startTime":1,"endTime":2}',
                  {"X-MBX-APIKEY": "KEY", "Content-Type": "application/json"})
    clean = scrub_request(req)
    assert clean.uri == "https://fapi.binance.com/fapi/v1/order?symbol=BTCUSDT"
    assert json.loads(clean.body) == {"type": "userFillsByTime", "user": "0xab"}
    assert "X-MBX-APIKEY" not in clean.headers and clean.headers.get("Content-Type") == "application/json"


def test_deck_plays_matches_in_order_then_gives_up(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    body = {"type": "userFillsByTime", "user": "0xab", "startTime": 1}
    write_cassette(path, [{"method": "POST", "uri": INFO, "body": body, "response": [{"tid": 1}]},
                          {"method": "POST", "uri": INFO, "body": body, "response": [{"tid": 2}]}])
    deck = CassetteDeck([path])
    later = json.dumps({"type": "userFillsByTime", "user": "0xab", "startTime": 99, "endTime": 100}).encode()
    other = json.dumps({"type": "userFillsByTime", "user": "0xcd", "startTime": 99}).encode()
    assert deck.play("POST", INFO, other, {}) is None  # another body: no match
    assert [json.loads(deck.play("POST", INFO, later, {})[2]) for _ in range(2)] == [[{"tid": 1}], [{"tid": 2}]]
    assert deck.play("POST", INFO, later, {}) is None and deck.unplayed() == 0


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        payload = json.dumps({"serverTime": 1, "echo": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


def test_recording_scrubs_keys_and_signatures(tmp_path: Path) -> None:
    """`hlcore record`'s recorder, on a real socket (a local server): no secret reaches the file."""
    server = HTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    path = tmp_path / "rec.yaml"
    try:
        with recorder(("SECRETKEY123", "APISECRET456")).use_cassette(str(path)):
            url = f"http://127.0.0.1:{server.server_port}/fapi/v2/positionRisk?timestamp=1700000000000&signature=" \
                  "deadbeefSIGNATURE&recvWindow=5000"
            response = requests.get(url + "&echo=APISECRET456", headers={"X-MBX-APIKEY": "SECRETKEY123"}, timeout=5)
            assert response.status_code == 200
    finally:
        server.shutdown()
    text_ = path.read_text(encoding="utf-8")
    assert "positionRisk" in text_
    for secret in ("SECRETKEY123", "APISECRET456", "deadbeefSIGNATURE", "signature", "1700000000000", "X-MBX-APIKEY"):
        assert secret not in text_, secret


def test_recording_replaces_the_target_wallet_with_the_drill_placeholder(tmp_path: Path) -> None:
    """Issue 10 §8: a cassette never names the followed wallet; drills understand the placeholder."""
    from replay.worlds.copytrade import WALLET

    target = "0x" + "Ab12" * 10
    server = HTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    path = tmp_path / "rec.yaml"
    try:
        with recorder((), target).use_cassette(str(path)):
            url = f"http://127.0.0.1:{server.server_port}/info?user={target.lower()}"
            assert requests.get(url, timeout=5).status_code == 200
    finally:
        server.shutdown()
    text_ = path.read_text(encoding="utf-8")
    assert target.lower() not in text_.lower()
    assert text_.count(WALLET) == 2  # the request uri and the echoed response body


# ---------------------------------------------------------------------- transport
class _World:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def venue_of(self, host: str) -> str | None:
        return "binance" if "binance" in host else "hyperliquid"

    def answer(self, venue: str, method: str, path: str, params: Any, payload: Any) -> Reply:
        self.asked.append(f"{method} {path}")
        return Reply(200, {"ok": True, "venue": venue})


def _transport(tmp_path: Path, cassettes: list[Path] | None = None) -> tuple[DrillTransport, _World, ManualClock]:
    clock, world = ManualClock(1_000), _World()
    return DrillTransport(clock, world, CassetteDeck(cassettes or [])), world, clock


URL = "https://fapi.binance.com/fapi/v1/order?symbol=BTCUSDT&signature=s3cr3t"


@pytest.mark.parametrize(("kind", "status"), [("429", 429), ("418", 418), ("5xx", 503), ("error", 400),
                                              ("malformed", 200)])
def test_faults_answer_like_a_bad_day(tmp_path: Path, kind: str, status: int) -> None:
    t, world, _ = _transport(tmp_path)
    t.faults.append(Fault(kind, match="GET /fapi/v1/order", retry_after=3, code=-1021))
    r = t.session().get(URL)
    assert r.status_code == status and world.asked == []
    if kind in ("429", "418"):
        assert r.headers["Retry-After"] == "3"
    if kind == "malformed":
        with pytest.raises(ValueError):
            r.json()
    assert t.session().get(URL).json() == {"ok": True, "venue": "binance"}  # `times` defaults to one call


@pytest.mark.parametrize(("kind", "error"), [("timeout", requests.Timeout), ("reset", requests.ConnectionError)])
def test_network_faults_raise(tmp_path: Path, kind: str, error: type[Exception]) -> None:
    t, _, _ = _transport(tmp_path)
    t.faults.append(Fault(kind, match="/fapi/v1/order", times=2))
    for _ in range(2):
        with pytest.raises(error):
            t.session().get(URL)
    assert t.session().get(URL).status_code == 200


def test_windowed_fault_and_call_log_without_secrets(tmp_path: Path) -> None:
    t, _, clock = _transport(tmp_path)
    t.faults.append(Fault("5xx", match="GET /fapi/v1/order", times=None, until_ms=3_000))
    assert t.session().get(URL).status_code == 503
    clock.set(3_000)
    assert t.session().get(URL).status_code == 200
    assert [(c.ts_ms, c.path, c.served) for c in t.calls] == [(1_000, "/fapi/v1/order", "fault:5xx"),
                                                               (3_000, "/fapi/v1/order", "world")]
    assert "s3cr3t" not in repr(t.calls)


def test_crash_fault_lets_the_venue_act_then_kills(tmp_path: Path) -> None:
    t, world, _ = _transport(tmp_path)
    t.faults.append(Fault("crash", match="POST /fapi/v1/order"))
    with pytest.raises(ProcessKilled):
        t.session().post("https://fapi.binance.com/fapi/v1/order", data="symbol=BTCUSDT")
    assert world.asked == ["POST /fapi/v1/order"]


def test_lost_fault_lets_the_venue_act_then_times_out(tmp_path: Path) -> None:
    t, world, _ = _transport(tmp_path)
    t.faults.append(Fault("lost", match="POST /fapi/v1/order"))
    with pytest.raises(requests.Timeout):
        t.session().post("https://fapi.binance.com/fapi/v1/order", data="symbol=BTCUSDT")
    assert world.asked == ["POST /fapi/v1/order"] and t.calls[0].served == "fault:lost"
    assert t.session().post("https://fapi.binance.com/fapi/v1/order", data="symbol=BTCUSDT").status_code == 200


def test_schema_fault_drops_fields(tmp_path: Path) -> None:
    t, _, _ = _transport(tmp_path)
    t.faults.append(Fault("schema", match="GET /fapi/v1/order", drop=("venue",)))
    assert t.session().get(URL).json() == {"ok": True}


def test_cassette_comes_before_the_world(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    write_cassette(path, [{"method": "POST", "uri": INFO, "body": {"type": "meta"}, "response": {"universe": []}}])
    t, _world, _ = _transport(tmp_path, [path])
    s = t.session()
    assert s.post(INFO, json={"type": "meta"}).json() == {"universe": []}
    assert s.post(INFO, json={"type": "meta"}).json() == {"ok": True, "venue": "hyperliquid"}
    assert [c.served for c in t.calls] == ["cassette", "world"] and [c.op for c in t.calls] == ["meta", "meta"]


# ---------------------------------------------------------------------- storage faults
def test_storage_down_and_kill_before_commit(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (a INTEGER)"))
    faults = StorageFaults()
    faults.attach(db)
    faults.down = True
    with pytest.raises(OperationalError), db.engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    faults.down = False
    faults.kills.append(Kill("t", "before"))
    with pytest.raises(ProcessKilled), db.engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
    faults.detach(db)
    with db.engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 0  # rolled back: nothing landed
    db.dispose()


def test_scripted_chance_is_the_middle() -> None:
    rng = ScriptedChance()
    assert rng.random() == 0.5 and rng.uniform(0, 100) == 50 and 0 <= rng.randint(0, 10) <= 10


# ---------------------------------------------------------------------- coverage
def test_coverage_counts_declared_transitions(default_policy: Any) -> None:
    machine = default_policy.machines["safety"]
    t = machine.transitions[0]
    source = next(s for s in machine.states if s in t.sources) if "*" not in t.sources else next(iter(machine.states))
    outcome = Outcome("d", "r", "p", "f", entries=[{"kind": "transition", "machine": "safety", "event": t.event,
                                                    "from": source, "to": t.dest}])
    cov = coverage(default_policy, [outcome], Counter({"gap.maintenance_skip": 2}))
    hit = [row for row in cov.transitions if row[0] == "safety" and row[2] == t.event and row[3]]
    assert hit and ("safety", f"{','.join(t.sources)} -> {t.dest}", t.event) not in cov.missing_transitions
    assert dict(cov.rows)["gap.maintenance_skip"] == 2 and "gap.maintenance_skip" not in cov.missing_rows
    assert len(cov.missing_transitions) == len(cov.transitions) - len([r for r in cov.transitions if r[3]])


# ---------------------------------------------------------------------- worlds
def test_copytrade_world_keeps_the_orders_it_took_without_signing_fields(tmp_path: Path) -> None:
    from replay.worlds.copytrade import CopytradeWorld

    clock = ManualClock(1_000)
    world = CopytradeWorld(clock)
    s = DrillTransport(clock, world, CassetteDeck([])).session()
    body = "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.002&newClientOrderId=c1&timestamp=1&signature=s3cr3t"
    assert s.post("https://fapi.binance.com/fapi/v1/order", data=body).json()["status"] == "FILLED"
    assert s.post("https://fapi.binance.com/fapi/v1/order", data=body).json()["code"] == -4116  # not taken
    assert world.account.posts == [{"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.002",
                                    "newClientOrderId": "c1"}]


def test_docs_list_the_whole_drill_vocabulary() -> None:
    """docs/drills.md's vocabulary block is generated from the registry and must be current."""
    from replay.vocabulary import refresh

    docs = (ROOT / "docs" / "drills.md").read_text(encoding="utf-8")
    assert refresh(docs) == docs, "run: python -m replay.vocabulary --write docs/drills.md"


def test_recording_never_opens_the_configured_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10 §8: `hlcore record` with an absolute db_path (the operator's live database) runs on
    a database of its own, so the operator's fills are never read or marked processed."""
    from replay.record import record_cassettes

    live_db = tmp_path / "live.db"
    config = tmp_path / "settings.yaml"
    config.write_text(f"db_path: {live_db}\n", encoding="utf-8")
    seen: list[str | None] = []

    class Stop(Exception):
        pass

    def fake_start(ws: Any, mode: str, wiring: Any, *, db_url: str | None = None, **_: Any) -> Any:
        seen.append(db_url)
        raise Stop

    monkeypatch.setattr("hlcore.jobs.copytrade.service.start", fake_start)
    with pytest.raises(Stop):
        record_cassettes("x", "copytrader", 1, tmp_path / "fixtures", Path(__file__).resolve().parents[2], config)
    (url,) = seen
    assert url is not None and url.startswith("sqlite:///") and "hlcore-record-" in url
    assert str(live_db) not in url and not live_db.exists()
