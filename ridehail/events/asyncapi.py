"""The event catalogue: an AsyncAPI 3.0 document generated from the topic declarations.

Nothing in it is written by hand: each topic gives its channel, stream and dead-letter names
(`Topic`), each event class its payload (`FIELDS`, the same declaration that validates it, and
its docstring: who publishes it), each handler who consumes it and how (`Handler`). The
backbone imports no app: the caller passes the topics and consumers in (`ridehail/catalogue.py`
gathers the project's).
"""

import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ridehail.events import wire
from ridehail.events.handler import Handler, Transport
from ridehail.events.topic import STREAM_FIELD, Topic
from ridehail.events.tracing import TRACE_FIELD

ASYNCAPI_VERSION = "3.0.0"
DOCUMENT_VERSION = "1.0.0"  # bump when a payload changes in a way consumers must know of

DURABLE = (
    "Durable: written to the outbox in the transaction that makes the change, published after the "
    "commit on the channel and, at least once and in per-key version order, on the stream `{stream}` "
    "(each entry's field `{field}` holds the JSON). A second copy carries the same `eventId` and "
    "`version`. Consumers ignore anything not newer than the version they hold for the key, and "
    "fields they do not know."
)
LIVE = (
    "Live only: published on the Pub/Sub channel, never stored (no outbox, no stream): at most once, "
    "to whoever listens at the time. Consumers ignore fields they do not know."
)
INVALID = (
    "A message that breaks these rules (not JSON, larger than {size} bytes, a missing field, a wrong "
    "type or range) is logged and skipped by every consumer; on a stream it goes to the dead letters."
)


@dataclass(frozen=True)
class Consumer:
    """Who reads a topic: a worker's handler (`group`: its consumer group name) or a live listener."""

    name: str
    topic: Topic
    transports: tuple[Transport, ...]  # the ones it may use: a durable topic's handler may read either
    description: str


def handler_consumers(handlers: Iterable[type[Handler]]) -> list[Consumer]:
    """The consumers that workers' handlers are, with the transports `run_subscriber` may give them."""
    consumers = []
    for handler in handlers:
        if not handler.topic.durable:
            transports: tuple[Transport, ...] = (Transport.PUBSUB,)
        elif handler.transport is not None:
            transports = (handler.transport,)
        else:
            transports = (Transport.PUBSUB, Transport.STREAM)
        consumers.append(Consumer(handler.name, handler.topic, transports, _doc(handler)))
    return consumers


def document(topics: Iterable[Topic], consumers: Iterable[Consumer]) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of these topics, as JSON-ready dicts (stable order: topic names)."""
    readers = list(consumers)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in sorted(topics, key=lambda t: t.name):
        message = topic.event_type.__name__
        messages[message] = _message(topic)
        channels.update(_channels(topic, message))
        operations.update(_operations(topic, message, [c for c in readers if c.topic.name == topic.name]))
    if any(topic.durable for topic in topics):
        messages["DeadLetter"] = _dead_letter_message()
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "ridehail events",
            "version": DOCUMENT_VERSION,
            "description": (
                "Every topic ridehail publishes on Redis: its Pub/Sub channel and, for a durable topic, "
                "its stream and dead-letter stream; the message as JSON Schema; who publishes and who "
                "consumes. Generated from the topic declarations (`manage.py asyncapi`)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "redis": {
                "host": "127.0.0.1:6379",
                "protocol": "redis",
                "description": "The Redis that REDIS_URL names (with REDIS_CLUSTER=1, a cluster: shard channels).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def _message(topic: Topic) -> dict[str, Any]:
    fields: wire.Fields = topic.event_type.FIELDS
    kind = DURABLE.format(stream=topic.stream, field=STREAM_FIELD) if topic.durable else LIVE
    return {
        "name": topic.name,
        "title": topic.event_type.__name__,
        "summary": _doc(topic.event_type),
        "description": f"{kind} {INVALID.format(size=wire.MAX_MESSAGE_BYTES)}",
        "contentType": "application/json",
        "payload": fields.schema(),
    }


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": "dead-letter",
        "title": "Dead letter",
        "summary": "A stream entry a consumer group could not handle, set aside with the reason.",
        "description": (
            f"The entry's field `{STREAM_FIELD}` holds the original message as it was (possibly not a valid "
            "event), beside `error`, `group`, `consumer`, `entry_id` and `deliveries`. "
            "`manage.py events replay-dead` puts it back on its stream once."
        ),
        "contentType": "application/json",
    }


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in path)}


def _with_parameters(channel: dict[str, Any]) -> dict[str, Any]:
    """AsyncAPI reads `{x}` in an address as a parameter: a Redis Cluster hash tag (`stream:{T}`) is
    one whose only value is the topic's name, so it is declared as such."""
    tags = re.findall(r"\{([^}]+)\}", channel["address"])
    if not tags:
        return channel
    described = "A Redis Cluster hash tag, not a variable: always this value."
    return {**channel, "parameters": {tag: {"enum": [tag], "default": tag, "description": described} for tag in tags}}


def _channels(topic: Topic, message: str) -> dict[str, Any]:
    channels = {
        topic.name: {
            "address": topic.channel,
            "title": f"{topic.name} (Pub/Sub)",
            "description": "The Pub/Sub channel (a shard channel on a cluster): every message, live.",
            "messages": {message: _ref("components", "messages", message)},
        }
    }
    if topic.durable:
        channels[f"{topic.name}-stream"] = {
            "address": topic.stream,
            "title": f"{topic.name} (stream)",
            "description": (
                f"The Redis stream: field `{STREAM_FIELD}` of each entry holds the message (with tracing on, "
                f"field `{TRACE_FIELD}` beside it holds the producer span's W3C trace context); trimmed "
                "approximately to RIDEHAIL_STREAM_MAXLEN entries. Read by consumer groups, acknowledged "
                "after every effect; `manage.py events replay` moves a group back."
            ),
            "messages": {message: _ref("components", "messages", message)},
        }
        channels[f"{topic.name}-dead"] = {
            "address": topic.dead_letters,
            "title": f"{topic.name} (dead letters)",
            "description": "Entries a group could not handle: not a valid event, or failed too many times.",
            "messages": {"DeadLetter": _ref("components", "messages", "DeadLetter")},
        }
    return {name: _with_parameters(channel) for name, channel in channels.items()}


def _operations(topic: Topic, message: str, consumers: list[Consumer]) -> dict[str, Any]:
    live, stored = topic.name, f"{topic.name}-stream"
    operations = {
        f"publish-{topic.name}": {
            "action": "send",
            "channel": _ref("channels", live),
            "summary": _doc(topic.event_type),
            "messages": [_ref("channels", live, "messages", message)],
        }
    }
    if topic.durable:
        operations[f"append-{topic.name}"] = {
            "action": "send",
            "channel": _ref("channels", stored),
            "summary": "The outbox relay (or the publisher, after the commit) appends every committed event.",
            "messages": [_ref("channels", stored, "messages", message)],
        }
        operations[f"dead-letter-{topic.name}"] = {
            "action": "send",
            "channel": _ref("channels", f"{topic.name}-dead"),
            "summary": "A consumer group sets aside an entry it cannot handle.",
            "messages": [_ref("channels", f"{topic.name}-dead", "messages", "DeadLetter")],
        }
    for consumer in consumers:
        for transport in consumer.transports:
            channel = stored if transport is Transport.STREAM else live
            how = f"consumer group `{consumer.name}`" if transport is Transport.STREAM else "subscribed"
            operations[f"{consumer.name}-{transport}-{topic.name}"] = {
                "action": "receive",
                "channel": _ref("channels", channel),
                "title": f"{consumer.name} ({transport})",
                "summary": f"{consumer.name}, {how}: {consumer.description}",
                "messages": [_ref("channels", channel, "messages", message)],
            }
    return operations


def _doc(thing: object) -> str:
    """The first paragraph of a class's docstring, on one line: what it is, who publishes it."""
    return " ".join((inspect.getdoc(thing) or "").split("\n\n")[0].split())
