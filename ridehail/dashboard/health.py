"""The workers' health as the dashboard shows it: the same data as `manage.py events status`,
condensed into one frame that each web process computes every few seconds and shares.

`workers` names every declared worker with its live processes (their heartbeats,
ridehail/events/heartbeat.py): a worker with none is not running, whatever its transport. A rides
process also says how it matches and what its last batch did (`matcher`)."""

from datetime import UTC, datetime
from typing import Any

import redis

from ridehail.events.heartbeat import alive_workers
from ridehail.events.status import outbox_status, topic_status
from ridehail.events.topic import declared_topics
from ridehail.events.wire import format_timestamp
from ridehail.events.worker import declared_workers

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
        "workers": worker_processes(client),
        "groups": groups,
        "deadLetters": dead,
        "outbox": {"pending": outbox["pending"], "oldestAgeSeconds": outbox["oldest_pending_age_s"]},
        "timestamp": format_timestamp(datetime.now(UTC)),
    }


def worker_processes(client: redis.Redis) -> list[dict[str, Any]]:
    """Each declared worker and its live processes ([] when it is not running)."""
    alive = alive_workers(client)
    return [
        {
            "name": name,
            "processes": [
                {
                    "transport": process["transport"],
                    "host": process["host"],
                    "pid": process["pid"],
                    "lastSeenSeconds": process["last_seen_s"],
                    "matcher": matcher_of(process),
                }
                for process in alive
                if process["name"] == name
            ],
        }
        for name in declared_workers()
    ]


def matcher_of(process: dict[str, Any]) -> dict[str, Any] | None:
    """A rides process's matching, as its heartbeat reports it (rides/subscribers.py); None for others.

    `windowSeconds` 0 is greedy (no batches); `lastBatch` is None until the first batch.
    """
    matcher = process.get("matcher")
    if not isinstance(matcher, dict):
        return None
    last = matcher.get("last_batch")
    return {
        "windowSeconds": matcher.get("window_s"),
        "lastBatch": {
            "size": last.get("size"),
            "assigned": last.get("assigned"),
            "solveMs": last.get("solve_ms"),
            "at": last.get("at"),
        }
        if isinstance(last, dict)
        else None,
    }
