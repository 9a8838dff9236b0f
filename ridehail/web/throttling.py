"""Rate limits (429 with Retry-After): one mechanism for the API and the HTML login forms.

Login is limited per client address on every way in: `/api/auth/login` and register (DRF
throttles below) and the `/accounts/login/` and `/admin/login/` forms (`limit_login_attempts`).
All of them count in the same window, so trying the three doors does not triple the rate.

The client address is DRF's `get_ident`: the TCP peer (`REMOTE_ADDR`) unless
RIDEHAIL_TRUSTED_PROXIES (DRF's NUM_PROXIES) says how many proxies in front of us append to
`X-Forwarded-For`; then it is the address that many hops from the right, the one our outermost
proxy saw. Anything further left was written by the client and is never trusted. NUM_PROXIES is
always set (0 by default): unset, DRF would trust the whole header.

The API's throttles are two classes, by whom a request counts against (a client address, a
signed-in user); which window it counts in is the view's `throttle_scope`, as with DRF's own
ScopedRateThrottle, and each scope is one constant below.

Counters live in Redis, shared by every process: a sliding window kept and checked in one Lua
script, so parallel requests cannot all slip past a read-then-write (which is what DRF's own
SimpleRateThrottle does with the cache: why these throttles are not DRF's). If Redis is unreachable the
limit is not lifted: each process counts in its own memory, allowing its share of the rate
(the rate divided by RIDEHAIL_WEB_PROCESSES), so the processes together stay within the limit.
"""

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from functools import wraps
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import render
from redis.commands.core import Script
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle
from rest_framework.views import APIView

from ridehail.events.connection import quick_redis

logger = logging.getLogger(__name__)

AUTH = "auth"  # login (every way in) and register, per client address
DRIVER_STATUS = "driver-status"  # status changes, per driver
DRIVER_LOCATION = "driver-location"  # position reports, per driver
RIDES = "rides"  # ride requests and cancels, per rider (rides/apis.py)
KEY_PREFIX = "ridehail:throttle"


def rate_of(scope: str) -> tuple[int, int]:
    """ "20/minute" -> (20, 60): how many requests per how many seconds (validated by env_rate)."""
    try:
        return SimpleRateThrottle.parse_rate(None, settings.RIDEHAIL_THROTTLE_RATES[scope])  # type: ignore[arg-type,return-value]
    except KeyError:
        raise ImproperlyConfigured(f"no rate for throttle scope {scope!r} in RIDEHAIL_THROTTLE_RATES") from None


def client_address(request: HttpRequest | Request) -> str:
    """The address rate limits count against (DRF's `get_ident`: see the module docstring).

    It reads only `request.META`, so the HTML login forms count with it too. A peer without an
    address (a Unix socket) is "unknown": one window for all of them, never none.
    """
    # DRF types it for its Request, but it reads only `META`, which an HttpRequest has as well.
    return BaseThrottle().get_ident(request) or "unknown"  # type: ignore[arg-type]


# -- where counts are kept ----------------------------------------------------------------

# One sliding window. Returns 0 when the request is allowed (and counted), else the milliseconds
# until the oldest counted request leaves the window. Redis's own clock, so that every process
# measures the window the same way.
# KEYS[1]: the window; ARGV: window (ms), limit, a unique member.
_SLIDING_WINDOW = Script(
    None,  # type: ignore[arg-type]  # no client of its own: every call passes client=
    b"""
local key, window, limit, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms - window)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now_ms, member)
  redis.call('PEXPIRE', key, window)
  return 0
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now_ms)
""",
)


def window_key(scope: str, ident: str) -> str:
    return f"{KEY_PREFIX}:{scope}:{ident}"


# A count is one round trip; a Redis that takes longer than this is treated as down, so that a
# slow Redis costs a request at most this much (a status change also waits on it to publish).
REDIS_TIMEOUT = 0.2
# After a failure, count in memory for this long before asking Redis again: one slow request
# per process per interval, not every request.
REDIS_RETRY_SECONDS = 5.0


def _redis_hit(key: str, limit: int, period: int) -> float | None:
    client = quick_redis(settings.REDIS_URL, timeout=REDIS_TIMEOUT)
    wait_ms = _SLIDING_WINDOW(keys=[key], args=[period * 1000, limit, uuid.uuid4().hex], client=client)
    return None if wait_ms == 0 else wait_ms / 1000


class LocalWindows:
    """The same sliding windows in this process's memory, for when Redis is unreachable.

    Bounded: at most `max_keys` windows are kept, the least recently used go first, so a flood
    of addresses cannot grow it without limit.
    """

    def __init__(self, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        self.windows: OrderedDict[str, deque[float]] = OrderedDict()
        self.lock = threading.Lock()

    def hit(self, key: str, limit: int, period: int) -> float | None:
        now = time.monotonic()
        with self.lock:
            window = self.windows.pop(key, None) or deque()
            while window and window[0] <= now - period:
                window.popleft()
            self.windows[key] = window
            while len(self.windows) > self.max_keys:
                self.windows.popitem(last=False)
            if len(window) < limit:
                window.append(now)
                return None
            return max(0.001, window[0] + period - now)

    def clear(self) -> None:
        with self.lock:
            self.windows.clear()


class Outage:
    """Whether to skip Redis for now, and a log line at most once a minute while it is away."""

    def __init__(self) -> None:
        self.retry_at = 0.0
        self.logged_at = -math.inf

    def skip_redis(self) -> bool:
        return time.monotonic() < self.retry_at

    def failed(self, scope: str, exc: Exception) -> None:
        now = time.monotonic()
        self.retry_at = now + REDIS_RETRY_SECONDS
        if now - self.logged_at > 60:
            self.logged_at = now
            logger.warning("rate limit %s counted in this process only: Redis unavailable: %s", scope, exc)


local_windows = LocalWindows()
outage = Outage()


def hit(scope: str, ident: str) -> float | None:
    """Count one request of `ident` in `scope`: None if allowed, else the seconds to wait."""
    limit, period = rate_of(scope)
    key = window_key(scope, ident)
    if not outage.skip_redis():
        try:
            return _redis_hit(key, limit, period)
        except redis.RedisError as exc:
            outage.failed(scope, exc)
    share = math.ceil(limit / settings.RIDEHAIL_WEB_PROCESSES)
    return local_windows.hit(key, share, period)


def reset() -> None:
    """Forget every count and outage kept in this process (tests)."""
    local_windows.clear()
    global outage
    outage = Outage()


def retry_after(wait: float) -> int:
    return max(1, math.ceil(wait))


# -- the API (DRF throttles) -----------------------------------------------------------------


class ScopedThrottle(BaseThrottle):
    """A DRF throttle over `hit`, in the view's `throttle_scope`; subclasses say whom a request counts against."""

    def ident(self, request: Request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request: Request, view: APIView) -> bool:
        ident = self.ident(request)
        self.wait_seconds = None if ident is None else hit(view.throttle_scope, ident)  # type: ignore[attr-defined]
        return self.wait_seconds is None

    def wait(self) -> float | None:
        return self.wait_seconds


class ClientAddressThrottle(ScopedThrottle):
    """Per client address: login and register, against password guessing and sign-up floods."""

    def ident(self, request: Request) -> str:
        return client_address(request)


class UserThrottle(ScopedThrottle):
    """Per signed-in user, their writes only: a driver's status changes and position reports, a
    rider's ride requests and cancels. Reads are not limited."""

    def ident(self, request: Request) -> str | None:
        if request.method in SAFE_METHODS or not request.user.is_authenticated:
            return None
        return str(request.user.pk)


# -- the HTML login forms ----------------------------------------------------------------------


def limit_login_attempts(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Count every POST to a login form in the `auth` window of its client address."""

    @wraps(view)
    def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method == "POST":
            wait = hit(AUTH, client_address(request))
            if wait is not None:
                seconds = retry_after(wait)
                response = render(request, "registration/too_many_attempts.html", {"seconds": seconds}, status=429)
                response["Retry-After"] = str(seconds)
                return response
        return view(request, *args, **kwargs)

    return limited
