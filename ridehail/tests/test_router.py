"""The serving split bench/servers.py measures, run for real: nginx with the committed
configuration (deploy/nginx/ridehail.conf.template, only its ports filled in) in front of
gunicorn's sync workers (`ridehail.server http`) and uvicorn (the production command), both
behind it with RIDEHAIL_TRUSTED_PROXIES=1, as the router's comments say to set it.

What crossing the router must not change: an API call, a staff dashboard's socket and its
snapshot, the client address rate limits count against (the one nginx saw, never one the client
wrote into X-Forwarded-For), and the app's own answer to a bad request.
"""

import asyncio
import http.client
import json
from collections.abc import Iterator

import pytest
import requests
import websockets

from conftest import token_of
from ridehail.web.throttling import AUTH, window_key
from tests.dashboard import connect, receive_json, session_cookie
from tests.processes import Router, nginx_binary
from tests.servers import AsgiServer, WsgiServer

pytestmark = [
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (scripts/ensure-nginx)"),
    pytest.mark.django_db(transaction=True),
]

BEHIND_THE_ROUTER = {"RIDEHAIL_TRUSTED_PROXIES": "1"}
# The test client's own address: any of 127/8 reaches the loopback, and this one is neither the
# router's address towards the servers (127.0.0.1) nor one a client would forge.
CLIENT_ADDRESS = "127.0.0.5"


@pytest.fixture(scope="module", params=["gunicorn", "uvicorn"])
def router(request, django_db_setup, django_db_blocker) -> Iterator[Router]:
    """The split (gunicorn behind /, uvicorn behind /ws/), and the same file in front of uvicorn
    alone (both upstreams one server: the proxy docs/operating.md suggests for several web containers)."""
    with django_db_blocker.unblock():
        ws = AsgiServer(env=BEHIND_THE_ROUTER).start()
        http = WsgiServer(env=BEHIND_THE_ROUTER).start() if request.param == "gunicorn" else ws
    front = Router(http_port=http.port, ws_port=ws.port).start()
    yield front
    front.stop()
    http.stop()
    ws.stop()


def send(router: Router, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
    """One request to the router from CLIENT_ADDRESS: (status, parsed JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", router.port, timeout=30, source_address=(CLIENT_ADDRESS, 0))
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def test_an_authenticated_api_call_goes_through_the_router(router, redis_client, driver):
    headers = {"Authorization": f"Token {token_of(driver)}"}

    changed = requests.put(
        f"{router.url}/api/users/driver-status", json={"available": True}, headers=headers, timeout=30
    )
    me = requests.get(f"{router.url}/api/users/me", headers=headers, timeout=30)

    assert changed.status_code == 200, changed.text
    assert changed.json()["available"] is True
    assert me.status_code == 200 and me.json()["id"] == str(driver.id)
    driver.refresh_from_db()
    assert driver.is_available


def test_a_staff_dashboard_connects_through_the_router_and_gets_its_snapshot(router, redis_client, staff, driver):
    cookie = session_cookie(staff)

    async def snapshot() -> dict:
        async with connect(router, cookie=cookie) as socket:
            return await receive_json(socket, timeout=10)

    frame = asyncio.run(snapshot())

    assert frame["type"] == "snapshot"
    assert [(d["driverId"], d["available"]) for d in frame["drivers"]] == [(str(driver.id), False)]


def test_the_origin_check_still_sees_the_page_s_own_host_through_the_router(router, redis_client, staff):
    """nginx passes the client's Host on, so another site's page is still refused."""

    cookie = session_cookie(staff)

    async def refused() -> int:
        with pytest.raises(websockets.InvalidStatus) as refusal:
            async with connect(router, cookie=cookie, origin="http://evil.example"):
                pass
        return refusal.value.response.status_code

    assert asyncio.run(refused()) == 403


def test_rate_limits_count_against_the_address_the_router_saw(router, redis_client):
    """RIDEHAIL_TRUSTED_PROXIES=1: the rightmost X-Forwarded-For entry, the one nginx appended. A
    client that writes its own entry (a forged hop) only adds one further left, never believed."""
    login = json.dumps({"username": "nobody", "password": "wrong"}).encode()
    json_body = {"Content-Type": "application/json"}

    plain = send(router, "POST", "/api/auth/login", login, json_body)
    forged = send(router, "POST", "/api/auth/login", login, {**json_body, "X-Forwarded-For": "203.0.113.7"})

    assert plain[0] == forged[0] == 401, (plain, forged)
    counted = {key.decode() for key in redis_client.scan_iter(window_key(AUTH, "*"))}
    assert counted == {window_key(AUTH, CLIENT_ADDRESS)}
    assert redis_client.zcard(window_key(AUTH, CLIENT_ADDRESS)) == 2


def test_a_bad_request_gets_the_app_s_own_answer_through_the_router(router, redis_client, driver):
    headers = {"Authorization": f"Token {token_of(driver)}", "Content-Type": "application/json"}

    malformed = send(router, "PUT", "/api/users/driver-status", b'{"available": tru', headers)
    # Over Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB), under the router's limit (3 MiB): Django judges it.
    too_large = send(
        router, "PUT", "/api/users/driver-status", b'{"available": true, "x": "' + b"a" * 2_700_000 + b'"}', headers
    )

    assert malformed[:2] == (400, "application/json"), malformed
    assert json.loads(malformed[2])["detail"].startswith("JSON parse error")
    assert too_large[:2] == (413, "application/json"), too_large[:2]
    assert json.loads(too_large[2]) == {"detail": "Request body too large: at most 2621440 bytes."}
    driver.refresh_from_db()
    assert not driver.is_available
