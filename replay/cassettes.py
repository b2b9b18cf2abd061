"""vcrpy cassettes for drills and for `hlcore record`.

One scrubber serves both directions: before a request is recorded and before a live request is
matched against a cassette, signing fields, API keys and timestamps are removed, so recorded
files hold no secret and a replayed request matches whatever time it is sent at. Matching is on
method + URI + body (after scrubbing); identical requests get the recorded responses in order.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from vcr.cassette import Cassette
from vcr.matchers import body as match_body
from vcr.matchers import method as match_method
from vcr.matchers import uri as match_uri
from vcr.record_mode import RecordMode
from vcr.request import Request

from hlcore.yamlsource import read_text

# Query/form fields that are secrets or change on every send (Binance signing, §4.3).
SIGNING_FIELDS = ("signature", "timestamp", "recvWindow")
# JSON body fields that carry the send time (Hyperliquid info windows, exchange nonces).
TIME_FIELDS = ("startTime", "endTime", "nonce", "time")
SECRET_HEADERS = ("x-mbx-apikey", "authorization", "cookie", "set-cookie")
MATCH_ON = (match_method, match_uri, match_body)


def _scrub_pairs(text: str) -> str:
    return urlencode([(k, v) for k, v in parse_qsl(text, keep_blank_values=True) if k not in SIGNING_FIELDS])


def _scrub_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _scrub_json(v) for k, v in value.items() if k not in TIME_FIELDS and k != "signature"}
    if isinstance(value, list):
        return [_scrub_json(v) for v in value]
    return value


def scrub_body(body: bytes | str | None) -> bytes | None:
    if body is None or body == b"" or body == "":
        return None
    raw = body.encode() if isinstance(body, str) else body
    try:
        return json.dumps(_scrub_json(json.loads(raw)), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        return _scrub_pairs(raw.decode("utf-8", "replace")).encode()


def scrub_request(request: Request) -> Request:
    """A copy of `request` without signing fields, timestamps or secret headers."""
    parts = urlsplit(request.uri)
    uri = urlunsplit((parts.scheme, parts.netloc, parts.path, _scrub_pairs(parts.query), ""))
    headers = {k: v for k, v in request.headers.items() if k.lower() not in SECRET_HEADERS}
    return Request(request.method, uri, scrub_body(request.body), headers)


_SIGNING_PAIR = re.compile(r"[?&]?\b(?:" + "|".join(SIGNING_FIELDS) + r")=[^&\"'\s]*")


def scrub_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Signing pairs (`signature=…`, `timestamp=…`) and any known secret value, removed from text."""
    text = _SIGNING_PAIR.sub("", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def scrub_response(response: dict[str, Any], secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """A response without secret headers, echoed signing pairs or known secret values."""
    headers = {k: v for k, v in (response.get("headers") or {}).items() if k.lower() not in SECRET_HEADERS}
    body = dict(response.get("body") or {})
    content = body.get("string")
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    if isinstance(content, str):
        body["string"] = scrub_text(content, secrets)
    return {**response, "headers": headers, "body": body}


RequestKey = tuple[str, str, bytes | None]  # (method, scrubbed URI, canonical scrubbed body)


def _normalized_uri(uri: str) -> str:
    """As vcrpy's `uri` matcher compares: an empty path is "/"."""
    parts = urlsplit(uri)
    return uri if parts.path else urlunsplit((parts.scheme, parts.netloc, "/", parts.query, parts.fragment))


def request_key(method: str, url: str, body: bytes | str | None) -> RequestKey:
    """What vcrpy's method + uri + body matchers compare, after the scrubber, as one hashable key."""
    parts = urlsplit(url)
    uri = urlunsplit((parts.scheme, parts.netloc, parts.path, _scrub_pairs(parts.query), ""))
    return method, _normalized_uri(uri), scrub_body(body)


class CassetteDeck:
    """The drill's cassettes, tried in the order the drill lists them. Each is loaded once by
    vcrpy (its recorded format, its scrubber) and indexed by request key: playing is a dict
    lookup, with vcrpy's order kept (first cassette with an unplayed match, then the first
    unplayed interaction in it)."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        for p in paths:  # vcrpy parses them (its safe loader keeps !!binary and tuples): bound the file first
            read_text(p, what="cassette")
        self.cassettes = [Cassette.load(path=str(p), record_mode=RecordMode.NONE, match_on=MATCH_ON,
                                        before_record_request=scrub_request) for p in paths]
        self._index: list[dict[RequestKey, deque[tuple[int, dict[str, str], bytes]]]] = []
        for cassette in self.cassettes:
            index: dict[RequestKey, deque[tuple[int, dict[str, str], bytes]]] = {}
            for request, response in cassette.data:  # already scrubbed by vcrpy's load (before_record_request)
                key = request_key(request.method, request.uri, request.body)
                index.setdefault(key, deque()).append(_reply(response))
            self._index.append(index)

    def play(self, method: str, url: str, body: bytes | str | None,
             headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, str], bytes] | None:
        """The next unplayed recorded response for this request, or None."""
        return self.play_key(request_key(method, url, body)) if self._index else None

    def play_key(self, key: RequestKey) -> tuple[int, dict[str, str], bytes] | None:
        for index in self._index:
            queue = index.get(key)
            if queue:
                return queue.popleft()
        return None

    def unplayed(self) -> int:
        return sum(len(queue) for index in self._index for queue in index.values())


def _reply(response: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    content = response["body"]["string"]
    raw = content.encode() if isinstance(content, str) else content
    flat = {k: (v[0] if isinstance(v, list) else v) for k, v in (response.get("headers") or {}).items()}
    return int(response["status"]["code"]), flat, raw


def write_cassette(path: Path, interactions: list[dict[str, Any]]) -> None:
    """Write a vcrpy cassette (YAML, format version 1) from
    `{method, uri, body?, status?, response}` items; `response` is JSON-able or a str. For
    hand-made drill cassettes; `hlcore record` writes the same format from live traffic."""
    from vcr.serialize import serialize
    from vcr.serializers import yamlserializer

    requests_, responses = [], []
    for item in interactions:
        body = item.get("body")
        raw = None if body is None else (body if isinstance(body, str) else json.dumps(body, separators=(",", ":")))
        headers = {"Content-Type": "application/json"} if raw is not None else {}
        requests_.append(scrub_request(Request(item["method"], item["uri"], raw, headers)))
        payload = item["response"]
        text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        status = int(item.get("status", 200))
        responses.append({"status": {"code": status, "message": "OK" if status < 400 else "Error"},
                          "headers": {"Content-Type": ["application/json"]}, "body": {"string": text}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(serialize({"requests": requests_, "responses": responses}, yamlserializer), encoding="utf-8")
