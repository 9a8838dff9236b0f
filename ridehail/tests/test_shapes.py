"""One shape, one home: what the views render and what the OpenAPI schema documents are the same fields."""

import uuid
from datetime import UTC, datetime

from locations.positions import Position
from locations.selectors import NearbyDriver
from locations.serializers import NearbyDriverSerializer
from rides.events import Point, RideState
from rides.models import RideStatus
from rides.serializers import RideSerializer
from users.events import DriverStatus
from users.serializers import DriverStatusResponseSerializer, StatusChangeResponseSerializer

NOW = datetime(2026, 2, 1, 12, tzinfo=UTC)


def test_the_driver_status_shape_is_what_its_serializers_document():
    status = DriverStatus(uuid.uuid4(), True, NOW, 3)
    assert set(status.to_dict()) == set(DriverStatusResponseSerializer().fields)
    assert set(status.to_dict(eventId=None, changed=True)) == set(StatusChangeResponseSerializer().fields)


def test_the_ride_shape_is_what_its_serializer_documents():
    ride = RideState(
        uuid.uuid4(), uuid.uuid4(), None, RideStatus.REQUESTED, Point(1, 2), Point(3, 4), NOW, NOW, 1, None
    )
    assert set(ride.to_dict()) == set(RideSerializer().fields)


def test_the_nearby_shape_is_what_its_serializer_documents():
    near = NearbyDriver(Position(uuid.uuid4(), 1.0, 2.0, NOW), 0.5)
    assert set(near.to_dict()) == set(NearbyDriverSerializer().fields)
