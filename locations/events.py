"""The driver position topic: live only. Nice to know now, worthless a minute later, far too
many to store: Pub/Sub, no database, no outbox, no stream."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from ridehail.events import wire
from ridehail.events.topic import Topic

LATITUDE = (-90.0, 90.0)
LONGITUDE = (-180.0, 180.0)


@dataclass(frozen=True, slots=True)
class DriverLocationUpdated:
    topic: ClassVar[Topic]

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
        return cls(
            driver_id=wire.uuid_field(data, "driverId", repeats=True),
            lat=wire.number_field(data, "lat", low=LATITUDE[0], high=LATITUDE[1]),
            lng=wire.number_field(data, "lng", low=LONGITUDE[0], high=LONGITUDE[1]),
            timestamp=wire.timestamp_field(data, "timestamp"),
        )


DRIVER_LOCATION = Topic("driver-location-updated", DriverLocationUpdated, durable=False)
