"""Who the matcher can reach: busy drivers never hide free ones, and every waiting ride is
retried, however many others wait. The matcher is called in-process (as the rides worker
would) over a real Redis holding the pool and the positions, and the real database."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conftest import make_drivers
from locations.positions import TRACKED_DRIVERS, Position, apply_positions
from rides.matching import Outcome, match
from rides.models import Ride, RideStatus
from rides.pool import MATCHING_POOL
from rides.selectors import ride_state
from rides.subscribers import RideMatcher
from users.models import Role, User
from users.selectors import DriverState

pytestmark = pytest.mark.django_db(transaction=True)

PICKUP = (52.5200, 13.4050)
DROPOFF = (52.5000, 13.3000)
METRE = 1 / 111_000  # degrees of latitude


def online_at(client, drivers: list[User], places: list[tuple[float, float]]) -> None:
    """Online in the database, in the matching pool and tracked with a fresh position, as the workers keep them."""
    User.objects.filter(pk__in=[driver.pk for driver in drivers]).update(is_available=True, status_version=1)
    states = [DriverState(driver.id, True, 1) for driver in drivers]
    MATCHING_POOL.apply_many(client, states)
    TRACKED_DRIVERS.apply_many(client, states)
    now = datetime.now(UTC)
    apply_positions(
        client, [Position(driver.id, lat, lng, now) for driver, (lat, lng) in zip(drivers, places, strict=True)]
    )


def riders(count: int, prefix: str) -> list[User]:
    return User.objects.bulk_create([User(username=f"{prefix}-{n:03d}", role=Role.RIDER) for n in range(count)])


WAITED = 5  # seconds: longer than a matching window, shorter than the matching timeout


def rides_for(people: list[User], pickup: tuple[float, float], *, drivers: list[User] | None = None) -> list[Ride]:
    """Rides of these riders at `pickup`: requested, or (with `drivers`) assigned to them, one each.

    Made WAITED seconds ago: a retry round leaves rides younger than the matching window to the
    stream loop that gathers them (RideMatcher._retry_batches).
    """
    made = datetime.now(UTC) - timedelta(seconds=WAITED)
    rides = [
        Ride(
            rider=rider,
            pickup_lat=pickup[0],
            pickup_lng=pickup[1],
            dropoff_lat=DROPOFF[0],
            dropoff_lng=DROPOFF[1],
            status=RideStatus.ASSIGNED if drivers else RideStatus.REQUESTED,
            driver=drivers[n] if drivers else None,
            assigned_at=made if drivers else None,
            requested_at=made,
            status_changed_at=made,
        )
        for n, rider in enumerate(people)
    ]
    return Ride.objects.bulk_create(rides)


def test_twenty_busy_drivers_nearer_do_not_hide_a_free_one(redis_client):
    """Failed before: the matcher asked for the 20 nearest and dropped the busy ones, leaving none."""
    drivers = make_drivers(21)
    # 20 drivers 10-200 m away, all on a ride; the 21st, free, 210 m away.
    online_at(redis_client, drivers, [(PICKUP[0] + 10 * (n + 1) * METRE, PICKUP[1]) for n in range(21)])
    rides_for(riders(20, "busy-rider"), PICKUP, drivers=drivers[:20])
    (ride,) = rides_for(riders(1, "rider"), PICKUP)

    attempt = match(redis_client, ride_state(ride))

    assert (attempt.outcome, attempt.driver_id) == (Outcome.ASSIGNED, drivers[20].id)
    assert Ride.objects.get(pk=ride.pk).driver_id == drivers[20].id


def test_with_every_driver_in_reach_busy_the_ride_waits(redis_client):
    drivers = make_drivers(45)
    online_at(redis_client, drivers, [(PICKUP[0] + 10 * (n + 1) * METRE, PICKUP[1]) for n in range(45)])
    rides_for(riders(45, "busy-rider"), PICKUP, drivers=drivers)
    (ride,) = rides_for(riders(1, "rider"), PICKUP)

    assert match(redis_client, ride_state(ride)).outcome is Outcome.NO_DRIVER
    assert Ride.objects.get(pk=ride.pk).status == RideStatus.REQUESTED


def test_a_ride_with_a_free_driver_is_matched_however_many_wait_elsewhere(redis_client):
    """Failed before: a retry round tried only the 200 oldest waiting rides."""
    nowhere = (48.8566, 2.3522)  # no driver within reach of these
    rides_for(riders(205, "waiting"), nowhere)
    (ride,) = rides_for(riders(1, "lucky"), PICKUP)  # the newest: behind the 205
    (driver,) = make_drivers(1)
    online_at(redis_client, [driver], [(PICKUP[0] + 300 * METRE, PICKUP[1])])  # 0.3 km away

    RideMatcher(redis_client).retry_waiting()

    assert Ride.objects.get(pk=ride.pk).driver_id == driver.id
    assert Ride.objects.filter(status=RideStatus.REQUESTED).count() == 205


def test_a_retry_round_tries_rides_requested_in_the_same_instant_once_each(redis_client):
    """Keyset pages over (requested_at, id): rides sharing a timestamp are neither skipped nor tried twice."""
    at = datetime.now(UTC) - timedelta(seconds=WAITED)
    waiting = rides_for(riders(250, "same-instant"), PICKUP)
    Ride.objects.filter(pk__in=[ride.pk for ride in waiting]).update(requested_at=at, status_changed_at=at)
    drivers = make_drivers(250)
    online_at(redis_client, drivers, [(PICKUP[0] + (n % 100) * METRE, PICKUP[1]) for n in range(250)])

    RideMatcher(redis_client).retry_waiting()

    assigned = list(Ride.objects.filter(status=RideStatus.ASSIGNED).values_list("driver_id", flat=True))
    assert len(assigned) == len(set(assigned)) == 250


def geo_asks(client) -> int:
    """GEOSEARCH calls this Redis has served (its own count: no mock between us and it)."""
    return client.info("commandstats").get("cmdstat_geosearch", {}).get("calls", 0)


@pytest.mark.parametrize("window", [0, 0.5])
def test_a_round_while_every_driver_is_busy_asks_no_geo_index_and_a_fixed_number_of_queries(
    redis_client, settings, window
):
    """Failed before: each of the waiting rides widened its geo ask and asked the database again,
    so one round over 1,000 waiting rides took tens of seconds (bench/matching.py's two matchers)."""
    settings.RIDEHAIL_MATCH_WINDOW_SECONDS = window
    drivers = make_drivers(45)
    online_at(redis_client, drivers, [(PICKUP[0] + 10 * (n + 1) * METRE, PICKUP[1]) for n in range(45)])
    rides_for(riders(45, "busy-rider"), PICKUP, drivers=drivers)
    rides_for(riders(150, "waiting"), PICKUP)
    asked_before = geo_asks(redis_client)

    with CaptureQueriesContext(connection) as queries:
        RideMatcher(redis_client).retry_waiting()

    assert geo_asks(redis_client) == asked_before
    assert len(queries) <= 6, [query["sql"][:80] for query in queries]
    assert Ride.objects.filter(status=RideStatus.REQUESTED).count() == 150


def test_a_round_asks_the_database_about_each_busy_driver_once_however_many_rides_wait(redis_client, settings):
    """One driver is free, out of reach: every ride widens its ask past the busy crowd, but the
    database hears about each driver once a round, not once a ride."""
    settings.RIDEHAIL_MATCH_WINDOW_SECONDS = 0.5
    drivers = make_drivers(46)
    far = (PICKUP[0] + 0.2, PICKUP[1])  # ~22 km: out of reach
    online_at(redis_client, drivers, [(PICKUP[0] + 10 * (n + 1) * METRE, PICKUP[1]) for n in range(45)] + [far])
    rides_for(riders(45, "busy-rider"), PICKUP, drivers=drivers[:45])
    rides_for(riders(150, "waiting"), PICKUP)

    with CaptureQueriesContext(connection) as queries:
        RideMatcher(redis_client).retry_waiting()

    assert len(queries) <= 8, [query["sql"][:80] for query in queries]
    assert Ride.objects.filter(status=RideStatus.REQUESTED).count() == 150
    assert Ride.objects.filter(driver=drivers[45]).count() == 0
