"""What `manage.py events` reports and repairs: per topic its channel, stream, groups and
dead letters; the outbox backlog (from the database, so it is known even with Redis down)."""

import json
from collections import defaultdict
from typing import Any, cast

import redis
from django.db.models import Min
from django.utils import timezone
from redis.commands.core import Script

from ridehail.events.connection import AnyPipeline, channel_subscribers, run_script
from ridehail.events.models import OutboxEvent
from ridehail.events.topic import STREAM_FIELD, Topic


def outbox_status() -> dict[str, Any]:
    backlog = OutboxEvent.objects.filter(published_at__isnull=True)
    oldest = backlog.aggregate(oldest=Min("created_at"))["oldest"]
    return {
        "pending": backlog.count(),
        "oldest_pending_age_s": round((timezone.now() - oldest).total_seconds(), 1) if oldest else None,
    }


def topic_status(client: redis.Redis, topic: Topic) -> dict[str, Any]:
    (_, subscribers), *_ = channel_subscribers(client, topic.channel)
    status: dict[str, Any] = {
        "name": topic.name,
        "durable": topic.durable,
        "channel": {"name": topic.channel, "subscribers": subscribers},
    }
    if topic.durable:
        status["stream"] = stream_status(client, topic.stream)
        status["dead_letters"] = {"name": topic.dead_letters, "length": client.xlen(topic.dead_letters)}
    return status


def stream_status(client: redis.Redis, stream: str) -> dict[str, Any]:
    if not client.exists(stream):
        return {"name": stream, "length": 0, "groups": []}
    groups = []
    for group in client.xinfo_groups(stream):
        consumers = client.xinfo_consumers(stream, group["name"])
        groups.append(
            {
                "name": _text(group["name"]),
                "pending": group["pending"],
                "lag": group.get("lag"),
                "last_delivered_id": _text(group["last-delivered-id"]),
                "consumers": [
                    {"name": _text(c["name"]), "pending": c["pending"], "idle_ms": c["idle"]} for c in consumers
                ],
            }
        )
    return {"name": stream, "length": client.xlen(stream), "groups": groups}


def dead_letters(client: redis.Redis, topic: Topic, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The topic's dead letters, oldest first: why each failed, where, how often, and the event."""
    letters = []
    for entry_id, fields in _entries(client, topic.dead_letters, count=limit):
        raw = fields.get(STREAM_FIELD.encode(), b"")
        letters.append(
            {
                "id": _text(entry_id),
                "topic": topic.name,
                "group": _text(fields.get(b"group", b"")),
                "entry_id": _text(fields.get(b"entry_id", b"")),
                "deliveries": int(fields.get(b"deliveries", b"0") or 0),
                "error": _text(fields.get(b"error", b"")),
                "event": _decode_event(raw),
            }
        )
    return letters


def replay_dead_letters(client: redis.Redis, topic: Topic) -> int:
    """Put each dead letter back on its stream once; returns how many events went back.

    Several groups may have dead-lettered the same entry: it goes back once, and all of its
    dead letters leave the dead-letter stream with it. Every group then sees the event again;
    the version check makes that harmless where it had been handled. Replays running at the
    same time (two operators, the admin's button) put each back once: see REPLAY_ENTRY.
    """
    by_entry: dict[bytes, list[bytes]] = defaultdict(list)
    for letter_id, fields in _entries(client, topic.dead_letters):
        by_entry[_origin(letter_id, fields)].append(letter_id)
    entries = list(by_entry.values())
    replayed = 0
    for start in range(0, len(entries), REPLAY_BATCH):
        pipe = client.pipeline(transaction=False)  # each script is atomic by itself
        for letter_ids in entries[start : start + REPLAY_BATCH]:
            _replay_entry(pipe, topic, letter_ids)
        replayed += sum(pipe.execute())
    return replayed


def replay_dead_letter(client: redis.Redis, topic: Topic, letter_id: str) -> bool:
    """Put one dead letter's event back on its stream once (the admin's "replay"); False if it is gone.

    Its entry's other dead letters (other groups that gave up on the same entry) leave with it,
    as in `replay_dead_letters`: replaying again, from any of them, adds nothing, and neither
    does a replay that a concurrent one beat to it.
    """
    found = _entries(client, topic.dead_letters, min=letter_id, max=letter_id)
    if not found:
        return False
    origin = _origin(*found[0])
    letter_ids = [
        other_id for other_id, fields in _entries(client, topic.dead_letters) if _origin(other_id, fields) == origin
    ]
    return bool(_replay_entry(client, topic, letter_ids))


# One entry's dead letters back to the stream, atomically, and only by the replay that removes
# them: whoever comes second (another `replay-dead`, the admin's button) finds them gone and adds
# nothing. KEYS: the stream and its dead letters (stream:{T} and stream:{T}:dead: one hash slot on
# a cluster). ARGV: the event's field name, then the entry's letter ids.
# Returns 1 if the event went back (a letter without an event is only removed).
REPLAY_ENTRY = Script(
    None,  # type: ignore[arg-type]  # no client of its own: every call passes one
    b"""
local field, ids, payload = ARGV[1], {}, nil
for i = 2, #ARGV do
    ids[#ids + 1] = ARGV[i]
    local found = redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i])
    if found[1] and not payload then
        local fields = found[1][2]
        for j = 1, #fields, 2 do
            if fields[j] == field and fields[j + 1] ~= '' then payload = fields[j + 1] end
        end
    end
end
if redis.call('XDEL', KEYS[2], unpack(ids)) == 0 or not payload then return 0 end
redis.call('XADD', KEYS[1], '*', field, payload)
return 1
""",
)
REPLAY_BATCH = 500  # entries per round trip


def _entries(
    client: redis.Redis, stream: str, *, min: str = "-", max: str = "+", count: int | None = None
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XRANGE as this project's clients answer it: bytes (connection.py's clients do not decode),
    where redis-py's types allow str and None too."""
    return cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(stream, min=min, max=max, count=count))


def _replay_entry(client: redis.Redis | AnyPipeline, topic: Topic, letter_ids: list[bytes]) -> int:
    """Run REPLAY_ENTRY for one entry's dead letters (on a client or a pipeline); 1 if its event went back."""
    return run_script(client, REPLAY_ENTRY, keys=[topic.stream, topic.dead_letters], args=[STREAM_FIELD, *letter_ids])


def _origin(letter_id: bytes, fields: dict[bytes, bytes]) -> bytes:
    """The stream entry a dead letter came from (the letter itself if it does not say)."""
    return fields.get(b"entry_id") or letter_id


def _decode_event(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw.decode(errors="replace")


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
