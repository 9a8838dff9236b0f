"""At most RIDEHAIL_DASHBOARD_SOCKETS_PER_SESSION dashboard sockets per browser session, in all web processes.

One staff session could otherwise open hundreds of sockets, each with its own snapshot query and
its own share of every event.

Each open socket holds a lease in Redis: a member of its session's sorted set, scored with the
moment the lease runs out. One Lua script drops expired leases, counts and adds, so two sockets
opening at once in two processes cannot both take the last place. Every web process renews the
leases of its own sockets every LEASE_SECONDS / 3, and a socket's lease is removed when it closes.
A process that is killed renews nothing, so its sockets' places come back within LEASE_SECONDS,
where a counter decremented on disconnect would stay too high for good.

Over the limit the socket is accepted and at once closed with code 4429 (CLOSE_TOO_MANY), so the
page can tell "too many dashboards open" from a refused sign-in (a refused handshake shows the
browser only 1006).

If Redis is unreachable only this process's own sockets are counted, never none; the dashboard
closes such sockets with 4503 anyway, as live updates need Redis.
"""

import asyncio
import hashlib
import logging
import time
import uuid
from typing import Any, Protocol

import redis
from django.conf import settings
from redis.commands.core import Script

from ridehail.dashboard.per_loop import per_event_loop
from ridehail.events.connection import shared_redis

logger = logging.getLogger(__name__)

CLOSE_TOO_MANY = 4429  # this session already has RIDEHAIL_DASHBOARD_SOCKETS_PER_SESSION dashboards open
LEASE_SECONDS = 30.0
KEY_PREFIX = "ridehail:dashboard-sockets"

# Scripts without a client of their own: every call passes `client=`. A Script reloads itself
# where a server answers NOSCRIPT (a cluster's new master after a failover has none loaded).
# KEYS[1]: the session's leases; ARGV: lease (ms), limit, socket id. 1 if the socket may open.
_TAKE = Script(
    None,  # type: ignore[arg-type]
    b"""
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[1]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
""",
)

# KEYS[1]: the session's leases; ARGV: lease (ms), then the socket ids this process still holds.
# XX: a lease that is gone (Redis restarted empty) is not brought back; those sockets are closed
# to resync then anyway, and count again when they reconnect.
_RENEW = Script(
    None,  # type: ignore[arg-type]
    b"""
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now_ms + tonumber(ARGV[1]), ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
""",
)


class Socket(Protocol):
    scope: dict[str, Any]

    async def accept(self) -> None: ...

    async def close(self, code: int | None = None) -> None: ...


class SessionSockets:
    """The leases of this process's dashboard sockets (one per event loop: `session_sockets`)."""

    def __init__(self, *, lease_seconds: float = LEASE_SECONDS) -> None:
        self.lease_ms = int(lease_seconds * 1000)
        self.held: dict[Socket, tuple[str, str]] = {}  # socket -> (session's key, lease id)
        self._task: asyncio.Task | None = None

    async def admit(self, socket: Socket) -> bool:
        """Take a place for this socket; if its session has none left, close it (4429) and say False."""
        key = session_leases_key(socket.scope)
        if key is None:
            return True  # no signed-in session: the consumer refuses it, nothing to count
        limit = settings.RIDEHAIL_DASHBOARD_SOCKETS_PER_SESSION
        lease = uuid.uuid4().hex
        if self._held_for(key) >= limit or not await self._take(key, lease, limit):
            await socket.accept()
            await socket.close(code=CLOSE_TOO_MANY)
            return False
        self.held[socket] = (key, lease)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._renew_while_held(), name="dashboard-session-sockets")
        return True

    async def release(self, socket: Socket) -> None:
        """The socket closed: give its place back (a no-op for a socket that never took one)."""
        taken = self.held.pop(socket, None)
        if taken is None:
            return
        try:
            await asyncio.to_thread(shared_redis().zrem, *taken)
        except redis.RedisError as exc:  # the lease runs out by itself
            logger.warning("dashboard: could not release a socket's place (it expires by itself): %s", exc)

    def _held_for(self, key: str) -> int:
        return sum(1 for held_key, _ in self.held.values() if held_key == key)

    async def _take(self, key: str, lease: str, limit: int) -> bool:
        try:
            taken = await asyncio.to_thread(
                _TAKE, keys=[key], args=[self.lease_ms, limit, lease], client=shared_redis()
            )
            return bool(taken)
        except redis.RedisError as exc:
            logger.warning("dashboard: sockets per session counted in this process only: %s", exc)
            return True  # _held_for already said this process is under the limit

    async def _renew_while_held(self) -> None:
        while self.held:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await asyncio.to_thread(self.renew)
            except Exception:  # Redis away for a moment: the next round renews; leases outlast two misses
                logger.exception("dashboard: renewing socket leases failed; trying again")

    def renew(self) -> None:
        """One call per session holding sockets here (a few), not a pipeline: sessions' keys live on
        different shards of a cluster, and redis-py's cluster pipeline refuses scripts."""
        by_session: dict[str, list[str]] = {}
        for key, lease in list(self.held.values()):
            by_session.setdefault(key, []).append(lease)
        client = shared_redis()
        for key, leases in by_session.items():
            _RENEW(keys=[key], args=[self.lease_ms, *leases], client=client)

    def stop(self) -> None:
        """Stop renewing (tests: what a killed process does)."""
        if self._task is not None:
            self._task.cancel()


def session_leases_key(scope: dict[str, Any]) -> str | None:
    """The Redis key of a session's leases; the session key is a secret, so only its hash is used."""
    user, session = scope.get("user"), scope.get("session")
    session_key = getattr(session, "session_key", None)
    if not (user and user.is_authenticated and session_key):
        return None
    return f"{KEY_PREFIX}:{hashlib.sha256(session_key.encode()).hexdigest()}"


session_sockets = per_event_loop(lambda loop: SessionSockets())


def open_dashboard_sockets(client: redis.Redis) -> int:
    """Dashboard sockets open now, in every web process: the unexpired leases of every session."""
    now_ms = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for key in client.scan_iter(f"{KEY_PREFIX}:*", count=1000):
        pipe.zcount(key, now_ms, "+inf")
    return sum(pipe.execute())
