"""Counters every process adds to and `/metrics` reads: hashes in Redis, never per-process memory.

The web server runs several processes and every worker is a process of its own; a counter
kept in one process's memory would be scraped from whichever web process answered, and a
worker's would not be scraped at all. So each count is a field of a Redis hash:

    ridehail:metrics:published:{<topic>}                 events of the topic that went out (new to Redis)
    ridehail:metrics:handled     <worker> <topic>         events a worker's handler finished
    ridehail:metrics:failed      <worker> <topic>         events whose handling raised

The published count is one counter per topic, not a hash field: the script that publishes
increments it, and a script's keys must share the topic's hash slot on a Redis Cluster (the
braces: see topic.py). Each costs no round trip of its own: publishing counts inside the script that publishes
(`publisher.py`), and a worker counts a whole read batch in the
pipeline that acknowledges it (streams) or in one HINCRBY per batch (Pub/Sub). A FLUSHALL resets
them, which Prometheus reads as a counter reset, as it does a restart.
"""

from collections.abc import Iterable
from typing import cast

import redis

PUBLISHED_PREFIX = "ridehail:metrics:published:"
HANDLED = "ridehail:metrics:handled"
FAILED = "ridehail:metrics:failed"
SEPARATOR = " "  # worker and topic names have none (they are identifiers and channel names)


def published_counter(topic: str) -> str:
    """The counter of `topic`'s events that went out, in the topic's hash slot."""
    return f"{PUBLISHED_PREFIX}{{{topic}}}"


def handled_field(worker: str, topic: str) -> str:
    return f"{worker}{SEPARATOR}{topic}"


def count_handled(
    client: redis.Redis | redis.client.Pipeline, *, worker: str, topic: str, count: int, failed: bool = False
) -> None:
    """Add `count` events to the worker's handled (or failed) counter; on a pipeline, with its other commands."""
    if count:
        client.hincrby(FAILED if failed else HANDLED, handled_field(worker, topic), count)


def read_published(client: redis.Redis, topics: Iterable[str]) -> dict[str, int]:
    """Events published so far, per topic (those never published are left out), in one round trip."""
    names = list(topics)
    pipe = client.pipeline(transaction=False)  # a counter per slot: one GET each, not an MGET
    for name in names:
        pipe.get(published_counter(name))
    # Replies are bytes (connection.py's clients do not decode); redis-py types them bytes | str.
    counts = cast(list[bytes | None], pipe.execute())
    return {name: int(value) for name, value in zip(names, counts, strict=True) if value is not None}


def read_handled(client: redis.Redis, *, failed: bool = False) -> dict[tuple[str, str], int]:
    """Events handled (or failed) so far, per (worker, topic)."""
    counts = {}
    # Replies are bytes (connection.py's clients do not decode); redis-py types them bytes | str.
    counts_by_name = cast(dict[bytes, bytes], client.hgetall(FAILED if failed else HANDLED))
    for name, value in counts_by_name.items():
        worker, _, topic = name.decode().partition(SEPARATOR)
        counts[(worker, topic)] = int(value)
    return counts
