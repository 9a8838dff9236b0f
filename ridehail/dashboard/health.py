"""The workers' health as the dashboard shows it: the same data as `manage.py events status`,
condensed into one frame that each web process computes every few seconds and shares."""

from datetime import UTC, datetime
from typing import Any

import redis

from ridehail.events.status import outbox_status, topic_status
from ridehail.events.topic import declared_topics
from ridehail.events.wire import format_timestamp

HEALTH_SECONDS = 5.0


def health_frame(client: redis.Redis) -> dict[str, Any]:
    groups, dead = [], {}
    for topic in declared_topics():
        if not topic.durable:
            continue
        status = topic_status(client, topic)
        dead[topic.name] = status["dead_letters"]["length"]
        for group in status["stream"]["groups"]:
            groups.append(
                {
                    "topic": topic.name,
                    "group": group["name"],
                    "lag": group["lag"],
                    "pending": group["pending"],
                    "consumers": len(group["consumers"]),
                }
            )
    outbox = outbox_status()
    return {
        "type": "health",
        "groups": groups,
        "deadLetters": dead,
        "outbox": {"pending": outbox["pending"], "oldestAgeSeconds": outbox["oldest_pending_age_s"]},
        "timestamp": format_timestamp(datetime.now(UTC)),
    }
