"""Where every event is published.

The protocol, in one paragraph: a durable event is written to the outbox table in the
transaction that makes the change. After the commit, the request thread runs the publish
script once. The script appends the event to its stream and PUBLISHes it on its channel (SPUBLISH
on its shard channel on a Redis Cluster: see `connection.publish`) only
if the key's mark in Redis (the last version of the key that went out, kept by the same
script) is the version just before it; the thread then marks its own row published. If the
script answers that an older version of the key is not out yet, the thread leaves its row
pending, wakes the relay and returns; if Redis cannot be reached, the row simply stays
pending. The relay, a thread in every worker, is woken at once or finds the rows on its
periodic scan, and publishes every pending row in commit order and marks it: a key's
oldest pending row always follows a version whose row is marked published, so the relay
owns that key's pending rows and publishes them in version order. The script never appends
a version the key's mark says is out, so a request and relays racing for one row put it on
the stream once. Every committed event therefore reaches its stream at least once, in
per-key version order; only if Redis loses data (FLUSHALL, a restart without persistence, a
failover) can a row that went out but was not marked yet go out again, with the same
`eventId` and version, which every consumer ignores as not newer than what it holds.
When the Redis that holds the stream has replicas (its ROLE lists at least one: asked once per
process and node, then again in every publish's own round trip), the script is followed on the
same connection by one `WAIT` for a replica, bounded by a fifth of RIDEHAIL_PUBLISH_TIMEOUT, and
a row is marked only once a replica holds its entry; if none confirms, the row stays pending and
the relay publishes it again (a no-op while the key's mark is there; after a failover that lost
the entry, the same event again), so a master that dies before its replica got an entry loses
no committed event. That WAIT is the only wait a request thread makes after its commit; without
replicas nothing waits.

The mark is one small key per topic and key (`stream:{T}:mark:<key>`), not one per event:
because a key's versions go out in order, "version N went out" is "the mark is at least N".
It is forgotten a week after the key's last event (MARK_TTL), so keys that are done (a
completed ride) do not pile up in Redis. Order never depends on it: a mark that expired or
was flushed only sends the key's next version through the relay, which publishes a key's
oldest pending row without asking the mark.

A live-only topic's event is published at once with `publish_live()`: no database, no
stream; if Redis is down the caller is told, because there is nothing worth keeping.
"""

import enum
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone
from redis.cluster import RedisCluster
from redis.commands.core import Script

from ridehail.events import metrics, tracing
from ridehail.events.connection import AnyPipeline, publish, publish_command, run_script, shared_redis
from ridehail.events.models import OutboxEvent
from ridehail.events.topic import STREAM_FIELD, DurableEvent, Event, Topic, declared_topics

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
PUBLISHED, ALREADY, OUT_OF_ORDER = 1, 0, -1
# The channel a request PUBLISHes on when it leaves a row to the relay. Every worker listens on
# it with its one subscribed connection (pubsub.py) and wakes its relay (outbox.py); a wake-up
# that nobody hears costs nothing but time: the relay's periodic scan finds the row anyway.
RELAY_WAKE = "outbox:wake"

MARK_TTL = 7 * 24 * 3600  # seconds: see the module docstring; not a timing the order relies on

# KEYS: stream, the key's mark (the last version out), the topic's published-events counter
# (metrics.py): all in the topic's hash slot, as is its shard channel. ARGV: payload, maxlen
# ('' = do not trim), channel (the topic's name), stream field, key, version, '1' to require that
# the previous version is out ('' not to check), the mark's time to live, the publish command
# (PUBLISH, or SPUBLISH on a cluster), the trace context's field and its value ('' = none:
# tracing is off).
# Returns PUBLISHED, ALREADY (the mark says this version is out) or OUT_OF_ORDER.
_PUBLISH_ONCE = Script(
    None,  # type: ignore[arg-type]  # no client of its own: every call passes client=
    b"""
local out = tonumber(redis.call('GET', KEYS[2]) or '0')
local version = tonumber(ARGV[6])
if out >= version then
  return 0
end
if ARGV[7] == '1' and out ~= version - 1 then
  return -1
end
redis.call('SET', KEYS[2], ARGV[6], 'EX', ARGV[8])
local entry = {ARGV[4], ARGV[1]}
if ARGV[11] ~= '' then
  entry = {ARGV[4], ARGV[1], ARGV[10], ARGV[11]}
end
if ARGV[2] == '' then
  redis.call('XADD', KEYS[1], '*', unpack(entry))
else
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(entry))
end
redis.call(ARGV[9], ARGV[3], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
""",
)


def publish_on_commit(event: DurableEvent) -> None:
    """Record the event in the outbox now; publish it once the transaction commits.

    Publishing inside the transaction would let a worker read the database before the
    change is visible, or announce a change that is then rolled back. Call it in the
    transaction that makes the change, with the key's row locked (so versions and the
    order of outbox rows agree).
    """
    topic = _durable_topic_of(event)
    row = OutboxEvent.objects.create(
        event_id=event.event_id,
        topic=topic.name,
        key=event.key,
        version=event.version,
        payload=topic.encode(event).decode(),
        trace_context=tracing.current_traceparent(),
    )
    transaction.on_commit(lambda: _publish_after_commit(topic, row))


def publish_live(event: Event) -> None:
    """PUBLISH a live-only event now, on its key's channel; raises redis.RedisError if Redis cannot take it."""
    topic = type(event).topic
    if topic.durable:
        raise ValueError(f"{topic.name} is durable: use publish_on_commit()")
    channel = topic.channel_for(event.key)
    with tracing.publishing(topic=topic.name, destination=channel, event_id=None, key=event.key):
        pipe = shared_redis().pipeline(transaction=False)  # one round trip for both
        publish(pipe, channel, topic.encode(event))
        pipe.incr(metrics.published_counter(topic.name))
        pipe.execute()


def _durable_topic_of(event: DurableEvent) -> Topic:
    topic = type(event).topic
    if not topic.durable:
        raise ValueError(f"{topic.name} is live only: use publish_live()")
    return topic


def _publish_after_commit(topic: Topic, row: OutboxEvent) -> None:
    span, traceparent = _start_publish(topic, row.event_id, row.key, row.trace_context)
    error = None
    try:
        error = _publish_committed(topic, row, traceparent)
    finally:
        tracing.end_publish(span, error)


def _start_publish(topic: Topic, event_id: object, key: str, parent: str | None) -> tuple[tracing.Span, str | None]:
    """The producer span of one row (the child of the change that wrote it) and the context the entry carries."""
    return tracing.start_publish(
        topic=topic.name, destination=topic.stream, event_id=str(event_id), key=key, parent=parent
    )


def _publish_committed(topic: Topic, row: OutboxEvent, traceparent: str | None) -> Exception | None:
    """Returns the Redis error that left the row pending, if one did."""
    # The change is committed whatever happens here: a Redis or database outage must not
    # turn the request into an error, and nothing here waits for anything but one bounded
    # WAIT for a replica. Whatever does not go out (or is not confirmed) now stays pending,
    # and the relay publishes it.
    client = shared_redis()
    try:
        node = node_of(client, topic.stream)
        [result], replicated = on_replicas(
            node,
            lambda pipe: publish_once(
                pipe,
                topic=topic,
                key=row.key,
                version=row.version,
                payload=row.payload,
                in_order=True,
                traceparent=traceparent,
            ),
        )
        if isinstance(result, Exception):
            raise result
        if result == OUT_OF_ORDER:
            # An older version of the key is pending (or on its way from another request): the
            # relay owns the key's pending rows now, in order.
            wake_relay(client)
            return None
    except redis.RedisError as exc:
        forget_nodes(client)
        logger.warning("events of %s %s wait in the outbox (Redis: %s)", topic.name, row.key, exc)
        _record_failed_attempt(topic, row.key, exc)
        return exc
    if replicated is Replicated.NOT_CONFIRMED or (replicated is Replicated.YES and result != PUBLISHED):
        # Out, but no replica confirmed it in time, or it went out on another connection (the
        # relay's: ALREADY), which this connection's WAIT does not cover: the relay's scan finds
        # the row pending and marks it once a replica holds the entry; its copy is a no-op while
        # the key's mark is there. Not woken: nothing is late, the event is out.
        return None
    try:
        mark_published([row.id])
    except DatabaseError as exc:
        # Out, but not marked: the relay finds it pending, the key's mark says it is out, and
        # the relay only marks it.
        logger.warning("event of %s %s not marked as published (database: %s)", topic.name, row.key, exc)
    return None


def wake_relay(client: redis.Redis) -> None:
    """Tell the relays there are rows to publish; raises redis.RedisError if Redis cannot take it."""
    publish(client, RELAY_WAKE, b"")


def _record_failed_attempt(topic: Topic, key: str, exc: Exception) -> None:
    pending = OutboxEvent.objects.filter(topic=topic.name, key=key, published_at__isnull=True)
    try:
        pending.update(attempts=F("attempts") + 1, last_error=str(exc)[:500])
    except DatabaseError as db_exc:
        logger.warning("could not record the failed attempt for %s %s: %s", topic.name, key, db_exc)


class RowsNotPublished(Exception):
    """Some rows of a batch could not be published; the others were, and were marked."""


class Batch(NamedTuple):
    rows: int  # rows read
    new: int  # of them, new to Redis
    marked: int  # of them, marked published (fewer if a replica did not confirm, or Redis refused)


def publish_pending(*, client: redis.Redis | None = None, trim: bool = True) -> Batch:
    """Publish one batch of pending outbox rows in commit order and mark them.

    Only rows of the topics this code declares: a row of another topic (written by a newer
    or older release) waits for code that knows it, instead of failing every batch. A key's
    pending rows come in version order, and the oldest follows a version whose row is marked
    published (even if a lost mark in Redis no longer says so): it goes out without the
    in-order check, the key's next ones with it, so a row that fails does not let its
    successors overtake it. A pending row can already be out (its request published it and
    has not marked it yet, or could not, or no replica confirmed it): the key's mark makes that
    publish a no-op. Rows are marked only once a replica holds them, if the Redis that holds
    their stream has replicas (see the module docstring); the relay renews the last key's mark
    before its WAIT, so that the WAIT, which covers this connection's writes, covers entries
    other connections wrote too. Raises RowsNotPublished, after marking the rest, if Redis
    refused some rows.
    """
    topics = {declared.name: declared for declared in declared_topics() if declared.durable}
    pending = OutboxEvent.objects.filter(published_at__isnull=True, topic__in=topics).order_by("id")
    rows = list(
        pending.values_list("id", "topic", "key", "version", "payload", "event_id", "trace_context")[:BATCH_SIZE]
    )
    if not rows:
        return Batch(0, 0, 0)
    client = client or shared_redis()
    by_node: dict[str, tuple[redis.Redis, list[_Row]]] = {}
    for row in rows:
        node = node_of(client, topics[row[1]].stream)
        by_node.setdefault(_address(node), (node, []))[1].append(row)
    marked: list[int] = []
    new = 0
    failures: list[tuple[_Row, Exception]] = []
    for node, node_rows in by_node.values():
        spans: list[tracing.Span] = []

        def add(
            pipe: redis.client.Pipeline, node_rows: list[_Row] = node_rows, spans: list[tracing.Span] = spans
        ) -> None:
            first_of_key: set[tuple[str, str]] = set()
            spans.clear()  # on_replicas may build the pipeline again (a new master without the script)
            for _, name, key, version, payload, event_id, parent in node_rows:
                follows_a_row_of_this_batch = (name, key) in first_of_key
                first_of_key.add((name, key))
                span, traceparent = _start_publish(topics[name], event_id, key, parent)
                spans.append(span)
                publish_once(
                    pipe,
                    topic=topics[name],
                    key=key,
                    version=version,
                    payload=payload,
                    trim=trim,
                    in_order=follows_a_row_of_this_batch,
                    traceparent=traceparent,
                )

        _, last_topic, last_key, *_ = node_rows[-1]
        try:
            results, replicated = on_replicas(node, add, touch=mark(topics[last_topic], last_key))
        except redis.RedisError as exc:
            forget_nodes(client)
            for span in spans:
                tracing.end_publish(span, exc)
            failures.extend((row, exc) for row in node_rows)
            continue
        for span, result in zip(spans, results, strict=True):
            tracing.end_publish(span, result if isinstance(result, Exception) else None)
        answered = list(zip(node_rows, results, strict=True))
        if replicated is not Replicated.NOT_CONFIRMED:
            marked.extend(row[0] for row, result in answered if result in (PUBLISHED, ALREADY))
        new += sum(1 for result in results if result == PUBLISHED)
        failures.extend((row, result) for row, result in answered if isinstance(result, Exception))
    mark_published(marked)
    if failures:
        (_, name, key, version, *_), error = failures[0]
        raise RowsNotPublished(
            f"{len(failures)} outbox row(s) not published, the first {name} {key} v{version}: {error}"
        ) from error
    return Batch(len(rows), new, len(marked))


_Row = tuple[int, str, str, int, str, object, str | None]  # id, topic, key, version, payload, eventId, traceparent


class Replicated(enum.Enum):
    YES = "a replica acknowledged the writes"
    NO_REPLICA = "the master lists no replica: nothing to wait for"
    NOT_CONFIRMED = "no replica acknowledged within the bound, or the master has replicas this process did not know of"


# Per node (host:port), how many replicas its last ROLE listed: whether a publish there sends
# a WAIT. Asked once per process and node, then refreshed by the ROLE that ends every publish's
# round trip, so a replica that joins or leaves is known from the next publish on: a decision
# on a reply, never on a timing.
_replicas_of: dict[str, int] = {}


def on_replicas(
    node: redis.Redis, add: Callable[[redis.client.Pipeline], object], *, touch: str | None = None
) -> tuple[list[Any], Replicated]:
    """Run the commands `add` queues, in one non-transactional pipeline on `node`, followed (if
    the node has replicas) by a WAIT for one of them, and a ROLE; returns their results (an
    exception instance for a command Redis refused) and whether a replica holds the writes.

    WAIT counts the replicas that acknowledged the writes of the connection it is sent on, up
    to its latest: hence the same pipeline, on the plain client of the node that holds the
    keys. `touch`: a key of that node (a mark) whose time to live is renewed before the WAIT,
    a write of this connection after every entry the commands found already out, so that
    Replicated.YES covers those too. A script the node does not know (a new master after a
    failover) is loaded, and the pipeline run once more: the publish script is idempotent.
    """
    address = _address(node)
    replicas = _replicas_of.get(address)
    if replicas is None:
        replicas = _replicas_of[address] = _listed_replicas(node.execute_command("ROLE"))
    for attempt in (1, 2):
        pipe = node.pipeline(transaction=False)
        add(pipe)
        queued = len(pipe.command_stack)
        scripts, pipe.scripts = list(pipe.scripts), set()  # no SCRIPT EXISTS round trip: NOSCRIPT is handled below
        if replicas:
            if touch is not None:
                pipe.pexpire(touch, MARK_TTL * 1000)
            pipe.execute_command("WAIT", 1, replica_wait_ms())
        pipe.execute_command("ROLE")
        replies = pipe.execute(raise_on_error=False)
        results = replies[:queued]
        if attempt == 1 and any(isinstance(result, redis.exceptions.NoScriptError) for result in results):
            for script in scripts:
                node.script_load(script.script)
            continue
        break
    role = replies[-1]
    if isinstance(role, Exception):
        raise role
    listed = _replicas_of[address] = _listed_replicas(role)
    if replicas:
        acknowledged = replies[-2]
        confirmed = isinstance(acknowledged, int) and acknowledged >= 1
        return results, Replicated.YES if confirmed else Replicated.NOT_CONFIRMED
    return results, Replicated.NOT_CONFIRMED if listed else Replicated.NO_REPLICA


def replica_wait_ms() -> int:
    """WAIT's bound: a fifth of RIDEHAIL_PUBLISH_TIMEOUT (100 ms by default), well within the
    socket timeout of the request path's client, so a slow replica never fails a publish."""
    return max(1, round(settings.RIDEHAIL_PUBLISH_TIMEOUT * 1000 / 5))


def _listed_replicas(role: Any) -> int:
    """The number of replicas a ROLE reply lists (a master's: [b'master', offset, [replica, ...]])."""
    return len(role[2]) if role and role[0] in (b"master", "master") else 0


def _address(node: redis.Redis) -> str:
    options = node.connection_pool.connection_kwargs
    return f"{options.get('host')}:{options.get('port')}:{options.get('path', '')}"


def node_of(client: redis.Redis, key: str) -> redis.Redis:
    """The plain client of the server that holds `key`: `client` itself on a single Redis, the
    slot owner's own client on a cluster (whose client would send a WAIT to every master)."""
    if isinstance(client, RedisCluster):
        return client.get_redis_connection(client.get_node_from_key(key))
    return client


def forget_nodes(client: redis.Redis) -> None:
    """After an error from a node of a cluster: learn the slots again (the node may be dead, or
    no longer own the slot after a failover), so the next publish goes to its new owner."""
    if isinstance(client, RedisCluster):
        try:
            client.nodes_manager.initialize()
        except redis.RedisError as exc:
            logger.warning("could not learn the cluster's slots again: %s", exc)


def mark_published(row_ids: list[int]) -> None:
    OutboxEvent.objects.filter(id__in=row_ids, published_at__isnull=True).update(published_at=timezone.now())


def mark(topic: Topic, key: str) -> str:
    """The key holding the last version of `key` that went out on `topic`'s stream."""
    return f"{topic.stream}:mark:{key}"


def publish_once(
    client: redis.Redis | AnyPipeline,
    *,
    topic: Topic,
    key: str,
    version: int,
    payload: str | bytes,
    trim: bool = True,
    in_order: bool = False,
    traceparent: str | None = None,
) -> int | None:
    """XADD to the stream and PUBLISH on the channel, unless this version of this key already went out.

    `in_order`: only if the previous version is the last that went out (else OUT_OF_ORDER,
    nothing done). `trim=False` appends without trimming: the relay in the workers leaves
    trimming to the web processes, so one RIDEHAIL_STREAM_MAXLEN (the web's) decides how
    long streams are. `traceparent`: the producer span's context, in the entry beside the event
    (tracing.py). Returns the script's answer (None on a pipeline, whose results come
    with execute()).
    """
    return run_script(
        client,
        _PUBLISH_ONCE,
        keys=[topic.stream, mark(topic, key), metrics.published_counter(topic.name)],
        args=[
            payload,
            settings.RIDEHAIL_STREAM_MAXLEN if trim else "",
            topic.channel,
            STREAM_FIELD,
            key,
            version,
            "1" if in_order else "",
            MARK_TTL,
            publish_command(),
            tracing.TRACE_FIELD,
            traceparent or "",
        ],
    )
