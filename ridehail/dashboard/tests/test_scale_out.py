"""Scale-out by processes: two web processes (no load balancer, two ports) and two stream
workers in one group. Each dashboard sees each event once; each stream event is handled once."""

import asyncio
from collections import Counter
from functools import partial

import pytest
import redis

from tests.dashboard import change_soon, connect, receive_json, session_cookie
from tests.processes import wait_until
from tests.servers import AsgiServer
from users.events import DRIVER_STATUS
from users.models import Role, User
from users.services import set_driver_availability

STREAM = DRIVER_STATUS.stream

pytestmark = pytest.mark.django_db(transaction=True)


def acknowledged(client: redis.Redis, count: int) -> bool:
    group = next(g for g in client.xinfo_groups(STREAM) if g["name"] == b"rides")
    return group["pending"] == 0 and group["entries-read"] == count


def test_two_web_processes_and_two_stream_workers_each_deliver_once(redis_client, staff, start_worker):
    drivers = User.objects.bulk_create([User(username=f"d{n}", role=Role.DRIVER, password="!") for n in range(10)])
    workers = [start_worker("rides", "--transport", "stream", "--batch-size", "3") for _ in range(2)]
    servers = [AsgiServer().start(), AsgiServer().start()]
    cookie = session_cookie(staff)
    changes = [(driver, available) for available in (True, False) for driver in drivers]

    async def dashboards() -> list[list[dict]]:
        async with connect(servers[0], cookie=cookie) as first, connect(servers[1], cookie=cookie) as second:
            sockets = [first, second]
            for socket in sockets:
                await receive_json(socket)
            for driver, available in changes:
                await change_soon(partial(set_driver_availability, driver_id=driver.id, available=available))
            received = [[await receive_json(socket) for _ in changes] for socket in sockets]
            for socket in sockets:
                with pytest.raises(TimeoutError):
                    await receive_json(socket, timeout=0.3)
            return received

    try:
        per_dashboard = asyncio.run(dashboards())
    finally:
        for server in servers:
            server.stop()

    expected = Counter((str(driver.id), available) for driver, available in changes)
    for received in per_dashboard:
        assert Counter((event["driverId"], event["available"]) for event in received) == expected
    wait_until(lambda: acknowledged(redis_client, len(changes)), what="every stream entry acknowledged")
    handled = Counter(
        line.split("driver ")[1].split(" ")[0]
        for worker in workers
        for line in worker.output.splitlines()
        if "matching pool" in line
    )
    assert handled == Counter({str(driver.id): 2 for driver in drivers})  # added once, removed once
