"""PUT/GET /api/users/driver-status: the rules of the spec, each with the event it must (not) publish."""

import json
import uuid
from datetime import datetime
from typing import cast

import pytest
import redis
from django.db import transaction

from ridehail.events.topic import STREAM_FIELD
from users.events import DRIVER_STATUS
from users.models import User
from users.services import set_driver_availability

STREAM = DRIVER_STATUS.stream

# Real commits, so on_commit publishing runs exactly as in production.
pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/users/driver-status"


def stream_events(client: redis.Redis) -> list[dict]:
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(STREAM))  # bytes: the client does not decode
    return [json.loads(fields[STREAM_FIELD.encode()]) for _, fields in entries]


def test_driver_goes_online_and_the_event_is_published(driver, driver_client, listener, redis_client):
    response = driver_client.put(URL, {"available": True}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["driverId"] == str(driver.id)
    assert body["available"] is True
    assert body["version"] == 1
    assert body["changed"] is True
    event = listener.next_event()
    assert event == {
        "driverId": str(driver.id),
        "available": True,
        "timestamp": body["timestamp"],
        "eventId": body["eventId"],
        "version": 1,
    }
    assert body["timestamp"].endswith("Z")
    datetime.fromisoformat(body["timestamp"])
    assert stream_events(redis_client) == [event]
    driver.refresh_from_db()
    assert (driver.is_available, driver.status_version) == (True, 1)


@pytest.mark.parametrize("body", [None, {}])
def test_empty_body_toggles(driver, driver_client, listener, body):
    first = driver_client.put(URL, body, format="json" if body is not None else None).json()
    second = driver_client.put(URL, body, format="json" if body is not None else None).json()

    assert (first["available"], first["version"]) == (True, 1)
    assert (second["available"], second["version"]) == (False, 2)
    assert [listener.next_event()["version"], listener.next_event()["version"]] == [1, 2]


def test_path_answers_with_and_without_trailing_slash(driver_client, listener):
    assert driver_client.put(URL + "/", {"available": True}, format="json").status_code == 200
    assert driver_client.get(URL + "/").status_code == 200
    assert driver_client.get(URL).status_code == 200


def test_setting_the_current_value_changes_and_publishes_nothing(driver, driver_client, listener, redis_client):
    online = driver_client.put(URL, {"available": True}, format="json").json()
    listener.next_event()

    again = driver_client.put(URL, {"available": True}, format="json")

    assert again.status_code == 200
    assert again.json() == {**online, "eventId": None, "changed": False}
    listener.assert_nothing_published()
    assert len(stream_events(redis_client)) == 1


def test_get_reports_the_current_status(driver, driver_client, listener):
    assert driver_client.get(URL).json() == {
        "driverId": str(driver.id),
        "available": False,
        "timestamp": None,
        "version": 0,
    }
    change = driver_client.put(URL, {"available": True}, format="json").json()
    assert driver_client.get(URL).json() == {
        "driverId": str(driver.id),
        "available": True,
        "timestamp": change["timestamp"],
        "version": 1,
    }


@pytest.mark.parametrize(
    ("raw_body", "content_type", "status"),
    [
        ('{"available": "true"}', "application/json", 400),
        ('{"available": 1}', "application/json", 400),
        ('{"available": 0}', "application/json", 400),
        ('{"available": null}', "application/json", 400),
        ('{"available": "yes"}', "application/json", 400),
        ('[{"available": true}]', "application/json", 400),
        ('"available"', "application/json", 400),
        ("null", "application/json", 400),
        ('{"available": tru', "application/json", 400),
        ("\xff\xfe", "application/json", 400),
        ("available=true", "application/x-www-form-urlencoded", 415),
    ],
)
def test_bad_input_is_rejected_and_changes_nothing(
    driver, driver_client, listener, redis_client, raw_body, content_type, status
):
    response = driver_client.generic("PUT", URL, raw_body.encode("latin-1"), content_type=content_type)

    assert response.status_code == status
    assert response.json()  # a JSON body that says what was wrong
    driver.refresh_from_db()
    assert (driver.is_available, driver.status_version) == (False, 0)
    listener.assert_nothing_published()
    assert stream_events(redis_client) == []


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"availble": True}, {"availble": ["Unknown field."]}),  # misspelt: never a toggle
        ({"available": True, "note": "x"}, {"note": ["Unknown field."]}),
    ],
)
def test_an_unknown_field_is_a_400_and_changes_nothing(driver, driver_client, listener, redis_client, body, errors):
    response = driver_client.put(URL, body, format="json")

    assert response.status_code == 400
    assert response.json() == errors
    driver.refresh_from_db()
    assert (driver.is_available, driver.status_version) == (False, 0)
    listener.assert_nothing_published()
    assert stream_events(redis_client) == []


def test_non_boolean_available_names_the_field(driver_client):
    response = driver_client.put(URL, {"available": "true"}, format="json")
    assert response.json() == {"available": ["Must be a JSON boolean (true or false)."]}


@pytest.mark.parametrize("method", ["post", "patch", "delete"])
def test_other_methods_are_not_allowed(driver_client, method):
    assert getattr(driver_client, method)(URL).status_code == 405


def test_rider_cannot_see_or_change_a_status(rider_client, listener):
    assert rider_client.get(URL).status_code == 403
    assert rider_client.put(URL, {"available": True}, format="json").status_code == 403
    listener.assert_nothing_published()


def test_staff_who_is_not_a_driver_cannot_change_a_status(staff_client):
    assert staff_client.put(URL, {"available": True}, format="json").status_code == 403


@pytest.mark.parametrize("authorization", [None, "Token not-a-real-token", "Bearer abc", "Token"])
def test_without_valid_credentials_the_answer_is_401(anonymous_client, driver, listener, authorization):
    if authorization:
        anonymous_client.credentials(HTTP_AUTHORIZATION=authorization)
    response = anonymous_client.put(URL, {"available": True}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    listener.assert_nothing_published()


def test_a_driver_changes_only_their_own_status(driver, other_driver, driver_client, listener):
    driver_client.put(URL, {"available": True}, format="json")

    other_driver.refresh_from_db()
    assert (other_driver.is_available, other_driver.status_version) == (False, 0)
    assert listener.next_event()["driverId"] == str(driver.id)


def test_nothing_is_published_before_the_commit_or_after_a_rollback(driver, listener):
    with transaction.atomic():
        set_driver_availability(driver_id=driver.id, available=True)
        listener.assert_nothing_published()  # committed state is not visible yet: no event either
    assert listener.next_event()["version"] == 1

    with pytest.raises(RuntimeError), transaction.atomic():
        set_driver_availability(driver_id=driver.id, available=False)
        raise RuntimeError("roll back")
    listener.assert_nothing_published()
    driver.refresh_from_db()
    assert (driver.is_available, driver.status_version) == (True, 1)


def test_the_request_succeeds_when_redis_is_down(driver, driver_client, redis_unreachable):
    response = driver_client.put(URL, {"available": True}, format="json")

    assert response.status_code == 200
    assert response.json()["changed"] is True
    driver.refresh_from_db()
    assert (driver.is_available, driver.status_version) == (True, 1)


def test_stream_is_trimmed_to_the_configured_length(driver, redis_client, settings):
    settings.RIDEHAIL_STREAM_MAXLEN = 10
    for _ in range(300):
        set_driver_availability(driver_id=driver.id)
    # MAXLEN ~ trims whole macro nodes (100 entries by default), so allow one node of slack.
    assert redis_client.xlen(STREAM) <= 10 + 100


def test_unknown_or_non_driver_ids_are_refused_by_the_service(rider):
    with pytest.raises(User.DoesNotExist):
        set_driver_availability(driver_id=rider.id)
    with pytest.raises(User.DoesNotExist):
        set_driver_availability(driver_id=uuid.uuid4())


def test_a_status_change_is_a_fixed_number_of_queries(driver, driver_client, listener, django_assert_num_queries):
    # The token and its user (one query); BEGIN, the change in one UPDATE … RETURNING, its outbox
    # row, COMMIT; after the commit and the publish script, one UPDATE marks its own row published
    # (ridehail/events/publisher.py: no batching thread, no timing).
    with django_assert_num_queries(6):
        assert driver_client.put(URL, {"available": True}, format="json").status_code == 200
    assert listener.next_event()["version"] == 1
