"""A body sent with `Transfer-Encoding: chunked` (no Content-Length) is read like any other.

Under ASGI such a request reaches Django without CONTENT_LENGTH, and DRF reads a request
without one as empty: `{"available": false}` sent chunked turned a driver online, and
`POST /api/rides` was a 400 "pickup: required". Over a real uvicorn, sent by http.client.
"""

import http.client
import json

import pytest

from conftest import token_of
from tests.servers import AsgiServer
from users.models import User
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

TRIP = {"pickup": {"lat": 52.52, "lng": 13.405}, "dropoff": {"lat": 52.5, "lng": 13.3}}


def send_chunked(asgi_server: AsgiServer, method: str, path: str, user: User, body: bytes) -> tuple[int, dict]:
    """The body in two chunks, so no Content-Length can be inferred from a single write."""
    token = f"Token {token_of(user)}"
    connection = http.client.HTTPConnection("127.0.0.1", asgi_server.port, timeout=10)
    try:
        half = len(body) // 2
        headers = {"Authorization": token, "Content-Type": "application/json"}
        connection.request(method, path, body=iter([body[:half], body[half:]]), headers=headers, encode_chunked=True)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


@pytest.mark.parametrize("available", [False, True])
def test_a_chunked_status_change_sets_what_it_says(asgi_server, driver, redis_client, available):
    # Read as empty, the body toggles: an offline driver's `false` turned them online.
    set_driver_availability(driver_id=driver.id, available=available)

    status, body = send_chunked(
        asgi_server, "PUT", "/api/users/driver-status", driver, json.dumps({"available": available}).encode()
    )

    assert (status, body["available"]) == (200, available)
    driver.refresh_from_db()
    assert driver.is_available is available


def test_a_chunked_ride_request_creates_the_ride(asgi_server, rider, redis_client):
    status, body = send_chunked(asgi_server, "POST", "/api/rides", rider, json.dumps(TRIP).encode())

    assert status == 201, body
    assert (body["pickup"], body["dropoff"]) == (TRIP["pickup"], TRIP["dropoff"])


def test_a_chunked_body_over_the_limit_is_a_413_and_changes_nothing(asgi_server, driver, redis_client):
    padding = " " * 2_700_000  # over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB, Django's default)
    body = ('{"available": true' + padding + "}").encode()

    status, answer = send_chunked(asgi_server, "PUT", "/api/users/driver-status", driver, body)

    assert status == 413, answer
    driver.refresh_from_db()
    assert driver.status_version == 0
