"""Faults injected under running processes: Redis dropping a stalled subscriber, Redis slow."""

import signal
import time
from collections.abc import Iterator

import pytest
import redis
import requests
from django.db import connection

from conftest import client_for, token_of
from ridehail.events.connection import shared_redis
from ridehail.events.models import OutboxEvent
from ridehail.events.outbox import relay_once
from rides.subscribers import MATCHING_POOL
from tests.faults import TcpProxy
from tests.processes import wait_until
from tests.servers import AsgiServer, child_database_url
from users.events import DRIVER_STATUS
from users.services import set_driver_availability

CHANNEL = DRIVER_STATUS.channel
STREAM = DRIVER_STATUS.stream

pytestmark = pytest.mark.django_db(transaction=True)

LISTENING = f"listening on {CHANNEL}"


def test_a_stalled_subscriber_dropped_at_its_output_buffer_limit_resyncs(own_redis, start_worker, driver):
    client = shared_redis()
    client.config_set("client-output-buffer-limit", "pubsub 64kb 32kb 1")
    worker = start_worker("rides", env={"REDIS_URL": own_redis.url})

    worker.signal(signal.SIGSTOP)  # stalled: it reads nothing while the channel fills its buffer
    try:
        set_driver_availability(driver_id=driver.id, available=True)  # lost with the dropped connection
        # Past the kernel's socket buffers, then past Redis's 64 KiB hard limit (at most 32 MiB sent).
        filler = b"x" * 32_768
        for n in range(1024):
            client.publish(CHANNEL, filler)
            if n % 16 == 15 and client.pubsub_numsub(CHANNEL)[0][1] == 0:
                break
        wait_until(lambda: client.pubsub_numsub(CHANNEL)[0][1] == 0, what="Redis to drop the stalled subscriber")
    finally:
        worker.signal(signal.SIGCONT)

    worker.wait_for_output(LISTENING, count=2, timeout=20)  # detected, logged, resubscribed
    assert "Redis unavailable" in worker.output
    wait_until(lambda: MATCHING_POOL.members(client) == [str(driver.id)], what="the pool rebuilt from the database")


@pytest.fixture
def slow_redis(own_redis, settings) -> Iterator[TcpProxy]:
    proxy = TcpProxy(own_redis.port).start()
    settings.REDIS_URL = f"redis://127.0.0.1:{proxy.port}/0"
    shared_redis.cache_clear()
    yield proxy
    proxy.stop()
    shared_redis.cache_clear()


def test_a_slow_redis_does_not_hold_up_a_status_change_and_loses_nothing(slow_redis, own_redis, driver):
    slow_redis.delay = 3.0
    client = client_for(driver)

    started = time.monotonic()
    response = client.put("/api/users/driver-status", {"available": True}, format="json")
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed < 1.0, f"the request took {elapsed:.2f}s"
    assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 1
    slow_redis.delay = 0.0
    wait_until(
        lambda: relay_once() >= 0 and not OutboxEvent.objects.filter(published_at__isnull=True).exists(),
        timeout=15,
        what="the outbox to drain once Redis is fast again",
    )
    direct = redis.Redis(port=own_redis.port)
    wait_until(lambda: direct.xlen(STREAM) >= 1, what="the event on the stream")
    assert direct.xlen(STREAM) == 1  # once, even though the slow attempt may have reached Redis


def test_postgresql_going_away_means_503s_not_hangs_and_everything_recovers(redis_client, driver, start_worker):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://...")
    port = int(connection.settings_dict["PORT"] or 5432)
    proxy = TcpProxy(port).start()
    through_proxy = child_database_url().replace(f":{port}/", f":{proxy.port}/")
    web = AsgiServer(env={"DATABASE_URL": through_proxy}).start()
    worker = start_worker("rides", env={"DATABASE_URL": through_proxy})
    auth = {"Authorization": f"Token {token_of(driver)}"}

    def timed(method: str, path: str) -> tuple[requests.Response, float]:
        started = time.monotonic()
        response = requests.request(method, f"{web.url}{path}", headers=auth, timeout=15)
        return response, time.monotonic() - started

    try:
        assert requests.get(f"{web.url}/readyz", timeout=5).status_code == 200
        proxy.cut()  # PostgreSQL is gone for everything behind the proxy

        ready, ready_took = timed("GET", "/readyz")
        change, change_took = timed("PUT", "/api/users/driver-status")
        assert (ready.status_code, list(ready.json()["failed"])) == (503, ["database"])
        assert change.status_code == 503
        assert max(ready_took, change_took) < 5, "a request hung instead of failing"

        proxy.restore()
        wait_until(
            lambda: requests.get(f"{web.url}/readyz", timeout=10).status_code == 200,
            timeout=30,
            interval=0.5,
            what="/readyz to recover",
        )
        wait_until(
            lambda: timed("PUT", "/api/users/driver-status")[0].status_code == 200,
            timeout=30,
            interval=0.5,
            what="status changes to work again",
        )
        worker.wait_for_output(f"driver {driver.id} added to matching pool", timeout=30)
    finally:
        web.stop()
        proxy.stop()
