"""Request bodies that are nested too deep or too big: a JSON 400 or 413 on every endpoint, never a 500."""

import pytest

from conftest import client_for
from ridehail.web.parsers import MAX_JSON_DEPTH

pytestmark = pytest.mark.django_db

DEEP = "[" * 1000 + "]" * 1000  # 2 KB


def nested(depth: int) -> str:
    return '{"available": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


@pytest.mark.parametrize(
    ("persona", "method", "path"),
    [
        (None, "POST", "/api/auth/login"),
        (None, "POST", "/api/auth/register"),
        ("driver", "PUT", "/api/users/driver-status"),
    ],
)
def test_deeply_nested_json_is_a_400_not_a_500(persona, method, path, request, redis_client):
    client = client_for(request.getfixturevalue(persona) if persona else None)

    response = client.generic(method, path, DEEP, content_type="application/json")

    assert response.status_code == 400
    assert "nested deeper than 32 levels" in response.json()["detail"]


def test_the_depth_limit_is_exact(driver_client, driver):
    at_limit = driver_client.generic("PUT", "/api/users/driver-status", nested(MAX_JSON_DEPTH), "application/json")
    beyond = driver_client.generic("PUT", "/api/users/driver-status", nested(MAX_JSON_DEPTH + 1), "application/json")

    assert at_limit.json() == {"available": ["Must be a JSON boolean (true or false)."]}  # parsed, then refused
    assert "nested deeper" in beyond.json()["detail"]
    driver.refresh_from_db()
    assert driver.status_version == 0


def test_an_oversized_body_is_a_json_413(anonymous_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"username": "' + "x" * 2000 + '", "password": "p"}'

    response = anonymous_client.generic("POST", "/api/auth/login", body, content_type="application/json")

    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large: at most 1000 bytes."}
