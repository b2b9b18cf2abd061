"""One scrubber for every text that leaves the process (issue 10 §8): stored error texts, log
lines, metrics. A venue or gateway may echo the signed request line back in its error body, so
what the adapters never log themselves can still arrive inside an answer; this is the net."""

from __future__ import annotations

import re

REDACTED = "<redacted>"
# `signature=…`, `apiKey=…`, `secret: …`, `X-MBX-APIKEY: …` in query strings, JSON or header dumps.
_NAMED = re.compile(r"(signature|api[_-]?key|api[_-]?secret|secret|X-MBX-APIKEY)(\"?\s*[=:]\s*\"?)[^\s&\"',}]*",
                    re.IGNORECASE)
# A bare HMAC-SHA256 hex digest (64 hex digits not part of a 0x… hash or a longer run).
_DIGEST = re.compile(r"(?<![0-9a-zA-Z])[0-9a-fA-F]{64}(?![0-9a-zA-Z])")


def scrub(text: str | None, *known: str) -> str | None:
    """`text` with credential-looking values (and each of `known`, e.g. the API key) replaced."""
    if text is None:
        return None
    for value in known:
        if value:
            text = text.replace(value, REDACTED)
    text = _NAMED.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _DIGEST.sub(REDACTED, text)
