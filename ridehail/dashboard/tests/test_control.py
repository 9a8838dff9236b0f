"""Sign-out and lost staff rights close dashboards within a second, in every web process:
control messages on the channel layer. The periodic access check is slowed down here (60 s),
so only the control message can explain a close within a second.

Each runs on a single Redis and on a cluster deployment (`redis_deployment`): there the channel
layer has a standalone Redis of its own (RIDEHAIL_CHANNEL_LAYER_URL) beside the cluster."""

import asyncio
import time
from collections.abc import Iterator

import pytest
import websockets
from django.test import Client

from tests.dashboard import change_soon, connect, receive_json
from tests.servers import AsgiServer

pytestmark = pytest.mark.django_db(transaction=True)

SLOW_CHECK = {"RIDEHAIL_DASHBOARD_ACCESS_CHECK_SECONDS": "60"}


@pytest.fixture
def servers(redis_deployment, redis_client) -> Iterator[list[AsgiServer]]:
    started = [AsgiServer(env=SLOW_CHECK).start(), AsgiServer(env=SLOW_CHECK).start()]
    yield started
    for server in started:
        server.stop()


def signed_in(user) -> tuple[Client, str]:
    client = Client()
    client.force_login(user)
    return client, f"sessionid={client.cookies['sessionid'].value}"


async def closed_within(socket: websockets.ClientConnection, seconds: float) -> tuple[int | None, float]:
    started = time.monotonic()
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(socket.recv(), timeout=seconds)
    return socket.close_code, time.monotonic() - started


def test_signing_out_closes_that_sessions_dashboards_in_every_process_at_once(servers, staff):
    browser, cookie = signed_in(staff)
    _, other_cookie = signed_in(staff)  # the same operator in another browser

    async def scenario() -> tuple[list, bool]:
        async with (
            connect(servers[0], cookie=cookie) as first,
            connect(servers[1], cookie=cookie) as second,
            connect(servers[1], cookie=other_cookie) as other,
        ):
            for socket in (first, second, other):
                await receive_json(socket)
            await change_soon(browser.post, "/accounts/logout/")
            closes = [await closed_within(socket, 1.0) for socket in (first, second)]
            with pytest.raises(TimeoutError):  # the other browser's session is untouched
                await receive_json(other, timeout=0.5)
            return closes, other.close_code is None

    closes, other_still_open = asyncio.run(scenario())
    assert [code for code, _ in closes] == [4403, 4403]
    assert other_still_open


@pytest.mark.parametrize("field", ["is_staff", "is_active"])
def test_losing_staff_rights_closes_all_of_that_users_dashboards_at_once(servers, staff, field):
    _, cookie = signed_in(staff)
    _, other_cookie = signed_in(staff)

    def take_access_away() -> None:
        setattr(staff, field, False)
        staff.save()  # as the admin's form saves it: every field

    async def scenario() -> list:
        async with connect(servers[0], cookie=cookie) as first, connect(servers[1], cookie=other_cookie) as second:
            for socket in (first, second):
                await receive_json(socket)
            await change_soon(take_access_away)
            return [await closed_within(socket, 1.0) for socket in (first, second)]

    assert [code for code, _ in asyncio.run(scenario())] == [4403, 4403]


def test_a_status_change_sends_no_control_message(staff, driver, redis_client):
    from ridehail.dashboard import control
    from users.services import set_driver_availability

    sent: list[str] = []
    original = control.close_dashboards
    control.close_dashboards = sent.append  # the hot path must not pay a channel-layer round trip
    try:
        set_driver_availability(driver_id=driver.id, available=True)
        Client().force_login(driver)  # a login saves last_login
    finally:
        control.close_dashboards = original
    assert sent == []


def test_the_control_channel_survives_idling_longer_than_its_blocking_receive(staff):
    # channels-redis waits for control messages with a 5 s BZPOPMIN; redis-py 8 gives every
    # connection a 5 s socket timeout by default, so an idle control channel timed out and
    # logged an error every 6 s, and a message popped at that moment would be lost.
    server = AsgiServer(env=SLOW_CHECK).start()
    browser, cookie = signed_in(staff)
    try:

        async def scenario() -> tuple[int | None, float]:
            async with connect(server, cookie=cookie) as dashboard:
                await receive_json(dashboard)
                await asyncio.sleep(6.5)  # the point of the test: idle past the layer's 5 s receive
                await change_soon(browser.post, "/accounts/logout/")
                return await closed_within(dashboard, 1.0)

        code, seconds = asyncio.run(scenario())
        assert code == 4403 and seconds < 1.0
        assert "control channel failed" not in server.output
    finally:
        server.stop()


@pytest.mark.parametrize("field", ["is_staff", "is_active"])
def test_access_taken_away_by_a_queryset_update_closes_the_dashboard_too(redis_deployment, redis_client, staff, field):
    # `.update()` sends no signal, so no control message: what closes the socket is the periodic
    # check in the database (access.py), which remembers nothing between rounds. Quickened here.
    from users.models import User

    server = AsgiServer(env={"RIDEHAIL_DASHBOARD_ACCESS_CHECK_SECONDS": "0.2"}).start()
    _, cookie = signed_in(staff)
    try:

        async def scenario() -> tuple[int | None, float]:
            async with connect(server, cookie=cookie) as dashboard:
                await receive_json(dashboard)
                await change_soon(User.objects.filter(pk=staff.pk).update, **{field: False})
                return await closed_within(dashboard, 1.0)

        code, seconds = asyncio.run(scenario())
    finally:
        server.stop()
    assert code == 4403 and seconds < 1.0
