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
