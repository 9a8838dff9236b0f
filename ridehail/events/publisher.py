"""Where every event is published.

A durable topic's event goes through the transactional outbox: `publish_on_commit()`
writes it into the outbox inside the caller's transaction and, once that commits,
publishes it at once (the fast path). If Redis is down the row waits, and the outbox
relay (ridehail/events/outbox.py) publishes it when Redis is back. Each event goes to the
stream (durable) and the Pub/Sub channel (live) in one atomic script that runs at most
once per event, so retries and concurrent relays can never put an event on the stream
twice, and a key's events always leave in version order.

Order per key is kept in Redis, not by reading the outbox: the fast path publishes version
N only if version N-1's marker is there (or N is 1). If it is not (N-1 waits in the
outbox because Redis was down, or is still on its way from another process), it waits a
moment while N-1 may still be on its own fast path, then the slow path publishes every
pending row of the key in order. So the common case costs the transaction
nothing beyond its own outbox row, and the row is marked published by a batch, shortly after
(marks.py), not by a second transaction per change.

A live-only topic's event is published at once with `publish_live()`: no database, no
stream; if Redis is down the caller is told, because there is nothing worth keeping.
"""

import logging
import time
from datetime import timedelta

import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone
from redis.commands.core import Script

from ridehail.events import metrics
from ridehail.events.connection import shared_redis
from ridehail.events.marks import marks
from ridehail.events.models import OutboxEvent
from ridehail.events.topic import STREAM_FIELD, DurableEvent, Event, Topic, declared_topics

logger = logging.getLogger(__name__)

# Long enough to cover a retry after a crash between publishing and marking the row, and the
# gap between two versions of a key that order is checked across.
DEDUPE_SECONDS = 3600
BATCH_SIZE = 500
PUBLISHED, ALREADY, OUT_OF_ORDER = 1, 0, -1
# A pending row this young that nobody has tried to publish yet belongs to its fast path: it is
# being published, or marked (marks.py), right now. The relay leaves it alone that long.
LEAVE_TO_THE_FAST_PATH = 2.0
# How long a newer version waits for such an older row to go out or be marked before publishing
# every pending row of the key itself.
WAIT_FOR_PREDECESSOR = 1.0

# KEYS: stream, this event's marker, the previous version's marker ('' for none or not to check),
# the published-events counter (metrics.py). ARGV: payload, maxlen ('' = do not trim), marker
# ttl, channel (the topic's name), stream field.
# Returns PUBLISHED, ALREADY (its marker was there) or OUT_OF_ORDER (the previous one's was not).
_PUBLISH_ONCE = Script(
    None,
    b"""
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
if KEYS[3] ~= '' and redis.call('EXISTS', KEYS[3]) == 0 then
  return -1
end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
if ARGV[2] == '' then
  redis.call('XADD', KEYS[1], '*', ARGV[5], ARGV[1])
else
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', ARGV[5], ARGV[1])
end
redis.call('PUBLISH', ARGV[4], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
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
    """PUBLISH a live-only event now; raises redis.RedisError if Redis cannot take it."""
    topic = type(event).topic
    if topic.durable:
        raise ValueError(f"{topic.name} is durable: use publish_on_commit()")
    pipe = shared_redis().pipeline(transaction=False)  # one round trip for both
    pipe.publish(topic.channel, topic.encode(event))
    pipe.hincrby(metrics.PUBLISHED, topic.name, 1)
    pipe.execute()


def _durable_topic_of(event: DurableEvent) -> Topic:
    topic = type(event).topic
    if not topic.durable:
        raise ValueError(f"{topic.name} is live only: use publish_live()")
    return topic


def _publish_after_commit(topic: Topic, row: OutboxEvent) -> None:
    # The change is committed whatever happens here: a Redis outage must not turn the
    # request into an error. The row stays pending and the relay publishes it later.
    try:
        result = publish_once(
            shared_redis(), topic=topic, key=row.key, version=row.version, payload=row.payload, in_order=True
        )
        if result == OUT_OF_ORDER:
            result = _publish_once_the_predecessor_settles(topic, row)
        if result == OUT_OF_ORDER:
            publish_pending(topic=topic, key=row.key)  # the older ones first, then this one
        else:
            marks.add(row.id)
    except redis.RedisError as exc:
        logger.warning("events of %s %s wait in the outbox (Redis: %s)", topic.name, row.key, exc)
        _record_failed_attempt(topic, row.key, exc)
    except DatabaseError as exc:
        # Published, but not marked: the relay republishes it, and the marker drops the copy.
        logger.warning("events of %s %s not marked as published (database: %s)", topic.name, row.key, exc)


def _publish_once_the_predecessor_settles(topic: Topic, row: OutboxEvent) -> int:
    """Retry the in-order publish while an older row of the key may still be on its fast path.

    The previous version's marker is missing. Usually that version is merely in flight (it
    committed just before this one, and its process publishes it within milliseconds). But
    its marker may also have been wiped (FLUSHALL, Redis restarted empty) after it went out
    and before its batch marked the row: publishing every pending row now would put it on
    the stream a second time. So while an older row is young and untried, wait for one of
    the two to settle it: its marker appears (publish this one in order) or its row is
    marked (nothing older is pending: the slow path publishes only this one). A row that
    failed to publish or is older than the fast path's window is not waited for.
    """
    deadline = time.monotonic() + WAIT_FOR_PREDECESSOR
    delay = 0.002
    while _older_row_on_its_fast_path(topic, row) and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
        result = publish_once(
            shared_redis(), topic=topic, key=row.key, version=row.version, payload=row.payload, in_order=True
        )
        if result != OUT_OF_ORDER:
            return result
    return OUT_OF_ORDER


def _older_row_on_its_fast_path(topic: Topic, row: OutboxEvent) -> bool:
    return OutboxEvent.objects.filter(
        topic=topic.name,
        key=row.key,
        id__lt=row.id,
        published_at__isnull=True,
        attempts=0,
        created_at__gte=timezone.now() - timedelta(seconds=LEAVE_TO_THE_FAST_PATH),
    ).exists()


def _record_failed_attempt(topic: Topic, key: str, exc: Exception) -> None:
    pending = OutboxEvent.objects.filter(topic=topic.name, key=key, published_at__isnull=True)
    try:
        pending.update(attempts=F("attempts") + 1, last_error=str(exc)[:500])
    except DatabaseError as db_exc:
        logger.warning("could not record the failed attempt for %s %s: %s", topic.name, key, db_exc)


def publish_pending(
    *, topic: Topic | None = None, key: str | None = None, client: redis.Redis | None = None, trim: bool = True
) -> int:
    """Publish unpublished outbox rows (all, or one key's) in commit order; returns how many rows.

    A key's older pending events always go out before its newer ones, whichever process
    gets there first: each publishes every pending row of the key in order.
    """
    rows, _ = publish_pending_rows(topic=topic, key=key, client=client, trim=trim)
    return rows


def publish_pending_rows(
    *,
    topic: Topic | None = None,
    key: str | None = None,
    client: redis.Redis | None = None,
    trim: bool = True,
    older_than: float = 0.0,
) -> tuple[int, int]:
    """Like `publish_pending`, and also says how many of the rows were new to Redis.

    A row can be pending and yet already out: the fast path publishes right after the
    commit and its batch marks the row a moment later. The marker makes that second publish
    a no-op, and the count says so. `older_than` (seconds) leaves the newest rows to the
    fast path that is about to mark them.
    """
    pending = OutboxEvent.objects.filter(published_at__isnull=True).order_by("id")
    if topic is not None:
        pending = pending.filter(topic=topic.name)
    if key is not None:
        pending = pending.filter(key=key)
    if older_than:
        pending = pending.filter(created_at__lt=timezone.now() - timedelta(seconds=older_than))
    rows = list(pending.values_list("id", "topic", "key", "version", "payload")[:BATCH_SIZE])
    if not rows:
        return 0, 0
    topics = {declared.name: declared for declared in declared_topics()}
    pipe = (client or shared_redis()).pipeline(transaction=False)
    for _, name, row_key, version, payload in rows:
        publish_once(pipe, topic=topics[name], key=row_key, version=version, payload=payload, trim=trim)
    new = sum(1 for result in pipe.execute() if result == PUBLISHED)
    _mark_published([row_id for row_id, *_ in rows])
    return len(rows), new


def _mark_published(row_ids: list[int]) -> None:
    OutboxEvent.objects.filter(id__in=row_ids).update(published_at=timezone.now())


def marker(topic: Topic, key: str, version: int) -> str:
    """The key whose presence says this version of this key went out."""
    return f"{topic.stream}:published:{key}:{version}"


def publish_once(
    client: redis.Redis | redis.client.Pipeline,
    *,
    topic: Topic,
    key: str,
    version: int,
    payload: str | bytes,
    trim: bool = True,
    in_order: bool = False,
) -> int | None:
    """XADD to the stream and PUBLISH on the channel, unless this version of this key already went out.

    `in_order`: only if the previous version went out (else OUT_OF_ORDER, nothing done).
    `trim=False` appends without trimming: the relay in the workers leaves trimming to the
    web processes, so one RIDEHAIL_STREAM_MAXLEN (the web's) decides how long streams are.
    Returns the script's answer (None on a pipeline, whose results come with execute()).
    """
    previous = marker(topic, key, version - 1) if in_order and version > 1 else ""
    return _PUBLISH_ONCE(
        keys=[topic.stream, marker(topic, key, version), previous, metrics.PUBLISHED],
        args=[payload, settings.RIDEHAIL_STREAM_MAXLEN if trim else "", DEDUPE_SECONDS, topic.channel, STREAM_FIELD],
        client=client,
    )
