"""The ride status topic: every change of a ride's status, durable (outbox + stream).

A request must never be lost ("Ride #123 was requested — MUST be processed"): it is
committed with its outbox row, reaches the stream exactly once, and the rides worker reads
it with a consumer group, acknowledging only after the match was tried.
"""

import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from locations.events import LATITUDE, LONGITUDE
from locations.positions import EARTH_RADIUS_KM
from ridehail.events import wire
from ridehail.events.topic import Topic
from rides.models import RideStatus

MAX_DISTANCE_KM = math.pi * EARTH_RADIUS_KM  # half the way round: no two points are farther apart


@dataclass(frozen=True, slots=True)
class Point:
    lat: float
    lng: float

    FIELDS: ClassVar[wire.Fields] = wire.Fields(
        wire.NumberField("lat", "Latitude, degrees (WGS 84).", low=LATITUDE[0], high=LATITUDE[1]),
        wire.NumberField("lng", "Longitude, degrees (WGS 84).", low=LONGITUDE[0], high=LONGITUDE[1]),
    )

    def to_dict(self) -> dict[str, float]:
        return {"lat": self.lat, "lng": self.lng}

    @classmethod
    def from_fields(cls, fields: dict[str, float]) -> "Point":
        return cls(lat=fields["lat"], lng=fields["lng"])


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
    pickup_distance_km: float | None  # the assigned driver's, when the matcher chose them

    def to_dict(self, **extra: Any) -> dict[str, Any]:
        return {
            "rideId": str(self.ride_id),
            "riderId": str(self.rider_id),
            "driverId": str(self.driver_id) if self.driver_id else None,
            "pickupDistanceKm": self.pickup_distance_km,
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
    """A ride changed status: published by every transition (`POST /api/rides` requests one, the
    rides worker assigns or expires it, its rider cancels it, its driver completes it), through the
    outbox."""

    topic: ClassVar[Topic]
    FIELDS: ClassVar[wire.Fields] = wire.Fields(
        wire.UuidField("rideId", "The ride: the key (versions and order are per ride)."),
        wire.UuidField("riderId", "The rider who requested it.", repeats=True),
        wire.UuidField("driverId", "The assigned driver; null until assigned.", repeats=True, nullable=True),
        wire.NumberField(
            "pickupDistanceKm",
            "How far the assigned driver was from the pickup when the matcher chose them (great-circle km, "
            "what it minimises); null until assigned. Added later: absent in events published before it.",
            low=0.0,
            high=MAX_DISTANCE_KM,
            nullable=True,
        ),
        wire.ChoiceField("status", "The ride's status after the change.", choices=tuple(RideStatus.values)),
        wire.ObjectField("pickup", "Where the rider is picked up.", fields=Point.FIELDS),
        wire.ObjectField("dropoff", "Where the ride goes.", fields=Point.FIELDS),
        wire.TimestampField("requestedAt", "When the ride was requested."),
        wire.TimestampField(description="When this change was committed."),
        wire.VersionField(description="The ride's version after the change: +1 per change, from 1."),
        wire.UuidField("eventId", "This change's id: a copy delivered again carries the same one."),
    )

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
        fields = cls.FIELDS.read(data)
        ride = RideState(
            ride_id=fields["rideId"],
            rider_id=fields["riderId"],
            driver_id=fields["driverId"],
            pickup_distance_km=fields["pickupDistanceKm"],
            status=RideStatus(fields["status"]),
            pickup=Point.from_fields(fields["pickup"]),
            dropoff=Point.from_fields(fields["dropoff"]),
            requested_at=fields["requestedAt"],
            timestamp=fields["timestamp"],
            version=fields["version"],
        )
        return cls(ride=ride, event_id=fields["eventId"])


RIDE_STATUS = Topic("ride-status-changed", RideStatusChanged, durable=True)
