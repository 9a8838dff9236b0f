"""The event catalogue served (`/api/events/schema/`, `/api/events/`), and real events checked against it."""

import json

import pytest
from django.test import Client

from conftest import client_for
from locations.events import DRIVER_LOCATION
from ridehail.catalogue import event_catalogue
from ridehail.events.topic import STREAM_FIELD, declared_topics
from rides.events import RIDE_STATUS
from tests.catalogue import assert_matches_catalogue
from tests.channels import ChannelListener
from users.events import DRIVER_STATUS

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("path", ["/api/events/schema/", "/api/events/schema"])
def test_anyone_reads_the_asyncapi_document(path):
    response = Client().get(path)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == json.loads(json.dumps(event_catalogue()))


def test_the_catalogue_page_shows_every_channel_and_field():
    response = Client().get("/api/events/")
    assert response.status_code == 200
    page = response.content.decode()
    for topic in declared_topics():
        assert f"<code>{topic.channel}</code>" in page
        if topic.durable:
            assert f"<code>{topic.stream}</code>" in page and f"<code>{topic.dead_letters}</code>" in page
        for name in topic.event_type.FIELDS.names:
            assert f"<code>{name}</code>" in page
    assert "<code>pickup.lat</code>" in page


def test_the_catalogue_answers_only_reads():
    assert Client().post("/api/events/schema/").status_code == 405


def test_one_event_of_each_topic_through_the_api_matches_the_catalogue_on_channel_and_stream(
    driver, rider, redis_client
):
    listeners = {topic: ChannelListener(redis_client, topic) for topic in (DRIVER_STATUS, RIDE_STATUS, DRIVER_LOCATION)}
    try:
        as_driver, as_rider = client_for(driver), client_for(rider)
        assert as_driver.put("/api/users/driver-status", {"available": True}, format="json").status_code == 200
        position = {"lat": 52.52, "lng": 13.405}
        assert as_driver.put("/api/locations/driver-location", position, format="json").status_code == 202
        trip = {"pickup": {"lat": 52.52, "lng": 13.405}, "dropoff": {"lat": 52.5, "lng": 13.3}}
        assert as_rider.post("/api/rides", trip, format="json").status_code == 201

        # next_event checks each message against the catalogue; the streams are checked here.
        assert listeners[DRIVER_STATUS].next_event()["driverId"] == str(driver.id)
        assert listeners[DRIVER_LOCATION].next_event()["lat"] == position["lat"]
        assert listeners[RIDE_STATUS].next_event()["status"] == "requested"
        for topic in (DRIVER_STATUS, RIDE_STATUS):
            entries = redis_client.xrange(topic.stream)
            assert len(entries) == 1
            assert_matches_catalogue(topic.stream, entries[0][1][STREAM_FIELD.encode()])
    finally:
        for listener in listeners.values():
            listener.close()
