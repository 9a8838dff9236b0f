"""The driver status event: its names on Redis, its JSON form and its validation.

Everything that reads or writes the wire format goes through this module, so the
publisher, the workers and the dashboard cannot drift apart.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

CHANNEL = "driver-status-changed"
STREAM = "stream:driver-status-changed"
DEAD_LETTER_STREAM = "stream:driver-status-changed:dead"
STREAM_FIELD = "event"


_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


class InvalidEvent(ValueError):
    """A message on the channel or stream that is not a valid driver status event."""


@dataclass(frozen=True, slots=True)
class DriverStatusChanged:
    driver_id: uuid.UUID
    available: bool
    timestamp: datetime
    event_id: uuid.UUID
    version: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "driverId": str(self.driver_id),
            "available": self.available,
            "timestamp": format_timestamp(self.timestamp),
            "eventId": str(self.event_id),
            "version": self.version,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> "DriverStatusChanged":
        """Parse and validate one message; unknown fields are ignored so producers can add some."""
        try:
            text = raw.decode() if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            raise InvalidEvent("message is not UTF-8") from None
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidEvent("message is not JSON") from None
        if not isinstance(data, dict):
            raise InvalidEvent(f"message is a JSON {_JSON_TYPES.get(type(data), 'value')}, not an object")
        return cls(
            driver_id=_uuid_field(data, "driverId"),
            available=_bool_field(data, "available"),
            timestamp=_timestamp_field(data, "timestamp"),
            event_id=_uuid_field(data, "eventId"),
            version=_version_field(data, "version"),
        )


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a 'Z', the one form every consumer expects."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _require(data: dict[str, Any], name: str) -> Any:
    if name not in data:
        raise InvalidEvent(f"field {name!r} is missing")
    return data[name]


def _uuid_field(data: dict[str, Any], name: str) -> uuid.UUID:
    value = _require(data, name)
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise InvalidEvent(f"field {name!r} is not a UUID: {value!r:.60}") from None


def _bool_field(data: dict[str, Any], name: str) -> bool:
    value = _require(data, name)
    if not isinstance(value, bool):
        raise InvalidEvent(f"field {name!r} is not a boolean: {value!r:.60}")
    return value


def _version_field(data: dict[str, Any], name: str) -> int:
    value = _require(data, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidEvent(f"field {name!r} is not a positive integer: {value!r:.60}")
    return value


def _timestamp_field(data: dict[str, Any], name: str) -> datetime:
    value = _require(data, name)
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidEvent(f"field {name!r} is not an RFC 3339 timestamp: {value!r:.60}") from None
    if moment.tzinfo is None:
        raise InvalidEvent(f"field {name!r} has no time zone: {value!r:.60}")
    return moment
