"""From one Redis subscription to every dashboard socket in this process.

Channels' `group_send` costs one Redis round trip and ~20x the CPU per *connection*;
here each web process subscribes to the channel once, encodes each event once, and
hands the same frame to every local socket's bounded queue. Redis work per event is
constant however many browsers are connected, and every process (several uvicorn
workers, several machines) delivers each event once to each of its own sockets.
"""

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from ridehail.events.connection import HEALTH_CHECK_SECONDS, Backoff, Heartbeat
from ridehail.events.event import CHANNEL, DriverStatusChanged, InvalidEvent
from ridehail.events.runner import PING_PAYLOAD, POLL_SECONDS

logger = logging.getLogger(__name__)

EVENT_FRAME_TYPE = "driver-status-changed"


class FanoutUnavailable(Exception):
    """Redis cannot be subscribed to right now: live updates would silently be missing."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event, prepared once for every socket: the ASGI message is shared, not copied."""

    driver_id: str
    version: int
    message: dict[str, str]


class Listener(Protocol):
    def offer(self, delivery: Delivery) -> None:
        """Take one event without blocking (queue it or give up on it); never raises."""

    def resync(self) -> None:
        """Events may have been missed: the listener must start over from a snapshot."""


class Fanout:
    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.listeners: set[Listener] = set()
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def join(self, listener: Listener, *, timeout: float = 5.0) -> None:
        """Register, and return once the subscription is live: nothing published after this is missed."""
        self.listeners.add(listener)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dashboard-fanout")
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout)
        except TimeoutError:
            self.listeners.discard(listener)
            raise FanoutUnavailable(f"could not subscribe to {CHANNEL} within {timeout}s") from None

    def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    def deliver(self, raw: bytes) -> None:
        try:
            event = DriverStatusChanged.from_json(raw)
        except InvalidEvent as exc:
            logger.warning("dashboard: ignored message: %s: %r", exc, raw[:200])
            return
        frame = json.dumps({"type": EVENT_FRAME_TYPE, **event.to_dict()}, separators=(",", ":"))
        delivery = Delivery(str(event.driver_id), event.version, {"type": "websocket.send", "text": frame})
        for listener in list(self.listeners):
            listener.offer(delivery)

    async def _run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                await self._listen(backoff)
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                self._lost_connection()
                delay = backoff.next_delay()
                logger.warning("dashboard: Redis unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    def _lost_connection(self) -> None:
        # Whatever was published while we were away never reaches the sockets: every
        # dashboard must reconnect and take a fresh snapshot.
        self._subscribed.clear()
        for listener in list(self.listeners):
            listener.resync()
        self.listeners.clear()

    async def _listen(self, backoff: Backoff) -> None:
        client = aioredis.Redis.from_url(
            self.redis_url, socket_connect_timeout=3, socket_keepalive=True, retry=Retry(NoBackoff(), 0)
        )
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(CHANNEL)
            confirmation = await pubsub.get_message(timeout=HEALTH_CHECK_SECONDS)
            if not confirmation or confirmation["type"] != "subscribe":
                raise aioredis.TimeoutError(f"no confirmation of SUBSCRIBE {CHANNEL}")
            self._subscribed.set()
            backoff.reset()
            logger.info("dashboard: listening on %s", CHANNEL)
            await self._receive_loop(pubsub)
        finally:
            await pubsub.aclose()
            await client.aclose()

    async def _receive_loop(self, pubsub: aioredis.client.PubSub) -> None:
        heartbeat = Heartbeat()
        while True:
            message = await pubsub.get_message(timeout=POLL_SECONDS)
            if message is None:
                if heartbeat.should_ping():
                    await pubsub.ping(PING_PAYLOAD)
                continue
            heartbeat.heard()
            if message["type"] == "message":
                self.deliver(message["data"])
                # Let the sockets' forwarders run between messages: a burst read in one go
                # must not fill every queue before any of them had a chance to send.
                await asyncio.sleep(0)


_fanouts: dict[asyncio.AbstractEventLoop, Fanout] = {}


def process_fanout() -> Fanout:
    """This process's fan-out (one per event loop: an ASGI server runs one)."""
    loop = asyncio.get_running_loop()
    if loop not in _fanouts:
        _fanouts[loop] = Fanout(settings.REDIS_URL)
    return _fanouts[loop]
