"""Matching a requested ride to the nearest free driver.

Candidates come from the locations service's geo index (fresh positions within
RIDEHAIL_MATCH_RADIUS_KM of the pickup, nearest first), are kept if they are in the rides
worker's matching pool and have no assigned ride, and are tried in order: the assignment is
one transaction (rides.services.assign_ride) in which the database has the last word. A
driver taken meanwhile by another worker is skipped for the next one; a ride taken or
cancelled meanwhile ends the attempt.
"""

import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

import redis
from django.conf import settings
from django.utils import timezone

from locations.selectors import nearby_drivers
from rides.events import Point, RideState
from rides.models import Ride, RideStatus
from rides.pool import MATCHING_POOL
from rides.selectors import busy_driver_ids, ride_state
from rides.services import DriverUnavailable, assign_ride, expire_ride
from users.selectors import usernames

logger = logging.getLogger("rides")

CANDIDATES = 20  # the nearest drivers asked for; a city with more busy ones in range waits for the retry


class Outcome(enum.Enum):
    ASSIGNED = "assigned"
    NO_DRIVER = "no driver"  # tried again every RIDEHAIL_MATCH_RETRY_SECONDS
    EXPIRED = "expired"
    NOT_WAITING = "not waiting"  # assigned, cancelled or expired already, or being assigned elsewhere


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    driver_id: uuid.UUID | None = None


def candidates(client: redis.Redis, *, pickup: Point) -> list[uuid.UUID]:
    """Free drivers near the pickup, nearest first: fresh position, in the matching pool, no assigned ride."""
    near = nearby_drivers(
        client,
        lat=pickup.lat,
        lng=pickup.lng,
        radius_km=settings.RIDEHAIL_MATCH_RADIUS_KM,
        limit=CANDIDATES,
        among=MATCHING_POOL.key,
    )
    ids = [entry.position.driver_id for entry in near]
    busy = busy_driver_ids(ids) if ids else set()
    return [driver_id for driver_id in ids if driver_id not in busy]


def try_to_match(client: redis.Redis, ride_id: uuid.UUID) -> Attempt:
    """One attempt for a ride known only by its id (a retry): read it, then match it."""
    ride = Ride.objects.filter(pk=ride_id, status=RideStatus.REQUESTED).first()
    if ride is None:
        return Attempt(Outcome.NOT_WAITING)
    return match(client, ride_state(ride))


def match(client: redis.Redis, ride: RideState) -> Attempt:
    """One attempt for one ride, from what its event says; never waits for a driver to appear.

    The event may be older than the ride (it was assigned or cancelled since): the assignment
    re-checks the status under the row lock, so nothing is read first.
    """
    if timezone.now() - ride.requested_at >= timedelta(seconds=settings.RIDEHAIL_MATCH_TIMEOUT_SECONDS):
        return _expire(ride.ride_id)
    for driver_id in candidates(client, pickup=ride.pickup):
        try:
            assigned = assign_ride(ride_id=ride.ride_id, driver_id=driver_id)
        except DriverUnavailable:
            continue  # taken by another ride a moment ago, or gone offline: the next one
        if assigned is None:
            return Attempt(Outcome.NOT_WAITING)
        # Names for the person reading the log: one indexed query, once per assignment (not per event).
        names = usernames([driver_id, ride.rider_id])
        logger.info(
            "ride %s assigned to driver %s (%s, rider %s)",
            ride.ride_id,
            driver_id,
            names.get(str(driver_id), "?"),
            names.get(str(ride.rider_id), "?"),
        )
        return Attempt(Outcome.ASSIGNED, driver_id)
    return Attempt(Outcome.NO_DRIVER)


def _expire(ride_id: uuid.UUID) -> Attempt:
    if expire_ride(ride_id=ride_id) is None:
        return Attempt(Outcome.NOT_WAITING)
    logger.info(
        "ride %s expired: no driver within %g km in %gs",
        ride_id,
        settings.RIDEHAIL_MATCH_RADIUS_KM,
        settings.RIDEHAIL_MATCH_TIMEOUT_SECONDS,
    )
    return Attempt(Outcome.EXPIRED)
