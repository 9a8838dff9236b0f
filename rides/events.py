"""The ride status topic: every change of a ride's status, durable (outbox + stream).

A request must never be lost ("Ride #123 was requested — MUST be processed"): it is
committed with its outbox row, reaches the stream exactly once, and the rides worker reads
it with a consumer group, acknowledging only after the match was tried.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from locations.events import LATITUDE, LONGITUDE
from ridehail.events import wire
from ridehail.events.topic import Topic
from rides.models import RideStatus


@dataclass(frozen=True, slots=True)
class Point:
    lat: float
    lng: float

    def to_dict(self) -> dict[str, float]:
        return {"lat": self.lat, "lng": self.lng}

    @classmethod
    def from_dict(cls, data: Any, name: str) -> "Point":
        if not isinstance(data, dict):
            raise wire.InvalidEvent(f"field {name!r} is not an object with lat and lng")
        return cls(
            lat=wire.number_field(data, "lat", low=LATITUDE[0], high=LATITUDE[1]),
            lng=wire.number_field(data, "lng", low=LONGITUDE[0], high=LONGITUDE[1]),
        )


@dataclass(frozen=True, slots=True)
class RideState:
    """A ride as every output shows it: API responses, events, the dashboard."""

    ride_id: uuid.UUID
    rider_id: uuid.UUID
    driver_id: uuid.UUID | None
    status: RideStatus
    pickup: Point
    dropoff: Point
    requested_at: datetime
    timestamp: datetime  # the last change
    version: int

    def to_dict(self, **extra: Any) -> dict[str, Any]:
        return {
            "rideId": str(self.ride_id),
            "riderId": str(self.rider_id),
            "driverId": str(self.driver_id) if self.driver_id else None,
            "status": str(self.status),
            "pickup": self.pickup.to_dict(),
            "dropoff": self.dropoff.to_dict(),
            "requestedAt": wire.format_timestamp(self.requested_at),
            "timestamp": wire.format_timestamp(self.timestamp),
            "version": self.version,
            **extra,
        }


@dataclass(frozen=True, slots=True)
class RideStatusChanged:
    topic: ClassVar[Topic]

    ride: RideState
    event_id: uuid.UUID

    @property
    def key(self) -> str:
        return str(self.ride.ride_id)

    @property
    def version(self) -> int:
        return self.ride.version

    def to_dict(self) -> dict[str, Any]:
        return self.ride.to_dict(eventId=str(self.event_id))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        status = wire.require(data, "status")
        if status not in RideStatus.values:
            raise wire.InvalidEvent(f"field 'status' is not a ride status: {status!r:.60}")
        driver = wire.require(data, "driverId")
        ride = RideState(
            ride_id=wire.uuid_field(data, "rideId"),
            rider_id=wire.uuid_field(data, "riderId", repeats=True),
            driver_id=None if driver is None else wire.uuid_field(data, "driverId", repeats=True),
            status=RideStatus(status),
            pickup=Point.from_dict(wire.require(data, "pickup"), "pickup"),
            dropoff=Point.from_dict(wire.require(data, "dropoff"), "dropoff"),
            requested_at=wire.timestamp_field(data, "requestedAt"),
            timestamp=wire.timestamp_field(data, "timestamp"),
            version=wire.version_field(data, "version"),
        )
        return cls(ride=ride, event_id=wire.uuid_field(data, "eventId"))


RIDE_STATUS = Topic("ride-status-changed", RideStatusChanged, durable=True)
