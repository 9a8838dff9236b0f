"""The live dashboard over a real ASGI server (uvicorn), real Redis and the test database."""

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
import websockets

from conftest import make_user
from tests.dashboard import change_soon, connect, receive_json, session_cookie
from tests.processes import RedisServer
from tests.servers import AsgiServer
from users.events import DRIVER_STATUS, DriverStatusChanged
from users.models import Role, User
from users.services import set_driver_availability

CHANNEL = DRIVER_STATUS.channel

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(redis_client) -> Iterator[AsgiServer]:
    web = AsgiServer().start()
    yield web
    web.stop()


def change(driver, available: bool) -> None:
    set_driver_availability(driver_id=driver.id, available=available)


# -- the page ---------------------------------------------------------------------------


def test_dashboard_page_is_for_staff_only(client, rider, staff):
    assert client.get("/dashboard/")["Location"] == "/accounts/login/?next=/dashboard/"
    client.force_login(rider)
    assert client.get("/dashboard/").status_code == 302
    client.force_login(staff)
    for path in ("/dashboard/", "/dashboard"):
        response = client.get(path)
        assert response.status_code == 200
        assert b"dashboard/dashboard.js" in response.content


def test_login_page_signs_staff_in_and_sends_them_to_the_dashboard(client, staff):
    assert client.get("/accounts/login/?next=/dashboard/").status_code == 200
    response = client.post(
        "/accounts/login/", {"username": "operator", "password": "correct-horse-battery-staple", "next": "/dashboard/"}
    )
    assert response["Location"] == "/dashboard/"


# -- who may connect ----------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["anonymous", "rider", "driver"])
def test_non_staff_are_refused_before_any_data(server, persona):
    cookie = None if persona == "anonymous" else session_cookie(make_user(persona, role=Role(persona)))

    async def attempt() -> None:
        async with connect(server, cookie=cookie):
            pass

    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(attempt())
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "http://evil.example",
        "http://127.0.0.1.evil.example:{port}",
        "http://127.0.0.1:9999",  # another server on an allowed host
        "http://127.0.0.1",
        "https://127.0.0.1:{port}",  # the page is served over http
        "http://localhost:{port}",  # an allowed host, but not the one this page is on
        "null",
        "http://127.0.0.1:{port}/dashboard/",
    ],
)
def test_a_missing_or_foreign_origin_is_refused(server, staff, origin):
    cookie = session_cookie(staff)

    async def attempt() -> None:
        async with connect(server, cookie=cookie, origin=origin and origin.format(port=server.port)):
            pass

    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(attempt())
    assert refused.value.response.status_code == 403


# -- what staff receive ---------------------------------------------------------------------


def test_snapshot_first_then_each_event(server, staff, driver, other_driver):
    change(driver, True)
    cookie = session_cookie(staff)

    async def scenario() -> tuple[dict, dict]:
        async with connect(server, cookie=cookie) as socket:
            snapshot = await receive_json(socket)
            await change_soon(change, other_driver, True)
            return snapshot, await receive_json(socket)

    snapshot, event = asyncio.run(scenario())
    driver.refresh_from_db()
    assert snapshot == {
        "type": "snapshot",
        "drivers": [
            {
                "driverId": str(driver.id),
                "username": "driver",
                "available": True,
                "version": 1,
                "timestamp": driver.status_changed_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
            {
                "driverId": str(other_driver.id),
                "username": "other-driver",
                "available": False,
                "version": 0,
                "timestamp": None,
            },
        ],
        "positions": [],
        "rides": [],
    }
    assert event["type"] == "driver-status-changed"
    assert (event["driverId"], event["available"], event["version"]) == (str(other_driver.id), True, 1)
    # The event's fields plus the username, as the snapshot names drivers (21.10).
    assert set(event) == {"type", "driverId", "available", "timestamp", "eventId", "version", "username"}
    assert event["username"] == "other-driver"


def test_every_dashboard_gets_every_event_exactly_once(server, staff, driver, other_driver):
    cookie = session_cookie(staff)
    changes = [(driver, True), (other_driver, True), (driver, False), (other_driver, False)] * 5

    async def one_dashboard(ready: asyncio.Event, received: list[dict]) -> None:
        async with connect(server, cookie=cookie) as socket:
            await receive_json(socket)  # the snapshot
            ready.set()
            while len(received) < len(changes):
                received.append(await receive_json(socket))
            with pytest.raises(TimeoutError):  # and nothing after the last one
                await receive_json(socket, timeout=0.3)

    async def scenario() -> list[list[dict]]:
        readies = [asyncio.Event() for _ in range(5)]
        results: list[list[dict]] = [[] for _ in readies]
        tasks = [asyncio.create_task(one_dashboard(r, out)) for r, out in zip(readies, results, strict=True)]
        await asyncio.gather(*(ready.wait() for ready in readies))
        for who, available in changes:
            await change_soon(change, who, available)
        await asyncio.gather(*tasks)
        return results

    for received in asyncio.run(scenario()):
        assert [(e["driverId"], e["available"]) for e in received] == [
            (str(who.id), available) for who, available in changes
        ]
        assert len({e["eventId"] for e in received}) == len(changes)


def silently_at_version(driver, version: int) -> None:
    """The database reaches `version` without an event (as if its event were still on its way)."""
    User.objects.filter(pk=driver.pk).update(status_version=version, is_available=version % 2 == 1)


def test_a_message_published_straight_on_redis_reaches_the_dashboard(server, staff, driver, redis_client):
    cookie = session_cookie(staff)
    event = DriverStatusChanged(driver.id, True, datetime.now(UTC), uuid.uuid4(), 1)

    async def scenario() -> dict:
        async with connect(server, cookie=cookie) as socket:
            await receive_json(socket)
            await change_soon(silently_at_version, driver, 1)
            redis_client.publish(CHANNEL, event.to_json())
            return await receive_json(socket)

    # The event as published, plus the username the dashboard adds (from the database).
    assert asyncio.run(scenario()) == {"type": "driver-status-changed", **event.to_dict(), "username": "driver"}


def test_events_not_newer_than_the_snapshot_are_not_forwarded(server, staff, driver, redis_client):
    change(driver, True)
    change(driver, False)  # version 2 in the snapshot
    cookie = session_cookie(staff)

    def event(version: int) -> bytes:
        return DriverStatusChanged(driver.id, version % 2 == 1, datetime.now(UTC), uuid.uuid4(), version).to_json()

    async def scenario() -> dict:
        async with connect(server, cookie=cookie) as socket:
            await receive_json(socket)
            await change_soon(silently_at_version, driver, 3)
            for raw in (event(1), event(2), b"garbage", b'{"driverId": 1}', event(3)):
                redis_client.publish(CHANNEL, raw)
            return await receive_json(socket)

    assert asyncio.run(scenario())["version"] == 3


def test_a_forged_version_ahead_of_the_database_is_not_shown_and_hides_nothing(server, staff, driver, redis_client):
    # Found by the chaos run: a well-formed event of a real driver with version 2^52 reached the
    # pages, which then took every real event after it for stale until they reconnected.
    cookie = session_cookie(staff)
    forged = DriverStatusChanged(driver.id, True, datetime.now(UTC), uuid.uuid4(), 2**52)

    async def scenario() -> dict:
        async with connect(server, cookie=cookie) as socket:
            await receive_json(socket)
            redis_client.publish(CHANNEL, forged.to_json())
            await change_soon(change, driver, True)
            return await receive_json(socket)

    shown = asyncio.run(scenario())
    assert (shown["version"], shown["eventId"] != str(forged.event_id)) == (1, True)
    assert "ignored driver-status-changed of " + str(driver.id) + " v4503599627370496" in server.output


def test_one_forged_message_does_not_silence_the_dashboards(server, staff, driver, redis_client):
    # Found by an attacker: this parsed as valid, then formatting its timestamp (year 10000 in
    # UTC) raised inside the fan-out, which died; open pages stayed "Live" and got nothing.
    forged = {
        "driverId": str(driver.id),
        "available": True,
        "timestamp": "9999-12-31T23:59:59-05:00",
        "eventId": str(uuid.uuid4()),
        "version": 1,
    }
    cookie = session_cookie(staff)

    async def scenario() -> list[dict]:
        async with connect(server, cookie=cookie) as socket:
            await receive_json(socket)
            redis_client.publish(CHANNEL, json.dumps(forged))
            await change_soon(change, driver, True)
            first = await receive_json(socket)
            async with connect(server, cookie=cookie) as later:  # and the fan-out still serves new pages
                await receive_json(later)
                await change_soon(change, driver, False)
                return [first, await receive_json(socket), await receive_json(later)]

    first, second, on_the_later_page = asyncio.run(scenario())
    assert (first["version"], second["version"], on_the_later_page["version"]) == (1, 2, 2)
    assert "ignored message on driver-status-changed" in server.output


def test_events_of_drivers_that_do_not_exist_are_not_shown(server, staff, driver, rider, redis_client):
    cookie = session_cookie(staff)
    strangers = [uuid.uuid4(), rider.id]  # no such user; a user who is not a driver

    async def scenario() -> dict:
        async with connect(server, cookie=cookie) as socket:
            await receive_json(socket)
            for stranger in strangers:
                redis_client.publish(
                    CHANNEL, DriverStatusChanged(stranger, True, datetime.now(UTC), uuid.uuid4(), 1).to_json()
                )
            await change_soon(change, driver, True)
            return await receive_json(socket)

    assert asyncio.run(scenario())["driverId"] == str(driver.id)  # the strangers' events came first, unseen
    assert server.output.count("not in the database") == 2


def test_what_a_client_sends_is_ignored(server, staff, driver):
    cookie = session_cookie(staff)

    async def scenario() -> dict:
        async with connect(server, cookie=cookie) as socket:
            await receive_json(socket)
            for junk in ("hello", "{}", '{"type": "snapshot"}', b"\x00\x01binary"):
                await socket.send(junk)
            await change_soon(change, driver, True)
            return await receive_json(socket)

    assert asyncio.run(scenario())["driverId"] == str(driver.id)


def test_a_stuck_dashboard_is_closed_and_the_others_get_everything(redis_client, staff, driver):
    web = AsgiServer(env={"RIDEHAIL_DASHBOARD_QUEUE_LIMIT": "50"}).start()
    cookie = session_cookie(staff)
    chunk, limit = 5_000, 200_000

    def publish(first: int) -> None:
        pipe = redis_client.pipeline(transaction=False)
        for version in range(first, first + chunk):
            event = DriverStatusChanged(driver.id, version % 2 == 1, datetime.now(UTC), uuid.uuid4(), version)
            pipe.publish(CHANNEL, event.to_json())
        pipe.execute()

    async def scenario() -> tuple[int, int, int | None]:
        # max_queue=1: the stuck client stops reading its socket. Publish until the kernel's
        # buffers and then the server's queue for it are full; the healthy one reads along.
        async with connect(web, cookie=cookie, max_queue=1) as stuck, connect(web, cookie=cookie) as healthy:
            await receive_json(stuck)
            await receive_json(healthy)
            await change_soon(silently_at_version, driver, limit)  # the events below are "in the database"
            published = 0
            while "fell 50 events behind" not in web.output and published < limit:
                publish(published + 1)
                for expected in range(published + 1, published + chunk + 1):
                    assert (await receive_json(healthy, timeout=10))["version"] == expected
                published += chunk
            stuck_received = 0
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await receive_json(stuck, timeout=10)
                    stuck_received += 1
            return published, stuck_received, stuck.close_code

    try:
        published, stuck_received, close_code = asyncio.run(scenario())
    finally:
        web.stop()
    assert published < limit, "the stuck dashboard was never closed"
    assert close_code == 4008
    assert stuck_received < published


def test_dashboards_are_told_to_resync_when_redis_goes_away(redis_client, staff, settings):
    own_redis = RedisServer().start()
    web = AsgiServer(env={"REDIS_URL": own_redis.url}).start()
    cookie = session_cookie(staff)

    async def scenario() -> tuple[int | None, dict]:
        async with connect(web, cookie=cookie) as socket:
            await receive_json(socket)
            own_redis.stop()
            await asyncio.wait_for(socket.wait_closed(), timeout=10)
            code = socket.close_code
        own_redis.start()
        for _ in range(100):  # the page retries with backoff; so does this
            try:
                async with connect(web, cookie=cookie) as again:
                    return code, await receive_json(again, timeout=5)
            except (websockets.ConnectionClosed, websockets.InvalidStatus, TimeoutError):
                await asyncio.sleep(0.2)
        raise AssertionError("no fresh snapshot after Redis came back")

    try:
        code, snapshot = asyncio.run(scenario())
    finally:
        web.stop()
        own_redis.stop()
    assert code == 4009
    assert snapshot["type"] == "snapshot"


def test_the_admin_links_to_the_dashboard(client, staff):
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    client.force_login(staff)
    assert b'href="/dashboard/"' in client.get("/admin/").content


def test_each_web_process_delivers_each_event_once_to_its_own_dashboards(server, staff, driver):
    second = AsgiServer().start()  # another web process, no load balancer: its own port
    cookie = session_cookie(staff)

    async def scenario() -> list[list[dict]]:
        async with connect(server, cookie=cookie) as first_socket, connect(second, cookie=cookie) as second_socket:
            sockets = [first_socket, second_socket]
            for socket in sockets:
                await receive_json(socket)
            for available in (True, False, True):
                await change_soon(change, driver, available)
            received = [[await receive_json(socket) for _ in range(3)] for socket in sockets]
            for socket in sockets:
                with pytest.raises(TimeoutError):
                    await receive_json(socket, timeout=0.3)
            return received

    try:
        received = asyncio.run(scenario())
    finally:
        second.stop()
    for events in received:
        assert [event["version"] for event in events] == [1, 2, 3]


@pytest.mark.parametrize("revoke", ["deactivate", "remove staff"])
def test_staff_who_lose_access_are_disconnected_within_seconds(server, staff, revoke):
    cookie = session_cookie(staff)
    field = "is_active" if revoke == "deactivate" else "is_staff"

    def take_access_away() -> None:
        setattr(staff, field, False)
        staff.save(update_fields=[field])

    async def scenario() -> int | None:
        async with connect(server, cookie=cookie) as socket:
            await receive_json(socket)
            await change_soon(take_access_away)
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(socket.recv(), timeout=10)  # the check runs every 3 s by default
            return socket.close_code

    assert asyncio.run(scenario()) == 4403


def test_an_oversized_frame_closes_only_that_socket(server, staff, driver):
    cookie = session_cookie(staff)

    async def scenario() -> tuple[int | None, dict]:
        async with connect(server, cookie=cookie) as abuser, connect(server, cookie=cookie) as bystander:
            await receive_json(abuser)
            await receive_json(bystander)
            await abuser.send("x" * 200_000)
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(abuser.recv(), timeout=5)
            await change_soon(change, driver, True)
            return abuser.close_code, await receive_json(bystander)

    close_code, event = asyncio.run(scenario())
    assert close_code == 1009  # message too big
    assert event["driverId"] == str(driver.id)


def test_dashboards_recover_within_seconds_when_redis_drops_their_subscription(own_redis, staff, driver):
    web = AsgiServer(env={"REDIS_URL": own_redis.url}).start()
    cookie = session_cookie(staff)

    async def scenario() -> tuple[int | None, float, dict]:
        async with connect(web, cookie=cookie) as socket:
            await receive_json(socket)
            own_redis_client = redis.Redis.from_url(own_redis.url)
            own_redis_client.client_kill_filter(_type="pubsub")
            await asyncio.wait_for(socket.wait_closed(), timeout=10)
            code, lost_at = socket.close_code, time.monotonic()
        await change_soon(change, driver, True)  # made while the page is away: the snapshot must show it
        while True:
            try:
                async with connect(web, cookie=cookie) as again:
                    return code, time.monotonic() - lost_at, await receive_json(again, timeout=5)
            except (websockets.ConnectionClosed, websockets.InvalidStatus, TimeoutError):
                await asyncio.sleep(0.2)

    try:
        code, took, snapshot = asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    finally:
        web.stop()
    assert code == 4009
    assert took < 5, f"a fresh snapshot took {took:.1f}s"
    assert snapshot["drivers"][0]["available"] is True
