"""Where every event is published: through the transactional outbox, after the commit.

`publish_on_commit()` writes the event into the outbox inside the caller's transaction
and, once it commits, publishes it at once (the fast path). If Redis is down the row
waits, and the outbox relay (ridehail/events/outbox.py) publishes it when Redis is back.
Each event goes to the stream (durable) and the Pub/Sub channel (live) in one atomic
script that runs at most once per event, so retries and concurrent relays can never put
an event on the stream twice.
"""

import logging
import uuid

import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone
from redis.commands.core import Script

from ridehail.events.connection import shared_redis
from ridehail.events.event import CHANNEL, STREAM, STREAM_FIELD, DriverStatusChanged
from ridehail.events.models import OutboxEvent

logger = logging.getLogger(__name__)

# Long enough to cover a retry after a crash between publishing and marking the row.
DEDUPE_SECONDS = 3600
BATCH_SIZE = 500

# KEYS: stream, dedupe marker. ARGV: payload, maxlen, dedupe ttl, channel, stream field.
_PUBLISH_ONCE = Script(
    None,
    b"""
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', ARGV[5], ARGV[1])
  redis.call('PUBLISH', ARGV[4], ARGV[1])
  return 1
end
return 0
""",
)


def publish_on_commit(event: DriverStatusChanged) -> None:
    """Record the event in the outbox now; publish it once the transaction commits.

    Publishing inside the transaction would let a worker read the database before the
    change is visible, or announce a change that is then rolled back. Call it in the
    transaction that changes the driver, with the driver's row locked.
    """
    pending = OutboxEvent.objects.filter(driver_id=event.driver_id, published_at__isnull=True)
    # Decided under the driver's row lock: with nothing older waiting, this event can go out
    # on its own right after the commit, without reading the outbox again.
    older_events_wait = pending.exists()
    row = OutboxEvent.objects.create(
        event_id=event.event_id, driver_id=event.driver_id, version=event.version, payload=event.to_json().decode()
    )
    if older_events_wait:
        transaction.on_commit(lambda: _publish_after_commit(event.driver_id))
    else:
        transaction.on_commit(lambda: _publish_after_commit(event.driver_id, only=row))


def _publish_after_commit(driver_id: uuid.UUID, *, only: OutboxEvent | None = None) -> None:
    # The change is committed whatever happens here: a Redis outage must not turn the
    # request into an error. The row stays pending and the relay publishes it later.
    try:
        if only is None:
            publish_pending(driver_id=driver_id)
        else:
            publish_once(shared_redis(), event_id=only.event_id, payload=only.payload)
            _mark_published([only.id])
    except redis.RedisError as exc:
        logger.warning("events of driver %s wait in the outbox (Redis: %s)", driver_id, exc)
        _record_failed_attempt(driver_id, exc)
    except DatabaseError as exc:
        # Published, but not marked: the relay republishes it, and the marker drops the copy.
        logger.warning("events of driver %s not marked as published (database: %s)", driver_id, exc)


def _record_failed_attempt(driver_id: uuid.UUID, exc: Exception) -> None:
    pending = OutboxEvent.objects.filter(driver_id=driver_id, published_at__isnull=True)
    try:
        pending.update(attempts=F("attempts") + 1, last_error=str(exc)[:500])
    except DatabaseError as db_exc:
        logger.warning("could not record the failed attempt for driver %s: %s", driver_id, db_exc)


def publish_pending(*, driver_id: uuid.UUID | None = None, client: redis.Redis | None = None) -> int:
    """Publish unpublished outbox rows (all, or one driver's) in commit order; returns how many.

    A driver's older pending events always go out before its newer ones, whichever
    process gets there first: each publishes every pending row of the driver in order.
    """
    pending = OutboxEvent.objects.filter(published_at__isnull=True).order_by("id")
    if driver_id is not None:
        pending = pending.filter(driver_id=driver_id)
    rows = list(pending.values_list("id", "event_id", "payload")[:BATCH_SIZE])
    if not rows:
        return 0
    pipe = (client or shared_redis()).pipeline(transaction=False)
    for _, event_id, payload in rows:
        publish_once(pipe, event_id=event_id, payload=payload)
    pipe.execute()
    _mark_published([row_id for row_id, _, _ in rows])
    return len(rows)


def _mark_published(row_ids: list[int]) -> None:
    OutboxEvent.objects.filter(id__in=row_ids).update(published_at=timezone.now())


def publish_once(client: redis.Redis | redis.client.Pipeline, *, event_id: uuid.UUID, payload: str | bytes) -> None:
    """XADD to the stream and PUBLISH on the channel, unless this event id already went out."""
    _PUBLISH_ONCE(
        keys=[STREAM, f"{STREAM}:published:{event_id}"],
        args=[payload, settings.RIDEHAIL_STREAM_MAXLEN, DEDUPE_SECONDS, CHANNEL, STREAM_FIELD],
        client=client,
    )
