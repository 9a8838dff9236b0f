"""What a worker does with one topic's events, independent of how they arrive.

An app subclasses `Handler` once per topic it consumes (`rides/subscribers.py`,
`locations/subscribers.py`) and lists its handlers in a `Worker`. The same handler serves
the Pub/Sub and the stream transports; the backbone hands it validated events, a Redis
client and a logger, and never looks anything up in an app.
"""

import enum
import logging
from typing import Any, ClassVar, Generic

import redis

from ridehail.events.topic import E, Topic
from ridehail.events.wire import InvalidEvent


class Transport(enum.StrEnum):
    PUBSUB = "pubsub"  # live, at most once; state rebuilt from the database on every (re)connect
    STREAM = "stream"  # at least once, consumer group, acknowledged after every effect


class Handler(Generic[E]):
    """Consumes one topic. Subclasses set `name` (the worker: logger, consumer group) and `topic`.

    Contract, whatever the transport:
    - `handle_batch(events)` performs *every* effect of the events, in order, and raises if
      any of them failed; on a stream nothing is acknowledged then, and the whole batch is
      retried. So the last write is the one that records an event as done (the version),
      never the first: a retry must find the event not done and do all of it again.
    - Handling an event twice has the effect of handling it once; an event not newer than
      what the handler holds, or for a key it does not know, is a no-op (logged), not an error.
    - `rebuild()` makes the handler's state *equal* to the source of truth (the database),
      whatever it held before. It runs on every Pub/Sub (re)connect, when a stream's group
      or unread entries were lost, and every RIDEHAIL_RESYNC_SECONDS.
    - `gather_seconds()` > 0 (streams only): the loop gathers what it reads for that long after
      the first entry before one `handle_batch` of them all (the matcher's window); they stay
      pending, unacknowledged, meanwhile, so a worker that dies holding them loses none.
    """

    name: ClassVar[str]
    topic: ClassVar[Topic]
    # None: as `run_subscriber --transport` says. A live-only topic is always Pub/Sub; a
    # topic whose events must be processed sets STREAM.
    transport: ClassVar[Transport | None] = None

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self.logger = logging.getLogger(self.name)

    def handle_batch(self, events: list[E]) -> int | None:
        """Every effect of these events, in order (see the class docstring); may say how many changed anything."""
        raise NotImplementedError

    def gather_seconds(self) -> float:
        """How long a stream's loop gathers entries before handling them together; 0: at once."""
        return 0.0

    def parse_messages(self, raws: list[bytes]) -> list[E]:
        """Validate raw messages; anything that is not a valid event is logged and skipped."""
        events = []
        for raw in raws:
            try:
                events.append(self.topic.parse(raw))
            except InvalidEvent as exc:
                self.logger.warning("ignored message on %s: %s: %r", self.topic.channel, exc, raw[:200])
        return events

    def rebuild(self) -> int | None:
        """Nothing to rebuild by default: a handler without state of its own. A handler with a set
        may return its size (the driver set does, for its tests); the runner ignores it."""

    def on_idle(self) -> None:
        """Periodic work of the handler's own (the matcher's retries), run by its loop at least
        once a second, between reads. Raise like `handle_batch`: an outage is waited out, anything
        else is logged and the loop goes on."""

    def heartbeat(self) -> dict[str, Any]:
        """Fields this handler adds to its process's heartbeat (`events status --json`, the dashboard's
        health strip); nothing by default. Called from the heartbeat thread every few seconds, so it
        returns what the handler already holds (JSON-serialisable), never asks Redis or the database."""
        return {}

    def transport_for(self, requested: Transport) -> Transport:
        if not self.topic.durable:
            return Transport.PUBSUB
        return self.transport or requested
