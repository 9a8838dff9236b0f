"""Every way access ends refuses the very next request, over the production ASGI server.

Nothing remembers a token or a role between requests: DRF's TokenAuthentication reads the
token and its user in one query per request, and the permissions look at that row. So no
receiver has to forget anything, and a queryset `.update()` (which sends no signal) ends
access as surely as the admin's form. Deactivation by `.update()` failed before: the status
fast path kept the token in Redis for 300 s and only `post_save` made it forget.
"""

import threading
from collections.abc import Callable

import pytest
import requests

from conftest import token_of
from tests.processes import wait_until
from tests.servers import AsgiServer
from users.models import Role, User
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

STATUS = "/api/users/driver-status"
LOCATION = "/api/locations/driver-location"


def as_driver(asgi_server: AsgiServer, token: str) -> tuple[int, int]:
    """(status change, position report): what the driver's next two requests are answered."""
    headers = {"Authorization": f"Token {token}"}
    status = requests.put(f"{asgi_server.url}{STATUS}", json={"available": True}, headers=headers, timeout=10)
    position = requests.put(
        f"{asgi_server.url}{LOCATION}", json={"lat": 52.5, "lng": 13.4}, headers=headers, timeout=10
    )
    return status.status_code, position.status_code


def log_out(asgi_server: AsgiServer, user: User, token: str) -> None:
    response = requests.post(
        f"{asgi_server.url}/api/auth/logout", headers={"Authorization": f"Token {token}"}, timeout=10
    )
    assert response.status_code == 204


def deactivate_by_save(asgi_server: AsgiServer, user: User, token: str) -> None:
    user.is_active = False
    user.save()


def deactivate_by_update(asgi_server: AsgiServer, user: User, token: str) -> None:
    User.objects.filter(pk=user.pk).update(is_active=False)


def make_rider_by_update(asgi_server: AsgiServer, user: User, token: str) -> None:
    User.objects.filter(pk=user.pk).update(role=Role.RIDER, is_available=False)


def delete_the_token(asgi_server: AsgiServer, user: User, token: str) -> None:
    user.auth_token.delete()


def delete_the_user(asgi_server: AsgiServer, user: User, token: str) -> None:
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
    asgi_server: AsgiServer, driver: User, redis_client, end_access: Callable[..., None], refused: int
) -> None:
    set_driver_availability(driver_id=driver.id, available=False)
    token = token_of(driver)
    assert as_driver(asgi_server, token) == (200, 202)  # online now, and reporting

    end_access(asgi_server, driver, token)

    assert as_driver(asgi_server, token) == (refused, refused)


def test_a_token_signed_out_during_requests_stays_signed_out(
    asgi_server: AsgiServer, driver: User, redis_client
) -> None:
    # Six clients keep changing the status (the keyword in lower case, as some send it) while the
    # driver signs out. Before, a request that had authenticated just before the logout put the
    # token back in the cache after the logout forgot it, and the token worked for another 60 s.
    token = token_of(driver)
    stop = threading.Event()
    answered = [0] * 6

    def keep_toggling(n: int) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                session.put(f"{asgi_server.url}{STATUS}", headers={"Authorization": f"token {token}"}, timeout=10)
                answered[n] += 1

    clients = [threading.Thread(target=keep_toggling, args=(n,)) for n in range(6)]
    for client in clients:
        client.start()
    try:
        wait_until(lambda: min(answered) >= 2, what="every client mid-flight")
        log_out(asgi_server, driver, token)
        # Two more answers each: the request in flight at the logout, then one begun after it.
        after = list(answered)
        wait_until(
            lambda: all(now >= then + 2 for now, then in zip(answered, after, strict=True)), what="requests after it"
        )
    finally:
        stop.set()
        for client in clients:
            client.join()

    assert as_driver(asgi_server, token) == (401, 401)
