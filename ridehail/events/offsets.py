"""Replay from an offset: move a consumer group's cursor back on its topic's stream.

Kafka lets a consumer group start again from any offset; a Redis stream can too (`XGROUP
SETID`), for as far back as the stream still holds. The group's workers then receive again
every entry after the cursor and apply it; handlers are idempotent (versions), so the state is
unchanged unless it had drifted. The cursor only ever moves back: moving it forward would skip
entries the group has not handled.

`from` is `start` (everything the stream holds), an entry id (`1718000000000-3`, or just the
milliseconds) or an RFC 3339 time (the first entry at or after it): replay includes it.
"""

import re
from dataclasses import dataclass

import redis

from ridehail.events import wire
from ridehail.events.stream import previous_id, stream_id
from ridehail.events.topic import Topic

START = "start"
_ENTRY_ID = re.compile(r"\d+(-\d+)?")


class ReplayError(ValueError):
    """The replay cannot be done as asked: the message names what is wrong; nothing was changed."""


@dataclass(frozen=True)
class Replayed:
    group: str
    cursor: str  # the group's last-delivered id now: every entry after it comes again
    created: bool  # the group did not exist and was created (only with `start`)
    lag: int | None  # entries the group will now read (None: Redis cannot tell until it catches up)


def parse_from(value: str) -> tuple[int, int]:
    """The first entry id to process again: (0, 0) for `start`; a time is `<ms>-0`."""
    if value == START:
        return (0, 0)
    if _ENTRY_ID.fullmatch(value):
        return stream_id(value)
    try:
        moment = wire.timestamp_field({"from": value}, "from")
    except wire.InvalidEvent:
        raise ReplayError(
            f"--from {value!r} is not `start`, an entry id (like 1718000000000-0) or an RFC 3339 time "
            "with a time zone (like 2026-02-01T12:00:00Z)"
        ) from None
    return (int(moment.timestamp() * 1000), 0)


def replay(client: redis.Redis, topic: Topic, group: str, start: str) -> Replayed:
    """Move `group` on `topic`'s stream back so it processes again everything from `start` on."""
    if not topic.durable:
        raise ReplayError(f"topic {topic.name!r} is live only: it has no stream to replay")
    first = parse_from(start)
    info = _stream_info(client, topic)
    current = _group(client, topic, group)
    if current is None:
        if start != START:
            raise ReplayError(
                f"no consumer group {group!r} on {topic.stream}; `--from start` creates it, "
                f"groups there: {', '.join(_group_names(client, topic)) or 'none'}"
            )
        client.xgroup_create(topic.stream, group, id="0", mkstream=True)
        return Replayed(group, "0-0", created=True, lag=_lag(client, topic, group))
    cursor = _cursor_before(first, info)
    if cursor > stream_id(current["last-delivered-id"]):
        raise ReplayError(
            f"--from {start!r} is after group {group!r}'s position {current['last-delivered-id'].decode()}: "
            "a replay only moves back (forward would skip entries it has not handled)"
        )
    held_from = _first_entry(info)
    if held_from is None or stream_id(held_from) >= first:
        # Everything the stream holds comes again; what was trimmed was read long ago: counted as
        # read, so the worker does not take the replay for a gap and `events status` shows the lag.
        # (Redis estimates the same count itself, but not once an entry was deleted inside the stream.)
        client.xgroup_setid(topic.stream, group, _format(cursor), entries_read=info["entries-added"] - info["length"])
    else:
        client.xgroup_setid(topic.stream, group, _format(cursor))  # Redis counts again as the group reads
    return Replayed(group, _format(cursor), created=False, lag=_lag(client, topic, group))


def _cursor_before(first: tuple[int, int], info: dict) -> tuple[int, int]:
    """Just before `first`, or before the stream's first entry if it holds nothing that old."""
    held_from = _first_entry(info)
    if held_from is not None and stream_id(held_from) >= first:
        return previous_id(stream_id(held_from))
    return previous_id(first) if first != (0, 0) else (0, 0)


def _first_entry(info: dict) -> bytes | None:
    entry = info.get("first-entry")
    return entry[0] if entry else None


def _stream_info(client: redis.Redis, topic: Topic) -> dict:
    try:
        return client.xinfo_stream(topic.stream)
    except redis.ResponseError:
        # No such key: nothing published yet. A group can still be created (`start`) for later.
        return {"length": 0, "entries-added": 0, "first-entry": None}


def _group(client: redis.Redis, topic: Topic, group: str) -> dict | None:
    try:
        groups = client.xinfo_groups(topic.stream)
    except redis.ResponseError:
        return None  # no stream, so no group either
    return next((info for info in groups if info["name"].decode() == group), None)


def _group_names(client: redis.Redis, topic: Topic) -> list[str]:
    try:
        return [info["name"].decode() for info in client.xinfo_groups(topic.stream)]
    except redis.ResponseError:
        return []


def _lag(client: redis.Redis, topic: Topic, group: str) -> int | None:
    info = _group(client, topic, group)
    return info.get("lag") if info else None


def _format(entry_id: tuple[int, int]) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"
