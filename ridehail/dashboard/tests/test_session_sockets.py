"""At most RIDEHAIL_DASHBOARD_SOCKETS_PER_SESSION dashboards per session, in every web process, with
places that come back when sockets close or their process dies."""

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack
from types import SimpleNamespace

import pytest
import websockets

from ridehail.dashboard.session_sockets import CLOSE_TOO_MANY, SessionSockets, session_leases_key
from tests.dashboard import connect, receive_json, session_cookie
from tests.processes import wait_until
from tests.servers import AsgiServer

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = {"RIDEHAIL_DASHBOARD_SOCKETS_PER_SESSION": "2"}


@pytest.fixture
def server(redis_client) -> Iterator[AsgiServer]:
    web = AsgiServer(env=LIMIT).start()
    yield web
    web.stop()


async def open_dashboard(stack: AsyncExitStack, server: AsgiServer, cookie: str) -> websockets.ClientConnection:
    return await stack.enter_async_context(connect(server, cookie=cookie))


async def refused_with(server: AsgiServer, cookie: str) -> int | None:
    """Open one more dashboard and return its close code, or None if it got a snapshot."""
    async with connect(server, cookie=cookie) as socket:
        try:
            await receive_json(socket, timeout=5)
        except websockets.ConnectionClosed:
            return socket.close_code
        return None


def test_a_session_gets_at_most_the_configured_number_of_dashboards(server, staff):
    cookie, other_session = session_cookie(staff), session_cookie(staff)

    async def scenario() -> tuple[int | None, int | None, int | None]:
        async with AsyncExitStack() as stack:
            first = await open_dashboard(stack, server, cookie)
            second = await open_dashboard(stack, server, cookie)
            for socket in (first, second):
                assert (await receive_json(socket))["type"] == "snapshot"
            over = await refused_with(server, cookie)
            another_session = await refused_with(server, other_session)
            await second.close()
            after_close: int | None = CLOSE_TOO_MANY
            for _ in range(50):  # the place comes back once the server has seen the close
                after_close = await refused_with(server, cookie)
                if after_close is None:
                    break
                await asyncio.sleep(0.1)
            return over, another_session, after_close

    over, another_session, after_close = asyncio.run(scenario())
    assert over == CLOSE_TOO_MANY
    assert another_session is None
    assert after_close is None


def test_the_limit_holds_across_web_processes(server, staff):
    second_process = AsgiServer(env=LIMIT).start()
    cookie = session_cookie(staff)

    async def scenario() -> tuple[int | None, int | None]:
        async with AsyncExitStack() as stack:
            for web in (server, second_process):
                await receive_json(await open_dashboard(stack, web, cookie))
            return await refused_with(server, cookie), await refused_with(second_process, cookie)

    try:
        assert asyncio.run(scenario()) == (CLOSE_TOO_MANY, CLOSE_TOO_MANY)
    finally:
        second_process.stop()


def test_sockets_refused_for_their_role_give_their_place_back(server, rider, redis_client):
    cookie = session_cookie(rider)

    async def attempt() -> None:
        async with connect(server, cookie=cookie):
            pass

    for _ in range(3):  # more than the limit: were places kept, nothing would show it but Redis
        with pytest.raises(websockets.InvalidStatus):
            asyncio.run(attempt())

    def places_held() -> int:
        return sum(redis_client.zcard(key) for key in redis_client.scan_iter("ridehail:dashboard-sockets:*"))

    wait_until(lambda: places_held() == 0, what="no place held by refused sockets")


# -- the leases, in this process against the real Redis ----------------------------------------------


class FakeSocket:
    """Stands in for a consumer: the leases only need its scope and how to close it."""

    def __init__(self, session_key: str) -> None:
        user = SimpleNamespace(is_authenticated=True)
        self.scope = {"user": user, "session": SimpleNamespace(session_key=session_key)}
        self.closed_with: int | None = None

    async def accept(self) -> None:
        pass

    async def close(self, code: int | None = None) -> None:
        self.closed_with = code


def test_a_killed_process_gives_its_places_back_when_its_leases_run_out(redis_client, settings):
    settings.RIDEHAIL_DASHBOARD_SOCKETS_PER_SESSION = 2

    async def scenario() -> tuple[bool, float]:
        killed = SessionSockets(lease_seconds=1)
        assert all([await killed.admit(FakeSocket("session-a")), await killed.admit(FakeSocket("session-a"))])
        killed.stop()  # renews nothing from now on, releases nothing: as if SIGKILLed
        survivor = SessionSockets(lease_seconds=1)
        refused_at_once = not await survivor.admit(FakeSocket("session-a"))
        started = asyncio.get_running_loop().time()
        while not await survivor.admit(FakeSocket("session-a")):
            await asyncio.sleep(0.1)
        took = asyncio.get_running_loop().time() - started
        survivor.stop()
        return refused_at_once, took

    refused_at_once, took = asyncio.run(asyncio.wait_for(scenario(), timeout=10))
    assert refused_at_once
    assert took < 3, f"the dead process's places came back after {took:.1f}s"


def test_open_sockets_keep_their_places_while_their_process_lives(redis_client, settings):
    settings.RIDEHAIL_DASHBOARD_SOCKETS_PER_SESSION = 1

    async def scenario() -> tuple[bool, int | None]:
        alive = SessionSockets(lease_seconds=0.6)
        assert await alive.admit(FakeSocket("session-b"))
        await asyncio.sleep(2)  # three leases long: only renewal keeps the place taken
        late = FakeSocket("session-b")
        admitted = await SessionSockets(lease_seconds=0.6).admit(late)
        alive.stop()
        return admitted, late.closed_with

    assert asyncio.run(scenario()) == (False, CLOSE_TOO_MANY)


def test_releasing_removes_the_lease_from_redis(redis_client, settings):
    socket = FakeSocket("session-c")
    key = session_leases_key(socket.scope)

    async def scenario() -> tuple[int, int]:
        sockets = SessionSockets()
        await sockets.admit(socket)
        held = redis_client.zcard(key)
        await sockets.release(socket)
        sockets.stop()
        return held, redis_client.zcard(key)

    assert asyncio.run(scenario()) == (1, 0)
