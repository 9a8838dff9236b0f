"""The locations handler: tracking starts and stops with availability."""

import logging
import uuid
from datetime import UTC, datetime

import pytest

from locations.subscribers import TRACKED_DRIVERS, TrackingHandler
from users.events import DriverStatusChanged

pytestmark = pytest.mark.django_db


def test_tracking_starts_and_stops_with_availability(redis_client, driver, caplog):
    caplog.set_level(logging.INFO, logger="locations")
    subscriber = TrackingHandler(redis_client)

    subscriber.handle(DriverStatusChanged(driver.id, True, datetime.now(UTC), uuid.uuid4(), 1))
    assert TRACKED_DRIVERS.members(redis_client) == [str(driver.id)]
    subscriber.handle(DriverStatusChanged(driver.id, False, datetime.now(UTC), uuid.uuid4(), 2))
    assert TRACKED_DRIVERS.members(redis_client) == []

    assert caplog.messages == [f"started tracking driver {driver.id}", f"stopped tracking driver {driver.id}"]
