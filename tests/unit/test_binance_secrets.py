"""Copytrader §4.3: key, secret and signature never reach cassettes, return values, errors or reprs."""

from __future__ import annotations

import importlib.util
import os
import pickle
import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from hlcore.adapters.binance import BinanceClient
from hlcore.adapters.http import HttpResult, VenueError

ROOT = Path(__file__).resolve().parents[2]
CASSETTE_ROOT = ROOT / "tests" / "cassettes"
CASSETTE_SUFFIXES = {".yaml", ".yml", ".json"}

FAKE_KEY = "LEAKCHECK-api-key-Zq7Xw9Vb2Nm4Lk6Jh8Gf1Ds3Ap5Oi0Uy-0123456789abcdef0123456789"
FAKE_SECRET = "LEAKCHECK-api-secret-Qe4Rt6Yu8Io0Pa2Sd4Fg6Hj8Kl0Zx2Cv-fedcba9876543210fedcba98"


def _kit() -> Any:
    name = "binance_cassette_kit"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, CASSETTE_ROOT / "binance" / "generate.py")
        assert spec and spec.loader
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


kit = _kit()


def cassette_files() -> list[Path]:
    return sorted(p for p in CASSETTE_ROOT.rglob("*") if p.is_file() and p.suffix in CASSETTE_SUFFIXES)


def test_cassettes_hold_no_key_secret_or_signature() -> None:
    files = cassette_files()
    assert {p.stem for p in files if p.parent.name == "binance"} >= set(kit.SCENARIOS)
    forbidden = [kit.GENERATOR_API_KEY, kit.GENERATOR_API_SECRET, FAKE_KEY, FAKE_SECRET]
    forbidden += [v for v in (os.environ.get("BINANCE_API_KEY"), os.environ.get("BINANCE_API_SECRET")) if v]
    leaks = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        lowered = text.lower()
        leaks += [f"{path}: a credential" for value in forbidden if value in text]
        leaks += [f"{path}: {field}" for field in ("signature=", "x-mbx-apikey") if field in lowered]
        if path.parent.name == "binance":
            # Binance keys are 64 alphanumerics and HMAC-SHA256 hex is 64 hex digits: no such token may appear.
            leaks += [f"{path}: 64-char token" for _ in re.finditer(r"(?<![A-Za-z0-9])[A-Za-z0-9]{64}(?![A-Za-z0-9])",
                                                                      text)]
            leaks += [f"{path}: {field}" for field in ("timestamp=", "recvwindow=") if field in lowered]
    assert leaks == []


def _fake_client(**kwargs: Any) -> tuple[BinanceClient, Any, list[str]]:
    client, clock = kit.build_client(api_key=FAKE_KEY, api_secret=FAKE_SECRET, **kwargs)
    signatures: list[str] = []
    original = client.http.request

    def request(method: str, path: str, **kw: Any) -> HttpResult | VenueError:
        if kw.get("params") and "signature" in kw["params"]:
            signatures.append(kw["params"]["signature"])
        return original(method, path, **kw)

    client.http.request = request  # type: ignore[method-assign]
    return client, clock, signatures


def _assert_hidden(texts: list[str], signatures: list[str]) -> None:
    for text in texts:
        assert FAKE_KEY not in text and FAKE_SECRET not in text
        assert "LEAKCHECK" not in text
        for signature in signatures:
            assert signature not in text


def test_client_repr_hides_credentials() -> None:
    client, _, _ = _fake_client()
    _assert_hidden([repr(client), str(client), repr(vars(client).get("_credentials"))], [])
    assert "<redacted>" in repr(client)
    with pytest.raises(TypeError):
        pickle.dumps(client)


@pytest.mark.parametrize("name", sorted(kit.SCENARIOS))
def test_no_answer_of_any_scenario_shows_a_credential(name: str) -> None:
    """Replays every cassette with different credentials (signing fields are not matched on)."""
    client, clock, signatures = _fake_client()
    _, run = kit.SCENARIOS[name]
    with kit.make_vcr().use_cassette(f"{name}.yaml"):
        results = run(client, clock)
    texts = [repr(results), str(results), repr(client)]
    texts += [str(r) for r in (results if isinstance(results, list) else [results])]
    _assert_hidden(texts, signatures)


class Echoing(BaseAdapter):
    """A transport failure whose text quotes the full request URL, signature and all."""

    def __init__(self, exc: type[requests.RequestException]):
        super().__init__()
        self.exc = exc

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        raise self.exc(f"failed {request.url} headers={dict(request.headers)}")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("exc", [requests.ConnectionError, requests.Timeout, requests.TooManyRedirects])
def test_transport_errors_never_echo_the_request(exc: type[requests.RequestException]) -> None:
    client, _, signatures = _fake_client(attempts=1)
    client.http.session.mount("https://", Echoing(exc))
    outcome = client.submit_market_order("BTCUSDT", "BUY", Decimal("0.002"), False, kit.CID)
    query = client.query_order("BTCUSDT", kit.CID)
    snapshot = client.position_risk()
    assert signatures  # something was signed and sent
    _assert_hidden([repr(outcome), outcome.message or "", repr(query), repr(snapshot)], signatures)


def test_caller_errors_never_show_credentials() -> None:
    client, _, _ = _fake_client()
    with pytest.raises(ValueError) as info:
        client.submit_market_order("BTCUSDT", "HOLD", Decimal("1"), False, kit.CID)
    _assert_hidden([str(info.value), repr(info.value)], [])
    with pytest.raises(ValueError) as missing:
        BinanceClient(client.http, api_key=FAKE_KEY, api_secret="", clock=client.clock, recv_window_ms=5000)
    _assert_hidden([str(missing.value)], [])
