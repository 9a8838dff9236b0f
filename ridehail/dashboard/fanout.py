"""From one Redis subscription per web process to every dashboard socket in it.

Channels' `group_send` costs one Redis round trip and ~20x the CPU per *connection*;
here each web process subscribes to the dashboard's channels once, validates and encodes
each event once, and hands the same frame to every local socket's bounded queue. Redis
work per event is constant however many browsers are connected, and every process
(several server workers, several machines) delivers each event once to each of its
own sockets.

The subscription is read by a thread of its own through `Subscription`, the same
subscribe / confirm / heartbeat loop the workers use; finished deliveries are handed to
the event loop in batches. Validation, the database check and encoding happen in that
thread, off the loop that serves the sockets.

Three kinds of frames:
- status and ride events, each once, in order: an event is shown only if its driver or
  ride exists in the database, at that version or a later one; the frame adds the name the
  page shows (the driver's `username`, the ride's `riderName`), read in the same query;
- positions, batched: the latest position of each driver that moved, one frame per
  RIDEHAIL_DASHBOARD_POSITION_INTERVAL for the whole process, so 10,000 drivers reporting
  every 2 s cost each page one frame a second;
- the workers' health, every few seconds (health.py), while anyone watches.
"""

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from django.conf import settings
from django.db import close_old_connections

from locations.events import DRIVER_LOCATION, DriverLocationUpdated
from ridehail.dashboard.health import HEALTH_SECONDS, health_frame
from ridehail.dashboard.per_loop import per_event_loop
from ridehail.events import wire
from ridehail.events.connection import POLL_SECONDS, Backoff, Subscription, worker_redis
from ridehail.events.topic import Topic
from rides.events import RIDE_STATUS, RideStatusChanged
from rides.selectors import ride_versions
from users.driver_set import KnownDrivers
from users.events import DRIVER_STATUS, DriverStatusChanged
from users.selectors import driver_versions

logger = logging.getLogger(__name__)

# The topics a dashboard shows, by name.
TOPICS: dict[str, Topic] = {topic.name: topic for topic in (DRIVER_STATUS, RIDE_STATUS, DRIVER_LOCATION)}


def topics_by_channel() -> dict[str, Topic]:
    """Every channel the dashboard listens on, with its topic: each partition's, for positions."""
    return {channel: topic for topic in TOPICS.values() for channel in topic.channels}


POSITIONS_KEY = "positions"  # the key of a positions frame: not versioned, never dropped by a socket


class FanoutUnavailable(Exception):
    """Redis cannot be subscribed to right now: live updates would silently be missing."""


class LoopClosed(Exception):
    """The event loop the sockets lived on is gone (a test's loop, or shutdown): so are they."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One frame, prepared once for every socket: the ASGI message is shared, not copied."""

    key: str  # "<topic>:<key>": what the version counts; POSITIONS_KEY or "health" for batched frames
    version: int  # 0: not versioned
    message: dict[str, str]


class Listener(Protocol):
    def offer(self, delivery: Delivery) -> None:
        """Take one frame without blocking (queue it or give up on it); never raises."""

    def resync(self) -> None:
        """Events may have been missed: the listener must start over from a snapshot."""


class Fanout:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.listeners: set[Listener] = set()
        self.subscribed = asyncio.Event()
        self.known_drivers = KnownDrivers()
        self.by_channel = topics_by_channel()
        self.incoming: deque[Delivery] = deque()
        self.moved: dict[uuid.UUID, DriverLocationUpdated] = {}  # positions since the last frame
        self.latest_health: Delivery | None = None
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
            delivery = self.incoming.popleft()
            if delivery.key == "health":
                self.latest_health = delivery
            self.deliver(delivery)
            # Let the sockets' forwarders run between frames: a burst read in one go must
            # not fill every queue before any of them had a chance to send.
            await asyncio.sleep(0)

    def deliver(self, delivery: Delivery) -> None:
        for listener in list(self.listeners):
            try:
                listener.offer(delivery)
            except Exception:  # offer() must not raise; if it does, that socket starts over
                logger.exception("dashboard: a socket failed to take a frame; closing it to resync")
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
                events.append(self.by_channel[channel].parse(raw))
            except wire.InvalidEvent as exc:
                logger.warning("dashboard: ignored message on %s: %s: %r", channel, exc, raw[:200])
            except Exception:  # whatever one message does, the others still go out
                logger.exception("dashboard: could not read a message on %s: %r", channel, raw[:200])
        self._take_positions([event for event in events if isinstance(event, DriverLocationUpdated)])
        deliveries = []
        for event, extra in self._confirmed(
            [event for event in events if not isinstance(event, DriverLocationUpdated)]
        ):
            try:
                deliveries.append(self._delivery(event, extra))
            except Exception:  # one event that cannot be shown must not hold back the others
                logger.exception("dashboard: could not prepare %s for the sockets", event)
        return deliveries

    def _confirmed(self, events: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        """The events the database vouches for, with what the frame adds (the driver's or rider's name).

        Anyone who can reach Redis may publish on the channels (a test, a redis-cli, an attacker)
        and reach the dashboards the same way. An event is published after its commit, so the
        database already holds its version or a later one: an event of a driver or ride that does
        not exist, or with a version the database has not reached (a forged `version` of 2^52,
        which would make the page ignore every real event after it), is not shown. One query per
        kind and batch.
        """
        statuses = [event for event in events if isinstance(event, DriverStatusChanged)]
        rides = [event for event in events if isinstance(event, RideStatusChanged)]
        drivers = driver_versions({event.driver_id for event in statuses}) if statuses else {}
        found = ride_versions([event.ride.ride_id for event in rides]) if rides else {}
        confirmed: list[tuple[DriverStatusChanged | RideStatusChanged, dict[str, str]]] = []
        for event in events:
            if isinstance(event, DriverStatusChanged) and event.version <= drivers.get(event.driver_id, (0, ""))[0]:
                # The username, as the snapshot lists drivers: a driver who registered after the
                # page loaded is named, not shown by an id prefix.
                confirmed.append((event, {"username": drivers[event.driver_id][1]}))
            elif isinstance(event, RideStatusChanged) and event.version <= found.get(event.ride.ride_id, (0, ""))[0]:
                confirmed.append((event, {"riderName": found[event.ride.ride_id][1]}))
            else:
                logger.warning(
                    "dashboard: ignored %s of %s v%d: not in the database", event.topic.name, event.key, event.version
                )
        return confirmed

    def _take_positions(self, positions: list[DriverLocationUpdated]) -> None:
        if not positions:
            return
        drivers = self.known_drivers.filter({position.driver_id for position in positions})
        for position in positions:
            if position.driver_id not in drivers:
                continue  # a position of no driver the database knows: not shown
            held = self.moved.get(position.driver_id)
            if held is None or position.timestamp >= held.timestamp:
                self.moved[position.driver_id] = position

    @staticmethod
    def _delivery(event: Any, extra: dict[str, Any]) -> Delivery:
        frame = wire.encode({"type": event.topic.name, **event.to_dict(), **extra}).decode()
        return Delivery(f"{event.topic.name}:{event.key}", event.version, {"type": "websocket.send", "text": frame})

    def _positions_frame(self) -> Delivery | None:
        if not self.moved:
            return None
        positions = [position.to_dict() for position in self.moved.values()]
        self.moved = {}
        frame = wire.encode({"type": "positions", "positions": positions}).decode()
        return Delivery(POSITIONS_KEY, 0, {"type": "websocket.send", "text": frame})

    def _health_frame(self, client: redis.Redis) -> Delivery:
        frame = wire.encode(health_frame(client)).decode()
        return Delivery("health", 0, {"type": "websocket.send", "text": frame})

    def _read_forever(self) -> None:
        try:
            self._read_until_the_loop_closes()
        except LoopClosed:
            return

    def _read_until_the_loop_closes(self) -> None:
        backoff = Backoff()
        while not self.loop.is_closed():
            try:
                client = worker_redis()
                self.by_channel = topics_by_channel()
                with Subscription(client, self.by_channel) as subscription:
                    self._on_loop(self.subscribed.set)
                    backoff.reset()
                    logger.info("dashboard: listening on %s", ", ".join(self.by_channel))
                    self._relay(subscription, client)
            except LoopClosed:
                raise
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._wait_after_failure(backoff, f"Redis unavailable ({exc})")
            except Exception:
                # A bug: still, sockets must not stay "live" on a dead subscription.
                logger.exception("dashboard: the fan-out failed; closing its sockets so they resync")
                self._wait_after_failure(backoff, "fan-out failed")

    def _relay(self, subscription: Subscription, client: redis.Redis) -> None:
        interval = settings.RIDEHAIL_DASHBOARD_POSITION_INTERVAL
        next_positions = time.monotonic() + interval
        next_health = time.monotonic()
        while not self.loop.is_closed():
            batch = subscription.read_batch(timeout=max(0.0, min(POLL_SECONDS, next_positions - time.monotonic())))
            deliveries = self.prepare(batch) if batch else []
            now = time.monotonic()
            if now >= next_positions:
                if frame := self._positions_frame():
                    deliveries.append(frame)
                next_positions = now + interval
            if now >= next_health and self.listeners:
                deliveries.append(self._health_frame(client))
                next_health = now + HEALTH_SECONDS
            if deliveries:
                self._on_loop(self.receive, deliveries)
            if not batch:
                close_old_connections()

    def _wait_after_failure(self, backoff: Backoff, what: str) -> None:
        delay = backoff.next_delay()
        logger.warning("dashboard: %s; retrying in %.1fs", what, delay)
        self.moved = {}
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
