"""The driver position topic: live only. Nice to know now, worthless a minute later, far too
many to store: Pub/Sub, no database, no outbox, no stream."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from django.conf import settings

from ridehail.events import wire
from ridehail.events.topic import Topic

LATITUDE = (-90.0, 90.0)
LONGITUDE = (-180.0, 180.0)


@dataclass(frozen=True, slots=True)
class DriverLocationUpdated:
    """A driver's position: published by each position report (`PUT /api/locations/driver-location`),
    live only: no outbox, no stream, no version (the newest timestamp wins)."""

    topic: ClassVar[Topic]
    FIELDS: ClassVar[wire.Fields] = wire.Fields(
        wire.UuidField("driverId", "The driver: the key.", repeats=True),
        wire.NumberField("lat", "Latitude, degrees (WGS 84).", low=LATITUDE[0], high=LATITUDE[1]),
        wire.NumberField("lng", "Longitude, degrees (WGS 84).", low=LONGITUDE[0], high=LONGITUDE[1]),
        wire.TimestampField(description="When the position was taken; a consumer keeps the newest per driver."),
    )

    driver_id: uuid.UUID
    lat: float
    lng: float
    timestamp: datetime

    @property
    def key(self) -> str:
        return str(self.driver_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "driverId": str(self.driver_id),
            "lat": self.lat,
            "lng": self.lng,
            "timestamp": wire.format_timestamp(self.timestamp),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls(*cls.FIELDS.values(data))  # FIELDS lists the wire fields in this class's order


def position_partitions() -> int:
    """RIDEHAIL_POSITION_PARTITIONS, read at each use (tests change it)."""
    return int(settings.RIDEHAIL_POSITION_PARTITIONS)


# Partitioned by driver: a driver's positions go out on its partition's channel, and its
# partition's keys (locations/positions.py) hold its position.
DRIVER_LOCATION = Topic("driver-location-updated", DriverLocationUpdated, durable=False, partitions=position_partitions)
