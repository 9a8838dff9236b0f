"""Register, login and me: the account endpoints and their error rules."""

import pytest

from conftest import PASSWORD
from users.models import User


def register(client, username: str, **extra):
    return client.post("/api/auth/register", {"username": username, "password": PASSWORD, **extra}, format="json")


pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", ["driver", "rider"])
def test_anyone_can_register_as_driver_or_rider(anonymous_client, role):
    response = anonymous_client.post(
        "/api/auth/register", {"username": f"new-{role}", "password": PASSWORD, "role": role}, format="json"
    )

    assert response.status_code == 201
    user = User.objects.get(username=f"new-{role}")
    assert response.json() == {"id": str(user.id), "username": f"new-{role}", "role": role}
    assert user.check_password(PASSWORD)
    assert (user.is_available, user.status_version, user.is_staff) == (False, 0, False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "x", "password": PASSWORD, "role": "admin"}, "role"),
        ({"username": "x", "password": "123", "role": "rider"}, "password"),
        ({"username": "", "password": PASSWORD, "role": "rider"}, "username"),
        ({"username": "bad name!", "password": PASSWORD, "role": "rider"}, "username"),
        ({"username": "x" * 151, "password": PASSWORD, "role": "rider"}, "username"),
        ({"username": ["x"], "password": PASSWORD, "role": "rider"}, "username"),
    ],
)
def test_register_rejects_invalid_fields(anonymous_client, body, field):
    response = anonymous_client.post("/api/auth/register", body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not User.objects.exists()


def test_register_refuses_an_unknown_field(anonymous_client):
    response = register(anonymous_client, "new", is_staff=True)

    assert response.status_code == 400
    assert response.json() == {"is_staff": ["Unknown field."]}
    assert not User.objects.exists()


def test_login_refuses_an_unknown_field(anonymous_client, driver):
    body = {"username": "driver", "password": PASSWORD, "remember": True}
    response = anonymous_client.post("/api/auth/login", body, format="json")

    assert response.status_code == 400
    assert response.json() == {"remember": ["Unknown field."]}


def test_register_refuses_a_taken_username(anonymous_client, rider):
    response = anonymous_client.post(
        "/api/auth/register", {"username": "RIDER", "password": PASSWORD, "role": "driver"}, format="json"
    )
    assert response.status_code == 400
    assert "username" in response.json()


def test_register_without_a_role_makes_a_rider(anonymous_client):
    response = register(anonymous_client, "no-role")

    assert response.status_code == 201
    assert response.json()["role"] == "rider"
    assert User.objects.get(username="no-role").role == "rider"


def test_login_returns_a_token_that_authenticates(anonymous_client, driver):
    response = anonymous_client.post("/api/auth/login/", {"username": "driver", "password": PASSWORD}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["user"] == {"id": str(driver.id), "username": "driver", "role": "driver"}
    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert anonymous_client.get("/api/users/me").json()["id"] == str(driver.id)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": "driver", "password": "wrong"}, 401),
        ({"username": "nobody", "password": PASSWORD}, 401),
        ({"username": "driver"}, 400),
        ({}, 400),
    ],
)
def test_login_refuses_bad_credentials(anonymous_client, driver, body, status):
    assert anonymous_client.post("/api/auth/login", body, format="json").status_code == status


def test_me_includes_availability_for_drivers_only(driver_client, rider_client, driver, rider):
    assert driver_client.get("/api/users/me").json() == {
        "id": str(driver.id),
        "username": "driver",
        "role": "driver",
        "available": False,
    }
    assert rider_client.get("/api/users/me/").json() == {"id": str(rider.id), "username": "rider", "role": "rider"}


def test_me_needs_credentials(anonymous_client):
    assert anonymous_client.get("/api/users/me").status_code == 401
