"""What `manage.py events status` reports: the channel, the stream, its groups, the outbox."""

from typing import Any

import redis
from django.db.models import Min
from django.utils import timezone

from ridehail.events.event import CHANNEL, DEAD_LETTER_STREAM, STREAM, STREAM_FIELD
from ridehail.events.models import OutboxEvent


def events_status(client: redis.Redis) -> dict[str, Any]:
    (_, subscribers), *_ = client.pubsub_numsub(CHANNEL)
    stream_length = client.xlen(STREAM)
    groups = []
    for group in client.xinfo_groups(STREAM) if stream_length or client.exists(STREAM) else []:
        consumers = client.xinfo_consumers(STREAM, group["name"])
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
    backlog = OutboxEvent.objects.filter(published_at__isnull=True)
    oldest = backlog.aggregate(oldest=Min("created_at"))["oldest"]
    return {
        "channel": {"name": CHANNEL, "subscribers": subscribers},
        "stream": {"name": STREAM, "length": stream_length, "groups": groups},
        "dead_letters": {"name": DEAD_LETTER_STREAM, "length": client.xlen(DEAD_LETTER_STREAM)},
        "outbox": {
            "pending": backlog.count(),
            "oldest_pending_age_s": round((timezone.now() - oldest).total_seconds(), 1) if oldest else None,
        },
    }


def replay_dead_letters(client: redis.Redis, *, limit: int | None = None) -> int:
    """Append dead letters back onto the stream for another try; returns how many moved.

    Every group sees a replayed event again; the version check makes that harmless for
    the groups that had handled it.
    """
    moved = 0
    for entry_id, fields in client.xrange(DEAD_LETTER_STREAM, count=limit):
        payload = fields.get(STREAM_FIELD.encode(), b"")
        pipe = client.pipeline(transaction=True)
        if payload:
            pipe.xadd(STREAM, {STREAM_FIELD: payload})
        pipe.xdel(DEAD_LETTER_STREAM, entry_id)
        pipe.execute()
        moved += 1 if payload else 0
    return moved


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
