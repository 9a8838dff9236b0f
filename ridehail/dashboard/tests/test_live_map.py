"""What the dashboard's map is fed, over a real uvicorn: positions and rides in the snapshot, ride
events, batched position frames, the workers' health."""

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from conftest import make_drivers, make_user
from locations.events import DRIVER_LOCATION, DriverLocationUpdated
from locations.positions import TRACKED_DRIVERS, Position, apply_positions
from rides.events import RIDE_STATUS, Point
from rides.services import Trip, request_ride
from tests.dashboard import change_soon, connect, receive_json, session_cookie
from tests.servers import AsgiServer
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(redis_client) -> Iterator[AsgiServer]:
    web = AsgiServer().start()
    yield web
    web.stop()


def position(driver_id, lat: float, lng: float, at: datetime | None = None) -> bytes:
    return DRIVER_LOCATION.encode(DriverLocationUpdated(driver_id, lat, lng, at or datetime.now(UTC)))


def test_the_snapshot_has_tracked_positions_and_active_rides(server, staff, redis_client):
    online, _offline = make_drivers(2)
    redis_client.sadd(TRACKED_DRIVERS.part_of(online.id).key, str(online.id))
    apply_positions(redis_client, [Position(online.id, 52.52, 13.405, datetime.now(UTC))])
    waiting = make_user("waiting-rider")
    ride = request_ride(rider_id=waiting.id, trip=Trip(Point(52.5, 13.4), Point(52.6, 13.5)))
    cookie = session_cookie(staff)

    async def scenario() -> dict:
        async with connect(server, cookie=cookie) as socket:
            return await receive_json(socket)

    snapshot = asyncio.run(scenario())
    assert [(p["driverId"], p["lat"], p["lng"]) for p in snapshot["positions"]] == [(str(online.id), 52.52, 13.405)]
    [shown] = snapshot["rides"]
    assert (shown["rideId"], shown["status"], shown["riderName"]) == (str(ride.id), "requested", "waiting-rider")
    assert len(snapshot["drivers"]) == 2


def test_ride_events_reach_the_dashboard_once_with_the_riders_name(server, staff, redis_client):
    rider = make_user("amira")
    cookie = session_cookie(staff)

    async def scenario() -> tuple[dict, dict]:
        async with connect(server, cookie=cookie) as socket:
            await receive_json(socket)
            forged = {
                "rideId": str(uuid.uuid4()),
                "riderId": str(uuid.uuid4()),
                "driverId": None,
                "status": "requested",
                "pickup": {"lat": 1, "lng": 2},
                "dropoff": {"lat": 3, "lng": 4},
                "requestedAt": "2026-01-01T00:00:00Z",
                "timestamp": "2026-01-01T00:00:00Z",
                "version": 1,
                "eventId": str(uuid.uuid4()),
            }
            redis_client.publish(RIDE_STATUS.channel, json.dumps(forged))  # no such ride: not shown
            await change_soon(request_ride, rider_id=rider.id, trip=Trip(Point(52.5, 13.4), Point(52.6, 13.5)))
            event = await receive_json(socket)
            with pytest.raises(TimeoutError):
                await receive_json(socket, timeout=0.5)
            return event, forged

    event, forged = asyncio.run(scenario())
    assert (event["type"], event["status"], event["riderName"], event["version"]) == (
        "ride-status-changed",
        "requested",
        "amira",
        1,
    )
    assert event["rideId"] != forged["rideId"]
    assert f"ignored ride-status-changed of {forged['rideId']} v1: not in the database" in server.output


def test_fifty_positions_of_one_driver_in_a_second_reach_a_socket_in_at_most_three_frames(server, staff, redis_client):
    [driver] = make_drivers(1)
    cookie = session_cookie(staff)

    async def scenario() -> list[dict]:
        async with connect(server, cookie=cookie) as socket:
            await receive_json(socket)
            started = datetime.now(UTC)
            for n in range(50):
                at = started + timedelta(milliseconds=20 * n)
                redis_client.publish(DRIVER_LOCATION.channel, position(driver.id, 52.0 + n / 1000, 13.0, at))
                await asyncio.sleep(0.02)
            frames, deadline = [], time.monotonic() + 2.5
            while time.monotonic() < deadline:
                try:
                    frame = await receive_json(socket, timeout=max(0.05, deadline - time.monotonic()))
                except TimeoutError:
                    break
                frames.append(frame)
            return frames

    frames = asyncio.run(scenario())
    assert 1 <= len(frames) <= 3
    assert all(frame["type"] == "positions" for frame in frames)
    assert all(len(frame["positions"]) == 1 for frame in frames)  # each driver once per frame
    assert frames[-1]["positions"][0]["lat"] == pytest.approx(52.049)  # the latest


def test_a_flood_of_positions_never_delays_a_status_change(server, staff, redis_client):
    drivers = make_drivers(200)
    [driver] = make_drivers(1, prefix="changing")
    cookie = session_cookie(staff)
    stop = asyncio.Event()

    async def flood() -> None:
        while not stop.is_set():
            pipe = redis_client.pipeline(transaction=False)
            for who in drivers:
                pipe.publish(DRIVER_LOCATION.channel, position(who.id, 52.5, 13.4))
            pipe.execute()
            await asyncio.sleep(0.1)  # ~2,000 positions a second

    async def scenario() -> tuple[float, int]:
        async with connect(server, cookie=cookie) as socket:
            await receive_json(socket)
            flooding = asyncio.create_task(flood())
            await asyncio.sleep(1.5)
            changed = time.monotonic()
            await change_soon(set_driver_availability, driver_id=driver.id, available=True)
            position_frames = 0
            while (frame := await receive_json(socket))["type"] != "driver-status-changed":
                position_frames += frame["type"] == "positions"
            took = time.monotonic() - changed
            stop.set()
            await flooding
            return took, position_frames

    took, position_frames = asyncio.run(scenario())
    assert took < 1.0
    assert position_frames <= 3


def test_the_workers_health_arrives_every_few_seconds(server, staff, redis_client):
    cookie = session_cookie(staff)

    async def scenario() -> dict:
        async with connect(server, cookie=cookie) as socket:
            await receive_json(socket)
            return await receive_json(socket, timeout=7, skip=())

    health = asyncio.run(scenario())
    assert health["type"] == "health"
    assert set(health) == {"type", "workers", "groups", "deadLetters", "outbox", "timestamp"}
    assert health["workers"] == [{"name": "locations", "processes": []}, {"name": "rides", "processes": []}]
    assert set(health["deadLetters"]) == {"driver-status-changed", "ride-status-changed"}
    assert health["outbox"] == {"pending": 0, "oldestAgeSeconds": None}
