"""Matching a requested ride to the nearest free driver.

Candidates come from the locations service's geo index (fresh positions within
RIDEHAIL_MATCH_RADIUS_KM of the pickup of drivers in the rides worker's matching pool,
nearest first), are kept if the database says they are free (active, online, no assigned
ride), read further until enough are free, and are tried in order: the assignment is
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
from rides.pool import MATCHING_POOL
from rides.selectors import free_driver_ids
from rides.services import DriverUnavailable, assign_ride, expire_ride
from users.selectors import usernames

logger = logging.getLogger("rides")

CANDIDATES = 20  # free drivers tried per attempt, nearest first (another worker may take some meanwhile)
WIDEN = 4  # how much more of the geo index each further ask reads, when busy drivers fill the nearest


class Outcome(enum.Enum):
    ASSIGNED = "assigned"
    NO_DRIVER = "no driver"  # tried again every RIDEHAIL_MATCH_RETRY_SECONDS
    EXPIRED = "expired"
    NOT_WAITING = "not waiting"  # assigned, cancelled or expired already, or being assigned elsewhere


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    driver_id: uuid.UUID | None = None


def candidates(client: redis.Redis, *, pickup: Point, limit: int = CANDIDATES) -> list[uuid.UUID]:
    """Up to `limit` free drivers in reach of the pickup, nearest first.

    The geo index knows who is online and near (the pool's members with a fresh position),
    the database who is free (active, online, no assigned ride). When busy drivers crowd the
    nearest out, the ask widens until it holds `limit` free ones or everyone in reach: however
    many busy drivers are nearer, a free one in reach is offered.
    """
    ask, checked, free = limit, set[uuid.UUID](), set[uuid.UUID]()
    while True:
        near = nearby_drivers(
            client,
            lat=pickup.lat,
            lng=pickup.lng,
            radius_km=settings.RIDEHAIL_MATCH_RADIUS_KM,
            limit=ask,
            among=MATCHING_POOL,
        )
        ids = [entry.position.driver_id for entry in near]
        # A wider ask repeats the nearer drivers: the database is asked only about the new ones.
        if unchecked := [driver_id for driver_id in ids if driver_id not in checked]:
            free |= free_driver_ids(unchecked)
            checked.update(unchecked)
        found = [driver_id for driver_id in ids if driver_id in free]
        if len(found) >= limit or len(near) < ask:
            return found[:limit]
        ask *= WIDEN


def match(client: redis.Redis, ride: RideState) -> Attempt:
    """One attempt for one ride, from what its event says; never waits for a driver to appear.

    The event may be older than the ride (it was assigned or cancelled since): the assignment
    re-checks the status under the row lock, so nothing is read first.
    """
    # Waiting since it last became requested (its timestamp): a ride given back waits anew.
    if timezone.now() - ride.timestamp >= timedelta(seconds=settings.RIDEHAIL_MATCH_TIMEOUT_SECONDS):
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
