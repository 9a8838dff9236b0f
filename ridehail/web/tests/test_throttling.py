"""Login limits per client address on every way in, a client address that cannot be forged, and
limits that hold (per process) while Redis is unreachable."""

from collections.abc import Iterator

import pytest
import requests
from django.test import RequestFactory

from conftest import PASSWORD
from ridehail.web.throttling import AUTH, client_address, window_key
from tests.servers import AsgiServer

pytestmark = pytest.mark.django_db(transaction=True)

WRONG = {"username": "driver", "password": "wrong"}


@pytest.fixture
def low_auth_rate(settings) -> None:
    settings.RIDEHAIL_THROTTLE_RATES = {**settings.RIDEHAIL_THROTTLE_RATES, "auth": "3/minute"}


def live_server(redis_client, **env: str) -> Iterator[AsgiServer]:
    web = AsgiServer(env={"RIDEHAIL_THROTTLE_AUTH": "3/minute", **env}).start()
    yield web
    web.stop()


@pytest.fixture
def server(redis_client) -> Iterator[AsgiServer]:
    yield from live_server(redis_client)


@pytest.fixture
def server_behind_one_proxy(redis_client) -> Iterator[AsgiServer]:
    yield from live_server(redis_client, RIDEHAIL_TRUSTED_PROXIES="1")


def login(server: AsgiServer, forwarded_for: str | None = None) -> requests.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return requests.post(f"{server.url}/api/auth/login", json=WRONG, headers=headers, timeout=5)


# -- who the client is -----------------------------------------------------------------------


def test_forged_forwarded_for_does_not_reset_the_login_limit(server, driver):
    statuses = [login(server, forwarded_for=f"203.0.113.{n}").status_code for n in range(5)]

    assert statuses == [401, 401, 401, 429, 429]


def test_behind_a_trusted_proxy_the_address_it_saw_is_the_client(server_behind_one_proxy, driver):
    # The proxy appends the address it saw; whatever the client wrote itself stands further left.
    statuses = [login(server_behind_one_proxy, f"198.51.100.{n}, 10.1.1.1").status_code for n in range(4)]
    another_client = login(server_behind_one_proxy, "198.51.100.1, 10.2.2.2")

    assert statuses == [401, 401, 401, 429]
    assert another_client.status_code == 401


@pytest.mark.parametrize(
    ("trusted", "forwarded_for", "expected"),
    [
        (0, "198.51.100.7", "127.0.0.9"),
        (0, None, "127.0.0.9"),
        (1, "198.51.100.7, 10.0.0.1", "10.0.0.1"),
        (2, "198.51.100.7, 10.0.0.1, 10.0.0.2", "10.0.0.1"),
        (2, "10.0.0.1", "10.0.0.1"),  # fewer hops than proxies: the leftmost there is
    ],
)
def test_client_address_trusts_only_the_configured_proxies(settings, trusted, forwarded_for, expected):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": trusted}  # RIDEHAIL_TRUSTED_PROXIES
    headers = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for else {}
    request = RequestFactory().get("/", REMOTE_ADDR="127.0.0.9", **headers)

    assert client_address(request) == expected


def test_the_trusted_proxy_count_is_drfs_num_proxies():
    from django.conf import settings

    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == settings.RIDEHAIL_TRUSTED_PROXIES


# -- every way in --------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["/accounts/login/", "/admin/login/"])
def test_html_login_forms_are_limited_per_client_address(client, staff, low_auth_rate, form):
    wrong = {"username": "operator", "password": "wrong"}
    statuses = [client.post(form, wrong).status_code for _ in range(4)]
    right = client.post(form, {"username": "operator", "password": PASSWORD})
    elsewhere = client.post(form, {"username": "operator", "password": PASSWORD}, REMOTE_ADDR="10.0.0.9")

    assert statuses == [200, 200, 200, 429]  # a failed login re-renders the form (200)
    assert right.status_code == 429
    assert 0 < int(right["Retry-After"]) <= 60
    assert b"Too many sign-in attempts" in right.content
    assert elsewhere.status_code == 302  # signed in: another address has its own window


def test_the_forms_and_the_api_share_one_window(client, anonymous_client, staff, low_auth_rate):
    client.post("/accounts/login/", {"username": "operator", "password": "wrong"})
    client.post("/admin/login/", {"username": "operator", "password": "wrong"})
    anonymous_client.post("/api/auth/login", {"username": "operator", "password": "wrong"}, format="json")

    api = anonymous_client.post("/api/auth/login", {"username": "operator", "password": PASSWORD}, format="json")
    form = client.post("/accounts/login/", {"username": "operator", "password": PASSWORD})

    assert (api.status_code, form.status_code) == (429, 429)


def test_showing_the_login_form_is_not_counted(client, low_auth_rate):
    assert [client.get("/accounts/login/").status_code for _ in range(5)] == [200] * 5


# -- on a Redis Cluster ---------------------------------------------------------------------------


def test_login_is_limited_on_a_cluster_in_one_window_for_every_process(on_cluster, redis_client, driver):
    servers = [AsgiServer(env={"RIDEHAIL_THROTTLE_AUTH": "3/minute"}).start() for _ in range(2)]
    try:
        statuses = [login(servers[n % 2]).status_code for n in range(5)]
    finally:
        for server in servers:
            server.stop()

    assert statuses == [401, 401, 401, 429, 429]
    # Counted on the cluster, not in each process's memory (that would allow 2 + 2 here).
    assert on_cluster.client().zcard(window_key(AUTH, "127.0.0.1")) == 3


# -- Redis unreachable ------------------------------------------------------------------------------


@pytest.mark.parametrize("unreachable", ["redis_unreachable", "cluster_unreachable"])
def test_login_still_works_but_is_limited_per_process_when_redis_is_unreachable(
    anonymous_client, driver, settings, request, unreachable
):
    request.getfixturevalue(unreachable)
    settings.RIDEHAIL_THROTTLE_RATES = {**settings.RIDEHAIL_THROTTLE_RATES, "auth": "4/minute"}
    settings.RIDEHAIL_WEB_PROCESSES = 2  # each process allows its share: 2 a minute
    body = {"username": "driver", "password": PASSWORD}

    statuses = [anonymous_client.post("/api/auth/login", body, format="json").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]


def test_html_login_is_limited_per_process_when_redis_is_unreachable(client, staff, settings, redis_unreachable):
    settings.RIDEHAIL_THROTTLE_RATES = {**settings.RIDEHAIL_THROTTLE_RATES, "auth": "1/minute"}
    settings.RIDEHAIL_WEB_PROCESSES = 4  # a share is never less than one
    body = {"username": "operator", "password": PASSWORD}

    assert [client.post("/accounts/login/", body).status_code for _ in range(2)] == [302, 429]
