"""The only module that talks HTTP: one `requests.Session` per venue, timeouts, a weight-based
rate limiter, a shared cooldown after 429/418, and retries for idempotent reads.

Live and replay differ only in what sits under `VenueHttp` (a `requests.Session` to the network,
or a `DirectTransport`: the drill's cassettes and venue model, answered from the request's parts
without `requests` preparing it) and in the clock/sleep/rng injected here. Failures come back
as `VenueError` values, never as exceptions: the caller turns them into facts.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, cast, runtime_checkable
from urllib.parse import urlencode

import requests
from requests.compat import json as complexjson
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity, to_native_string
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt

from hlcore.engine.clock import Clock
from hlcore.redact import scrub

# Transport-level outcome classes (copytrader §4.5). Venue-specific codes are mapped by each adapter.
RATE_LIMITED = "RATE_LIMITED"
TIMEOUT = "TIMEOUT"
NETWORK_ERROR = "NETWORK_ERROR"
EXCHANGE_ERROR = "EXCHANGE_ERROR"
MALFORMED_RESPONSE = "MALFORMED_RESPONSE"
API_ERROR = "API_ERROR"
# The venue answered readably, but with something that cannot be true (a negative or oversized
# fill, a non-positive price, another symbol's order): a typed fault, never stored as a fact.
IMPOSSIBLE_ANSWER = "IMPOSSIBLE_ANSWER"
RETRYABLE = frozenset({RATE_LIMITED, TIMEOUT, NETWORK_ERROR, EXCHANGE_ERROR, MALFORMED_RESPONSE})


@dataclass(frozen=True)
class VenueError:
    """A failed request, as a value. `venue_code` is the venue's own error number (Binance -2019)."""

    code: str
    message: str
    status: int | None = None
    venue_code: int | None = None
    retry_after_ms: int | None = None
    sent: bool = True  # False when the request never left (cooldown, local limiter)

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    sent_ms: int = 0
    received_ms: int = 0


@dataclass(frozen=True)
class Answer:
    """A venue's raw answer from a `DirectTransport`: the parts of `requests.Response` used here."""

    status_code: int
    headers: CaseInsensitiveDict[str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


@runtime_checkable
class DirectTransport(Protocol):
    """What answers a request from its parts (a drill's transport), instead of a session sending
    a prepared request; it raises `requests.Timeout`/`requests.RequestException` as a session does."""

    def exchange(self, method: str, url: str, params: Mapping[str, Any] | None, json_body: Any,
                 headers: Mapping[str, str] | None) -> Answer: ...


@dataclass(frozen=True)
class RetryPolicy:
    """`min(base · 2^(n−1), max) + uniform(0, jitter)` ms between attempts (copytrader §4.2)."""

    max_attempts: int = 5
    base_delay_ms: int = 250
    max_delay_ms: int = 5000
    jitter_ms: int = 150

    def delay_ms(self, attempt: int, rng: random.Random) -> float:
        return min(self.base_delay_ms * 2 ** (attempt - 1), self.max_delay_ms) + rng.uniform(0, self.jitter_ms)


class WeightLimiter:
    """Weight per rolling window (Hyperliquid: 1200/min/IP; a local limiter: N requests per S
    seconds with weight 1). `wait_ms(w)` says how long until `w` more fits; `spend(w)` records it.
    Time comes from the injected clock."""

    def __init__(self, clock: Clock, budget_per_min: int, window_ms: int = 60_000):
        self.clock = clock
        self.budget = budget_per_min
        self.WINDOW_MS = window_ms
        self._spent: deque[tuple[int, int]] = deque()
        self._total = 0

    def _expire(self, now: int) -> None:
        while self._spent and self._spent[0][0] <= now - self.WINDOW_MS:
            self._total -= self._spent.popleft()[1]

    def wait_ms(self, weight: int) -> int:
        now = self.clock.now_ms()
        self._expire(now)
        if self._total + weight <= self.budget or not self._spent:
            return 0
        excess = self._total + weight - self.budget
        freed = 0
        for ts, w in self._spent:
            freed += w
            if freed >= excess:
                return ts + self.WINDOW_MS - now
        return self.WINDOW_MS

    def spend(self, weight: int) -> None:
        now = self.clock.now_ms()
        self._expire(now)
        self._spent.append((now, weight))
        self._total += weight

    @property
    def used(self) -> int:
        self._expire(self.clock.now_ms())
        return self._total


class VenueHttp:
    """One venue's HTTP client. Never logs or returns request headers or query strings, so keys
    and signatures cannot leak through it."""

    def __init__(self, name: str, base_url: str, *, clock: Clock, sleep: Callable[[float], None],
                 rng: random.Random, timeout_ms: int, retry: RetryPolicy, limiter: WeightLimiter | None = None,
                 default_cooldown_ms: int = 5000, max_wait_ms: int = 60_000,
                 session: requests.Session | DirectTransport | None = None,
                 request_limiter: WeightLimiter | None = None,
                 used_weight_limit: int | None = None):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.timeout_s = timeout_ms / 1000
        self.retry = retry
        self.limiter = limiter
        self.request_limiter = request_limiter
        self.used_weight_limit = used_weight_limit
        self.deadline_ms: int | None = None  # a caller's cycle deadline: never wait for budget past it
        self.default_cooldown_ms = default_cooldown_ms
        self.max_wait_ms = max_wait_ms
        self.session = session or requests.Session()
        self._direct = self.session if isinstance(self.session, DirectTransport) else None
        self._retrying: dict[int, Retrying] = {}  # per attempt count; tenacity keeps call state per thread
        self._env_settings: dict[str, dict[str, Any]] = {}  # proxies/verify/cert per origin (read once)
        self._urls: dict[str, str] = {}  # a URL as `requests` normalises it (prepared once per URL)
        self.cooldown_until_ms = 0
        self.used_weight_header: int | None = None
        self.last_success_ms: int | None = None
        self.last_error_ms: int | None = None
        self.requests_sent = 0
        self.redact: tuple[str, ...] = ()  # credential values scrubbed from any venue text (set by the client)

    # ------------------------------------------------------------------ public
    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json_body: Any = None, headers: Mapping[str, str] | None = None, weight: int = 1,
                idempotent: bool = True, url: str | None = None) -> HttpResult | VenueError:
        """Send one request (retrying idempotent reads); return the parsed JSON or a VenueError."""
        attempts = self.retry.max_attempts if idempotent else 1
        full = url or f"{self.base_url}{path}"
        if attempts <= 1:  # nothing to retry: no retry object either
            return self._once(method, full, params, json_body, headers, weight)
        retrying = self._retrying.get(attempts)
        if retrying is None:
            retrying = self._retrying[attempts] = Retrying(
                stop=stop_after_attempt(attempts),
                wait=self._wait,
                sleep=self._sleep,
                retry=retry_if_result(lambda r: isinstance(r, VenueError) and r.retryable and r.sent),
                retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
                reraise=False,
            )
        result: HttpResult | VenueError = retrying(self._once, method, full, params, json_body, headers, weight)
        return result

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome.result() if state.outcome else None
        after = outcome.retry_after_ms if isinstance(outcome, VenueError) and outcome.retry_after_ms else 0
        return max(self.retry.delay_ms(state.attempt_number, self.rng), after) / 1000

    def _sleep(self, seconds: float) -> None:
        self.sleep(seconds)  # late-bound: a test may swap `sleep` after construction

    def _send(self, method: str, url: str, params: Mapping[str, Any] | None, json_body: Any,
              headers: Mapping[str, str] | None) -> requests.Response | Answer:
        """`session.request` without its per-call merging (cookies, hooks, environment): prepare
        the request alone, with the session's headers, and send it with the environment's proxy
        and TLS settings read once per origin. Neither venue uses cookies or redirects. A
        `DirectTransport` gets the parts as they are."""
        if self._direct is not None:
            return self._direct.exchange(method, url, params, json_body, headers)
        session = cast(requests.Session, self.session)
        merged = dict(session.headers)
        merged.update(headers or {})
        prepared = self.prepare(method, url, params, json_body, merged)
        origin = url.split("/", 3)[:3]
        key = "/".join(origin)
        env = self._env_settings.get(key)
        if env is None:
            env = self._env_settings[key] = session.merge_environment_settings(key, {}, None, None, None)
        # The session's adapter directly: `Session.send` adds cookie extraction, hooks and a redirect
        # walk per call, none of which either venue uses (issue 12: ~0.1 ms a request on the order path).
        response = session.get_adapter(prepared.url or url).send(prepared, timeout=self.timeout_s, **env)
        _ = response.content  # read in full now, as `Session.send` does: the connection goes back to the pool
        return response

    def prepare(self, method: str, url: str, params: Mapping[str, Any] | None, json_body: Any,
                headers: Mapping[str, str]) -> requests.PreparedRequest:
        """The request `requests.Request(...).prepare()` builds, byte for byte, without its per-call
        URL parsing, cookie jar and protocol checks when the request is plain: scalar query values, a
        URL without query or credentials (the URL itself is normalised by `requests` once). Anything
        else is prepared by `requests`. `tests/unit/test_http.py` compares the two."""
        plain = "?" not in url and "#" not in url and "@" not in url and all(
            isinstance(v, (str, int, float, Decimal)) and not isinstance(v, bool) for v in (params or {}).values())
        if not plain:
            return requests.Request(method, url, params=params, json=json_body, headers=headers).prepare()
        base = self._urls.get(url)
        if base is None:
            base = self._urls[url] = requests.Request("GET", url).prepare().url or url
        p = requests.PreparedRequest()
        p.method = method.upper()
        p.url = f"{base}?{urlencode([(k, v if isinstance(v, str) else str(v)) for k, v in params.items()])}" \
            if params else base
        p.headers = CaseInsensitiveDict()
        for name, value in headers.items():
            check_header_validity((name, value))
            p.headers[to_native_string(name)] = value
        p._cookies = None
        p.body = None
        if json_body is not None:
            body = complexjson.dumps(json_body, allow_nan=False)
            p.body = body.encode("utf-8") if isinstance(body, str) else body
            p.headers["Content-Length"] = str(len(p.body))
            if "content-type" not in p.headers:
                p.headers["Content-Type"] = "application/json"
        elif p.method not in ("GET", "HEAD") and p.headers.get("Content-Length") is None:
            p.headers["Content-Length"] = "0"
        p.hooks = default_hooks()
        return p

    # ------------------------------------------------------------------ one attempt
    def _once(self, method: str, url: str, params: Mapping[str, Any] | None, json_body: Any,
              headers: Mapping[str, str] | None, weight: int) -> HttpResult | VenueError:
        now = self.clock.now_ms()
        if now < self.cooldown_until_ms:
            return VenueError(RATE_LIMITED, f"{self.name} cooldown until {self.cooldown_until_ms}",
                              retry_after_ms=self.cooldown_until_ms - now, sent=False)
        limits = [(lim, w) for lim, w in ((self.limiter, weight), (self.request_limiter, 1)) if lim is not None]
        wait_ms = max((lim.wait_ms(w) for lim, w in limits), default=0)
        late = self.deadline_ms is not None and now + wait_ms >= self.deadline_ms
        if wait_ms > self.max_wait_ms or late:  # not sendable in time: known not sent
            return VenueError(RATE_LIMITED, f"{self.name} local rate limit", sent=False, retry_after_ms=wait_ms)
        if wait_ms > 0:
            self.sleep(wait_ms / 1000)
        for lim, w in limits:
            lim.spend(w)
        sent = self.clock.now_ms()
        self.requests_sent += 1
        try:
            response = self._send(method, url, params, json_body, headers)
        except requests.Timeout:
            return self._fail(VenueError(TIMEOUT, f"{self.name} request timed out"))
        except requests.RequestException as exc:
            return self._fail(VenueError(NETWORK_ERROR, f"{self.name} {type(exc).__name__}"))
        received = self.clock.now_ms()
        used = response.headers.get("X-MBX-USED-WEIGHT-1M")
        if used is not None and used.isdigit():
            self.used_weight_header = int(used)
            if self.used_weight_limit is not None and self.used_weight_header >= self.used_weight_limit:
                # the venue says this minute's weight is spent: nothing more until the next minute
                self.cooldown_until_ms = max(self.cooldown_until_ms, received - received % 60_000 + 60_000)
        status = response.status_code
        if status in (429, 418):
            retry_after = _retry_after_ms(response.headers.get("Retry-After")) or self.default_cooldown_ms
            self.cooldown_until_ms = received + retry_after
            return self._fail(VenueError(RATE_LIMITED, f"{self.name} HTTP {status}", status=status,
                                         retry_after_ms=retry_after, venue_code=_venue_code(response)),
                              transport_error=False)
        if status >= 500:
            return self._fail(VenueError(EXCHANGE_ERROR, f"{self.name} HTTP {status}", status=status,
                                         venue_code=_venue_code(response)))
        try:
            body = response.json()
        except (ValueError, json.JSONDecodeError):
            return self._fail(VenueError(MALFORMED_RESPONSE, f"{self.name} HTTP {status}: body is not JSON",
                                         status=status), transport_error=False)
        self.last_success_ms = received
        if status >= 400:
            code = body.get("code") if isinstance(body, dict) else None
            message = body.get("msg", "") if isinstance(body, dict) else str(body)[:200]
            # a venue or gateway may echo the signed request line: scrub before it can be stored
            return VenueError(API_ERROR, scrub(str(message), *self.redact) or "", status=status,
                              venue_code=code if isinstance(code, int) else None)
        return HttpResult(status, body, dict(response.headers), sent, received)

    def _fail(self, error: VenueError, transport_error: bool = True) -> VenueError:
        if transport_error:
            self.last_error_ms = self.clock.now_ms()
        else:
            self.last_success_ms = self.clock.now_ms()  # the venue answered, if unhappily
        return error


def _retry_after_ms(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value) * 1000)
    except ValueError:
        return None


def _venue_code(response: requests.Response | Answer) -> int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None
