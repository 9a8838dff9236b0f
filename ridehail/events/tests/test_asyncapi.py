"""The event catalogue: a valid AsyncAPI 3.0 document, every topic in it, built from the declarations."""

import json
from pathlib import Path

import jsonschema
import pytest

from locations.events import DRIVER_LOCATION
from ridehail.catalogue import DOCUMENT_PATH, event_catalogue, render_document
from ridehail.events import asyncapi, wire
from ridehail.events.topic import declared_topics
from rides.events import RIDE_STATUS
from tests.catalogue import assert_matches_catalogue
from users.events import DRIVER_STATUS, DriverStatusChanged

ASYNCAPI_SCHEMA = Path(__file__).parent / "asyncapi" / "asyncapi-3.0.0.schema.json"


def asyncapi_errors(document: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(document)]


def test_the_document_is_valid_asyncapi_3():
    assert asyncapi_errors(event_catalogue()) == []


def test_the_validator_catches_what_asyncapi_3_forbids():
    """The vendored schema and its local $refs really check: 2.x's `publish` is not a 3.0 action."""
    document = json.loads(render_document(event_catalogue()))
    next(iter(document["operations"].values()))["action"] = "publish"
    document["components"]["messages"]["DriverStatusChanged"]["payload"]["type"] = "no such type"
    assert len(asyncapi_errors(document)) == 2


def test_the_committed_document_is_current():
    assert DOCUMENT_PATH.read_text() == render_document(event_catalogue()), (
        f"{DOCUMENT_PATH} is out of date: refresh it with "
        f"`python manage.py asyncapi --output docs/{DOCUMENT_PATH.name}` and commit it"
    )


def test_every_topic_has_its_channels_named_by_the_topic_and_its_payload_from_its_fields():
    document = event_catalogue()
    addresses = {channel["address"] for channel in document["channels"].values()}
    for topic in declared_topics():
        assert topic.channel in addresses
        if topic.durable:
            assert {topic.stream, topic.dead_letters} <= addresses
        payload = document["components"]["messages"][topic.event_type.__name__]["payload"]
        assert payload == topic.event_type.FIELDS.schema()
        assert payload["required"] == list(topic.event_type.FIELDS.names)


def test_every_consumer_group_and_the_dashboard_are_named():
    operations = event_catalogue()["operations"]
    receivers = {
        (operation["channel"]["$ref"].rsplit("/", 1)[1], operation["title"])
        for operation in operations.values()
        if operation["action"] == "receive"
    }
    assert ("driver-status-changed-stream", "rides (stream)") in receivers
    assert ("driver-status-changed-stream", "locations (stream)") in receivers
    assert ("driver-status-changed", "locations (pubsub)") in receivers
    assert ("ride-status-changed-stream", "rides (stream)") in receivers
    assert ("ride-status-changed", "rides (pubsub)") not in receivers  # the matcher reads the stream only
    assert ("driver-location-updated", "locations (pubsub)") in receivers
    for channel in ("driver-status-changed", "ride-status-changed", "driver-location-updated"):
        assert (channel, "dashboard (pubsub)") in receivers


DRIVER = "7d3f0f5e-3c55-4c39-9d0e-4c2b8f0b6a11"
GOOD_STATUS = {
    "driverId": DRIVER,
    "available": True,
    "timestamp": "2026-02-01T12:00:00.123456Z",
    "eventId": "0b6f3c1e-8f0a-4a4e-9d4b-2f9e8f7a6c5d",
    "version": 7,
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("driverId", "not-a-uuid"),
        ("available", "true"),
        ("timestamp", "2026-02-01T12:00:00"),  # no time zone
        ("timestamp", "yesterday"),
        ("version", 0),
        ("version", wire.MAX_VERSION),
        ("version", True),
        ("version", "7"),
    ],
)
def test_the_schema_refuses_what_the_wire_rules_refuse(field, value):
    """The schema and the validator come from one declaration: a message one refuses, so does the other."""
    message = json.dumps({**GOOD_STATUS, field: value})
    with pytest.raises(wire.InvalidEvent):
        DRIVER_STATUS.parse(message)
    with pytest.raises(AssertionError, match="does not match the event catalogue"):
        assert_matches_catalogue(DRIVER_STATUS.channel, message)


def test_a_valid_message_passes_both():
    message = json.dumps({**GOOD_STATUS, "addedLater": 1})  # unknown fields are allowed: consumers ignore them
    assert assert_matches_catalogue(DRIVER_STATUS.stream, message)["version"] == 7
    assert DRIVER_STATUS.parse(message).version == 7


GOOD_RIDE = {
    "rideId": "5a0f1d7e-2b1c-4c8e-9a4f-3e2d1c0b9a87",
    "riderId": "9c8b7a6f-5e4d-4c3b-8a2f-1e0d9c8b7a6f",
    "driverId": DRIVER,
    "pickupDistanceKm": 1.25,
    "status": "assigned",
    "pickup": {"lat": 52.52, "lng": 13.405},
    "dropoff": {"lat": 52.5, "lng": 13.3},
    "requestedAt": "2026-02-01T11:59:58.000001Z",
    "timestamp": "2026-02-01T12:00:00.123456Z",
    "version": 2,
    "eventId": "0b6f3c1e-8f0a-4a4e-9d4b-2f9e8f7a6c5d",
}


@pytest.mark.parametrize("value", [-0.5, "1.25", True, 1e6])
def test_a_pickup_distance_that_is_not_one_is_refused_by_both(value):
    message = json.dumps({**GOOD_RIDE, "pickupDistanceKm": value})
    with pytest.raises(wire.InvalidEvent):
        RIDE_STATUS.parse(message)
    with pytest.raises(AssertionError, match="does not match the event catalogue"):
        assert_matches_catalogue(RIDE_STATUS.channel, message)


def test_a_ride_event_from_before_the_pickup_distance_reads_as_null():
    """A field added later: a stream still holds events published without it after a deploy, and
    the matcher must not dead-letter a request for that. Null is what it means: not known."""
    older = {key: value for key, value in GOOD_RIDE.items() if key != "pickupDistanceKm"}
    assert RIDE_STATUS.parse(json.dumps(older)).ride.pickup_distance_km is None
    requested = {**GOOD_RIDE, "driverId": None, "pickupDistanceKm": None, "status": "requested", "version": 1}
    assert RIDE_STATUS.parse(json.dumps(requested)).ride.pickup_distance_km is None
    assert assert_matches_catalogue(RIDE_STATUS.stream, json.dumps(requested))["version"] == 1


class TaggedTopic:
    """A durable topic as it will be named on a cluster (not declared: declaring binds its event class)."""

    name = channel = "tagged-topic"
    durable = True
    event_type = DriverStatusChanged
    stream = "stream:{tagged-topic}"
    dead_letters = "stream:{tagged-topic}:dead"


def test_a_hash_tagged_stream_name_is_declared_as_a_parameter_of_one_value():
    """When streams are named `stream:{T}` (Redis Cluster), AsyncAPI must not read `{T}` as a variable."""
    document = asyncapi.document([TaggedTopic()], [])
    channel = document["channels"]["tagged-topic-stream"]
    assert channel["address"] == "stream:{tagged-topic}"
    assert channel["parameters"]["tagged-topic"]["enum"] == ["tagged-topic"]
    assert asyncapi_errors(document) == []


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        (DRIVER_STATUS, GOOD_STATUS),
        (
            DRIVER_LOCATION,
            {"driverId": DRIVER, "lat": 52.52, "lng": 13.405, "timestamp": "2026-02-01T12:00:00.123456Z"},
        ),
        (RIDE_STATUS, GOOD_RIDE),
    ],
)
def test_an_event_read_through_its_fields_renders_back_the_same(topic, message):
    """`from_dict` builds these classes from FIELDS in declaration order: the order must be the class's."""
    assert topic.parse(json.dumps(message)).to_dict() == message
