"""Publishing driver status events to Redis, only ever after the database commit.

Each event goes to the Pub/Sub channel (live, at most once) and to the stream (durable,
for consumer groups) in one pipelined round trip.
"""

import logging

import redis
from django.conf import settings
from django.db import transaction

from ridehail.events.connection import shared_redis
from ridehail.events.event import CHANNEL, STREAM, STREAM_FIELD, DriverStatusChanged

logger = logging.getLogger(__name__)


def publish(event: DriverStatusChanged, *, client: redis.Redis | None = None) -> None:
    """Append the event to the stream and publish it on the channel; raises on Redis errors."""
    payload = event.to_json()
    pipe = (client or shared_redis()).pipeline(transaction=False)
    # Stream first: a subscriber that reacts to the PUBLISH can already find the entry.
    pipe.xadd(STREAM, {STREAM_FIELD: payload}, maxlen=settings.RIDEHAIL_STREAM_MAXLEN, approximate=True)
    pipe.publish(CHANNEL, payload)
    pipe.execute()


def publish_on_commit(event: DriverStatusChanged) -> None:
    """Publish once the surrounding transaction commits; never if it rolls back.

    Publishing inside the transaction would let a worker read the database before the
    change is visible, or announce a change that is then rolled back.
    """
    transaction.on_commit(lambda: _publish_or_log(event))


def _publish_or_log(event: DriverStatusChanged) -> None:
    # The change is committed whatever happens here: a Redis outage must not turn the
    # request into an error. Pub/Sub workers resync from the database when they reconnect.
    try:
        publish(event)
    except redis.RedisError as exc:
        logger.error(
            "event %s (driver %s, version %s) not published: Redis error: %s",
            event.event_id,
            event.driver_id,
            event.version,
            exc,
        )
