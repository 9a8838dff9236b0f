"""The driver status event on the wire: what the publisher writes, consumers read back; garbage is refused."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ridehail.events.wire import InvalidEvent
from users.events import DriverStatusChanged

EVENT = DriverStatusChanged(
    driver_id=uuid.UUID("0b8a6f2e-3c1d-4e5f-8a9b-0c1d2e3f4a5b"),
    available=True,
    timestamp=datetime(2026, 2, 1, 12, 0, 0, 123456, tzinfo=UTC),
    event_id=uuid.UUID("1c9b7f3e-4d2e-4f6a-9bac-1d2e3f4a5b6c"),
    version=7,
)


def test_json_form_matches_the_spec():
    assert json.loads(EVENT.to_json()) == {
        "driverId": "0b8a6f2e-3c1d-4e5f-8a9b-0c1d2e3f4a5b",
        "available": True,
        "timestamp": "2026-02-01T12:00:00.123456Z",
        "eventId": "1c9b7f3e-4d2e-4f6a-9bac-1d2e3f4a5b6c",
        "version": 7,
    }


def test_round_trip():
    assert DriverStatusChanged.from_json(EVENT.to_json()) == EVENT


def test_timestamps_are_written_in_utc():
    local = EVENT.timestamp.astimezone(timezone(timedelta(hours=5)))
    event = DriverStatusChanged(EVENT.driver_id, True, local, EVENT.event_id, 1)
    assert json.loads(event.to_json())["timestamp"] == "2026-02-01T12:00:00.123456Z"


def test_unknown_fields_are_ignored():
    data = {**EVENT.to_dict(), "zone": "north", "extra": {"nested": [1]}}
    assert DriverStatusChanged.from_json(json.dumps(data)) == EVENT


def _with(**changes: object) -> bytes:
    data = {**EVENT.to_dict(), **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"hello", "not JSON"),
        (b"", "not JSON"),
        (b'"text"', "JSON string"),
        (b"42", "JSON number"),
        (b"[1, 2]", "JSON array"),
        (b"null", "JSON null"),
        (_with(driverId=...), "'driverId' is missing"),
        (_with(driverId="not-a-uuid"), "'driverId' is not a UUID"),
        (_with(driverId=12), "'driverId' is not a UUID"),
        (_with(available="true"), "'available' is not a boolean"),
        (_with(available=None), "'available' is not a boolean"),
        (_with(version=0), "'version' is not a positive integer"),
        (_with(version="7"), "'version' is not a positive integer"),
        (_with(version=True), "'version' is not a positive integer"),
        (_with(version=1.5), "'version' is not a positive integer"),
        (_with(timestamp="yesterday"), "'timestamp' is not an RFC 3339"),
        (_with(timestamp="2026-02-01T12:00:00"), "'timestamp' has no time zone"),
        (_with(eventId=None), "'eventId' is not a UUID"),
        # Found by an attacker: these parsed as valid and then broke the dashboard or froze a driver.
        (_with(timestamp="9999-12-31T23:59:59-05:00"), "'timestamp' is not a timestamp within years 1970-9999"),
        (_with(timestamp="1969-12-31T23:59:59Z"), "'timestamp' is not a timestamp within years 1970-9999"),
        (_with(timestamp="20260201T120000Z"), "'timestamp' is not an RFC 3339"),
        (_with(version=2**53), "'version' is not a positive integer below 2\\^53"),
        (_with(version=9223372036854775808), "'version' is not a positive integer"),
    ],
)
def test_invalid_messages_are_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidEvent, match=reason):
        DriverStatusChanged.from_json(raw)
