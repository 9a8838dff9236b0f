"""The only place that builds Redis clients, and how long-lived connections stay healthy.

`Subscription` is the one subscribe / confirm / heartbeat / batch loop: the workers'
Pub/Sub runner and the dashboard's fan-out both read through it.

With REDIS_CLUSTER every client here is a `RedisCluster`, and what differs on a cluster is
decided here too: a channel is a shard channel (`publish`, `Subscription`), a script in a
pipeline goes as EVAL (`run_script`), and a worker's one command client holds at most one
connection per node (`one_connection_redis`).
"""

import asyncio
import random
import select
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, cast

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster
import redis.cluster
from django.conf import settings
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

AnyPipeline = redis.client.Pipeline | redis.cluster.ClusterPipeline

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


def publish_command() -> str:
    """PUBLISH on a single Redis; SPUBLISH on a cluster.

    On a cluster channel `T` is a shard channel, served by the node that owns `T`'s slot (the
    slot of `stream:{T}` too, so the publish script may use both). A classic PUBLISH there is
    broadcast to every node, and a classic SUBSCRIBE stays on one node and silently stops
    hearing anything when that node dies.
    """
    return "SPUBLISH" if settings.REDIS_CLUSTER else "PUBLISH"


def publish(client: redis.Redis | AnyPipeline, channel: str, message: bytes | str) -> None:
    """Send `message` on `channel` (or queue it on a pipeline), as `publish_command()` says."""
    client.execute_command(publish_command(), channel, message)


def channel_subscribers(client: redis.Redis, *channels: str) -> list[tuple[bytes, int]]:
    """PUBSUB NUMSUB, or on a cluster SHARDNUMSUB summed over every node: (channel, subscribers) pairs."""
    if settings.REDIS_CLUSTER:
        # Every node, replicas too (a shard subscriber may read from one), summed by redis-py;
        # its default sends the command to one node only.
        everywhere = redis.cluster.RedisCluster.ALL_NODES
        return cast(list[tuple[bytes, int]], client.pubsub_shardnumsub(*channels, target_nodes=everywhere))
    return cast(list[tuple[bytes, int]], client.pubsub_numsub(*channels))


def run_script(client: redis.Redis | AnyPipeline, script: Script, *, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """Run `script` on a client or queue it on a pipeline, a cluster's pipeline included.

    redis-py's cluster pipeline blocks its `evalsha` and `eval` methods, and a raw EVALSHA
    there would fail with NOSCRIPT on a master that took over in a failover (it has no
    scripts loaded) with nothing to reload it: there the script goes as a raw EVAL of its
    text, which Redis compiles once and then finds in its script cache. Every key of one call
    must share a hash slot on a cluster.
    """
    if isinstance(client, redis.cluster.ClusterPipeline):
        return client.execute_command("EVAL", script.script, len(keys), *keys, *args)
    return script(keys=keys, args=args, client=client)


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


class _PipelinesInTurn(redis.cluster.RedisCluster):
    """A cluster client whose pipelines run one at a time, for one connection per node.

    A cluster pipeline takes the connection of each node it writes to, in the order of its
    commands, and holds them all until it has every answer. With one connection per node, two
    threads whose pipelines visit two nodes in opposite orders (the heartbeat's, a handler's
    acknowledgement) would each hold one and wait for the other's until the pool gave up. A
    single command holds one connection and never waits for a second: only pipelines take turns.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pipeline_turn = threading.Lock()

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> redis.cluster.ClusterPipeline:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def in_turn(raise_on_error: bool = True) -> list[Any]:
            with self._pipeline_turn:
                return execute(raise_on_error)

        pipe.execute = in_turn
        return pipe


def one_connection_redis(name: str, *, timeout: float = 10.0) -> redis.Redis:
    """A client of exactly one connection, named `name`, that threads share in turn.

    A thread that wants it while another runs a command (or a pipeline) waits for its turn
    (up to `2 * timeout`, then a ConnectionError, an outage like any other): commands are
    serialised, never interleaved on the socket, and no second connection is ever opened.
    Same no-retry rule as `worker_redis`. On a cluster: one such connection per node, each
    named `name` (a command goes to the node of its slot; a pipeline takes each node's in turn).
    """
    options = _worker_options(timeout=timeout, name=name)
    if settings.REDIS_CLUSTER:
        cluster = _PipelinesInTurn.from_url(
            settings.REDIS_URL, connection_pool_class=_HandOverPool, max_connections=1, timeout=2 * timeout, **options
        )
        return cast(redis.Redis, cluster)
    pool = _HandOverPool.from_url(settings.REDIS_URL, max_connections=1, timeout=2 * timeout, **options)
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

    On a cluster (REDIS_CLUSTER) the channels are shard channels: SSUBSCRIBE on the node that
    owns each channel's slot, one connection per such node (redis-py's `ClusterPubSub`), every
    connection heartbeaten on its own. Whatever breaks the subscription there is reported the
    same way, as a `redis.ConnectionError`, so the caller rebuilds its state like after any
    reconnect, then subscribes again through a fresh slot map: a node that died (its replica
    took over; the new owner is found once the failover is done, the caller's backoff waits
    for it) or a channel's slot that moved (the old owner sends SUNSUBSCRIBE). redis-py would
    also move a shard subscription to a slot's new owner by itself, but silently, in a thread
    of its own, and only after a command through the same client refreshed the slot map: a
    listener would not learn of the gap, so this one never waits for that.
    """

    def __init__(self, client: redis.Redis, channels: Iterable[str]) -> None:
        self.channels = list(channels)
        self.sharded = settings.REDIS_CLUSTER
        self.client = client
        self.pubsub = client.pubsub()
        self.heartbeat = Heartbeat()
        self.heartbeats: dict[str, Heartbeat] = {}  # on a cluster: one per node connection, by node name

    def __enter__(self) -> "Subscription":
        try:
            if self.sharded:
                self._ssubscribe()
            else:
                self._subscribe()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _subscribe(self) -> None:
        self.pubsub.subscribe(*self.channels)
        self._await_confirmations("subscribe", lambda: self.pubsub.get_message(timeout=POLL_SECONDS))

    def _ssubscribe(self) -> None:
        cluster = cast(redis.cluster.RedisCluster, self.client)
        pubsub = cast(redis.cluster.ClusterPubSub, self.pubsub)
        try:
            # The slot map as the cluster sees it now: the client's may predate a failover or a slot move.
            cluster.nodes_manager.initialize()
            pubsub.ssubscribe(*self.channels)
        except redis.exceptions.RedisClusterException as exc:
            # No node answers, or a dead master's slots are not taken over yet: an outage like any
            # other to the caller, who backs off and subscribes again.
            raise redis.ConnectionError(f"Redis Cluster: {exc}") from exc
        self.heartbeats = {name: Heartbeat() for name in pubsub.node_pubsub_mapping}
        self._await_confirmations("ssubscribe", lambda: next(iter(self._sharded_messages(POLL_SECONDS)), None))

    def _await_confirmations(self, kind: str, next_message: Any) -> None:
        waiting = set(self.channels)
        deadline = time.monotonic() + HEALTH_CHECK_SECONDS
        while waiting and time.monotonic() < deadline:
            message = next_message()
            if message and message["type"] == kind:
                waiting.discard(message["channel"].decode())
        if waiting:
            raise redis.TimeoutError(f"no confirmation of {kind.upper()} {' '.join(sorted(waiting))}")

    def read_batch(self, *, timeout: float = POLL_SECONDS, limit: int = BATCH_SIZE) -> list[tuple[str, bytes]]:
        """Wait up to `timeout` for a message, then take whatever else is already buffered.

        Returns (channel, data) pairs, [] when idle. A burst costs one wake-up per batch
        instead of one per message.
        """
        if self.sharded:
            return self._read_sharded(timeout=timeout, limit=limit)
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

    def _read_sharded(self, *, timeout: float, limit: int) -> list[tuple[str, bytes]]:
        batch = self._sharded_messages(timeout, limit=limit)
        if not batch:
            pubsub = cast(redis.cluster.ClusterPubSub, self.pubsub)
            for name, node_pubsub in list(pubsub.node_pubsub_mapping.items()):
                if self.heartbeats[name].should_ping():
                    node_pubsub.ping(PING_PAYLOAD)
        return [(m["channel"].decode(), m["data"]) for m in batch if m["type"] == "smessage"]

    def _sharded_messages(self, timeout: float, *, limit: int = 1) -> list[dict[str, Any]]:
        """Up to `limit` messages from the node connections, waiting up to `timeout` for the first.

        Each node's connection is drained without waiting, then all are waited on together
        (select), so a message from one node is never held up by a wait on another.
        """
        pubsub = cast(redis.cluster.ClusterPubSub, self.pubsub)
        deadline = time.monotonic() + timeout
        batch: list[dict[str, Any]] = []
        while True:
            for name, node_pubsub in list(pubsub.node_pubsub_mapping.items()):
                while len(batch) < limit and (message := node_pubsub.get_message(timeout=0)) is not None:
                    self.heartbeats[name].heard()
                    if message["type"] == "sunsubscribe":
                        # Sent by a node that no longer owns the channel's slot: what was published
                        # since went to the new owner, unheard.
                        raise redis.ConnectionError(f"shard channel {message['channel'].decode()} left {name}")
                    batch.append(message)
            remaining = deadline - time.monotonic()
            if batch or remaining <= 0:
                return batch
            # redis-py offers no way to wait on several connections: their sockets, then.
            sockets = [
                node_pubsub.connection._sock
                for node_pubsub in pubsub.node_pubsub_mapping.values()
                if node_pubsub.connection is not None and node_pubsub.connection._sock is not None
            ]
            if len(sockets) < len(pubsub.node_pubsub_mapping):
                raise redis.ConnectionError("a shard subscription lost its connection")
            readable, _, _ = select.select(sockets, [], [], remaining)
            if not readable:
                return batch

    def close(self) -> None:
        self.pubsub.close()
