"""`PUT /api/locations/driver-location`: the DRF view's rules, and the fast path in front of it
answering exactly what the view would (a real uvicorn, real Redis, a real locations worker)."""

import json
from collections.abc import Iterator

import pytest
import requests

from conftest import client_for
from locations.events import DRIVER_LOCATION
from locations.positions import TRACKED_DRIVERS
from tests.channels import ChannelListener
from tests.processes import wait_until
from tests.servers import AsgiServer
from users.services import set_driver_availability
from users.token_cache import token_cache_key

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


# -- the fast path in front of the view, over a real server ------------------------------


@pytest.fixture
def servers(redis_client) -> Iterator[dict[str, AsgiServer]]:
    started = {
        "fast": AsgiServer().start(),
        "view": AsgiServer(env={"RIDEHAIL_POSITION_FAST_PATH": "0"}).start(),
    }
    yield started
    for server in started.values():
        server.stop()


def http_put(server: AsgiServer, token: str | None, body: bytes | dict, content_type: str = "application/json"):
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Token {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.put(f"{server.url}{URL}", data=data, headers=headers, timeout=10)


def token_of(user) -> str:
    return client_for(user)._credentials["HTTP_AUTHORIZATION"].split()[1]


IGNORED_HEADERS = {"date", "content-length", "server"}


def comparable(response: requests.Response) -> tuple:
    headers = {name.lower(): value for name, value in response.headers.items() if name.lower() not in IGNORED_HEADERS}
    if "content-security-policy" in headers:  # django-csp writes the directives in no fixed order
        headers["content-security-policy"] = sorted(headers["content-security-policy"].split("; "))
    body = response.json()
    body.pop("timestamp", None)
    return response.status_code, body, headers


def test_the_fast_path_answers_exactly_what_the_view_would(servers, online_driver, rider, start_worker, redis_client):
    start_worker("locations")
    wait_until(lambda: TRACKED_DRIVERS.members(redis_client) == [str(online_driver.id)], what="the driver tracked")
    token = token_of(online_driver)
    # The first report takes the view (the token is not remembered yet) and teaches the fast path.
    assert http_put(servers["fast"], token, {"lat": 1.0, "lng": 2.0}).status_code == 202
    assert redis_client.get(token_cache_key(token)) == str(online_driver.id).encode()

    cases = [
        (token, {"lat": 52.5, "lng": 13.4}, "application/json"),
        (token, {"lat": 52, "lng": -13}, "application/json"),
        (token, {"lat": "52", "lng": 13.4}, "application/json"),
        (token, {"lat": 52.5, "lng": 13.4, "x": 1}, "application/json"),
        (token, b"{", "application/json"),
        (token, {"lat": 52.5, "lng": 13.4}, "text/plain"),
        ("not-a-token", {"lat": 52.5, "lng": 13.4}, "application/json"),
        (token_of(rider), {"lat": 52.5, "lng": 13.4}, "application/json"),
        (None, {"lat": 52.5, "lng": 13.4}, "application/json"),
    ]
    for case in cases:
        fast, view = http_put(servers["fast"], *case), http_put(servers["view"], *case)
        assert comparable(fast) == comparable(view), case


def test_the_fast_path_counts_in_the_same_rate_limit_window(redis_client, online_driver, start_worker):
    env = {"RIDEHAIL_THROTTLE_DRIVER_LOCATION": "4/minute"}
    fast, view = AsgiServer(env=env).start(), AsgiServer(env={**env, "RIDEHAIL_POSITION_FAST_PATH": "0"}).start()
    try:
        start_worker("locations")
        wait_until(lambda: TRACKED_DRIVERS.members(redis_client) == [str(online_driver.id)], what="tracking")
        token = token_of(online_driver)
        statuses = [http_put(server, token, {"lat": 1.0, "lng": 2.0}).status_code for server in (view, fast) * 3]
        limited_fast, limited_view = (
            http_put(fast, token, {"lat": 1, "lng": 2}),
            http_put(view, token, {"lat": 1, "lng": 2}),
        )
    finally:
        fast.stop()
        view.stop()
    assert statuses == [202, 202, 202, 202, 429, 429]
    assert comparable(limited_fast)[:2] == comparable(limited_view)[:2]
    assert limited_fast.headers["Retry-After"] == limited_view.headers["Retry-After"]


def test_signing_out_stops_the_fast_path_at_once(servers, online_driver, start_worker, redis_client):
    start_worker("locations")
    wait_until(lambda: TRACKED_DRIVERS.members(redis_client) == [str(online_driver.id)], what="tracking")
    token = token_of(online_driver)
    assert http_put(servers["fast"], token, {"lat": 1.0, "lng": 2.0}).status_code == 202  # remembered now

    logout = requests.post(f"{servers['fast'].url}/api/auth/logout", headers={"Authorization": f"Token {token}"})

    assert logout.status_code == 204
    assert http_put(servers["fast"], token, {"lat": 1.0, "lng": 2.0}).status_code == 401


@pytest.mark.parametrize("change", ["deactivate", "make rider"])
def test_a_driver_who_loses_access_is_refused_at_once_on_the_fast_path(
    servers, online_driver, start_worker, redis_client, change
):
    start_worker("locations")
    wait_until(lambda: TRACKED_DRIVERS.members(redis_client) == [str(online_driver.id)], what="tracking")
    token = token_of(online_driver)
    assert http_put(servers["fast"], token, {"lat": 1.0, "lng": 2.0}).status_code == 202

    if change == "deactivate":
        online_driver.is_active = False
    else:
        online_driver.role = "rider"
        online_driver.is_available = False
    online_driver.save()  # as the admin's form does

    assert http_put(servers["fast"], token, {"lat": 1.0, "lng": 2.0}).status_code in (401, 403)
