"""Matching on the stream, with real rides and locations workers, real Redis and the database:
the nearest free driver wins, nothing is assigned twice, nothing is lost."""

import json
import signal
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections

from conftest import client_for, make_drivers, make_user
from locations.events import DriverLocationUpdated
from locations.positions import TRACKED_DRIVERS, held_positions, partition_of
from ridehail.events.topic import STREAM_FIELD
from rides.events import RIDE_STATUS, Point
from rides.models import Ride, RideStatus
from rides.pool import MATCHING_POOL
from rides.services import RideConflict, Trip, assign_ride, cancel_ride, request_ride
from tests.processes import wait_until
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

PICKUP = (52.5200, 13.4050)
FAST = {"RIDEHAIL_MATCH_RETRY_SECONDS": "0.2"}


def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL: run with DATABASE_URL=postgres://...")


@pytest.fixture
def workers(start_worker, redis_client):
    """Both workers, as `make run` starts them: locations, then rides."""
    return start_worker("locations"), start_worker("rides", env=FAST)


def online_at(driver, lat: float, lng: float, redis_client) -> None:
    """Online, tracked and in the pool, with a position reported through the API."""
    set_driver_availability(driver_id=driver.id, available=True)
    wait_until(lambda: str(driver.id) in TRACKED_DRIVERS.members(redis_client), what="tracked")
    wait_until(lambda: str(driver.id) in MATCHING_POOL.members(redis_client), what="in the pool")
    response = client_for(driver).put(
        "/api/locations/driver-location", json.dumps({"lat": lat, "lng": lng}), content_type="application/json"
    )
    assert response.status_code == 202, response.content
    wait_until(lambda: str(driver.id) in held_positions(redis_client), what="position held")


def ask(rider, pickup=PICKUP) -> uuid.UUID:
    response = client_for(rider).post(
        "/api/rides",
        json.dumps({"pickup": {"lat": pickup[0], "lng": pickup[1]}, "dropoff": {"lat": 52.5, "lng": 13.3}}),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return uuid.UUID(response.json()["rideId"])


def ride_of(ride_id: uuid.UUID) -> Ride:
    return Ride.objects.get(pk=ride_id)


def settled(ride_id: uuid.UUID, status: str = RideStatus.ASSIGNED) -> Ride | None:
    ride = ride_of(ride_id)
    return ride if ride.status == status else None


def test_a_request_is_assigned_to_a_nearby_driver_end_to_end(workers, redis_client, driver, rider):
    _, rides = workers
    online_at(driver, 52.5210, 13.4060, redis_client)

    ride_id = ask(rider)

    ride = wait_until(lambda: settled(ride_id), timeout=5, what="the assignment")
    assert ride.driver_id == driver.id
    # The log names the people too, not only their ids.
    rides.wait_for_output(f"ride {ride_id} assigned to driver {driver.id} ({driver.username}, rider {rider.username})")
    current = client_for(driver).get("/api/rides/current").json()["ride"]
    assert (current["rideId"], current["status"], current["version"]) == (str(ride_id), "assigned", 2)


def test_the_nearer_of_two_drivers_wins(workers, redis_client, rider):
    far, near = make_drivers(2)
    online_at(far, 52.5400, 13.4300, redis_client)  # ~2.8 km
    online_at(near, 52.5250, 13.4100, redis_client)  # ~0.7 km

    ride_id = ask(rider)

    assert wait_until(lambda: settled(ride_id), timeout=5, what="assigned").driver_id == near.id


def test_a_busy_driver_is_skipped(workers, redis_client, rider):
    busy, free = make_drivers(2)
    online_at(busy, 52.5201, 13.4051, redis_client)
    online_at(free, 52.5300, 13.4200, redis_client)
    first = ask(make_user("first-rider"))
    assert wait_until(lambda: settled(first), timeout=5, what="first").driver_id == busy.id

    second = ask(rider)

    assert wait_until(lambda: settled(second), timeout=5, what="second").driver_id == free.id


def test_drivers_offline_too_far_or_with_an_old_position_are_not_offered(start_worker, redis_client, rider):
    start_worker("locations")
    rides = start_worker("rides", env={**FAST, "RIDEHAIL_MATCH_RADIUS_KM": "1", "RIDEHAIL_POSITION_MAX_AGE": "10"})
    gone, far, stale = make_drivers(3)
    online_at(gone, *PICKUP, redis_client)
    set_driver_availability(driver_id=gone.id, available=False)
    online_at(far, 52.5400, 13.4300, redis_client)  # ~2.8 km: beyond the 1 km radius
    online_at(stale, *PICKUP, redis_client)
    old = DriverLocationUpdated(stale.id, *PICKUP, datetime.now(UTC) - timedelta(seconds=30))
    held = f"{PICKUP[0]} {PICKUP[1]} {int(old.timestamp.timestamp() * 1000)}"
    redis_client.hset(partition_of(stale.id).geo_data, str(stale.id), held)
    wait_until(lambda: str(gone.id) not in MATCHING_POOL.members(redis_client), what="gone from the pool")

    ride_id = ask(rider)

    rides.wait_for_output(f"ride {ride_id}: no free driver within 1 km yet")
    assert ride_of(ride_id).status == RideStatus.REQUESTED


def test_a_ride_with_no_driver_is_tried_again_and_assigned_when_one_appears(workers, redis_client, driver, rider):
    ride_id = ask(rider)
    _, rides = workers
    rides.wait_for_output(f"ride {ride_id}: no free driver")
    assert ride_of(ride_id).status == RideStatus.REQUESTED

    online_at(driver, *PICKUP, redis_client)

    assert wait_until(lambda: settled(ride_id), timeout=5, what="assigned on a retry").driver_id == driver.id


def test_a_ride_nobody_takes_expires_after_the_timeout(start_worker, redis_client, rider):
    rides = start_worker("rides", env={**FAST, "RIDEHAIL_MATCH_TIMEOUT_SECONDS": "1.5"})

    ride_id = ask(rider)

    ride = wait_until(lambda: settled(ride_id, RideStatus.EXPIRED), timeout=5, what="expired")
    assert (ride.driver_id, ride.version) == (None, 2)
    rides.wait_for_output(f"ride {ride_id} expired")
    assert ask(rider)  # the rider may ask again


def test_cancel_racing_assignment_never_leaves_a_driver_holding_a_cancelled_ride(redis_client, driver):
    postgres_only()
    set_driver_availability(driver_id=driver.id, available=True)
    outcomes = Counter()
    for n in range(50):
        rider = make_user(f"racer-{n}")
        ride = request_ride(rider_id=rider.id, trip=Trip(Point(*PICKUP), Point(52.5, 13.3)))
        barrier = threading.Barrier(2)

        def assign(ride_id=ride.id, barrier=barrier) -> None:
            barrier.wait()
            try:
                assign_ride(ride_id=ride_id, driver_id=driver.id, pickup_distance_km=0.0)
            finally:
                connections.close_all()

        def cancel(ride_id=ride.id, barrier=barrier) -> None:
            barrier.wait()
            try:
                cancel_ride(ride_id=ride_id)
            except RideConflict:
                pass
            finally:
                connections.close_all()

        threads = [threading.Thread(target=assign), threading.Thread(target=cancel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        final = ride_of(ride.id)
        assert final.status == RideStatus.CANCELLED  # the cancel always wins in the end
        events = [
            json.loads(fields[STREAM_FIELD.encode()])
            for _, fields in redis_client.xrange(RIDE_STATUS.stream)
            if json.loads(fields[STREAM_FIELD.encode()])["rideId"] == str(ride.id)
        ]
        statuses = [event["status"] for event in events]
        assert statuses in (["requested", "cancelled"], ["requested", "assigned", "cancelled"])
        assert [event["version"] for event in events] == list(range(1, len(events) + 1))
        outcomes[tuple(statuses)] += 1
        assert not Ride.objects.filter(driver=driver, status=RideStatus.ASSIGNED).exists()
    assert sum(outcomes.values()) == 50


def test_twenty_requests_five_drivers_two_workers_exactly_five_assignments(start_worker, redis_client):
    postgres_only()
    start_worker("locations")
    drivers = make_drivers(5)
    for driver in drivers:
        set_driver_availability(driver_id=driver.id, available=True)
    wait_until(lambda: len(TRACKED_DRIVERS.members(redis_client)) == 5, what="tracked")
    for n, driver in enumerate(drivers):
        client_for(driver).put(
            "/api/locations/driver-location",
            json.dumps({"lat": PICKUP[0] + n / 1000, "lng": PICKUP[1]}),
            content_type="application/json",
        )
    wait_until(lambda: len(held_positions(redis_client)) == 5, what="positions")
    workers = [start_worker("rides", env=FAST), start_worker("rides", env=FAST)]
    riders = [make_user(f"crowd-{n}") for n in range(20)]

    threads = [threading.Thread(target=lambda r=r: (ask(r), connections.close_all())) for r in riders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    wait_until(lambda: Ride.objects.filter(status=RideStatus.ASSIGNED).count() == 5, timeout=10, what="5 assigned")
    assigned = list(Ride.objects.filter(status=RideStatus.ASSIGNED).values_list("driver_id", flat=True))
    assert sorted(assigned) == sorted(driver.id for driver in drivers)  # each driver once
    assert Ride.objects.filter(status=RideStatus.REQUESTED).count() == 15

    # Each worker logs its assignments after they commit: wait for the lines, then count them.
    def lines() -> list[str]:
        return [line for worker in workers for line in worker.output.splitlines() if " assigned to driver " in line]

    wait_until(lambda: len(lines()) >= 5, timeout=10, what="the assignments logged")
    assert len(lines()) == 5


def test_a_rides_worker_killed_mid_burst_loses_no_request(start_worker, redis_client):
    # Long enough for the first window to close after the kill and a new worker to start.
    env = {**FAST, "RIDEHAIL_MATCH_TIMEOUT_SECONDS": "8"}
    start_worker("locations")
    first = start_worker("rides", "--claim-idle", "1", env=env)
    drivers = make_drivers(3)
    for driver in drivers:
        online_at(driver, *PICKUP, redis_client)
    riders = [make_user(f"burst-{n}") for n in range(15)]

    ride_ids = []
    for n, rider in enumerate(riders):
        ride_ids.append(ask(rider))
        if n == 5:
            first.signal(signal.SIGKILL)
    first.wait_exit(timeout=5)
    start_worker("rides", "--claim-idle", "1", env=env)

    def all_settled() -> Counter[str] | None:
        statuses = Counter(Ride.objects.filter(pk__in=ride_ids).values_list("status", flat=True))
        return statuses if statuses[RideStatus.REQUESTED] == 0 and statuses else None  # wait_until returns it

    statuses = wait_until(all_settled, timeout=30, what="every request assigned or expired")
    assert statuses[RideStatus.ASSIGNED] == 3
    assert statuses[RideStatus.EXPIRED] == 12


def test_requests_made_while_redis_is_down_are_matched_when_it_is_back(own_redis, start_worker, driver, rider):
    start_worker("locations", env={"REDIS_URL": own_redis.url})
    rides = start_worker("rides", env={**FAST, "REDIS_URL": own_redis.url})
    online_at(driver, *PICKUP, own_redis.client)
    own_redis.stop()

    ride_id = ask(rider)  # 201: the request and its event are committed; the event waits

    assert ride_of(ride_id).status == RideStatus.REQUESTED
    own_redis.start()  # the worker's relay publishes the event; the matcher reads it (or finds it)
    # The positions went with Redis: the driver reports again, as a driver's app does every few seconds.
    wait_until(lambda: str(driver.id) in TRACKED_DRIVERS.members(own_redis.client), timeout=15, what="tracked")
    rides.wait_for_output("listening on driver-status-changed", count=2, timeout=15)
    wait_until(
        lambda: _report(driver) == 202 and str(driver.id) in held_positions(own_redis.client),
        timeout=15,
        interval=0.5,
        what="a position held again (each loop of the worker reconnects by itself)",
    )
    assert wait_until(lambda: settled(ride_id), timeout=10, what="matched").driver_id == driver.id


def _report(driver) -> int:
    response = client_for(driver).put(
        "/api/locations/driver-location",
        json.dumps({"lat": PICKUP[0], "lng": PICKUP[1]}),
        content_type="application/json",
    )
    return response.status_code
