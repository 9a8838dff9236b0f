"""The dashboard on a cluster deployment (REDIS_CLUSTER=1, the channel layer on a standalone Redis
beside the cluster): a status change made through the API reaches a staff dashboard over the
production ASGI server. Sign-out and lost rights on a cluster: test_control.py (`redis_deployment`)."""

import asyncio
from collections.abc import Iterator

import pytest
import requests

from conftest import token_of
from tests.dashboard import connect, receive_json, session_cookie
from tests.servers import AsgiServer
from users.events import DRIVER_STATUS

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(on_cluster, redis_client) -> Iterator[AsgiServer]:
    web = AsgiServer().start()
    yield web
    web.stop()


def test_a_status_change_reaches_a_staff_dashboard_on_a_cluster(server, on_cluster, staff, driver):
    cookie, token = session_cookie(staff), token_of(driver)

    def go_online() -> requests.Response:
        return requests.put(
            f"{server.url}/api/users/driver-status",
            json={"available": True},
            headers={"Authorization": f"Token {token}"},
            timeout=5,
        )

    async def scenario() -> tuple[dict, requests.Response, dict]:
        async with connect(server, cookie=cookie) as socket:
            snapshot = await receive_json(socket)
            response = await asyncio.to_thread(go_online)
            return snapshot, response, await receive_json(socket)

    snapshot, response, frame = asyncio.run(scenario())

    assert [(d["driverId"], d["available"]) for d in snapshot["drivers"]] == [(str(driver.id), False)]
    assert response.status_code == 200
    assert frame["type"] == "driver-status-changed"
    assert (frame["driverId"], frame["available"], frame["version"]) == (str(driver.id), True, 1)
    assert frame["eventId"] == response.json()["eventId"]
    # It went through the cluster: the topic's stream there holds the event.
    assert on_cluster.client().xlen(DRIVER_STATUS.stream) == 1
