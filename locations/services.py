"""Writes of the locations app: a driver's position report, which is only ever published."""

import uuid

from django.utils import timezone

from locations.events import DriverLocationUpdated
from ridehail.events.publisher import publish_live


def report_position(*, driver_id: uuid.UUID, lat: float, lng: float) -> DriverLocationUpdated:
    """Publish the position on `driver-location-updated`; raises redis.RedisError if Redis is down.

    Nothing is written to the database and nothing is kept to publish later: a position is only
    worth something now, and the next report replaces it in a few seconds.

    The time is cut to the millisecond here, once: the geo index keeps milliseconds, so the
    answer, the published event, `nearby` and the dashboard all show the same instant.
    """
    now = timezone.now()
    at = now.replace(microsecond=now.microsecond - now.microsecond % 1000)
    event = DriverLocationUpdated(driver_id=driver_id, lat=float(lat), lng=float(lng), timestamp=at)
    publish_live(event)
    return event
