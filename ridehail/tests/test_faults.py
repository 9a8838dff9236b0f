"""Faults injected under running processes: Redis dropping a stalled subscriber, Redis slow."""

import asyncio
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from conftest import client_for
from ridehail.events.connection import shared_redis
from ridehail.events.event import CHANNEL, STREAM
from ridehail.events.models import OutboxEvent
from ridehail.events.outbox import relay_once
from ridehail.testing import free_port, wait_until
from rides.subscribers import MATCHING_POOL
from users.services import set_driver_availability

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


class SlowProxy:
    """A TCP proxy to Redis that can add a delay to everything Redis sends back."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, free_port()
        self.delay = 0.0
        self.writers: list[asyncio.StreamWriter] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> "SlowProxy":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(timeout=5)
        return self

    async def _serve(self) -> None:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [client_writer, redis_writer]

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow: bool) -> None:
            while data := await reader.read(65536):
                if slow and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
            writer.close()

        await asyncio.gather(
            pipe(client_reader, redis_writer, False), pipe(redis_reader, client_writer, True), return_exceptions=True
        )

    def stop(self) -> None:
        async def shut_down() -> None:
            self.server.close()
            for writer in self.writers:
                writer.close()
            pipes = asyncio.all_tasks() - {asyncio.current_task()}
            for pipe in pipes:  # one may be sleeping out a delay
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut_down(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def slow_redis(own_redis, settings) -> Iterator[SlowProxy]:
    proxy = SlowProxy(own_redis.port).start()
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
