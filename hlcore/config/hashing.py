"""Canonical JSON and the config hash: what makes "the same config" checkable across runs.

`config_hash` is recorded at startup and compared by operators (copytrader §7), so it must not
depend on key order, float spelling or credentials: env and secrets are excluded (hlcore choice).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from hlcore.config.settings import Settings

_SECRET_WORDS = ("secret", "api_key", "password", "token")
_SECRET_QUERY = re.compile(r"(?i)((?:[^&=]*(?:secret|api_key|password|token)[^&=]*)=)[^&]*")
_EXACT_INT_LIMIT = 2**53  # floats beyond this are not exact integers in every JSON reader


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, integral floats written as ints (1.0 and 1 hash alike).

    Only JSON types are accepted (tuples count as lists); anything else, a non-string key or a
    NaN/infinity raises, so a hash never silently depends on a repr.
    """
    return json.dumps(_normalise(obj, "$"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _normalise(obj: Any, where: str) -> Any:
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"{where}: {obj!r} has no canonical JSON form")
        if obj.is_integer() and abs(obj) < _EXACT_INT_LIMIT:
            return int(obj)  # also folds -0.0 into 0
        return obj
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is {type(key).__name__}, JSON keys must be strings")
            out[key] = _normalise(value, f"{where}.{key}")
        return out
    if isinstance(obj, list | tuple):
        return [_normalise(item, f"{where}[{i}]") for i, item in enumerate(obj)]
    raise TypeError(f"{where}: {type(obj).__name__} is not a JSON type")


def sha256_hex(obj: Any) -> str:
    """SHA-256 (hex) of `canonical_json(obj)`."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def redact_url(url: str) -> str:
    """`postgresql://user:pass@host/db` -> `postgresql://user:***@host/db`; secret query values too.

    Strings that are not URLs with credentials come back unchanged, so it is safe on any value.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = _SECRET_QUERY.sub(r"\1***", parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _scrub(obj: Any) -> Any:
    """Drop secret-named keys and redact URL credentials, at any depth (defensive: settings hold none)."""
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items() if not any(w in str(k).lower() for w in _SECRET_WORDS)}
    if isinstance(obj, list | tuple):
        return [_scrub(v) for v in obj]
    if isinstance(obj, str):
        return redact_url(obj)
    return obj


def hashable_settings(settings: Settings) -> dict[str, Any]:
    """The settings exactly as hashed: what `hlcore hash` may print beside the hash. (Read from
    `data`, not `to_dict`: a hash is not a use of every setting, see hlcore.consulted.)"""
    return _scrub(settings.data)


def config_hash(settings: Settings, policy_canonical: object) -> str:
    """SHA-256 of `{"settings": scrubbed settings, "policy": the policy's canonical form}`.

    A value with no canonical form (NaN, a non-string key) is bad input, reported, not a traceback;
    the YAML reader and the settings schema already refuse both, this is the last line."""
    try:
        return sha256_hex({"settings": hashable_settings(settings), "policy": policy_canonical})
    except (ValueError, TypeError) as exc:
        from hlcore.errors import BadInput, Problem

        raise BadInput(Problem(settings.file or "settings", "", f"cannot hash the configuration: {exc}")) from None
