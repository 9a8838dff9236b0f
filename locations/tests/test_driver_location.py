"""`PUT /api/locations/driver-location`: one DRF view, its rules, and what it costs."""

import json
from collections.abc import Iterator

import pytest

from conftest import client_for
from locations.events import DRIVER_LOCATION
from tests.channels import ChannelListener
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/locations/driver-location"


@pytest.fixture
def positions(redis_client) -> Iterator[ChannelListener]:
    listener = ChannelListener(redis_client, DRIVER_LOCATION)
    yield listener
    listener.close()


@pytest.fixture
def online_driver(driver, redis_client):
    set_driver_availability(driver_id=driver.id, available=True)
    return driver


def put(client, body, **extra):
    return client.put(
        URL, json.dumps(body) if not isinstance(body, bytes) else body, content_type="application/json", **extra
    )


# -- the view, in-process --------------------------------------------------------------------


def test_an_online_driver_reports_a_position_and_it_is_published_as_is(online_driver, positions):
    response = put(client_for(online_driver), {"lat": 52.52, "lng": 13.405})

    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"driverId", "lat", "lng", "timestamp"}
    assert (body["driverId"], body["lat"], body["lng"]) == (str(online_driver.id), 52.52, 13.405)
    assert positions.next_event() == body
    assert body["timestamp"].endswith("Z")


def test_integer_coordinates_are_numbers_too(online_driver, positions):
    response = put(client_for(online_driver), {"lat": 52, "lng": -13})
    assert (response.status_code, response.json()["lat"], response.json()["lng"]) == (202, 52.0, -13.0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lat": "52.5", "lng": 13.4}, "lat"),
        ({"lat": True, "lng": 13.4}, "lat"),
        ({"lat": None, "lng": 13.4}, "lat"),
        ({"lat": 90.0001, "lng": 13.4}, "lat"),
        ({"lat": -90.5, "lng": 13.4}, "lat"),
        ({"lat": 52.5, "lng": 180.5}, "lng"),
        ({"lat": 52.5, "lng": [13.4]}, "lng"),
        ({"lat": 52.5}, "lng"),
        ({"lng": 13.4}, "lat"),
        ({"lat": 52.5, "lng": 13.4, "speed": 3}, "speed"),
        (b'{"lat": 1e400, "lng": 13.4}', "lat"),
    ],
)
def test_anything_but_two_finite_numbers_in_range_is_a_400_with_field_errors(online_driver, positions, body, field):
    response = put(client_for(online_driver), body)

    assert response.status_code == 400
    assert field in response.json()
    positions.assert_nothing_published()


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2]",
        b"not json",
        b"[" * 1000 + b"]" * 1000,
        b"",
        b'{"lat": NaN, "lng": 13.4}',
        b'{"lat": 1, "lng": Infinity}',
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(online_driver, positions, body):
    assert put(client_for(online_driver), body).status_code == 400
    positions.assert_nothing_published()


def test_an_offline_driver_gets_409_and_nothing_is_published(driver, positions):
    response = put(client_for(driver), {"lat": 52.5, "lng": 13.4})
    assert response.status_code == 409
    assert "offline" in response.json()["detail"]
    positions.assert_nothing_published()


@pytest.mark.parametrize(("persona", "status"), [("anonymous", 401), ("rider", 403), ("staff", 403)])
def test_only_drivers_report_positions(request, persona, status, positions):
    user = None if persona == "anonymous" else request.getfixturevalue(persona)
    assert put(client_for(user), {"lat": 52.5, "lng": 13.4}).status_code == status
    positions.assert_nothing_published()


def test_redis_unreachable_is_a_503_and_nothing_is_kept(online_driver, redis_unreachable):
    response = put(client_for(online_driver), {"lat": 52.5, "lng": 13.4})
    assert response.status_code == 503


def test_reports_over_the_rate_limit_get_429_with_retry_after(online_driver, settings):
    settings.RIDEHAIL_THROTTLE_RATES = {**settings.RIDEHAIL_THROTTLE_RATES, "driver-location": "3/minute"}
    client = client_for(online_driver)
    statuses = [put(client, {"lat": 52.5, "lng": 13.4}).status_code for _ in range(4)]
    assert statuses == [202, 202, 202, 429]
    assert int(put(client, {"lat": 52.5, "lng": 13.4})["Retry-After"]) >= 1


def test_other_methods_are_405(online_driver):
    client = client_for(online_driver)
    for method in ("get", "post", "delete"):
        response = getattr(client, method)(URL)
        assert response.status_code == 405
        assert "PUT" in response["Allow"]


# -- one implementation: the database decides, every request -------------------------------


def test_a_driver_who_just_went_offline_is_refused_at_once(online_driver, positions):
    # The database decides who may report, not a worker's set that learns of the change later.
    client = client_for(online_driver)
    assert put(client, {"lat": 52.5, "lng": 13.4}).status_code == 202
    assert positions.next_event()["driverId"] == str(online_driver.id)

    assert client.put("/api/users/driver-status", {"available": False}, format="json").status_code == 200
    response = put(client, {"lat": 52.5, "lng": 13.4})

    assert response.status_code == 409
    positions.assert_nothing_published()


def test_a_position_report_is_one_query(online_driver, positions, django_assert_num_queries):
    # The token and its user in one query; who may report is on that row; Redis does the rest.
    client = client_for(online_driver)
    with django_assert_num_queries(1):
        assert put(client, {"lat": 52.5, "lng": 13.4}).status_code == 202
