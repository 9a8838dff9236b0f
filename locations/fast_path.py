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

import redis
from django.conf import settings
from django.utils import timezone

from locations.events import DRIVER_LOCATION, LATITUDE, LONGITUDE
from locations.positions import TRACKED_DRIVERS
from ridehail.events import metrics, wire
from ridehail.events.connection import async_shared_redis
from ridehail.fast_path import (
    App,
    Receive,
    Scope,
    Send,
    is_put,
    read_body,
    replaying,
    respond_json,
    throttled_body,
    token_of,
)
from ridehail.throttling import DRIVER_LOCATION as THROTTLE_SCOPE
from ridehail.throttling import SLIDING_WINDOW_LUA, rate_of, retry_after, window_key
from users.token_cache import token_cache_key

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

ALLOW = [(b"allow", b"PUT, OPTIONS")]


class PositionFastPath:
    """ASGI wrapper: serves what it can of the position endpoint, hands the rest to `app`."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (settings.RIDEHAIL_POSITION_FAST_PATH and is_put(scope, PATHS)):
            return await self.app(scope, receive, send)
        body, complete = await read_body(receive, limit=MAX_BODY)
        replay = replaying(body, complete, receive)
        token = token_of(scope)
        position = _position(body) if complete and token else None
        if position is None:
            return await self.app(scope, replay, send)
        try:
            result = await self._report(token, *position)
        except (redis.RedisError, OSError):
            return await self.app(scope, replay, send)  # the view says 503 in its own words
        if result[0] == PUBLISHED:
            return await respond_json(send, 202, result[2], ALLOW)
        if result[0] == THROTTLED:
            wait = retry_after(result[1] / 1000)
            return await respond_json(send, 429, throttled_body(wait), [*ALLOW, (b"retry-after", str(wait).encode())])
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
