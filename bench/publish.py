"""Publish path: the project's publish (encode + the publish-once script: SET NX marker,
XADD to the stream, PUBLISH on the channel, one round trip) against a raw redis-py PUBLISH
of the same bytes on one connection, alternating rounds on a private Redis.

    .venv/bin/python -m bench.publish [--events 20000] [--rounds 3]
"""

import time
import uuid
from datetime import UTC, datetime

import redis

from bench.common import PrivateRedis, median, temp_sqlite_url
from bench.django_env import setup_django
from bench.report import Progress, Section, Target, cli, markdown_table, progress

COMMAND = ".venv/bin/python -m bench.publish"


def status_events(count: int) -> list:
    from users.events import DriverStatusChanged

    driver = uuid.uuid4()
    return [DriverStatusChanged(driver, n % 2 == 1, datetime.now(UTC), uuid.uuid4(), n + 1) for n in range(count)]


def project_rate(client: redis.Redis, events: list) -> float:
    from ridehail.events.publisher import publish_once
    from users.events import DRIVER_STATUS

    started = time.perf_counter()
    for event in events:
        publish_once(client, topic=DRIVER_STATUS, key=event.key, version=event.version, payload=event.to_json())
    return len(events) / (time.perf_counter() - started)


def raw_rate(client: redis.Redis, payloads: list[bytes]) -> float:
    started = time.perf_counter()
    for payload in payloads:
        client.publish("driver-status-changed", payload)
    return len(payloads) / (time.perf_counter() - started)


def run(
    *, full: bool = False, events: int | None = None, rounds: int | None = None, report: Progress = progress
) -> Section:
    events = events or (100_000 if full else 20_000)
    rounds = rounds or (5 if full else 3)
    with PrivateRedis() as private_redis:
        setup_django(temp_sqlite_url(), private_redis.url)
        from ridehail.events.connection import worker_redis

        client = worker_redis()
        results: dict[str, list[float]] = {"project": [], "raw": []}
        for round_number in range(1, rounds + 1):
            batch = status_events(events)
            client.flushall()
            results["project"].append(project_rate(client, batch))
            results["raw"].append(raw_rate(client, [event.to_json() for event in batch]))
            report(
                f"publish: round {round_number}/{rounds}: project {results['project'][-1]:,.0f}/s, "
                f"raw {results['raw'][-1]:,.0f}/s"
            )
    project, raw = median(results["project"]), median(results["raw"])
    ratio = project / raw
    table = markdown_table(
        ["path (one connection, sequential)", "events/s (median)", "ratio", "target"],
        [
            ["project: encode + SET NX + XADD + PUBLISH (one script)", f"{project:,.0f}", f"{ratio:.2f}", "≥ 0.8"],
            ["raw redis-py PUBLISH of the same bytes", f"{raw:,.0f}", "1.00", ""],
        ],
    )
    return Section(
        title="Publish path",
        command=f"{COMMAND} --events {events} --rounds {rounds}",
        table=table,
        notes=(
            "The project's publish does three writes (the once-only marker, the stream entry, the "
            "channel message) where the anchor does one; both are one round trip, which dominates."
        ),
        targets=[Target("publish path ÷ raw PUBLISH", ratio, "≥ 0.8", ratio >= 0.8)],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"events": int, "rounds": int})
