"""`GET /api/locations/nearby` and the locations worker's geo index, end to end: position reports
through the API, a real locations worker, real Redis."""

import json
import math
import signal
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from conftest import client_for, make_drivers
from locations.events import DRIVER_LOCATION, DriverLocationUpdated
from locations.positions import TRACKED_DRIVERS, held_positions, partitions
from tests.processes import wait_until
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

BERLIN = (52.5200, 13.4050)


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Computed here, apart from the code under test: the mean Earth radius, 6371.0088 km."""
    (lat1, lng1), (lat2, lng2) = (tuple(map(math.radians, point)) for point in (a, b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def report(driver, lat: float, lng: float) -> None:
    response = client_for(driver).put(
        "/api/locations/driver-location", json.dumps({"lat": lat, "lng": lng}), content_type="application/json"
    )
    assert response.status_code == 202, response.content


def nearby(client, **params) -> dict:
    response = client.get("/api/locations/nearby", params)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def locations_worker(start_worker, redis_client):
    return start_worker("locations")


def go_online(*drivers) -> None:
    for driver in drivers:
        set_driver_availability(driver_id=driver.id, available=True)


def test_reported_positions_are_found_nearest_first_with_the_right_distance(locations_worker, redis_client, rider):
    near, far, _offline = make_drivers(3)
    go_online(near, far)
    wait_until(lambda: len(TRACKED_DRIVERS.members(redis_client)) == 2, what="two drivers tracked")
    points = {near.id: (52.5210, 13.4100), far.id: (52.5400, 13.4500)}
    for driver, (lat, lng) in points.items():
        report(next(d for d in (near, far) if d.id == driver), lat, lng)
    wait_until(lambda: len(held_positions(redis_client)) == 2, what="two positions held")

    found = nearby(client_for(rider), lat=BERLIN[0], lng=BERLIN[1])["drivers"]

    assert [entry["driverId"] for entry in found] == [str(near.id), str(far.id)]
    for entry in found:
        expected = haversine_km(BERLIN, points[uuid.UUID(entry["driverId"])])
        assert entry["distanceKm"] == pytest.approx(expected, abs=1e-3)
        assert (entry["lat"], entry["lng"]) == points[uuid.UUID(entry["driverId"])]  # exact, not the geohash
    assert set(found[0]) == {"driverId", "lat", "lng", "distanceKm", "timestamp"}
    assert nearby(client_for(rider), lat=BERLIN[0], lng=BERLIN[1], limit=1)["drivers"][0]["driverId"] == str(near.id)
    assert nearby(client_for(rider), lat=BERLIN[0], lng=BERLIN[1], radius_km=0.5)["drivers"][0]["driverId"] == str(
        near.id
    )
    assert len(nearby(client_for(rider), lat=BERLIN[0], lng=BERLIN[1], radius_km=0.5)["drivers"]) == 1


def test_a_driver_going_offline_leaves_nearby_within_a_second_or_two(locations_worker, redis_client, staff):
    [driver] = make_drivers(1)
    go_online(driver)
    wait_until(lambda: TRACKED_DRIVERS.members(redis_client) == [str(driver.id)], what="tracked")
    report(driver, *BERLIN)
    wait_until(lambda: nearby(client_for(staff), lat=BERLIN[0], lng=BERLIN[1])["drivers"], what="found")

    set_driver_availability(driver_id=driver.id, available=False)

    wait_until(lambda: not nearby(client_for(staff), lat=BERLIN[0], lng=BERLIN[1])["drivers"], timeout=2, what="gone")
    assert held_positions(redis_client) == {}  # dropped, not only hidden


def test_stale_positions_are_not_offered(start_worker, redis_client, rider):
    start_worker("locations", env={"RIDEHAIL_POSITION_MAX_AGE": "60"})
    [driver] = make_drivers(1)
    go_online(driver)
    wait_until(lambda: TRACKED_DRIVERS.members(redis_client) == [str(driver.id)], what="tracked")
    old = datetime.now(UTC) - timedelta(seconds=61)
    redis_client.publish(
        DRIVER_LOCATION.channel, DRIVER_LOCATION.encode(DriverLocationUpdated(driver.id, *BERLIN, old))
    )
    wait_until(lambda: held_positions(redis_client) or None, what="the old position held")

    assert nearby(client_for(rider), lat=BERLIN[0], lng=BERLIN[1])["drivers"] == []

    report(driver, *BERLIN)  # a fresh one is offered
    wait_until(lambda: nearby(client_for(rider), lat=BERLIN[0], lng=BERLIN[1])["drivers"], what="fresh")


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"lat": 52.5},
        {"lat": "north", "lng": 13.4},
        {"lat": 91, "lng": 13.4},
        {"lat": 52.5, "lng": -181},
        {"lat": "nan", "lng": 13.4},
        {"lat": 52.5, "lng": "inf"},
        {"lat": 52.5, "lng": 13.4, "radius_km": 0},
        {"lat": 52.5, "lng": 13.4, "radius_km": 50.01},
        {"lat": 52.5, "lng": 13.4, "radius_km": -1},
        {"lat": 52.5, "lng": 13.4, "limit": 0},
        {"lat": 52.5, "lng": 13.4, "limit": 101},
        {"lat": 52.5, "lng": 13.4, "limit": 2.5},
        {"lat": 52.5, "lng": 13.4, "radius": 10},
    ],
)
def test_bad_query_parameters_are_a_400(redis_client, rider, params):
    response = client_for(rider).get("/api/locations/nearby", params)
    assert response.status_code == 400
    assert response.json()


def test_the_bounds_themselves_are_accepted(redis_client, rider):
    for params in ({"radius_km": 50, "limit": 100}, {"radius_km": 0.001, "limit": 1}):
        assert nearby(client_for(rider), lat=-90, lng=180, **params) == {"drivers": []}


@pytest.mark.parametrize(("persona", "status"), [("anonymous", 401), ("driver", 403)])
def test_drivers_and_anonymous_callers_may_not_look(request, redis_client, persona, status):
    user = None if persona == "anonymous" else request.getfixturevalue(persona)
    assert client_for(user).get("/api/locations/nearby", {"lat": 1, "lng": 2}).status_code == status


def test_positions_of_drivers_not_tracked_and_garbage_are_ignored(locations_worker, redis_client, rider):
    tracked, untracked = make_drivers(2)
    go_online(tracked)
    wait_until(lambda: TRACKED_DRIVERS.members(redis_client) == [str(tracked.id)], what="tracked")
    future = datetime.now(UTC) + timedelta(minutes=5)
    for raw in (
        b"not json",
        b'{"driverId": "x", "lat": 1, "lng": 2}',
        json.dumps({"driverId": str(tracked.id), "lat": 91, "lng": 2, "timestamp": "2026-01-01T00:00:00Z"}).encode(),
        DRIVER_LOCATION.encode(DriverLocationUpdated(untracked.id, *BERLIN, datetime.now(UTC))),
        DRIVER_LOCATION.encode(DriverLocationUpdated(tracked.id, *BERLIN, future)),
    ):
        redis_client.publish(DRIVER_LOCATION.channel, raw)
    report(tracked, 48.85, 2.35)

    wait_until(lambda: held_positions(redis_client), what="the real position")
    assert list(held_positions(redis_client)) == [str(tracked.id)]
    assert (held_positions(redis_client)[str(tracked.id)].lat, held_positions(redis_client)[str(tracked.id)].lng) == (
        48.85,
        2.35,
    )
    locations_worker.wait_for_output("from the future")
    assert locations_worker.output.count("ignored message on driver-location-updated") == 3
    assert locations_worker.process.poll() is None
    assert "Traceback" not in locations_worker.output


def test_ten_thousand_positions_of_a_thousand_drivers_leave_exactly_the_latest_of_each(locations_worker, redis_client):
    drivers = make_drivers(1000)
    for driver in drivers:  # as if all were online
        redis_client.sadd(TRACKED_DRIVERS.part_of(driver.id).key, str(driver.id))
    start = datetime.now(UTC) - timedelta(seconds=30)
    latest = {}
    pipe = redis_client.pipeline(transaction=False)
    for n in range(10_000):
        driver = drivers[n % 1000]
        lat, lng = 52.0 + n / 100_000, 13.0 + (n % 1000) / 10_000
        moment = start + timedelta(milliseconds=n)
        latest[str(driver.id)] = (lat, lng)
        pipe.publish(
            DRIVER_LOCATION.channel, DRIVER_LOCATION.encode(DriverLocationUpdated(driver.id, lat, lng, moment))
        )
        if n % 500 == 499:
            pipe.execute()
    pipe.execute()

    def held_the_latest() -> bool:
        held = held_positions(redis_client)
        return {driver: (p.lat, p.lng) for driver, p in held.items()} == latest

    wait_until(held_the_latest, timeout=30, what="the latest position of every driver")
    assert sum(redis_client.zcard(partition.geo_index) for partition in partitions()) == 1000
    assert sum(redis_client.hlen(partition.geo_data) for partition in partitions()) == 1000


def test_after_a_worker_or_redis_restart_the_index_fills_again_from_what_arrives(own_redis, start_worker, rider):
    [driver] = make_drivers(1)
    go_online(driver)
    worker = start_worker("locations", env={"REDIS_URL": own_redis.url})
    report(driver, *BERLIN)
    wait_until(lambda: held_positions(own_redis.client), what="held")

    own_redis.stop()
    own_redis.start()  # restarted empty: the tracked set comes back from the database, positions do not
    for channel in ("driver-status-changed", "driver-location-updated"):  # each loop reconnects by itself
        worker.wait_for_output(f"listening on {channel}", count=2, timeout=15)
    assert held_positions(own_redis.client) == {}
    wait_until(lambda: TRACKED_DRIVERS.members(own_redis.client) == [str(driver.id)], what="tracked again")
    report(driver, 52.53, 13.41)  # positions are live: the next report puts the driver back
    wait_until(lambda: held_positions(own_redis.client), what="held again")

    worker.signal(signal.SIGKILL)
    worker.wait_exit(timeout=5)
    start_worker("locations", env={"REDIS_URL": own_redis.url})  # a restarted worker keeps the index
    assert nearby(client_for(rider), lat=52.53, lng=13.41)["drivers"][0]["driverId"] == str(driver.id)


def test_a_reported_position_has_one_timestamp_everywhere(locations_worker, redis_client, rider):
    # The geo index keeps milliseconds; the report's answer said microseconds (…:20.738447Z)
    # where `nearby` and the dashboard said …:20.738000Z for the same position.
    from ridehail.dashboard.snapshot import build_snapshot

    (driver,) = make_drivers(1)
    go_online(driver)
    wait_until(lambda: TRACKED_DRIVERS.members(redis_client) == [str(driver.id)], what="the driver tracked")
    answered = client_for(driver).put(
        "/api/locations/driver-location", {"lat": BERLIN[0], "lng": BERLIN[1]}, format="json"
    )
    assert answered.status_code == 202
    wait_until(lambda: held_positions(redis_client), what="the position held")

    found = nearby(client_for(rider), lat=BERLIN[0], lng=BERLIN[1])["drivers"]
    shown = build_snapshot()["positions"]

    assert [entry["timestamp"] for entry in found] == [answered.json()["timestamp"]]
    assert [entry["timestamp"] for entry in shown] == [answered.json()["timestamp"]]
