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

The mark is one small key per topic and key (`stream:{T}:mark:<key>`), not one per event:
because a key's versions go out in order, "version N went out" is "the mark is at least N".
It is forgotten a week after the key's last event (MARK_TTL), so keys that are done (a
completed ride) do not pile up in Redis. Order never depends on it: a mark that expired or
was flushed only sends the key's next version through the relay, which publishes a key's
oldest pending row without asking the mark.

A live-only topic's event is published at once with `publish_live()`: no database, no
stream; if Redis is down the caller is told, because there is nothing worth keeping.
"""

import logging

import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone
from redis.commands.core import Script

from ridehail.events import metrics
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
# (PUBLISH, or SPUBLISH on a cluster).
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
if ARGV[2] == '' then
  redis.call('XADD', KEYS[1], '*', ARGV[4], ARGV[1])
else
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', ARGV[4], ARGV[1])
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
    )
    transaction.on_commit(lambda: _publish_after_commit(topic, row))


def publish_live(event: Event) -> None:
    """PUBLISH a live-only event now, on its key's channel; raises redis.RedisError if Redis cannot take it."""
    topic = type(event).topic
    if topic.durable:
        raise ValueError(f"{topic.name} is durable: use publish_on_commit()")
    pipe = shared_redis().pipeline(transaction=False)  # one round trip for both
    publish(pipe, topic.channel_for(event.key), topic.encode(event))
    pipe.incr(metrics.published_counter(topic.name))
    pipe.execute()


def _durable_topic_of(event: DurableEvent) -> Topic:
    topic = type(event).topic
    if not topic.durable:
        raise ValueError(f"{topic.name} is live only: use publish_live()")
    return topic


def _publish_after_commit(topic: Topic, row: OutboxEvent) -> None:
    # The change is committed whatever happens here: a Redis or database outage must not
    # turn the request into an error, and nothing here waits for anything. Whatever does not
    # go out now stays pending, and the relay publishes it.
    client = shared_redis()
    try:
        result = publish_once(client, topic=topic, key=row.key, version=row.version, payload=row.payload, in_order=True)
        if result == OUT_OF_ORDER:
            # An older version of the key is pending (or on its way from another request): the
            # relay owns the key's pending rows now, in order.
            wake_relay(client)
            return
    except redis.RedisError as exc:
        logger.warning("events of %s %s wait in the outbox (Redis: %s)", topic.name, row.key, exc)
        _record_failed_attempt(topic, row.key, exc)
        return
    try:
        mark_published([row.id])
    except DatabaseError as exc:
        # Out, but not marked: the relay finds it pending, the key's mark says it is out, and
        # the relay only marks it.
        logger.warning("event of %s %s not marked as published (database: %s)", topic.name, row.key, exc)


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


def publish_pending(*, client: redis.Redis | None = None, trim: bool = True) -> tuple[int, int]:
    """Publish one batch of pending outbox rows in commit order and mark them; returns
    (rows, how many of them were new to Redis).

    Only rows of the topics this code declares: a row of another topic (written by a newer
    or older release) waits for code that knows it, instead of failing every batch. A key's
    pending rows come in version order, and the oldest follows a version whose row is marked
    published (even if a lost mark in Redis no longer says so): it goes out without the
    in-order check, the key's next ones with it, so a row that fails does not let its
    successors overtake it. A pending row can already be out (its request published it and
    has not marked it yet, or could not): the key's mark makes that publish a no-op. Raises
    RowsNotPublished, after marking the rest, if Redis refused some rows.
    """
    topics = {declared.name: declared for declared in declared_topics() if declared.durable}
    pending = OutboxEvent.objects.filter(published_at__isnull=True, topic__in=topics).order_by("id")
    rows = list(pending.values_list("id", "topic", "key", "version", "payload")[:BATCH_SIZE])
    if not rows:
        return 0, 0
    pipe = (client or shared_redis()).pipeline(transaction=False)
    first_of_key: set[tuple[str, str]] = set()
    for _, name, key, version, payload in rows:
        follows_a_row_of_this_batch = (name, key) in first_of_key
        first_of_key.add((name, key))
        publish_once(
            pipe,
            topic=topics[name],
            key=key,
            version=version,
            payload=payload,
            trim=trim,
            in_order=follows_a_row_of_this_batch,
        )
    results = pipe.execute(raise_on_error=False)
    mark_published([row[0] for row, result in zip(rows, results, strict=True) if result in (PUBLISHED, ALREADY)])
    failures = [(row, result) for row, result in zip(rows, results, strict=True) if isinstance(result, Exception)]
    if failures:
        (_, name, key, version, _), error = failures[0]
        raise RowsNotPublished(
            f"{len(failures)} outbox row(s) not published, the first {name} {key} v{version}: {error}"
        ) from error
    return len(rows), sum(1 for result in results if result == PUBLISHED)


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
) -> int | None:
    """XADD to the stream and PUBLISH on the channel, unless this version of this key already went out.

    `in_order`: only if the previous version is the last that went out (else OUT_OF_ORDER,
    nothing done). `trim=False` appends without trimming: the relay in the workers leaves
    trimming to the web processes, so one RIDEHAIL_STREAM_MAXLEN (the web's) decides how
    long streams are. Returns the script's answer (None on a pipeline, whose results come
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
        ],
    )
