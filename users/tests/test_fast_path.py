"""`PUT /api/users/driver-status` through its fast path (users/fast_path.py), over a real uvicorn:
the same answers as the DRF view, the same transaction, outbox row and event, the same rules."""

from collections.abc import Iterator

import pytest
import requests

from conftest import client_for, make_user
from ridehail.events.models import OutboxEvent
from tests.processes import wait_until
from tests.servers import AsgiServer
from users.models import Role, User
from users.token_cache import token_cache_key

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/users/driver-status"


@pytest.fixture
def servers(redis_client) -> Iterator[dict[str, AsgiServer]]:
    started = {"fast": AsgiServer().start(), "view": AsgiServer(env={"RIDEHAIL_STATUS_FAST_PATH": "0"}).start()}
    yield started
    for server in started.values():
        server.stop()


def token_of(user: User) -> str:
    return client_for(user)._credentials["HTTP_AUTHORIZATION"].split()[1]


def http_put(server: AsgiServer, token: str | None, body: bytes | None, content_type: str | None = "application/json"):
    headers = {}
    if content_type:
        headers["Content-Type"] = content_type
    if token:
        headers["Authorization"] = f"Token {token}"
    return requests.put(f"{server.url}{URL}", data=body, headers=headers, timeout=10)


IGNORED_HEADERS = {"date", "content-length", "server"}
PER_DRIVER = {"driverId", "eventId", "timestamp"}  # differ between two drivers; their presence must not


def comparable(response: requests.Response) -> tuple:
    headers = {name.lower(): value for name, value in response.headers.items() if name.lower() not in IGNORED_HEADERS}
    if "content-security-policy" in headers:  # django-csp writes the directives in no fixed order
        headers["content-security-policy"] = sorted(headers["content-security-policy"].split("; "))
    body = response.json()
    shape = {key: (value if key not in PER_DRIVER else value is not None) for key, value in body.items()}
    return response.status_code, shape, headers


def remembered(server: AsgiServer, user: User, redis_client) -> str:
    """Sign the driver's token in through the view once, which remembers it for the fast path."""
    token = token_of(user)
    assert http_put(server, token, b'{"available": false}').status_code == 200
    assert redis_client.get(token_cache_key(token)) == str(user.id).encode()
    return token


def test_the_fast_path_answers_exactly_what_the_view_would(servers, redis_client):
    fast_driver, view_driver = make_user("fast", role=Role.DRIVER), make_user("view", role=Role.DRIVER)
    fast_token, view_token = (
        remembered(servers["fast"], fast_driver, redis_client),
        remembered(servers["view"], view_driver, redis_client),
    )
    rider_token = token_of(make_user("a-rider"))
    cases = [
        (b'{"available": true}', "application/json"),  # sets
        (b'{"available": true}', "application/json"),  # unchanged: no event
        (b"{}", "application/json"),  # toggles
        (b"", None),  # toggles
        (b"", "application/json"),  # toggles
        (b"  ", "application/json"),
        (b'{"available": 1}', "application/json"),
        (b'{"available": "true"}', "application/json"),
        (b'{"available": true, "x": 1}', "application/json"),
        (b"[]", "application/json"),
        (b"{", "application/json"),
        (b'{"available": true}', "text/plain"),
        (b"[" * 1000 + b"]" * 1000, "application/json"),
    ]
    for body, content_type in cases:
        fast = http_put(servers["fast"], fast_token, body, content_type)
        view = http_put(servers["view"], view_token, body, content_type)
        assert comparable(fast) == comparable(view), (body, content_type)
    for token in ("not-a-token", rider_token, None):
        fast = http_put(servers["fast"], token, b'{"available": true}')
        view = http_put(servers["view"], token, b'{"available": true}')
        assert comparable(fast) == comparable(view), token
    fast_driver.refresh_from_db()
    view_driver.refresh_from_db()
    assert (fast_driver.is_available, fast_driver.status_version) == (
        view_driver.is_available,
        view_driver.status_version,
    )


def test_a_change_on_the_fast_path_is_committed_published_once_and_marked(servers, driver, redis_client, listener):
    token = remembered(servers["fast"], driver, redis_client)
    # Proof that the fast path answers: it trusts the remembered token -> driver entry, which the
    # view never reads. Point it at another driver and that driver changes.
    other = make_user("other", role=Role.DRIVER)
    redis_client.set(token_cache_key(token), str(other.id))

    response = http_put(servers["fast"], token, b'{"available": true}')

    assert response.status_code == 200
    assert response.json()["driverId"] == str(other.id)
    other.refresh_from_db()
    assert (other.is_available, other.status_version) == (True, 1)
    event = listener.next_event()
    assert (event["driverId"], event["available"], event["version"]) == (str(other.id), True, 1)
    assert redis_client.xlen("stream:driver-status-changed") == 1
    row = OutboxEvent.objects.get(key=str(other.id))
    wait_until(lambda: OutboxEvent.objects.get(pk=row.pk).published_at is not None, what="the row marked published")


def test_the_fast_path_counts_in_the_same_rate_limit_window(driver, redis_client):
    env = {"RIDEHAIL_THROTTLE_DRIVER_STATUS": "4/minute"}
    fast, view = AsgiServer(env=env).start(), AsgiServer(env={**env, "RIDEHAIL_STATUS_FAST_PATH": "0"}).start()
    try:
        token = remembered(view, driver, redis_client)  # one of the four
        statuses = [http_put(server, token, b"{}").status_code for server in (fast, view, fast, view, fast)]
        limited_fast, limited_view = http_put(fast, token, b"{}"), http_put(view, token, b"{}")
    finally:
        fast.stop()
        view.stop()
    assert statuses == [200, 200, 200, 429, 429]
    assert comparable(limited_fast)[:2] == comparable(limited_view)[:2]
    assert limited_fast.headers["Retry-After"] == limited_view.headers["Retry-After"]


@pytest.mark.parametrize("change", ["sign out", "deactivate", "make rider"])
def test_a_driver_who_loses_access_is_refused_at_once_on_the_fast_path(servers, driver, redis_client, change):
    token = remembered(servers["fast"], driver, redis_client)
    assert http_put(servers["fast"], token, b"{}").status_code == 200

    if change == "sign out":
        logout = requests.post(f"{servers['fast'].url}/api/auth/logout", headers={"Authorization": f"Token {token}"})
        assert logout.status_code == 204
    elif change == "deactivate":
        driver.is_active = False
        driver.save()  # as the admin's form does
    else:
        driver.role = Role.RIDER
        driver.is_available = False
        driver.save()

    version = User.objects.get(pk=driver.pk).status_version
    assert http_put(servers["fast"], token, b"{}").status_code in (401, 403)
    assert User.objects.get(pk=driver.pk).status_version == version
