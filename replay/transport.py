"""The drill transport: one `requests` adapter in front of every venue. Each request is logged
(time, venue, method, path, Hyperliquid `type`; never a query string, key or signature), then
answered by the first of: a scripted fault, the drill's cassettes, the app's venue model (the
"world", which keeps state such as Binance orders and positions). No socket is ever opened.

Faults are what live venues do on a bad day: timeout, connection reset, 429 with Retry-After,
418 (IP ban), 5xx, malformed JSON, a schema change (fields missing), a venue error code,
`crash` (the process dies while the request is in flight: the venue has acted on it, the
caller never hears back) and `lost` (the venue acts on the request, then the answer is lost:
the caller sees a `requests.Timeout`, e.g. an order accepted although the POST timed out)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from hlcore.adapters.http import Answer
from hlcore.engine.clock import Clock
from replay.cassettes import CassetteDeck, RequestKey, request_key

FAULT_KINDS = ("timeout", "reset", "429", "418", "5xx", "malformed", "schema", "error", "crash", "lost", "html",
               "empty")


# `json.dumps(body, allow_nan=False)`, as `requests` encodes a JSON body, without building an
# encoder per call (any non-default argument makes `json.dumps` build one).
_BODY_ENCODER = json.JSONEncoder(allow_nan=False)
_KEYS_MAX = 4096  # cached request keys per transport (a monitor universe is ~200 wallets)


class ProcessKilled(BaseException):
    """The scripted death of the process: nothing in hlcore catches a BaseException."""


@dataclass
class Call:
    ts_ms: int
    venue: str
    method: str
    path: str
    op: str | None  # Hyperliquid info `type`
    user: str | None  # Hyperliquid `user` (a public wallet address)
    served: str  # world | cassette | fault:<kind>


@dataclass
class Fault:
    """`kind` on requests matching `match` ("METHOD /path" or "/path"), `op` and `users`: for the
    next `times` calls, or every call until `until_ms`."""

    kind: str
    match: str | None = None
    op: str | None = None
    users: frozenset[str] = frozenset()  # lowercase Hyperliquid `user` addresses; empty: any
    times: int | None = 1
    until_ms: int | None = None
    status: int | None = None
    retry_after: int | None = None
    code: int | None = None
    msg: str | None = None
    drop: tuple[str, ...] = ()
    venue: str | None = None
    takes_ms: int = 0  # scripted-clock time the call takes before it fails (or, for latency, is answered)

    def matches(self, call: Call, now_ms: int) -> bool:
        if self.until_ms is not None and now_ms >= self.until_ms:
            return False
        if self.times is not None and self.times <= 0:
            return False
        if self.venue and self.venue != call.venue:
            return False
        if self.match and self.match not in (f"{call.method} {call.path}", call.path):
            return False
        if self.op and self.op != call.op:
            return False
        return not (self.users and (call.user or "").lower() not in self.users)


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-able; ignored when raw is set
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


class World(Protocol):
    """A venue model: state the timeline can change, answering what cassettes do not."""

    def venue_of(self, host: str) -> str | None: ...

    def answer(self, venue: str, method: str, path: str, params: Mapping[str, str], payload: Any) -> Reply: ...


def _drop(body: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(body, dict):
        return {k: _drop(v, keys) for k, v in body.items() if k not in keys}
    if isinstance(body, list):
        return [_drop(v, keys) for v in body]
    return body


class DrillTransport(BaseAdapter):
    def __init__(self, clock: Clock, world: World, deck: CassetteDeck,
                 on_call: Callable[[], None] | None = None):
        super().__init__()
        self.clock = clock
        self.world = world
        self.deck = deck
        self.faults: list[Fault] = []
        self.delays: list[Fault] = []  # latency: answered calls matching one take its `takes_ms`
        self.calls: list[Call] = []
        self.on_call = on_call  # the runner flushes audit rows before each call (single-threaded apps)
        self.lock = threading.RLock()
        self._splits: dict[str, SplitResult] = {}  # each venue URL split once
        # (method, URL, body) -> cassette key: a monitor cycle sends the same 200 bodies every
        # minute, and the key (scrubbed URI, canonical scrubbed body) is a pure function of them.
        self._keys: dict[tuple[str, str, bytes | None], RequestKey] = {}

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # no proxy/netrc lookups: nothing leaves the process anyway
        s.mount("https://", self)
        s.mount("http://", self)
        return s

    def close(self) -> None:
        pass

    def drill_session(self) -> DrillSession:
        """What the app's HTTP layer gets in a drill (see `DrillSession`)."""
        return DrillSession(self)

    # ------------------------------------------------------------------ one request
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """A prepared request (a plain `requests.Session` mounted on this adapter: tests, tools)."""
        url = urlsplit(request.url or "")
        method = request.method or "GET"
        raw_body = request.body.encode() if isinstance(request.body, str) else request.body
        payload: Any = None
        params = dict(parse_qsl(url.query))
        if raw_body:
            try:
                payload = json.loads(raw_body)
            except ValueError:
                params.update(dict(parse_qsl(raw_body.decode("utf-8", "replace"))))
        reply = self._serve(method, url.netloc, url.path, params, payload,
                            lambda: request_key(method, request.url or "", raw_body))
        return self._response(request, reply)

    def exchange(self, method: str, url: str, params: Mapping[str, Any] | None, json_body: Any,
                 headers: Mapping[str, str] | None) -> Answer:
        """What `VenueHttp` sends in a drill: answered from its parts, no `requests` preparation.
        The URL, body, params and payload the world and cassettes see are those `requests` would
        have sent (params urlencoded into the query; the body JSON-encoded)."""
        split = self._splits.get(url)
        if split is None:
            split = self._splits[url] = urlsplit(url)
        query = _encode_params(params) if params else ""
        if split.query:
            query = f"{split.query}&{query}" if query else split.query
        raw_body = None if json_body is None else _BODY_ENCODER.encode(json_body).encode()
        payload: Any = None if raw_body is None else json.loads(raw_body)
        world_params = dict(parse_qsl(query)) if query else {}
        full = urlunsplit((split.scheme, split.netloc, split.path, query, ""))
        reply = self._serve(method, split.netloc, split.path, world_params, payload,
                            lambda: self._key(method, full, raw_body))
        answer_headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        answer_headers.update({"Content-Type": "application/json", **reply.headers})
        return Answer(reply.status, answer_headers, _content(reply))

    def _key(self, method: str, url: str, raw_body: bytes | None) -> RequestKey:
        """`request_key`, computed once per distinct request (bounded: cleared when full, since
        bodies carrying a nonce or a time never repeat)."""
        parts = (method, url, raw_body)
        key = self._keys.get(parts)
        if key is None:
            if len(self._keys) >= _KEYS_MAX:
                self._keys.clear()
            key = self._keys[parts] = request_key(method, url, raw_body)
        return key

    def _serve(self, method: str, netloc: str, path: str, params: dict[str, str], payload: Any,
               key: Callable[[], RequestKey]) -> Reply:
        """Log the call, then answer it: a scripted fault, the cassettes, or the world."""
        venue = self.world.venue_of(netloc) or netloc
        op = payload.get("type") if isinstance(payload, dict) else None
        user = payload.get("user") if isinstance(payload, dict) else None
        if self.on_call is not None:
            self.on_call()
        with self.lock:
            call = Call(self.clock.now_ms(), venue, method, path, op, user, "world")
            self.calls.append(call)
            fault = next((f for f in self.faults if f.matches(call, call.ts_ms)), None)
            if fault is not None and fault.times is not None:
                fault.times -= 1
            if fault is not None:
                call.served = f"fault:{fault.kind}"
            delay = fault or next((d for d in self.delays if d.matches(call, call.ts_ms)), None)
        if delay is not None and delay.takes_ms:
            self.clock.advance(delay.takes_ms)  # type: ignore[attr-defined]  # the call takes this long
        if fault is not None and fault.kind not in ("schema", "crash", "lost"):
            return self._fault(fault)
        with self.lock:
            played = self.deck.play_key(key()) if self.deck.cassettes else None
            if played is not None:
                if fault is None:
                    call.served = "cassette"
                reply = Reply(played[0], headers=played[1], raw=played[2])
            else:
                reply = self.world.answer(venue, method, path, params, payload)
        if fault is not None and fault.kind == "crash":
            raise ProcessKilled(f"killed during {method} {path}")
        if fault is not None and fault.kind == "lost":
            raise requests.Timeout(f"answer to {method} {path} lost after the venue acted on it")
        if fault is not None and fault.kind == "schema":
            body = json.loads(reply.raw) if reply.raw is not None else reply.body
            reply = Reply(reply.status, _drop(body, fault.drop), reply.headers)
        return reply

    @staticmethod
    def _fault(fault: Fault) -> Reply:
        kind = fault.kind
        if kind == "timeout":
            raise requests.Timeout("scripted timeout")
        if kind == "reset":
            raise requests.ConnectionError("scripted connection reset by peer")
        if kind in ("429", "418"):
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return Reply(int(kind), {"code": -1003, "msg": fault.msg or "Too many requests"}, headers)
        if kind == "5xx":
            return Reply(fault.status or 503, {"code": -1001, "msg": fault.msg or "Service unavailable"})
        if kind == "malformed":
            return Reply(200, raw=b'{"truncated": [1, 2')
        if kind == "html":  # a gateway's error page, served as 200 (status or fault.status)
            return Reply(fault.status or 200, raw=b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                         headers={"Content-Type": "text/html"})
        if kind == "empty":  # a 200 with no body at all
            return Reply(fault.status or 200, raw=b"")
        # error: a venue error code in the venue's error body
        return Reply(fault.status or 400, {"code": fault.code, "msg": fault.msg or ""})

    @staticmethod
    def _response(request: requests.PreparedRequest, reply: Reply) -> requests.Response:
        response = requests.Response()
        response.status_code = reply.status
        response._content = _content(reply)
        response.headers.update({"Content-Type": "application/json", **reply.headers})
        response.request = request
        response.url = request.url or ""
        response.reason = "OK" if reply.status < 400 else "Error"
        return response


def _encode_params(params: Mapping[str, Any]) -> str:
    """Query parameters as `requests` encodes them (None values left out, sequences repeated)."""
    pairs: list[tuple[str, Any]] = []
    for key, values in params.items():
        for value in (values if isinstance(values, list | tuple) else [values]):
            if value is not None:
                pairs.append((key, value))
    return urlencode(pairs)


def _content(reply: Reply) -> bytes:
    return reply.raw if reply.raw is not None else json.dumps(reply.body).encode()


class DrillSession:
    """What `VenueHttp` gets in a drill: a `DirectTransport` (`exchange`: the request's parts go
    straight to the drill transport, no `requests.Request.prepare`, no cookie jar) that also has
    the `requests.Session` members (`headers`, `merge_environment_settings`, `send`) for callers
    that prepare requests themselves. A real session would add nothing a drill can observe here
    (no cookies, no redirects, no proxies) and costs most of a simulated venue call."""

    def __init__(self, adapter: DrillTransport):
        self.adapter = adapter
        self.headers = requests.utils.default_headers()

    @staticmethod
    def merge_environment_settings(url: str, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        return {"proxies": {}, "stream": False, "verify": True, "cert": None}

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        kwargs.pop("allow_redirects", None)
        return self.adapter.send(request, **kwargs)

    def exchange(self, method: str, url: str, params: Mapping[str, Any] | None, json_body: Any,
                 headers: Mapping[str, str] | None) -> Answer:
        """`VenueHttp`'s direct seam (`hlcore.adapters.http.DirectTransport`): no request preparation."""
        return self.adapter.exchange(method, url, params, json_body, headers)

    def close(self) -> None:
        pass
