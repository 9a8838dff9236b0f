"""Throttles (429 with Retry-After) on login/register per IP and on status changes per driver; logout.

Client addresses, the login forms and Redis outages: ridehail/tests/test_throttling.py."""

import pytest

from conftest import PASSWORD, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def low_rates(settings):
    settings.RIDEHAIL_THROTTLE_RATES = {"auth": "3/minute", "driver-status": "2/minute"}


def test_login_is_throttled_per_ip_with_retry_after(anonymous_client, driver, low_rates):
    body = {"username": "driver", "password": "wrong"}
    statuses = [anonymous_client.post("/api/auth/login", body, format="json").status_code for _ in range(4)]

    assert statuses == [401, 401, 401, 429]
    throttled = anonymous_client.post("/api/auth/login", {"username": "driver", "password": PASSWORD}, format="json")
    assert throttled.status_code == 429
    assert 0 < int(throttled["Retry-After"]) <= 60
    other_ip = anonymous_client.post(
        "/api/auth/login", {"username": "driver", "password": PASSWORD}, format="json", REMOTE_ADDR="10.0.0.9"
    )
    assert other_ip.status_code == 200


def test_register_shares_the_auth_limit(anonymous_client, low_rates):
    for n in range(3):
        anonymous_client.post(
            "/api/auth/register", {"username": f"u{n}", "password": "x", "role": "rider"}, format="json"
        )
    response = anonymous_client.post(
        "/api/auth/register", {"username": "late", "password": PASSWORD, "role": "rider"}, format="json"
    )
    assert response.status_code == 429


@pytest.mark.django_db(transaction=True)
def test_status_changes_are_throttled_per_driver_and_reads_are_not(driver, other_driver, low_rates, redis_client):
    client = client_for(driver)
    assert [client.put("/api/users/driver-status").status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/api/users/driver-status").status_code == 200
    assert client_for(other_driver).put("/api/users/driver-status").status_code == 200
    driver.refresh_from_db()
    assert driver.status_version == 2  # the throttled request changed nothing


def test_logout_revokes_the_token(anonymous_client, driver):
    token = anonymous_client.post(
        "/api/auth/login", {"username": "driver", "password": PASSWORD}, format="json"
    ).json()["token"]
    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert anonymous_client.get("/api/users/me").status_code == 200

    assert anonymous_client.post("/api/auth/logout").status_code == 204

    assert anonymous_client.get("/api/users/me").status_code == 401
    assert anonymous_client.post("/api/auth/logout/").status_code == 401


def test_logout_needs_credentials(anonymous_client):
    assert anonymous_client.post("/api/auth/logout").status_code == 401
