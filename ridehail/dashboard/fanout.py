"""From one Redis subscription per web process to every dashboard socket in it.

Channels' `group_send` costs one Redis round trip and ~20x the CPU per *connection*;
here each web process subscribes to the dashboard's channels once, validates and encodes
each event once, and hands the same frame to every local socket's bounded queue. Redis
work per event is constant however many browsers are connected, and every process
(several server workers, several machines) delivers each event once to each of its
own sockets.

The subscription is read by a thread of its own through `Subscription`, the same
subscribe / confirm / heartbeat loop the workers use; finished deliveries are handed to
the event loop in batches. Validation, the unknown-driver check (a database query on a
miss) and encoding happen in that thread, off the loop that serves the sockets.
"""

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from django.db import close_old_connections

from ridehail.dashboard.per_loop import per_event_loop
from ridehail.events import wire
from ridehail.events.connection import Backoff, Subscription, worker_redis
from ridehail.events.topic import Topic
from users.driver_set import KnownDrivers
from users.events import DRIVER_STATUS, DriverStatusChanged

logger = logging.getLogger(__name__)

# The topics a dashboard shows, by channel.
TOPICS: dict[str, Topic] = {topic.channel: topic for topic in (DRIVER_STATUS,)}


class FanoutUnavailable(Exception):
    """Redis cannot be subscribed to right now: live updates would silently be missing."""


class LoopClosed(Exception):
    """The event loop the sockets lived on is gone (a test's loop, or shutdown): so are they."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event, prepared once for every socket: the ASGI message is shared, not copied."""

    key: str  # "<topic>:<key>": what the version counts
    version: int
    message: dict[str, str]


class Listener(Protocol):
    def offer(self, delivery: Delivery) -> None:
        """Take one event without blocking (queue it or give up on it); never raises."""

    def resync(self) -> None:
        """Events may have been missed: the listener must start over from a snapshot."""


class Fanout:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.listeners: set[Listener] = set()
        self.subscribed = asyncio.Event()
        self.known_drivers = KnownDrivers()
        self.incoming: deque[Delivery] = deque()
        self._reader: threading.Thread | None = None
        self._distributor: asyncio.Task | None = None

    async def join(self, listener: Listener, *, timeout: float = 5.0) -> None:
        """Register, and return once the subscription is live: nothing published after this is missed."""
        self.listeners.add(listener)
        if self._reader is None or not self._reader.is_alive():
            self._reader = threading.Thread(target=self._read_forever, name="dashboard-fanout", daemon=True)
            self._reader.start()
        try:
            await asyncio.wait_for(self.subscribed.wait(), timeout)
        except TimeoutError:
            self.listeners.discard(listener)
            raise FanoutUnavailable(f"could not subscribe to {', '.join(TOPICS)} within {timeout}s") from None

    def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    # -- on the event loop ------------------------------------------------------------

    def receive(self, deliveries: list[Delivery]) -> None:
        """A batch from the reader thread: queue it for the distributor task."""
        self.incoming.extend(deliveries)
        if self._distributor is None or self._distributor.done():
            self._distributor = asyncio.create_task(self._distribute(), name="dashboard-fanout")

    async def _distribute(self) -> None:
        while self.incoming:
            self.deliver(self.incoming.popleft())
            # Let the sockets' forwarders run between events: a burst read in one go must
            # not fill every queue before any of them had a chance to send.
            await asyncio.sleep(0)

    def deliver(self, delivery: Delivery) -> None:
        for listener in list(self.listeners):
            try:
                listener.offer(delivery)
            except Exception:  # offer() must not raise; if it does, that socket starts over
                logger.exception("dashboard: a socket failed to take an event; closing it to resync")
                self.listeners.discard(listener)
                listener.resync()

    def lost_connection(self) -> None:
        # Whatever was published while we were away never reaches the sockets: every
        # dashboard must reconnect and take a fresh snapshot.
        self.subscribed.clear()
        self.incoming.clear()
        for listener in list(self.listeners):
            listener.resync()
        self.listeners.clear()

    # -- in the reader thread ---------------------------------------------------------

    def prepare(self, batch: list[tuple[str, bytes]]) -> list[Delivery]:
        """Validate and encode a batch of messages; anything that cannot be shown is logged and skipped."""
        events = []
        for channel, raw in batch:
            try:
                events.append(TOPICS[channel].parse(raw))
            except wire.InvalidEvent as exc:
                logger.warning("dashboard: ignored message on %s: %s: %r", channel, exc, raw[:200])
            except Exception:  # whatever one message does, the others still go out
                logger.exception("dashboard: could not read a message on %s: %r", channel, raw[:200])
        drivers = self.known_drivers.filter(
            {event.driver_id for event in events if isinstance(event, DriverStatusChanged)}
        )
        deliveries = []
        for event in events:
            if isinstance(event, DriverStatusChanged) and event.driver_id not in drivers:
                logger.warning("dashboard: ignored event %s of unknown driver %s", event.event_id, event.driver_id)
                continue
            try:
                deliveries.append(self._delivery(event))
            except Exception:  # one event that cannot be shown must not hold back the others
                logger.exception("dashboard: could not prepare %s for the sockets", event)
        return deliveries

    @staticmethod
    def _delivery(event: Any) -> Delivery:
        frame = wire.encode({"type": event.topic.name, **event.to_dict()}).decode()
        return Delivery(f"{event.topic.name}:{event.key}", event.version, {"type": "websocket.send", "text": frame})

    def _read_forever(self) -> None:
        try:
            self._read_until_the_loop_closes()
        except LoopClosed:
            return

    def _read_until_the_loop_closes(self) -> None:
        backoff = Backoff()
        while not self.loop.is_closed():
            try:
                with Subscription(worker_redis(), TOPICS) as subscription:
                    self._on_loop(self.subscribed.set)
                    backoff.reset()
                    logger.info("dashboard: listening on %s", ", ".join(TOPICS))
                    self._relay(subscription)
            except LoopClosed:
                raise
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._wait_after_failure(backoff, f"Redis unavailable ({exc})")
            except Exception:
                # A bug: still, sockets must not stay "live" on a dead subscription.
                logger.exception("dashboard: the fan-out failed; closing its sockets so they resync")
                self._wait_after_failure(backoff, "fan-out failed")

    def _relay(self, subscription: Subscription) -> None:
        while not self.loop.is_closed():
            batch = subscription.read_batch()
            if not batch:
                close_old_connections()
                continue
            deliveries = self.prepare(batch)
            if deliveries:
                self._on_loop(self.receive, deliveries)

    def _wait_after_failure(self, backoff: Backoff, what: str) -> None:
        delay = backoff.next_delay()
        logger.warning("dashboard: %s; retrying in %.1fs", what, delay)
        self._on_loop(self.lost_connection)
        threading.Event().wait(delay)

    def _on_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """Run `callback` on the event loop; raises LoopClosed once that loop is closed."""
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            if self.loop.is_closed():
                raise LoopClosed from None
            raise


# This process's fan-out.
process_fanout = per_event_loop(Fanout)
