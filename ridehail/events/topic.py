"""Topics: every kind of event is declared once, in the app that owns it.

A topic `T` is the Pub/Sub channel `T`; a durable topic also has the stream `stream:{T}`
and the dead-letter stream `stream:{T}:dead`, and its events go through the outbox. The
braces are a Redis Cluster hash tag: the stream, its dead letters, every key the publish
script touches and (on a cluster) the shard channel `T` hash to one slot, so one script or
transaction may use them together. The
declaration names the event class (its JSON, validation, key and version) and whether
the topic is durable; every name on Redis follows from it:

    DRIVER_STATUS = Topic("driver-status-changed", DriverStatusChanged, durable=True)

A live topic may be partitioned by key (`partitions=`): its events then go out on one
channel per partition (`channels`; a key's is `channel_for(key)`), so that on a Redis
Cluster no shard carries all of them. Partition 0's channel is the topic's name, so one
partition changes nothing.

The backbone knows topics only through these declarations: it imports no app.
"""

import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from django.apps import apps
from django.utils.module_loading import module_has_submodule
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from ridehail.events import wire

STREAM_FIELD = "event"  # the stream entry's field that holds the event's JSON


class Event(Protocol):
    """What a topic's event class provides (a frozen dataclass, typically)."""

    topic: ClassVar["Topic"]

    @property
    def key(self) -> str:
        """What versions and ordering are per: the driver's or the ride's id."""

    def to_dict(self) -> dict[str, Any]:
        """The event's fields as they go on the wire, in order."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Validate a decoded JSON object (raise wire.InvalidEvent); ignore unknown fields."""


class DurableEvent(Event, Protocol):
    # Read-only properties, so a frozen dataclass's fields and a computed `version` both match.
    @property
    def event_id(self) -> uuid.UUID:
        """The same on every copy of the event: consumers apply a duplicate once."""

    @property
    def version(self) -> int:
        """Grows by one per change of the key: consumers drop what is older than what they hold."""


E = TypeVar("E", bound=Event)

_topics: dict[str, "Topic"] = {}


@dataclass(frozen=True)
class Topic(Generic[E]):
    name: str
    event_type: type[E] = field(repr=False)
    durable: bool
    # How many partitions (read at each use, so a setting decides); None: one channel.
    partitions: Callable[[], int] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.partitions is not None and self.durable:
            raise ValueError(f"topic {self.name!r} is durable: only a live topic may be partitioned")
        if self.name in _topics:
            raise ValueError(f"topic {self.name!r} is declared twice")
        _topics[self.name] = self
        # Binds the class to its topic, so `publish_on_commit(event)` knows where it goes.
        self.event_type.topic = self

    @property
    def channel(self) -> str:
        return self.name

    @property
    def channels(self) -> tuple[str, ...]:
        """Every channel of the topic, partition by partition (`channel` first)."""
        return partition_channels(self.name, self.partitions() if self.partitions else 1)

    def partition_of(self, key: str) -> int:
        """The partition of an event's key: the same in every process and release (CRC-32, not hash())."""
        count = self.partitions() if self.partitions else 1
        return zlib.crc32(key.encode()) % count if count > 1 else 0

    def channel_for(self, key: str) -> str:
        """The channel an event of this key goes out on."""
        return self.channels[self.partition_of(key)]

    @property
    def stream(self) -> str:
        self._require_durable()
        return f"stream:{{{self.name}}}"

    @property
    def dead_letters(self) -> str:
        self._require_durable()
        return f"stream:{{{self.name}}}:dead"

    def parse(self, raw: bytes | str) -> E:
        """One message off the channel or the stream, validated; raises wire.InvalidEvent."""
        return self.event_type.from_dict(wire.parse_object(raw))

    def encode(self, event: E) -> bytes:
        return wire.encode(event.to_dict())

    def _require_durable(self) -> None:
        if not self.durable:
            raise ValueError(f"topic {self.name!r} is live only: it has no stream")


@cache
def partition_channels(name: str, count: int) -> tuple[str, ...]:
    """The channels of `count` partitions of topic `name`: `name`, then `name:<i>` (or `name:<i>.<n>`).

    Each channel is also its partition's hash tag: a key named `...{<channel>}...` lives in the
    channel's slot. `redis-cli --cluster create` gives M masters M equal ranges of the 16384
    slots, so with M = `count` partitions in different ranges land on different masters.
    Partition 0's name is fixed (one partition must change nothing): partition i takes the
    range i places after the one `name` falls in, and its name is the first candidate whose
    slot lies in the middle half of that range, away from the edges where a cluster's split
    may differ by a slot or two (redis-cli rounds; an operator may have moved a few slots).
    Computed, not listed: any count works, and the names depend only on `name` and `count`.
    """
    first = key_slot(name.encode()) * count // REDIS_CLUSTER_HASH_SLOTS
    channels = [name]
    for i in range(1, count):
        target = (first + i) % count
        low = target * REDIS_CLUSTER_HASH_SLOTS // count
        width = (target + 1) * REDIS_CLUSTER_HASH_SLOTS // count - low
        middle = range(low + width // 4, low + width - width // 4)
        candidates = (f"{name}:{i}" if n == 0 else f"{name}:{i}.{n}" for n in range(REDIS_CLUSTER_HASH_SLOTS**2))
        channels.append(next(c for c in candidates if key_slot(c.encode()) in middle))
    return tuple(channels)


def declared_topics() -> list[Topic]:
    """Every topic the installed apps declare (in their `events` module), by name."""
    for app_config in apps.get_app_configs():
        if module_has_submodule(app_config.module, "events"):
            import_module(f"{app_config.name}.events")
    return [_topics[name] for name in sorted(_topics)]


def get_topic(name: str) -> Topic:
    topics = {topic.name: topic for topic in declared_topics()}
    if name not in topics:
        raise KeyError(f"unknown topic {name!r}; declared: {', '.join(topics)}")
    return topics[name]
