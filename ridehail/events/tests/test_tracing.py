"""One trace per event's journey, across real processes: web (uvicorn) -> outbox -> stream -> worker.

The web server and the workers run with the standard OTEL_* variables pointing at an OTLP/HTTP
receiver this test starts on loopback (tests/otlp.py); the test reads what they exported.
"""

import itertools
import json
import os
import uuid
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conftest import token_of
from ridehail.events import tracing
from ridehail.events.connection import shared_redis
from ridehail.events.models import OutboxEvent
from ridehail.events.outbox import relay_once
from ridehail.events.publisher import mark
from ridehail.events.tracing import TracingMiddleware, context_of, route_template, wanted
from tests.otlp import OtlpReceiver, ReceivedSpan, timeline_svg, trace_of
from tests.processes import wait_until
from tests.servers import AsgiServer
from users.events import DRIVER_STATUS
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

PICKUP = {"lat": 52.52, "lng": 13.405}
TRIP = {"pickup": PICKUP, "dropoff": {"lat": 52.5, "lng": 13.3}}


@pytest.fixture
def receiver():
    with OtlpReceiver() as started:
        yield started


def one(spans: list[ReceivedSpan], name: str, **attributes: object) -> ReceivedSpan:
    found = [
        span
        for span in spans
        if span.name == name and all(span.attributes.get(key) == value for key, value in attributes.items())
    ]
    assert len(found) == 1, f"{len(found)} span(s) {name} {attributes} in {[(s.service, s.name) for s in spans]}"
    return found[0]


def first_publishes(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    """The first publish span of each event, in order. A relay round that meets a committed row
    before its request marked it publishes it again (at least once: same eventId, and the key's
    mark makes the script drop the copy), so an event may have a second span in its trace."""
    first: dict[object, ReceivedSpan] = {}
    for span in sorted(spans, key=lambda s: s.start_ns):
        if span.name == name:
            first.setdefault(span.attributes["messaging.message.id"], span)
    return list(first.values())


def assert_chain(*spans: ReceivedSpan) -> None:
    """Each span is the child of the one before it, and starts no earlier."""
    for parent, child in itertools.pairwise(spans):
        assert child.trace_id == parent.trace_id
        assert child.parent_span_id == parent.span_id, f"{child.name} is not a child of {parent.name}"
        assert child.start_ns >= parent.start_ns


def trace_with(receiver: OtlpReceiver, name: str, *, holding: set[str], **attributes: object) -> list[ReceivedSpan]:
    """The trace of the span `name` with `attributes`, once it holds a span of every name in `holding`
    (the processes export in batches: the request's span, ended last, may come after the worker's)."""

    def complete(spans: list[ReceivedSpan]) -> list[ReceivedSpan] | None:
        for span in spans:
            if span.name == name and all(span.attributes.get(k) == v for k, v in attributes.items()):
                journey = trace_of(spans, span.trace_id)
                if holding <= {other.name for other in journey}:
                    return journey
        return None

    return receiver.wait_for(complete, what=f"a trace with {name} {attributes} and {holding}")


def test_a_status_change_and_a_ride_request_are_one_trace_each_from_the_request_to_the_worker(
    receiver, start_worker, driver, rider
):
    env = receiver.env()
    web = AsgiServer(env=env).start()
    try:
        start_worker("rides", "--transport", "stream", env=env)
        start_worker("locations", env=env)
        as_driver = httpx.Client(base_url=web.url, headers={"Authorization": f"Token {token_of(driver)}"})
        as_rider = httpx.Client(base_url=web.url, headers={"Authorization": f"Token {token_of(rider)}"})

        status = as_driver.put("/api/users/driver-status", json={"available": True})
        assert status.status_code == 200, status.text
        event_id = status.json()["eventId"]

        journey = trace_with(
            receiver,
            "publish driver-status-changed",
            holding={"PUT /api/users/driver-status", "process driver-status-changed"},
            **{"messaging.message.id": event_id},
        )
        request = one(journey, "PUT /api/users/driver-status")
        service = one(journey, "users.services.set_driver_availability")
        [publish] = first_publishes(journey, "publish driver-status-changed")
        process = one(journey, "process driver-status-changed")
        assert_chain(request, service, publish, process)
        assert (request.service, request.kind, request.attributes["http.response.status_code"]) == (
            "ridehail-web",
            "server",
            200,
        )
        assert publish.kind == "producer"
        assert publish.attributes == {
            "messaging.system": "redis",
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": DRIVER_STATUS.stream,
            "messaging.message.id": event_id,
            "ridehail.event.key": str(driver.id),
        }
        assert (process.service, process.kind) == ("ridehail-rides", "consumer")
        assert process.attributes == {
            "messaging.system": "redis",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": DRIVER_STATUS.stream,
            "messaging.consumer.group.name": "rides",
            "messaging.message.id": event_id,
        }

        # The driver is near the pickup, so the ride is assigned: the matcher's work is in the trace.
        assert as_driver.put("/api/locations/driver-location", json=PICKUP).status_code == 202
        wait_until(
            lambda: as_rider.get("/api/locations/nearby", params=PICKUP).json()["drivers"], what="the driver nearby"
        )
        ride = as_rider.post("/api/rides", json=TRIP)
        assert ride.status_code == 201, ride.text
        ride_id = ride.json()["rideId"]

        journey = trace_with(
            receiver,
            "POST /api/rides",
            holding={"POST /api/rides", "match batch", "rides.services.assign_rides"},
            **{"http.response.status_code": 201},
        )
        request = one(journey, "POST /api/rides")
        service = one(journey, "rides.services.request_ride")
        requested, assigned = first_publishes(journey, "publish ride-status-changed")
        process = one(
            journey,
            "process ride-status-changed",
            **{"messaging.message.id": requested.attributes["messaging.message.id"]},
        )
        # The matcher's default window batches requests (a batch of one here: RIDEHAIL_MATCH_WINDOW_SECONDS).
        matching = one(journey, "match batch")
        assignment = one(journey, "rides.services.assign_rides")
        assert_chain(request, service, requested, process, matching, assignment, assigned)
        assert requested.attributes["ridehail.event.key"] == assigned.attributes["ridehail.event.key"] == ride_id
        assert process.attributes["messaging.consumer.group.name"] == "rides"
        assert matching.attributes == {"ridehail.batch.size": 1, "ridehail.batch.assigned": 1}
        assert uuid.UUID(requested.attributes["messaging.message.id"]) != uuid.UUID(
            assigned.attributes["messaging.message.id"]
        )
        if picture := os.environ.get("RIDEHAIL_TRACE_SVG"):  # docs/trace.svg: the README's picture
            shown = [span for span in journey if span.start_ns <= assigned.end_ns]
            Path(picture).write_text(
                timeline_svg(shown, title="One ride request's trace: POST /api/rides to its assignment")
            )
    finally:
        web.stop()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_TRACES_EXPORTER": ""}, False),  # compose's defaults
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_only_the_standard_variables_turn_tracing_on(environ, expected):
    assert wanted(environ) is expected


def test_off_the_middleware_leaves_the_chain_and_the_helpers_do_nothing():
    from django.core.exceptions import MiddlewareNotUsed

    assert not tracing.enabled()
    with pytest.raises(MiddlewareNotUsed):
        TracingMiddleware(lambda request: None)
    assert tracing.current_traceparent() is None
    span, traceparent = tracing.start_publish(topic="t", destination="stream:t", event_id=None, key="k")
    assert traceparent is None and not span.is_recording()


@pytest.mark.parametrize("garbage", [None, b"", b"\xff\xfe", b"00-zz-yy-01", "00-" + "0" * 32 + "-" + "0" * 16 + "-01"])
def test_a_garbled_trace_field_is_no_context_not_an_error(garbage):
    assert context_of(garbage) is None


def test_routes_are_templates():
    assert route_template(r"^api/rides/(?P<ride_id>[0-9a-f]{8}-[0-9a-f]{4})/cancel/?$") == "/api/rides/{ride_id}/cancel"
    assert route_template("^api/users/driver-status/?$") == "/api/users/driver-status"


@pytest.fixture
def traced_here(monkeypatch) -> InMemorySpanExporter:
    """Tracing on in this process, into memory (what configure() sets up, with another exporter)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    return exporter


def test_a_row_left_to_the_relay_is_published_in_its_request_s_trace(traced_here, settings, redis_client, driver):
    reachable = settings.REDIS_URL
    with tracing.span("the request") as request:
        settings.REDIS_URL = "redis://127.0.0.1:1/0"  # the request's own publish fails: the row stays pending
        shared_redis.cache_clear()
        try:
            change = set_driver_availability(driver_id=driver.id, available=True)
        finally:
            settings.REDIS_URL = reachable
            shared_redis.cache_clear()
    assert relay_once() == 1

    ((_, fields),) = redis_client.xrange(DRIVER_STATUS.stream)
    trace_id = f"{request.get_span_context().trace_id:032x}"
    assert fields[b"traceparent"].decode().split("-")[1] == trace_id
    assert json.loads(fields[b"event"])["eventId"] == str(change.event_id)  # the event JSON as the spec fixes it
    spans = traced_here.get_finished_spans()
    (service,) = [span for span in spans if span.name == "users.services.set_driver_availability"]
    failed, relayed = [span for span in spans if span.name == "publish driver-status-changed"]
    assert {failed.parent.span_id, relayed.parent.span_id} == {service.context.span_id}
    assert failed.status.status_code is StatusCode.ERROR and relayed.status.status_code is StatusCode.UNSET
    assert relayed.kind is SpanKind.PRODUCER and relayed.attributes["messaging.message.id"] == str(change.event_id)
    assert fields[b"traceparent"].decode().split("-")[2] == f"{relayed.context.span_id:016x}"


def test_a_row_with_a_garbled_context_is_published_in_a_trace_of_its_own(traced_here, redis_client, driver):
    with tracing.span("the request"):
        set_driver_availability(driver_id=driver.id, available=True)
    OutboxEvent.objects.update(published_at=None, trace_context="00-not-a-trace-01")
    redis_client.delete(DRIVER_STATUS.stream, mark(DRIVER_STATUS, str(driver.id)))

    assert relay_once() == 1

    ((_, fields),) = redis_client.xrange(DRIVER_STATUS.stream)
    relayed = traced_here.get_finished_spans()[-1]
    assert relayed.name == "publish driver-status-changed" and relayed.parent is None
    assert fields[b"traceparent"].decode().split("-")[1] == f"{relayed.context.trace_id:032x}"


def test_on_a_cluster_the_entry_carries_the_context_too(traced_here, on_cluster, driver):
    with tracing.span("the request") as request:
        set_driver_availability(driver_id=driver.id, available=True)

    ((_, fields),) = shared_redis().xrange(DRIVER_STATUS.stream)
    (published,) = [span for span in traced_here.get_finished_spans() if span.kind is SpanKind.PRODUCER]
    assert published.context.trace_id == request.get_span_context().trace_id
    assert fields[b"traceparent"].decode().split("-")[2] == f"{published.context.span_id:016x}"
