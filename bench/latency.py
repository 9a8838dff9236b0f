"""Commit → worker applied, at 200 events/s: the project's path against raw redis-py Pub/Sub
one-way latency at the same rate, in the same run.

Project: this process changes driver statuses through the service (`set_driver_availability`,
SQLite, outbox, publish after commit) every 5 ms; the rides worker (PubSubRunner), in a
process of its own, records when each version is applied in Redis. The clock starts just
once the transaction has committed. Raw: this process PUBLISHes every 5 ms and a
redis-py subscriber process records each arrival.

    .venv/bin/python -m bench.latency [--seconds 10] [--rounds 3]
"""

import json
import signal
import subprocess
import time
from collections.abc import Iterator

import redis

from bench.common import PrivateRedis, median, percentile, python, temp_sqlite_url
from bench.django_env import make_drivers, setup_django
from bench.report import Progress, Section, Target, cli, markdown_table, progress

COMMAND = ".venv/bin/python -m bench.latency"
RATE = 200


def start_receiver(
    mode: str, database_url: str, redis_url: str, *, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """The receiver process, once it has subscribed. `env`: its environment's additions (REDIS_CLUSTER);
    this process's settings must say the same, as the subscriber count is asked the way they say."""
    from ridehail.events.connection import channel_subscribers, redis_from_url

    receiver = python(
        "-m", "bench.latency_worker", mode, database_url, redis_url, env=env, stdout=subprocess.PIPE, text=True
    )
    channel = "latency-anchor" if mode == "raw" else "driver-status-changed"
    client = redis_from_url(redis_url)
    deadline = time.monotonic() + 120  # a loaded two-core machine starts Python slowly
    while channel_subscribers(client, channel)[0][1] < 1:
        if receiver.poll() is not None or time.monotonic() > deadline:
            receiver.kill()
            raise RuntimeError(f"the {mode} receiver did not subscribe to {channel} (exit code {receiver.poll()})")
        time.sleep(0.05)
    time.sleep(1.0)  # the project's worker rebuilds from the database after subscribing
    return receiver


def arrivals(receiver: subprocess.Popen) -> dict[str, float]:
    time.sleep(0.5)
    receiver.send_signal(signal.SIGTERM)
    return json.loads(receiver.communicate(timeout=30)[0])


def paced(seconds: float) -> Iterator[int]:
    started = time.monotonic()
    for n in range(int(seconds * RATE)):
        delay = started + n / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield n


def project_latencies(
    database_url: str, redis_url: str, seconds: float, *, env: dict[str, str] | None = None
) -> list[float]:
    """Commit → applied of each status change; the publisher's Redis is the one Django's settings name."""
    from django.db import transaction

    from users.services import set_driver_availability

    drivers = make_drivers(50)
    receiver = start_receiver("project", database_url, redis_url, env=env)
    versions = dict.fromkeys((str(driver.id) for driver in drivers), 0)
    committed: dict[str, float] = {}
    for n in paced(seconds):
        driver = drivers[n % len(drivers)]
        versions[str(driver.id)] += 1
        key = f"{driver.id}:{versions[str(driver.id)]}"
        with transaction.atomic():
            # Registered first, so it runs first after COMMIT: the clock starts when the change is durable.
            transaction.on_commit(lambda key=key: committed.__setitem__(key, time.perf_counter()))
            set_driver_availability(driver_id=driver.id)
    applied = arrivals(receiver)
    return [applied[key] - started for key, started in committed.items() if key in applied]


def raw_latencies(redis_url: str, seconds: float) -> list[float]:
    client = redis.Redis.from_url(redis_url)
    receiver = start_receiver("raw", "", redis_url)
    sent: dict[str, float] = {}
    for n in paced(seconds):
        sent[str(n)] = time.perf_counter()
        client.publish("latency-anchor", str(n))
    received = arrivals(receiver)
    return [received[key] - started for key, started in sent.items() if key in received]


def run(
    *, full: bool = False, seconds: float | None = None, rounds: int | None = None, report: Progress = progress
) -> Section:
    seconds = seconds or (30 if full else 10)
    rounds = rounds or 3
    results: dict[str, list[tuple[float, float]]] = {"project": [], "raw": []}
    with PrivateRedis() as private_redis:
        database_url = temp_sqlite_url()
        setup_django(database_url, private_redis.url)
        for round_number in range(1, rounds + 1):
            for name, measure in (
                ("project", lambda: project_latencies(database_url, private_redis.url, seconds)),
                ("raw", lambda: raw_latencies(private_redis.url, seconds)),
            ):
                latencies = measure()
                results[name].append((percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000))
                report(
                    f"latency: round {round_number}/{rounds} {name}: p50 {results[name][-1][0]:.2f} ms, "
                    f"p99 {results[name][-1][1]:.2f} ms ({len(latencies)} events)"
                )
    summary = {name: (median([r[0] for r in rows]), median([r[1] for r in rows])) for name, rows in results.items()}
    ratio = summary["project"][1] / summary["raw"][1]
    table = markdown_table(
        ["path, at 200 events/s", "p50 ms", "p99 ms", "p99 ratio", "target"],
        [
            [
                "commit → rides worker applied (outbox, publish, parse, apply, log)",
                f"{summary['project'][0]:.2f}",
                f"{summary['project'][1]:.2f}",
                f"{ratio:.2f}",
                "≤ 3",
            ],
            ["raw redis-py PUBLISH → subscriber", f"{summary['raw'][0]:.2f}", f"{summary['raw'][1]:.2f}", "1.00", ""],
        ],
    )
    return Section(
        title="Latency: commit to worker applied",
        command=f"{COMMAND} --seconds {seconds:g} --rounds {rounds}",
        table=table,
        notes=(
            "Each receiver is a process of its own (bench/latency_worker.py): the project's is the rides "
            "PubSubRunner with its real handler; the anchor's a bare redis-py subscriber. Both clocks are "
            "CLOCK_MONOTONIC. The project's clock starts once the change has committed (SQLite here), so it "
            "includes the on-commit publish: the publish script and marking the row."
        ),
        targets=[Target("commit → applied p99 ÷ raw Pub/Sub p99", ratio, "≤ 3", ratio <= 3)],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"seconds": float, "rounds": int})
