"""The Pub/Sub worker loop: subscribe, rebuild from the database, then handle messages.

Fire-and-forget means a message sent while the worker is away is gone, so after every
(re)connect the worker rebuilds its state from the database. It subscribes *before*
rebuilding, so a change committed in between is either in the database snapshot or
arrives as a message (the version check makes both orders correct).
"""

import random
import threading
import time
from collections.abc import Callable

import redis
from django.db import Error as DatabaseError
from django.db import close_old_connections

from ridehail.events.event import CHANNEL
from ridehail.events.subscriber import DriverSetSubscriber

# redis-py does not notice a silently dead Pub/Sub connection by itself
# (redis/redis-py#1137, #2089): after this long without traffic we PING, and a PING
# unanswered for as long again means the connection is dead.
HEALTH_CHECK_SECONDS = 5.0
POLL_SECONDS = 1.0  # how long one read blocks: bounds how late a stop request is seen
_PING_PAYLOAD = b"ridehail-health"


class Backoff:
    """Exponential backoff with jitter, so restarted workers do not reconnect in lockstep."""

    def __init__(self, first: float = 0.5, maximum: float = 10.0) -> None:
        self.first, self.maximum = first, maximum
        self.reset()

    def reset(self) -> None:
        self.current = self.first

    def next_delay(self) -> float:
        delay = self.current * random.uniform(0.8, 1.2)
        self.current = min(self.current * 2, self.maximum)
        return delay


class PubSubRunner:
    def __init__(
        self,
        subscriber: DriverSetSubscriber,
        *,
        subscribe_client: redis.Redis,
        stop: threading.Event,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.subscriber = subscriber
        self.subscribe_client = subscribe_client
        self.stop = stop
        self.on_ready = on_ready
        self.logger = subscriber.logger
        self.backoff = Backoff()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self._run_connected()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self._wait_before_retry("Redis unavailable", exc)
            except DatabaseError as exc:
                close_old_connections()
                self._wait_before_retry("database unavailable", exc)
        self.logger.info("stopped")

    def _wait_before_retry(self, what: str, exc: Exception) -> None:
        delay = self.backoff.next_delay()
        self.logger.warning("%s (%s); retrying in %.1fs", what, exc, delay)
        self.stop.wait(delay)

    def _run_connected(self) -> None:
        pubsub = self.subscribe_client.pubsub()
        try:
            self._subscribe(pubsub)
            close_old_connections()
            self.subscriber.rebuild()
            self.backoff.reset()
            self.logger.info("listening on %s", CHANNEL)
            if self.on_ready:
                self.on_ready()
            self._listen(pubsub)
        finally:
            pubsub.close()

    def _subscribe(self, pubsub: redis.client.PubSub) -> None:
        pubsub.subscribe(CHANNEL)
        deadline = time.monotonic() + HEALTH_CHECK_SECONDS
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=POLL_SECONDS)
            if message and message["type"] == "subscribe":
                return
        raise redis.TimeoutError(f"no confirmation of SUBSCRIBE {CHANNEL}")

    def _listen(self, pubsub: redis.client.PubSub) -> None:
        last_heard = time.monotonic()
        ping_sent_at: float | None = None
        while not self.stop.is_set():
            message = pubsub.get_message(timeout=POLL_SECONDS)
            now = time.monotonic()
            if message is None:
                if ping_sent_at is not None and now - ping_sent_at > HEALTH_CHECK_SECONDS:
                    raise redis.ConnectionError(f"no answer to PING for {HEALTH_CHECK_SECONDS:.0f}s")
                if ping_sent_at is None and now - last_heard > HEALTH_CHECK_SECONDS:
                    pubsub.ping(_PING_PAYLOAD)
                    ping_sent_at = now
                close_old_connections()
                continue
            last_heard, ping_sent_at = now, None
            if message["type"] == "message":
                self.subscriber.handle_message(message["data"])
