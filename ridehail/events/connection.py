"""The only place that builds Redis clients, and how long-lived connections stay healthy.

`Subscription` is the one subscribe / confirm / heartbeat / batch loop: the workers'
Pub/Sub runner and the dashboard's fan-out both read through it.
"""

import asyncio
import random
import time
import weakref
from collections.abc import Iterable
from functools import cache
from typing import Any, cast

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster
import redis.cluster
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

# Set in a worker process by `worker_command_redis`: there, `shared_redis()` is the worker's
# one command connection, so what a handler calls (the publisher after a commit, metrics)
# opens no connection of its own.
_worker_commands: redis.Redis | None = None


def _unreachable_cluster_is_a_connection_error(nodes_manager: Any) -> None:
    """Make a cluster client report a cluster it cannot reach as a single Redis does: `redis.ConnectionError`.

    redis-py raises `RedisClusterException` ("cannot be connected", "not all slots are covered")
    when it (re)discovers the nodes, on the first command and after any node failed, and that
    class is not a `redis.RedisError`: every `except redis.RedisError` (a request's 503, the
    throttles' per-process fallback, /readyz, reconnect loops) missed it, and a request whose
    Redis Cluster was down answered 500. Discovery is the one place it comes from.
    """
    discover = nodes_manager.initialize
    if asyncio.iscoroutinefunction(discover):

        async def discover_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await discover(*args, **kwargs)
            except redis.exceptions.RedisClusterException as exc:
                raise redis.ConnectionError(str(exc)) from exc

        nodes_manager.initialize = discover_async
        return

    def discover_sync(*args: Any, **kwargs: Any) -> Any:
        try:
            return discover(*args, **kwargs)
        except redis.exceptions.RedisClusterException as exc:
            raise redis.ConnectionError(str(exc)) from exc

    nodes_manager.initialize = discover_sync


def redis_from_url(url: str, **options: Any) -> redis.Redis:
    """The one constructor of a synchronous client: a `Redis`, or with REDIS_CLUSTER a `RedisCluster`
    that discovers the other nodes from the one `url` names and routes each command to its slot.

    Typed as `redis.Redis`: the cluster client offers the same commands without being a subclass.
    """
    if settings.REDIS_CLUSTER:
        try:  # the first discovery runs here, before the client exists
            cluster = redis.cluster.RedisCluster.from_url(url, **options)
        except redis.exceptions.RedisClusterException as exc:
            raise redis.ConnectionError(str(exc)) from exc
        _unreachable_cluster_is_a_connection_error(cluster.nodes_manager)
        return cast(redis.Redis, cluster)
    return redis.Redis.from_url(url, **options)


def async_redis_from_url(url: str, **options: Any) -> aioredis.Redis:
    """`redis_from_url` for asyncio code."""
    if settings.REDIS_CLUSTER:
        cluster = redis.asyncio.cluster.RedisCluster.from_url(url, **options)  # discovers on first use
        _unreachable_cluster_is_a_connection_error(cluster.nodes_manager)
        return cast(aioredis.Redis, cluster)
    return aioredis.Redis.from_url(url, **options)


@cache
def shared_redis() -> redis.Redis:
    """The process-wide pooled client used by the web side (publisher, health checks, reads).

    Short timeouts: a request must never hang on a slow or missing Redis. In a worker
    process it is the worker's command client (`worker_command_redis`).
    """
    if _worker_commands is not None:
        return _worker_commands
    timeout = settings.RIDEHAIL_PUBLISH_TIMEOUT
    return redis_from_url(
        settings.REDIS_URL,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )


_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis]" = weakref.WeakKeyDictionary()


def async_shared_redis() -> aioredis.Redis:
    """The pooled asyncio client of the running event loop, for async code on the request path.

    An asyncio connection belongs to the loop that opened it, hence one client per loop (one
    per process under an ASGI server). Same short timeouts as `shared_redis`, no retries.
    """
    loop = asyncio.get_running_loop()
    if loop not in _async_clients:
        timeout = settings.RIDEHAIL_PUBLISH_TIMEOUT
        _async_clients[loop] = async_redis_from_url(
            settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
    return _async_clients[loop]


@cache
def quick_redis(url: str, *, timeout: float) -> redis.Redis:
    """A pooled client that gives up after `timeout` and never retries: for checks on the
    request path (rate limits) where a slow Redis must cost a request almost nothing."""
    return redis_from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False)


@cache
def channel_layer_redis(url: str, *, timeout: float) -> redis.Redis:
    """A client of the channel layer's Redis (RIDEHAIL_CHANNEL_LAYER_URL), only to ask whether it answers.

    Always a standalone `Redis`, REDIS_CLUSTER or not: channels-redis cannot use a cluster, so
    beside one the layer has a Redis of its own (channels-redis opens its own connections to it).
    """
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def worker_redis(*, timeout: float = 10.0, name: str | None = None) -> redis.Redis:
    """A fresh client for a long-running worker, with timeouts that tolerate a busy Redis.

    No silent retries: redis-py would reconnect (and resubscribe) behind our back, and
    the worker would never learn that it missed messages and must rebuild its state.
    `name` is sent with CLIENT SETNAME on every (re)connect, so `CLIENT LIST` says whose
    connection it is.
    """
    return redis_from_url(settings.REDIS_URL, **_worker_options(timeout=timeout, name=name))


def _worker_options(*, timeout: float, name: str | None) -> dict[str, Any]:
    """A worker connection's options: timeouts that tolerate a busy Redis, no retries, a name."""
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": min(3.0, timeout),
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
        "client_name": name,
    }


class _HandOverPool(redis.BlockingConnectionPool):
    """A pool that hands its connection over to a thread waiting for it.

    Releasing puts the connection back and wakes a waiter, but the releasing thread keeps
    the GIL: a thread issuing commands back to back took the connection again every time,
    and the waiter gave up after the pool's timeout ("No connection available"). Yielding
    the GIL after each release lets the waiter run first.
    """

    def release(self, connection: redis.connection.ConnectionInterface) -> None:
        super().release(connection)
        time.sleep(0)


def one_connection_redis(name: str, *, timeout: float = 10.0) -> redis.Redis:
    """A client of exactly one connection, named `name`, that threads share in turn.

    A thread that wants it while another runs a command (or a pipeline) waits for its turn
    (up to `2 * timeout`, then a ConnectionError, an outage like any other): commands are
    serialised, never interleaved on the socket, and no second connection is ever opened.
    Same no-retry rule as `worker_redis`.
    """
    pool = _HandOverPool.from_url(
        settings.REDIS_URL, max_connections=1, timeout=2 * timeout, **_worker_options(timeout=timeout, name=name)
    )
    return redis.Redis(connection_pool=pool)


def worker_command_redis(worker: str, *, timeout: float = 10.0) -> redis.Redis:
    """The one command connection of a worker process (`<worker>:commands`); also `shared_redis()` there.

    Every thread of the worker shares it (handlers, outbox relay, metrics, heartbeat).
    Nothing in a worker holds it across calls (no WATCH, no blocking command: the blocking
    XREADGROUP has its own connection), so a wait is about one command's round trip.
    """
    global _worker_commands
    _worker_commands = one_connection_redis(f"{worker}:commands", timeout=timeout)
    shared_redis.cache_clear()
    return _worker_commands


# redis-py does not notice a silently dead Pub/Sub connection by itself
# (redis/redis-py#1137, #2089): after this long without traffic a subscriber PINGs, and
# a PING unanswered for as long again means the connection is dead.
HEALTH_CHECK_SECONDS = 5.0


class Heartbeat:
    """Tells an idle subscriber when to PING, and raises once silence means the link is dead."""

    def __init__(self, interval: float = HEALTH_CHECK_SECONDS) -> None:
        self.interval = interval
        self.last_heard = time.monotonic()
        self.ping_sent_at: float | None = None

    def heard(self) -> None:
        self.last_heard, self.ping_sent_at = time.monotonic(), None

    def should_ping(self) -> bool:
        now = time.monotonic()
        if self.ping_sent_at is not None:
            if now - self.ping_sent_at > self.interval:
                raise redis.ConnectionError(f"no answer to PING for {self.interval:.0f}s")
            return False
        if now - self.last_heard > self.interval:
            self.ping_sent_at = now
            return True
        return False


class Backoff:
    """Exponential backoff with jitter, so restarted clients do not reconnect in lockstep.

    Capped at 4 s (4.8 with jitter): a subscriber is back within about 5 s of Redis.
    """

    def __init__(self, first: float = 0.5, maximum: float = 4.0) -> None:
        self.first, self.maximum = first, maximum
        self.reset()

    def reset(self) -> None:
        self.current = self.first

    def next_delay(self) -> float:
        delay = self.current * random.uniform(0.8, 1.2)
        self.current = min(self.current * 2, self.maximum)
        return delay


POLL_SECONDS = 1.0  # how long one read blocks: bounds how late a stop request is seen
PING_PAYLOAD = b"ridehail-health"
BATCH_SIZE = 100  # messages handled per round trip when they arrive faster than one by one


class Subscription:
    """A dedicated Pub/Sub connection: subscribe, wait for the confirmation, read in batches.

    An idle connection is PINGed, and one that stays silent is reported as a
    `redis.ConnectionError`: the caller must then assume it missed messages.
    """

    def __init__(self, client: redis.Redis, channels: Iterable[str]) -> None:
        self.channels = list(channels)
        self.pubsub = client.pubsub()
        self.heartbeat = Heartbeat()

    def __enter__(self) -> "Subscription":
        try:
            self._subscribe()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _subscribe(self) -> None:
        self.pubsub.subscribe(*self.channels)
        waiting = set(self.channels)
        deadline = time.monotonic() + HEALTH_CHECK_SECONDS
        while waiting and time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=POLL_SECONDS)
            if message and message["type"] == "subscribe":
                waiting.discard(message["channel"].decode())
        if waiting:
            raise redis.TimeoutError(f"no confirmation of SUBSCRIBE {' '.join(sorted(waiting))}")

    def read_batch(self, *, timeout: float = POLL_SECONDS, limit: int = BATCH_SIZE) -> list[tuple[str, bytes]]:
        """Wait up to `timeout` for a message, then take whatever else is already buffered.

        Returns (channel, data) pairs, [] when idle. A burst costs one wake-up per batch
        instead of one per message.
        """
        message = self.pubsub.get_message(timeout=timeout)
        if message is None:
            if self.heartbeat.should_ping():
                self.pubsub.ping(PING_PAYLOAD)
            return []
        self.heartbeat.heard()
        batch = [message]
        while len(batch) < limit and (more := self.pubsub.get_message(timeout=0)) is not None:
            batch.append(more)
        return [(m["channel"].decode(), m["data"]) for m in batch if m["type"] == "message"]

    def close(self) -> None:
        self.pubsub.close()
