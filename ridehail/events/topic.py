"""Topics: every kind of event is declared once, in the app that owns it.

A topic `T` is the Pub/Sub channel `T`; a durable topic also has the stream `stream:{T}`
and the dead-letter stream `stream:{T}:dead`, and its events go through the outbox. The
braces are a Redis Cluster hash tag: the stream, its dead letters, every key the publish
script touches and (on a cluster) the shard channel `T` hash to one slot, so one script or
transaction may use them together. The
declaration names the event class (its JSON, validation, key and version) and whether
the topic is durable; every name on Redis follows from it:

    DRIVER_STATUS = Topic("driver-status-changed", DriverStatusChanged, durable=True)

The backbone knows topics only through these declarations: it imports no app.
"""

import uuid
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from django.apps import apps
from django.utils.module_loading import module_has_submodule

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

    def __post_init__(self) -> None:
        if self.name in _topics:
            raise ValueError(f"topic {self.name!r} is declared twice")
        _topics[self.name] = self
        # Binds the class to its topic, so `publish_on_commit(event)` knows where it goes.
        self.event_type.topic = self

    @property
    def channel(self) -> str:
        return self.name

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
