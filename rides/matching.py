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
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import redis
from django.conf import settings
from django.utils import timezone

from locations.selectors import NearbyDriver, nearby_drivers
from rides.assignment import CANDIDATES, Ask, least_total_distance
from rides.events import Point, RideState
from rides.pool import MATCHING_POOL
from rides.selectors import any_free_driver, free_driver_ids, still_requested
from rides.services import Assignment, DriverUnavailable, assign_ride, assign_rides, expire_ride
from users.selectors import usernames

logger = logging.getLogger("rides")

# CANDIDATES (rides/assignment.py, where the benchmark reads it too): free drivers tried per
# attempt, nearest first (another worker may take some meanwhile), and what a batch sees of each request.
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


def pool_drivers_near(client: redis.Redis, pickup: Point, *, limit: int) -> list[NearbyDriver]:
    """The matcher's one geo ask: the pool's drivers with a fresh position within the match radius, nearest first."""
    return nearby_drivers(
        client,
        lat=pickup.lat,
        lng=pickup.lng,
        radius_km=settings.RIDEHAIL_MATCH_RADIUS_KM,
        limit=limit,
        among=MATCHING_POOL,
    )


class FreeDrivers:
    """The database's word on who is free, asked once per driver within one batch or retry round.

    A round over 1,000 waiting rides while every driver in reach was busy asked the database,
    and widened its geo ask, for each ride anew: tens of seconds for one round on a crowded
    street (bench/matching.py's two-matcher run), a worker deaf to SIGTERM meanwhile. Within a
    round the answers are kept. A driver the round assigns leaves the free set; one assigned
    meanwhile by another worker is still refused by the assignment's own check under the row
    lock (DriverUnavailable), so a kept answer can cost an attempt, never a double assignment.
    """

    def __init__(self) -> None:
        self._checked: set[uuid.UUID] = set()
        self._free: set[uuid.UUID] = set()
        self._anyone: bool | None = None

    def anyone(self) -> bool:
        """Whether any driver is free at all (one query, once): if not, no geo ask can find one."""
        if self._anyone is None:
            self._anyone = any_free_driver()
        return self._anyone

    def among(self, driver_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """The free ones known so far, after asking the database about those not asked yet."""
        if unchecked := [driver_id for driver_id in driver_ids if driver_id not in self._checked]:
            self._free |= free_driver_ids(unchecked)
            self._checked.update(unchecked)
        return self._free

    def taken(self, driver_id: uuid.UUID) -> None:
        self._free.discard(driver_id)


def candidates(
    client: redis.Redis, *, pickup: Point, limit: int = CANDIDATES, free: FreeDrivers | None = None
) -> list[tuple[uuid.UUID, float]]:
    """Up to `limit` free drivers in reach of the pickup, nearest first, as (driver, pickup distance in km).

    The geo index knows who is online and near (the pool's members with a fresh position),
    the database who is free (active, online, no assigned ride). When busy drivers crowd the
    nearest out, the ask widens until it holds `limit` free ones or everyone in reach: however
    many busy drivers are nearer, a free one in reach is offered. `free`: a batch's or round's
    answers so far (a wider ask repeats the nearer drivers: each is asked about once).
    """
    ask, free = limit, free or FreeDrivers()
    while True:
        near = pool_drivers_near(client, pickup, limit=ask)
        known_free = free.among([entry.position.driver_id for entry in near])
        found = [(e.position.driver_id, e.distance_km) for e in near if e.position.driver_id in known_free]
        if len(found) >= limit or len(near) < ask:
            return found[:limit]
        ask *= WIDEN


def match(client: redis.Redis, ride: RideState, *, free: FreeDrivers | None = None) -> Attempt:
    """One attempt for one ride, from what its event says; never waits for a driver to appear.

    The event may be older than the ride (it was assigned or cancelled since): the assignment
    re-checks the status under the row lock, so nothing is read first. `free`: the round's
    answers about drivers, when the attempt is one of many (see FreeDrivers).
    """
    if overdue(ride):
        return _expire(ride.ride_id)
    free = free or FreeDrivers()
    for driver_id, km in candidates(client, pickup=ride.pickup, free=free):
        try:
            assigned = assign_ride(ride_id=ride.ride_id, driver_id=driver_id, pickup_distance_km=km)
        except DriverUnavailable:
            free.taken(driver_id)
            continue  # taken by another ride a moment ago, or gone offline: the next one
        if assigned is None:
            return Attempt(Outcome.NOT_WAITING)
        free.taken(driver_id)
        # Names for the person reading the log: one indexed query, once per assignment (not per event).
        _log_assigned([(ride, driver_id, km)])
        return Attempt(Outcome.ASSIGNED, driver_id)
    return Attempt(Outcome.NO_DRIVER)


def overdue(ride: RideState) -> bool:
    """Waiting since it last became requested (its timestamp): a ride given back waits anew."""
    return timezone.now() - ride.timestamp >= timedelta(seconds=settings.RIDEHAIL_MATCH_TIMEOUT_SECONDS)


def free_drivers_near(
    client: redis.Redis, pickups: Sequence[Point], *, free: FreeDrivers, limit: int = CANDIDATES
) -> list[tuple[list[tuple[uuid.UUID, float]], bool]]:
    """For each pickup, its nearest free drivers in reach as (driver, km), and whether that is everyone.

    The batched matcher's bulk form of `candidates()`, built on the same geo query
    (`nearby_drivers`, one call per pickup) and the same database check, asked once for the
    union of all pickups' drivers. It does not widen: when busy drivers fill a pickup's ask,
    the second value is False and a request left without a driver by the batch goes through
    `match()`, whose `candidates()` widens until it finds the free ones.
    """
    near = [pool_drivers_near(client, pickup, limit=limit) for pickup in pickups]
    known_free = free.among(list({entry.position.driver_id for found in near for entry in found}))
    return [
        (
            [(e.position.driver_id, e.distance_km) for e in found if e.position.driver_id in known_free],
            len(found) < limit,
        )
        for found in near
    ]


@dataclass(frozen=True)
class Batch:
    """What one batch did: for the log, the benchmark and the dashboard's health strip."""

    size: int
    assigned: int
    solve_ms: float
    outcomes: dict[uuid.UUID, Outcome]


def match_batch(client: redis.Redis, rides: Sequence[RideState], *, free: FreeDrivers | None = None) -> Batch:
    """One attempt for each of these rides together: the least total pickup distance.

    Candidates come from `free_drivers_near`, the assignment from `least_total_distance`, and
    the batch's assignments are one transaction (`assign_rides`). A ride the batch leaves
    without a driver while one may be free in reach (a driver taken meanwhile, or one hidden
    behind busy ones) gets `match()`'s attempt of its own at once; the others wait for a retry.
    """
    outcomes: dict[uuid.UUID, Outcome] = {}
    waiting = []
    # A request assigned or cancelled since its event (a retry round got it first, a worker
    # started on a backlog) costs one query here, not a geo query, a solve and an attempt.
    requested = still_requested([ride.ride_id for ride in rides])
    for ride in rides:
        if ride.ride_id not in requested:
            outcomes[ride.ride_id] = Outcome.NOT_WAITING
        elif overdue(ride):
            outcomes[ride.ride_id] = _expire(ride.ride_id).outcome
        else:
            waiting.append(ride)
    free = free or FreeDrivers()
    if waiting and not free.anyone():
        # Every driver is busy or offline: no geo ask, no solve, no attempt per ride (a crowded city's rush hour).
        outcomes |= dict.fromkeys((ride.ride_id for ride in waiting), Outcome.NO_DRIVER)
        return Batch(size=len(rides), assigned=0, solve_ms=0.0, outcomes=outcomes)
    found = free_drivers_near(client, [ride.pickup for ride in waiting], free=free)
    started = time.perf_counter()
    pairs = least_total_distance([Ask(ride, candidates) for ride, (candidates, _) in zip(waiting, found, strict=True)])
    solve_ms = (time.perf_counter() - started) * 1000
    by_id = {ride.ride_id: ride for ride in waiting}
    assigned = {ride.id for ride in assign_rides([Assignment(p.ride.ride_id, p.driver, p.distance_km) for p in pairs])}
    _log_assigned([(pair.ride, pair.driver, pair.distance_km) for pair in pairs if pair.ride.ride_id in assigned])
    taken = {pair.driver for pair in pairs if pair.ride.ride_id in assigned}
    for driver_id in taken:
        free.taken(driver_id)
    for ride, (candidates, everyone) in zip(waiting, found, strict=True):
        if ride.ride_id in assigned:
            outcomes[ride.ride_id] = Outcome.ASSIGNED
        elif everyone and all(driver in taken for driver, _ in candidates):
            # Everyone free in reach was checked, and the batch gave them to others: nothing to try now.
            outcomes[ride.ride_id] = Outcome.NO_DRIVER
        else:
            outcomes[ride.ride_id] = match(client, by_id[ride.ride_id], free=free).outcome
    count = sum(outcome is Outcome.ASSIGNED for outcome in outcomes.values())
    return Batch(size=len(rides), assigned=count, solve_ms=solve_ms, outcomes=outcomes)


def _log_assigned(assignments: Sequence[tuple[RideState, uuid.UUID, float]]) -> None:
    if not assignments:
        return
    # Names for the person reading the log: one indexed query per batch (not per event).
    names = usernames([person for ride, driver_id, _ in assignments for person in (driver_id, ride.rider_id)])
    for ride, driver_id, km in assignments:
        logger.info(
            "ride %s assigned to driver %s (%s, rider %s), pickup %.2f km",
            ride.ride_id,
            driver_id,
            names.get(str(driver_id), "?"),
            names.get(str(ride.rider_id), "?"),
            km,
        )


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
