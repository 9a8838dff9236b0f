"""The wire rules every event follows, whatever its topic.

A message is a JSON object of bounded size and depth; ids are UUIDs; versions are
integers in [1, 2^53) (what every JSON parser, JavaScript's included, reads exactly);
timestamps are RFC 3339 and, in UTC, fall within years 1970-9999. Anything else is an
`InvalidEvent` with a reason, never an exception a consumer has not planned for: one
message that breaks a rule must not stop a worker or the dashboard.
"""

import functools
import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_MESSAGE_BYTES = 64 * 1024
MAX_VERSION = 2**53  # exclusive
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)

_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
# Date, time, optional fraction, then the offset (checked apart, for a clearer message).
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d{1,9})?(?P<offset>[Zz]|[+-]\d\d:\d\d)?")


class InvalidEvent(ValueError):
    """A message on a channel or stream that breaks the wire rules of its topic."""


def parse_object(raw: bytes | str) -> dict[str, Any]:
    """Decode one message into a JSON object, or raise InvalidEvent saying why not."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidEvent(f"message is larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise InvalidEvent("message is not UTF-8") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise InvalidEvent("message is nested too deeply") from None
    except ValueError:
        raise InvalidEvent("message is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidEvent(f"message is a JSON {_JSON_TYPES.get(type(data), 'value')}, not an object")
    return data


def encode(data: dict[str, Any]) -> bytes:
    """The one JSON form on the wire: compact, keys in the order the event gives them."""
    return json.dumps(data, separators=(",", ":")).encode()


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a 'Z', the one form every consumer expects."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_optional_timestamp(moment: datetime | None) -> str | None:
    return format_timestamp(moment) if moment is not None else None


def require(data: dict[str, Any], name: str) -> Any:
    if name not in data:
        raise InvalidEvent(f"field {name!r} is missing")
    return data[name]


def uuid_field(data: dict[str, Any], name: str, *, repeats: bool = False) -> uuid.UUID:
    """`repeats`: the same ids come again and again (drivers, riders): parse each once per process.

    Parsing a UUID is a good part of validating a position or a status event; a worker sees
    the same few thousand driver ids all day. Ids that never repeat (event ids) skip the cache.
    """
    value = require(data, name)
    if not isinstance(value, str):
        raise InvalidEvent(f"field {name!r} is not a UUID: {value!r:.60}")
    try:
        return _parse_repeated_uuid(value) if repeats else uuid.UUID(value)
    except ValueError:
        raise InvalidEvent(f"field {name!r} is not a UUID: {value!r:.60}") from None


@functools.lru_cache(maxsize=16384)
def _parse_repeated_uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)  # a ValueError is raised each time, never cached


def bool_field(data: dict[str, Any], name: str) -> bool:
    value = require(data, name)
    if not isinstance(value, bool):
        raise InvalidEvent(f"field {name!r} is not a boolean: {value!r:.60}")
    return value


def version_field(data: dict[str, Any], name: str = "version") -> int:
    value = require(data, name)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < MAX_VERSION:
        raise InvalidEvent(f"field {name!r} is not a positive integer below 2^53: {value!r:.60}")
    return value


def number_field(data: dict[str, Any], name: str, *, low: float, high: float) -> float:
    """A JSON number (not a string, boolean or null), finite, within [low, high]."""
    value = require(data, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(f"field {name!r} is not a number: {value!r:.60}")
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidEvent(f"field {name!r} is not within [{low:g}, {high:g}]: {value!r:.60}")
    return float(value)


def timestamp_field(data: dict[str, Any], name: str = "timestamp") -> datetime:
    value = require(data, name)
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidEvent(f"field {name!r} is not an RFC 3339 timestamp: {value!r:.60}")
    if match["offset"] is None:
        raise InvalidEvent(f"field {name!r} has no time zone: {value!r:.60}")
    try:
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        # "9999-12-31T23:59:59-05:00" is year 10000 in UTC: no datetime can hold it.
        raise InvalidEvent(f"field {name!r} is not a timestamp within years 1970-9999: {value!r:.60}") from None
    if moment < EARLIEST:
        raise InvalidEvent(f"field {name!r} is not a timestamp within years 1970-9999: {value!r:.60}")
    return moment


# The field declarations: each event class lists its fields once, with these, and the same list
# both validates a message (`Fields.read`, through the rules above) and describes it as JSON Schema
# (`Fields.schema`, for the AsyncAPI catalogue). A rule and its description sit side by side, so
# they cannot drift apart.

_UTC_RANGE = "RFC 3339 with a time zone; converted to UTC, within years 1970-9999. Published in UTC with a 'Z'."


@dataclass(frozen=True)
class Field:
    name: str
    description: str = ""

    def read(self, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def value_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        """The value's JSON Schema, described by the declaration's text and the rule's own."""
        schema = self.value_schema()
        text = " ".join(part for part in (self.description, schema.pop("description", "")) if part)
        return {**schema, "description": text} if text else schema


@dataclass(frozen=True)
class UuidField(Field):
    repeats: bool = False  # see uuid_field
    nullable: bool = False

    def read(self, data: dict[str, Any]) -> uuid.UUID | None:
        if self.nullable and require(data, self.name) is None:
            return None
        return uuid_field(data, self.name, repeats=self.repeats)

    def value_schema(self) -> dict[str, Any]:
        return {"type": ["string", "null"] if self.nullable else "string", "format": "uuid"}


@dataclass(frozen=True)
class BoolField(Field):
    def read(self, data: dict[str, Any]) -> bool:
        return bool_field(data, self.name)

    def value_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class VersionField(Field):
    name: str = "version"

    def read(self, data: dict[str, Any]) -> int:
        return version_field(data, self.name)

    def value_schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": 1, "maximum": MAX_VERSION - 1}


@dataclass(frozen=True)
class NumberField(Field):
    low: float = -math.inf
    high: float = math.inf
    # A field added to a topic after its first release: null, or absent from the events published
    # before it existed (a stream still holds those after a deploy), reads as None. Publishers send it.
    nullable: bool = False

    def read(self, data: dict[str, Any]) -> float | None:
        if self.nullable and data.get(self.name) is None:
            return None
        return number_field(data, self.name, low=self.low, high=self.high)

    def value_schema(self) -> dict[str, Any]:
        kind = ["number", "null"] if self.nullable else "number"
        return {"type": kind, "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True)
class TimestampField(Field):
    name: str = "timestamp"

    def read(self, data: dict[str, Any]) -> datetime:
        return timestamp_field(data, self.name)

    def value_schema(self) -> dict[str, Any]:
        # The offset is required here; the year range is in UTC, which a pattern cannot say: described.
        pattern = "^" + _RFC3339.pattern.replace("?P<offset>", "").removesuffix("?") + "$"
        return {"type": "string", "format": "date-time", "pattern": pattern, "description": _UTC_RANGE}


@dataclass(frozen=True)
class ChoiceField(Field):
    choices: tuple[str, ...] = ()

    def read(self, data: dict[str, Any]) -> str:
        value = require(data, self.name)
        if value not in self.choices:
            raise InvalidEvent(f"field {self.name!r} is not one of {', '.join(self.choices)}: {value!r:.60}")
        return value

    def value_schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class ObjectField(Field):
    fields: "Fields | None" = None

    def read(self, data: dict[str, Any]) -> dict[str, Any]:
        value = require(data, self.name)
        if not isinstance(value, dict):
            raise InvalidEvent(f"field {self.name!r} is not an object with {', '.join(self._fields.names)}")
        return self._fields.read(value)

    def value_schema(self) -> dict[str, Any]:
        return self._fields.schema()

    @property
    def _fields(self) -> "Fields":
        assert self.fields is not None, f"object field {self.name!r} declares no fields"
        return self.fields


class Fields:
    """An event's fields, in wire order: `read` validates a decoded message, `schema` describes it."""

    def __init__(self, *fields: Field) -> None:
        self.fields = fields
        self.names = tuple(field.name for field in fields)
        self._readers = tuple(field.read for field in fields)  # bound once: parsing is a hot path

    def read(self, data: dict[str, Any]) -> dict[str, Any]:
        """Every declared field, validated, by name; fields not declared are ignored (added later)."""
        return dict(zip(self.names, self.values(data), strict=True))

    def values(self, data: dict[str, Any]) -> list[Any]:
        """Every declared field, validated, in declaration order (for a class whose fields are in that order)."""
        return [read(data) for read in self._readers]

    def schema(self) -> dict[str, Any]:
        # Unknown fields are allowed: consumers ignore them, so fields can be added later.
        return {
            "type": "object",
            "required": list(self.names),
            "properties": {field.name: field.schema() for field in self.fields},
        }
