"""What a worker process holds in Redis, as `CLIENT LIST` shows it: named connections, no more."""

import os
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings

from conftest import make_drivers, make_user
from locations.positions import held_positions
from ridehail.events.connection import one_connection_redis
from rides.tests.test_matching import FAST, ask, online_at, settled
from tests.processes import ManagedProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

EXPECTED = {
    ("rides", "pubsub"): ["rides:commands", "rides:stream-reader", "rides:subscriber"],
    # Every worker subscribes: its outbox relay's wake-up comes on the subscriber connection.
    ("rides", "stream"): ["rides:commands", "rides:stream-reader", "rides:subscriber"],
    # Positions are live only: always Pub/Sub, whatever --transport says.
    ("locations", "pubsub"): ["locations:commands", "locations:subscriber"],
    ("locations", "stream"): ["locations:commands", "locations:stream-reader", "locations:subscriber"],
}


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def local_ports_to(pid: int, port: int) -> set[int]:
    """The local ports of `pid`'s TCP connections to `port`: which `CLIENT LIST` entries are that process's."""
    inodes, ports = _socket_inodes(pid), set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def connection_names(client: redis.Redis, worker: ManagedProcess) -> list[str]:
    """The names of every connection the worker process holds to our Redis ("" for an unnamed one), sorted."""
    assert worker.process is not None
    ports = local_ports_to(worker.process.pid, urlsplit(settings.REDIS_URL).port or 6379)
    return sorted(c["name"] for c in client.client_list() if int(c["addr"].rsplit(":", 1)[1]) in ports)


@pytest.mark.parametrize("transport", ["pubsub", "stream"])
def test_each_worker_holds_exactly_its_named_connections_after_handling_events(start_worker, redis_client, transport):
    locations = start_worker("locations", "--transport", transport)
    rides = start_worker("rides", "--transport", transport, env=FAST)
    driver, rider = make_drivers(1)[0], make_user("rider")

    online_at(driver, 52.5210, 13.4060, redis_client)  # a status change both handle, and a position
    ride_id = ask(rider)
    wait_until(lambda: settled(ride_id), timeout=10, what="the assignment")  # published by the rides worker
    assert str(driver.id) in held_positions(redis_client)

    for name, worker in (("locations", locations), ("rides", rides)):
        expected = EXPECTED[(name, transport)]
        wait_until(lambda w=worker, e=expected: connection_names(redis_client, w) == e, timeout=5, what=str(expected))


def test_a_thread_busy_on_the_shared_command_connection_does_not_starve_another(redis_client):
    client = one_connection_redis("test:commands", timeout=1.0)  # a waiter gives up after 2 s
    stop = threading.Event()

    def busy() -> None:  # back to back, as a burst of batches on another handler's thread
        while not stop.is_set():
            client.incr("rides:test-busy")

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        took = time.monotonic()
        for _ in range(200):
            client.incr("rides:test-other")  # raised "No connection available" after 2 s before
        took = time.monotonic() - took
    finally:
        stop.set()
        thread.join()
    assert took < 2.0
    assert [c["name"] for c in redis_client.client_list()].count("test:commands") == 1
