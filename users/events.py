"""The driver status topic: its event, its wire form, and the one shape of a driver's status.

`driver-status-changed` is durable (outbox + stream): workers, the dashboard and anyone
listening learn of every committed change, once and in per-driver order.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from ridehail.events import wire
from ridehail.events.topic import Topic


@dataclass(frozen=True, slots=True)
class DriverStatus:
    """A driver's availability as every output shows it: API responses, events, the dashboard."""

    driver_id: uuid.UUID
    available: bool
    timestamp: datetime | None  # the last change; None if the driver never changed
    version: int

    def to_dict(self, **extra: Any) -> dict[str, Any]:
        """The shape, with `extra` fields before `version` (the event's field order)."""
        return {
            "driverId": str(self.driver_id),
            "available": self.available,
            "timestamp": wire.format_optional_timestamp(self.timestamp),
            **extra,
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class DriverStatusChanged:
    """A driver went online or offline: published by every committed change of a driver's status
    (`PUT /api/users/driver-status`, the admin, a deactivation), through the outbox."""

    topic: ClassVar[Topic]
    FIELDS: ClassVar[wire.Fields] = wire.Fields(
        wire.UuidField("driverId", "The driver: the key (versions and order are per driver).", repeats=True),
        wire.BoolField("available", "Whether the driver is online (may be offered rides)."),
        wire.TimestampField(description="When the change was committed."),
        wire.UuidField("eventId", "This change's id: a copy delivered again carries the same one."),
        wire.VersionField(description="The driver's status version after the change: +1 per change, from 1."),
    )

    driver_id: uuid.UUID
    available: bool
    timestamp: datetime
    event_id: uuid.UUID
    version: int

    @property
    def key(self) -> str:
        return str(self.driver_id)

    @property
    def status(self) -> DriverStatus:
        return DriverStatus(self.driver_id, self.available, self.timestamp, self.version)

    def to_dict(self) -> dict[str, Any]:
        return self.status.to_dict(eventId=str(self.event_id))

    def to_json(self) -> bytes:
        return wire.encode(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls(*cls.FIELDS.values(data))  # FIELDS lists the wire fields in this class's order

    @classmethod
    def from_json(cls, raw: bytes | str) -> Self:
        return cls.from_dict(wire.parse_object(raw))


DRIVER_STATUS = Topic("driver-status-changed", DriverStatusChanged, durable=True)
