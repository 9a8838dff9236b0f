"""Every way access ends refuses the very next request, over the production ASGI server.

Nothing remembers a token or a role between requests: DRF's TokenAuthentication reads the
token and its user in one query per request, and the permissions look at that row. So no
receiver has to forget anything, and a queryset `.update()` (which sends no signal) ends
access as surely as the admin's form. Deactivation by `.update()` failed before: the status
fast path kept the token in Redis for 300 s and only `post_save` made it forget.
"""

from collections.abc import Callable, Iterator

import pytest
import requests

from conftest import client_for
from tests.servers import AsgiServer
from users.models import Role, User
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

STATUS = "/api/users/driver-status"
LOCATION = "/api/locations/driver-location"


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker) -> Iterator[AsgiServer]:
    with django_db_blocker.unblock():
        web = AsgiServer().start()
    yield web
    web.stop()


def token_of(user: User) -> str:
    return client_for(user)._credentials["HTTP_AUTHORIZATION"].split()[1]


def as_driver(server: AsgiServer, token: str) -> tuple[int, int]:
    """(status change, position report): what the driver's next two requests are answered."""
    headers = {"Authorization": f"Token {token}"}
    status = requests.put(f"{server.url}{STATUS}", json={"available": True}, headers=headers, timeout=10)
    position = requests.put(f"{server.url}{LOCATION}", json={"lat": 52.5, "lng": 13.4}, headers=headers, timeout=10)
    return status.status_code, position.status_code


def log_out(server: AsgiServer, user: User, token: str) -> None:
    response = requests.post(f"{server.url}/api/auth/logout", headers={"Authorization": f"Token {token}"}, timeout=10)
    assert response.status_code == 204


def deactivate_by_save(server: AsgiServer, user: User, token: str) -> None:
    user.is_active = False
    user.save()


def deactivate_by_update(server: AsgiServer, user: User, token: str) -> None:
    User.objects.filter(pk=user.pk).update(is_active=False)


def make_rider_by_update(server: AsgiServer, user: User, token: str) -> None:
    User.objects.filter(pk=user.pk).update(role=Role.RIDER, is_available=False)


def delete_the_token(server: AsgiServer, user: User, token: str) -> None:
    user.auth_token.delete()


def delete_the_user(server: AsgiServer, user: User, token: str) -> None:
    User.objects.filter(pk=user.pk).delete()


@pytest.mark.parametrize(
    ("end_access", "refused"),
    [
        (log_out, 401),
        (deactivate_by_save, 401),
        (deactivate_by_update, 401),
        (make_rider_by_update, 403),
        (delete_the_token, 401),
        (delete_the_user, 401),
    ],
)
def test_the_next_request_after_access_ends_is_refused(
    server: AsgiServer, driver: User, redis_client, end_access: Callable[..., None], refused: int
) -> None:
    set_driver_availability(driver_id=driver.id, available=False)
    token = token_of(driver)
    assert as_driver(server, token) == (200, 202)  # online now, and reporting

    end_access(server, driver, token)

    assert as_driver(server, token) == (refused, refused)
