"""`PUT /api/locations/driver-location`, answered in front of Django in the common case.

Drivers report every few seconds, so a city sends thousands of these a second. Django's
request cycle alone (handler, URL resolution, request signals) caps even an empty async view
at about 1,950 requests/s on this project's 2-core machine, under 5 % of what the same server
does with a bare ASGI app (BENCHMARKS.md). So this small ASGI layer answers the common case
itself, with one Redis round trip and no database:

    a driver token remembered in Redis (users/token_cache.py), a JSON body {"lat", "lng"}
    that validates, and a driver the locations worker tracks (online): one Lua script checks
    the token and the tracking, counts the request in the driver's rate-limit window, and
    PUBLISHes the position.

Everything else goes on to Django untouched (the body is replayed): a token not remembered,
a driver not tracked (the view decides between 409 and 202 from the database), a body that
does not validate, another method, session authentication, Redis unreachable. The DRF view
(locations/apis.py) is the reference: this layer only ever answers what the view would
(ridehail/tests check both paths give the same status, body and headers).
"""

import json
import math
import uuid
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

import redis
from csp.utils import build_policy
from django.conf import settings
from django.utils import timezone

from locations.events import DRIVER_LOCATION, LATITUDE, LONGITUDE
from locations.positions import TRACKED_DRIVERS
from ridehail.events import metrics, wire
from ridehail.events.connection import async_shared_redis
from ridehail.throttling import DRIVER_LOCATION as THROTTLE_SCOPE
from ridehail.throttling import SLIDING_WINDOW_LUA, rate_of, retry_after, window_key
from users.token_cache import token_cache_key

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

PATHS = {"/api/locations/driver-location", "/api/locations/driver-location/"}
MAX_BODY = 1024  # a position is ~40 bytes; anything larger is the view's to refuse
PLACEHOLDER = "00000000-0000-0000-0000-000000000000"
PASS, PUBLISHED, THROTTLED = 0, 1, 2

# KEYS: the token's entry, the tracked drivers, the published-events counter (counted in the
# same script: no round trip of its own). ARGV: window (ms), limit, a unique member,
# the payload before and after the driver id, the channel, the throttle key's prefix.
# Returns {PASS} (let the view answer), {THROTTLED, wait ms} or {PUBLISHED, driver id}.
_REPORT = (
    SLIDING_WINDOW_LUA
    + """
local driver = redis.call('GET', KEYS[1])
if not driver or redis.call('SISMEMBER', KEYS[2], driver) == 0 then
  return {0}
end
local wait = sliding_window(ARGV[7] .. driver, tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
if wait > 0 then
  return {2, wait}
end
redis.call('PUBLISH', ARGV[6], ARGV[4] .. driver .. ARGV[5])
redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
return {1, driver}
"""
)

# What Django's middleware puts on every answer of the view (security headers, DRF's Allow),
# so that the two paths cannot be told apart; checked by the tests.
COMMON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"allow", b"PUT, OPTIONS"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class PositionFastPath:
    """ASGI wrapper: serves what it can of the position endpoint, hands the rest to `app`."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _candidate(scope):
            return await self.app(scope, receive, send)
        body, complete = await _read_body(receive)
        replay = _replaying(body, complete, receive)
        token = _token(scope)
        position = _position(body) if complete and token else None
        if position is None:
            return await self.app(scope, replay, send)
        try:
            result = await self._report(token, *position)
        except (redis.RedisError, OSError):
            return await self.app(scope, replay, send)  # the view says 503 in its own words
        if result[0] == PUBLISHED:
            return await _respond(send, 202, result[2], [])
        if result[0] == THROTTLED:
            wait = retry_after(result[1] / 1000)
            plural = "" if wait == 1 else "s"
            detail = f"Request was throttled. Expected available in {wait} second{plural}."
            return await _respond(
                send, 429, json.dumps({"detail": detail}).encode(), [(b"retry-after", str(wait).encode())]
            )
        return await self.app(scope, replay, send)

    async def _report(self, token: str, lat: float, lng: float) -> tuple[int, int, bytes]:
        client = async_shared_redis()
        event = {"driverId": PLACEHOLDER, "lat": lat, "lng": lng, "timestamp": wire.format_timestamp(timezone.now())}
        before, after = wire.encode(event).split(PLACEHOLDER.encode())
        limit, period = rate_of(THROTTLE_SCOPE)
        result = await client.eval(
            _REPORT,
            3,
            token_cache_key(token),
            TRACKED_DRIVERS.key,
            metrics.PUBLISHED,
            period * 1000,
            limit,
            uuid.uuid4().hex,
            before,
            after,
            DRIVER_LOCATION.channel,
            window_key(THROTTLE_SCOPE, ""),
        )
        kind = int(result[0])
        if kind == PUBLISHED:
            return kind, 0, before + result[1] + after
        return kind, int(result[1]) if kind == THROTTLED else 0, b""


def _candidate(scope: Scope) -> bool:
    return (
        scope["type"] == "http"
        and scope["method"] == "PUT"
        and scope["path"] in PATHS
        and settings.RIDEHAIL_POSITION_FAST_PATH
    )


def _token(scope: Scope) -> str | None:
    """The key of `Authorization: Token <key>` with a JSON body, else None (the view's case)."""
    headers = dict(scope["headers"])
    if headers.get(b"content-type", b"").split(b";")[0].strip() != b"application/json":
        return None
    kind, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return key.strip() if kind == "Token" and key.strip() and " " not in key.strip() else None


def _position(body: bytes) -> tuple[float, float] | None:
    """(lat, lng) if the body is exactly a valid position, else None (the view explains why)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or set(data) != {"lat", "lng"}:
        return None
    lat, lng = data["lat"], data["lng"]
    for value, (low, high) in ((lat, LATITUDE), (lng, LONGITUDE)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not math.isfinite(value) or not low <= value <= high:
            return None
    return float(lat), float(lng)


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The body up to MAX_BODY bytes, and whether that is all of it."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False  # a disconnect: the view will see it too
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > MAX_BODY:
            return b"".join(chunks), False


def _replaying(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A `receive` that gives what was already read first, then whatever follows."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay


async def _respond(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [*COMMON_HEADERS, *_csp_header(), *extra, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@cache
def _csp_header() -> list[tuple[bytes, bytes]]:
    """django-csp's header, built from the same settings its middleware reads."""
    return [(b"content-security-policy", build_policy().encode())]
