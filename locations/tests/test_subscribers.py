"""The locations handlers called directly: tracking follows availability; positions follow tracking and time."""

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from locations.events import DriverLocationUpdated
from locations.positions import held_positions
from locations.subscribers import TRACKED_DRIVERS, PositionsHandler, TrackingHandler
from users.events import DriverStatusChanged
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db


def test_tracking_starts_and_stops_with_availability(redis_client, driver, caplog):
    caplog.set_level(logging.INFO, logger="locations")
    subscriber = TrackingHandler(redis_client)

    subscriber.handle(DriverStatusChanged(driver.id, True, datetime.now(UTC), uuid.uuid4(), 1))
    assert TRACKED_DRIVERS.members(redis_client) == [str(driver.id)]
    subscriber.handle(DriverStatusChanged(driver.id, False, datetime.now(UTC), uuid.uuid4(), 2))
    assert TRACKED_DRIVERS.members(redis_client) == []

    assert caplog.messages == [f"started tracking driver {driver.id}", f"stopped tracking driver {driver.id}"]


def position(driver_id, lat, lng, seconds_ago: float = 0.0) -> DriverLocationUpdated:
    return DriverLocationUpdated(driver_id, lat, lng, datetime.now(UTC) - timedelta(seconds=seconds_ago))


def test_a_late_position_never_moves_a_driver_back(redis_client, driver):
    redis_client.sadd(TRACKED_DRIVERS.part_of(driver.id).key, str(driver.id))
    handler = PositionsHandler(redis_client)

    assert handler.handle_batch([position(driver.id, 52.0, 13.0, seconds_ago=1)]) == 1
    assert handler.handle_batch([position(driver.id, 40.0, 3.0, seconds_ago=5)]) == 0  # older: arrived late
    assert handler.handle_batch([position(driver.id, 52.1, 13.1), position(driver.id, 1.0, 1.0, seconds_ago=9)]) == 1

    held = held_positions(redis_client)[str(driver.id)]
    assert (held.lat, held.lng) == (52.1, 13.1)


def test_a_position_near_a_pole_is_counted_but_cannot_be_indexed(redis_client, driver):
    redis_client.sadd(TRACKED_DRIVERS.part_of(driver.id).key, str(driver.id))
    handler = PositionsHandler(redis_client)

    assert handler.handle_batch([position(driver.id, 89.9, 0.0)]) == 0

    assert handler.counts["too near a pole"] == 1
    assert held_positions(redis_client) == {}


def test_a_rebuild_drops_positions_of_drivers_no_longer_tracked(redis_client, driver, other_driver):
    for who in (driver, other_driver):
        redis_client.sadd(TRACKED_DRIVERS.part_of(who.id).key, str(who.id))
    PositionsHandler(redis_client).handle_batch([position(driver.id, 1.0, 1.0), position(other_driver.id, 2.0, 2.0)])
    set_driver_availability(driver_id=driver.id, available=True)  # the database: only `driver` is online

    TrackingHandler(redis_client).rebuild()

    assert list(held_positions(redis_client)) == [str(driver.id)]
