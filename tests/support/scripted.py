"""A `requests` transport that answers from a script, for HTTP-layer and adapter unit tests."""

from __future__ import annotations

import json
from typing import Any

import requests
from requests.adapters import BaseAdapter


class Scripted(BaseAdapter):
    """Answers each request with the next script item: `(status, body)`, `(status, body, headers)`
    or an exception to raise. `sent` keeps every request."""

    def __init__(self, script: list[Any]):
        super().__init__()
        self.script = list(script)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        status, body, *rest = item
        response = requests.Response()
        response.status_code = status
        response._content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        response.headers.update(rest[0] if rest else {})
        response.request = request
        return response

    def close(self) -> None:
        pass
