"""`PUT /api/users/driver-status`, answered in front of Django in the common case.

The endpoint's database work is small (lock the driver's row, update it, insert the outbox
row, commit) and PostgreSQL does thousands of those a second. Through Django and DRF one
process did ~140 a second: every sync view of a process runs in one thread under ASGI, so
each request's round trips (token lookup, throttle, lock, update, insert, commit, publish)
waited for the previous request's, and DRF's per-request machinery came on top
(BENCHMARKS.md, "PUT /api/users/driver-status").

So this layer serves the common case (a driver's token remembered in Redis, a body that is
empty, `{}` or `{"available": true|false}`) with one Redis round trip for the token and the
rate limit, then runs the same service function as the view, `set_driver_availability`, in a
small pool of threads of its own: status changes of different drivers wait on PostgreSQL side
by side instead of one after another. The transaction, the outbox row and the publish after
the commit are exactly the view's, because they are the same function.

Everything else goes on to Django untouched (the body is replayed): a token not remembered
(the view answers and remembers it), any other body, session authentication, Redis
unreachable, a database error other than an outage (the view judges it). An outage (down,
refusing, too slow) is answered here with the view's own 503: the view would only wait on the
same stalled database a second time. users/apis.py is the
reference: users/tests/test_fast_path.py holds both paths to the same status, body and headers.
"""

import asyncio
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import redis
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections

from ridehail.events.connection import async_shared_redis
from ridehail.fast_path import App, Receive, Scope, Send, is_put, read_body, replaying, respond_json, throttled_body
from ridehail.fast_path import token_of as token_in
from ridehail.http import DATABASE_UNAVAILABLE, log_database_unavailable
from ridehail.throttling import SLIDING_WINDOW_LUA, rate_of, retry_after, window_key
from users.models import User
from users.serializers import status_change_data
from users.services import StatusChange, set_driver_availability
from users.token_cache import token_cache_key

PATHS = {"/api/users/driver-status", "/api/users/driver-status/"}
MAX_BODY = 1024
THROTTLE_SCOPE = "driver-status"
ALLOW = [(b"allow", b"GET, PUT, HEAD, OPTIONS")]
PASS, ALLOWED, THROTTLED = 0, 1, 2
THE_VIEWS = object()  # a body only the view may judge

# KEYS: the token's entry. ARGV: window (ms), limit, a unique member, the throttle key's prefix.
# Returns {PASS} (a token not remembered: the view's case), {THROTTLED, wait ms} or {ALLOWED, driver id}.
_AUTHORIZE = (
    SLIDING_WINDOW_LUA
    + """
local driver = redis.call('GET', KEYS[1])
if not driver then
  return {0}
end
local wait = sliding_window(ARGV[4] .. driver, tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
if wait > 0 then
  return {2, wait}
end
return {1, driver}
"""
)


class DriverStatusFastPath:
    """ASGI wrapper: serves what it can of the status endpoint's PUT, hands the rest to `app`."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (settings.RIDEHAIL_STATUS_FAST_PATH and is_put(scope, PATHS)):
            return await self.app(scope, receive, send)
        body, complete = await read_body(receive, limit=MAX_BODY)
        replay = replaying(body, complete, receive)
        token = token_in(scope, body_required=bool(body))
        wanted = _availability(body) if complete and token else THE_VIEWS
        if wanted is THE_VIEWS:
            return await self.app(scope, replay, send)
        try:
            verdict = await _authorize(token)
        except (redis.RedisError, OSError):
            return await self.app(scope, replay, send)
        if verdict[0] == THROTTLED:
            wait = retry_after(verdict[1] / 1000)
            return await respond_json(send, 429, throttled_body(wait), [*ALLOW, (b"retry-after", str(wait).encode())])
        if verdict[0] != ALLOWED:
            return await self.app(scope, replay, send)
        loop = asyncio.get_running_loop()
        try:
            change = await loop.run_in_executor(_executor(), _change, uuid.UUID(verdict[1].decode()), wanted)
        except (OperationalError, InterfaceError) as exc:
            log_database_unavailable(scope["path"], exc)
            return await respond_json(send, 503, DATABASE_UNAVAILABLE, ALLOW)
        except (DatabaseError, User.DoesNotExist):
            # Nothing was written (the transaction rolled back): the view judges it (a 403 for a user gone).
            return await self.app(scope, replay, send)
        body = json.dumps(status_change_data(change), separators=(",", ":")).encode()
        await respond_json(send, 200, body, ALLOW)


def _availability(body: bytes) -> object:
    """True/False to set, None to toggle, or THE_VIEWS for anything the view should judge."""
    if body == b"":
        return None  # no body at all toggles; whitespace is the view's to refuse
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return THE_VIEWS
    if data == {}:
        return None
    if isinstance(data, dict) and set(data) == {"available"} and isinstance(data["available"], bool):
        return data["available"]
    return THE_VIEWS


async def _authorize(token: str) -> list:
    limit, period = rate_of(THROTTLE_SCOPE)
    return await async_shared_redis().eval(
        _AUTHORIZE, 1, token_cache_key(token), period * 1000, limit, uuid.uuid4().hex, window_key(THROTTLE_SCOPE, "")
    )


def _change(driver_id: uuid.UUID, available: bool | None) -> StatusChange:
    """The view's service call, in a pool thread; its connection goes back to the pool after."""
    try:
        return set_driver_availability(driver_id=driver_id, available=available)
    finally:
        connections.close_all()


@cache
def _executor() -> ThreadPoolExecutor:
    # Half the process's database pool: more would only queue for a connection, and Django's own
    # views keep the other half.
    return ThreadPoolExecutor(max_workers=max(1, settings.DATABASE_POOL_SIZE // 2), thread_name_prefix="status")
