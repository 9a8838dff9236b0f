"""Register, login and me: the account endpoints and their error rules."""

import threading

import pytest
from django.db import IntegrityError, connections, transaction
from rest_framework.test import APIClient

from conftest import PASSWORD
from users.models import User

FULLWIDTH_D1 = "\uff44\uff11"  # fullwidth d1, which NFKC makes d1
FULLWIDTH_DRIVER = "\uff44\uff52\uff49\uff56\uff45\uff52"


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


@pytest.mark.parametrize(("taken", "attempt"), [("d1", FULLWIDTH_D1), ("d1", "D1"), (FULLWIDTH_D1, "D1")])
def test_a_username_differing_only_in_width_or_case_is_taken(anonymous_client, taken, attempt):
    assert register(anonymous_client, taken).status_code == 201

    response = register(anonymous_client, attempt)

    assert response.status_code == 400
    assert response.json() == {"username": ["A user with that username already exists."]}
    assert User.objects.count() == 1


def test_usernames_are_stored_nfkc_normalised(anonymous_client):
    response = register(anonymous_client, FULLWIDTH_D1)

    assert response.json()["username"] == "d1"
    assert User.objects.get().username == "d1"


def test_the_database_refuses_a_username_differing_only_in_case(rider):
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="RIDER")


@pytest.mark.parametrize("spelling", ["DRIVER", "Driver", FULLWIDTH_DRIVER])
def test_login_finds_the_user_whatever_the_case_or_width(anonymous_client, driver, spelling):
    response = anonymous_client.post("/api/auth/login", {"username": spelling, "password": PASSWORD}, format="json")

    assert response.status_code == 200
    assert response.json()["user"]["id"] == str(driver.id)


def test_the_login_form_finds_the_user_whatever_the_case(client, staff):
    response = client.post("/accounts/login/", {"username": "OPERATOR", "password": PASSWORD})
    assert response["Location"] == "/dashboard/"


@pytest.mark.django_db(transaction=True)
def test_racing_registrations_of_one_name_make_one_account_and_clean_400s():
    spellings = ["Racer", "racer", "RACER", "rAcEr", "\uff52\uff41\uff43\uff45\uff52", "raceR"]
    barrier = threading.Barrier(len(spellings))
    statuses: list[int] = []

    def attempt(username: str) -> None:
        try:
            barrier.wait(timeout=10)
            statuses.append(register(APIClient(), username).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt, args=(name,)) for name in spellings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(statuses) == [201] + [400] * (len(spellings) - 1)
    assert User.objects.filter(username__iexact="racer").count() == 1


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
