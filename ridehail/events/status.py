"""What `manage.py events` reports and repairs: per topic its channel, stream, groups and
dead letters; the outbox backlog (from the database, so it is known even with Redis down)."""

import json
from collections import defaultdict
from typing import Any

import redis
from django.db.models import Min
from django.utils import timezone

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
    (_, subscribers), *_ = client.pubsub_numsub(topic.channel)
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
    for entry_id, fields in client.xrange(topic.dead_letters, count=limit):
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
    dead letters leave the dead-letter stream in the same transaction. Every group then sees
    the event again; the version check makes that harmless where it had been handled.
    """
    by_entry: dict[bytes, list[tuple[bytes, bytes]]] = defaultdict(list)
    for letter_id, fields in client.xrange(topic.dead_letters):
        by_entry[_origin(letter_id, fields)].append((letter_id, fields.get(STREAM_FIELD.encode(), b"")))
    return sum(_replay_entry(client, topic, letters) for letters in by_entry.values())


def replay_dead_letter(client: redis.Redis, topic: Topic, letter_id: str) -> bool:
    """Put one dead letter's event back on its stream once (the admin's "replay"); False if it is gone.

    Its entry's other dead letters (other groups that gave up on the same entry) leave with it,
    as in `replay_dead_letters`: replaying again, from any of them, adds nothing. WATCH makes two
    operators pressing "replay" at once put it back once: the second finds it gone.
    """
    while True:
        with client.pipeline(transaction=True) as pipe:
            pipe.watch(topic.dead_letters)
            found = pipe.xrange(topic.dead_letters, min=letter_id, max=letter_id)
            if not found:
                return False
            origin = _origin(*found[0])
            letters = [
                (other_id, fields.get(STREAM_FIELD.encode(), b""))
                for other_id, fields in pipe.xrange(topic.dead_letters)
                if _origin(other_id, fields) == origin
            ]
            payload = next((payload for _, payload in letters if payload), b"")
            pipe.multi()
            if payload:
                pipe.xadd(topic.stream, {STREAM_FIELD: payload})
            pipe.xdel(topic.dead_letters, *[other_id for other_id, _ in letters])
            try:
                pipe.execute()
            except redis.WatchError:
                continue  # the dead letters changed meanwhile: look again
            return bool(payload)


def _origin(letter_id: bytes, fields: dict[bytes, bytes]) -> bytes:
    """The stream entry a dead letter came from (the letter itself if it does not say)."""
    return fields.get(b"entry_id") or letter_id


def _replay_entry(client: redis.Redis, topic: Topic, letters: list[tuple[bytes, bytes]]) -> int:
    """XADD the entry's event back and XDEL all its dead letters, atomically; 1 if an event went back."""
    payload = next((payload for _, payload in letters if payload), b"")
    pipe = client.pipeline(transaction=True)
    if payload:
        pipe.xadd(topic.stream, {STREAM_FIELD: payload})
    pipe.xdel(topic.dead_letters, *[letter_id for letter_id, _ in letters])
    pipe.execute()
    return 1 if payload else 0


def _decode_event(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw.decode(errors="replace")


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
