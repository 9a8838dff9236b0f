"""The wire rules every topic's events follow: bounded JSON objects, ids, versions, timestamps."""

import json
from datetime import UTC, datetime

import pytest

from ridehail.events import wire
from ridehail.events.wire import InvalidEvent


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 1000 + b"]" * 1000, "nested too deeply"),
        (b"[[1]]", "JSON array, not an object"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested too deeply"),
        (b'{"a": "' + b"x" * (wire.MAX_MESSAGE_BYTES + 1) + b'"}', "larger than"),
        (b"\xff", "not UTF-8"),
        (b"NaN", "JSON number"),
    ],
)
def test_messages_that_are_not_small_json_objects_are_refused(raw, reason):
    with pytest.raises(InvalidEvent, match=reason):
        wire.parse_object(raw)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-02-01T12:00:00Z", datetime(2026, 2, 1, 12, tzinfo=UTC)),
        ("2026-02-01t12:00:00.5+02:00", datetime(2026, 2, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59.999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_timestamps_within_the_range_are_read_in_utc(value, expected):
    assert wire.timestamp_field({"t": value}, "t") == expected


@pytest.mark.parametrize(
    "value",
    ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00", "1969-12-31T23:59:59Z", "2026-02-30T00:00:00Z", 1, None],
)
def test_timestamps_outside_the_range_or_impossible_are_refused(value):
    with pytest.raises(InvalidEvent, match="'t'"):
        wire.timestamp_field({"t": value}, "t")


@pytest.mark.parametrize("value", [1, 2**53 - 1])
def test_versions_in_range_are_accepted(value):
    assert wire.version_field({"version": value}) == value


@pytest.mark.parametrize("value", [0, -1, 2**53, 2**63, 1.0, True, "1", None])
def test_versions_outside_one_to_two_to_the_53_are_refused(value):
    with pytest.raises(InvalidEvent, match="'version'"):
        wire.version_field({"version": value})


@pytest.mark.parametrize("value", ["1", True, None, float("inf"), float("nan"), 90.0001, -91])
def test_coordinates_must_be_finite_numbers_in_range(value):
    with pytest.raises(InvalidEvent, match="'lat'"):
        wire.number_field({"lat": value}, "lat", low=-90, high=90)


def test_encoding_is_compact_and_keeps_field_order():
    assert wire.encode({"b": 1, "a": [True, None]}) == b'{"b":1,"a":[true,null]}'
    assert json.loads(wire.encode({"x": "é"})) == {"x": "é"}
