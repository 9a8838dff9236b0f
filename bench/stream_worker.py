"""Stream worker throughput: the rides worker's real handler vs a hand-written redis-py consumer
doing the same work, and vs a raw XREADGROUP + XACK loop doing none.

All three read the same pre-filled stream with a fresh consumer group, batches of 100, in the
same invocation, alternating. The project's side is `StreamRunner` exactly as
`run_subscriber rides --transport stream` runs it: validation, known-driver check,
versioned apply in Redis (pipelined Lua), one log line per event, acknowledgement.

    .venv/bin/python -m bench.stream_worker [--events 50000] [--rounds 3] [--full]
"""

import json
import logging
import threading
import time
import uuid

import redis

from bench.common import PrivateRedis, median, temp_sqlite_url
from bench.django_env import make_drivers, quiet_worker_logs, setup_django
from bench.flood import event
from bench.report import Progress, Section, Target, cli, markdown_table, progress

COMMAND = ".venv/bin/python -m bench.stream_worker"
BATCH = 100
DRIVERS = 1000


def fill_stream(client: redis.Redis, driver_ids: list[uuid.UUID], events: int) -> None:
    client.delete("stream:{driver-status-changed}")
    pipe = client.pipeline(transaction=False)
    for n in range(events):
        driver, version = driver_ids[n % len(driver_ids)], n // len(driver_ids) + 1
        pipe.xadd("stream:{driver-status-changed}", {"event": event(str(driver), version)})
        if n % 1000 == 999:
            pipe.execute()
    pipe.execute()


def raw_loop(client: redis.Redis, events: int) -> float:
    client.xgroup_create("stream:{driver-status-changed}", "raw", id="0")
    started, done = time.perf_counter(), 0
    while done < events:
        response = client.xreadgroup("raw", "raw-1", {"stream:{driver-status-changed}": ">"}, count=BATCH, block=1000)
        entries = response[0][1]
        client.xack("stream:{driver-status-changed}", "raw", *[entry_id for entry_id, _ in entries])
        done += len(entries)
    elapsed = time.perf_counter() - started
    client.xgroup_destroy("stream:{driver-status-changed}", "raw")
    return events / elapsed


def handwritten_loop(client: redis.Redis, events: int) -> float:
    """What a user would write instead of the project: the fair peer.

    Per batch: parse each entry, HSET its version and SADD/SREM the driver in one pipeline
    with the XACK, and a log line per event, as the worker logs. No validation, no version
    check, no known-driver check: the project does all three and should still keep up.
    """
    log = logging.getLogger("handwritten")
    client.delete("bench:pool", "bench:pool:versions")
    client.xgroup_create("stream:{driver-status-changed}", "handwritten", id="0")
    started, done = time.perf_counter(), 0
    while done < events:
        response = client.xreadgroup(
            "handwritten", "handwritten-1", {"stream:{driver-status-changed}": ">"}, count=BATCH, block=1000
        )
        entries = response[0][1]
        pipe = client.pipeline(transaction=False)
        for _, fields in entries:
            data = json.loads(fields[b"event"])
            driver = data["driverId"]
            pipe.hset("bench:pool:versions", driver, data["version"])
            if data["available"]:
                pipe.sadd("bench:pool", driver)
                log.info("driver %s added to matching pool", driver)
            else:
                pipe.srem("bench:pool", driver)
                log.info("driver %s removed from matching pool", driver)
        pipe.xack("stream:{driver-status-changed}", "handwritten", *[entry_id for entry_id, _ in entries])
        pipe.execute()
        done += len(entries)
    elapsed = time.perf_counter() - started
    client.xgroup_destroy("stream:{driver-status-changed}", "handwritten")
    return events / elapsed


def project_loop(client: redis.Redis, events: int) -> float:
    from ridehail.events.connection import worker_redis
    from ridehail.events.stream import StreamRunner
    from rides.subscribers import MATCHING_POOL, MatchingPoolHandler

    MATCHING_POOL.clear(client)
    stop = threading.Event()
    runner = StreamRunner(MatchingPoolHandler(worker_redis()), read_client=worker_redis(), stop=stop, batch_size=BATCH)
    runner.ensure_group()
    runner.handler.rebuild()  # as the worker starts: the known drivers loaded, the pool equal to the database
    started, done = time.perf_counter(), 0
    while done < events:
        done += runner.read_new()
    elapsed = time.perf_counter() - started
    client.xgroup_destroy("stream:{driver-status-changed}", "rides")
    return events / elapsed


def run(
    *, full: bool = False, events: int | None = None, rounds: int | None = None, report: Progress = progress
) -> Section:
    events = events or (200_000 if full else 50_000)
    rounds = rounds or 3
    with PrivateRedis() as private_redis:
        setup_django(temp_sqlite_url(), private_redis.url)
        quiet_worker_logs("rides", "handwritten")
        driver_ids = [driver.id for driver in make_drivers(DRIVERS)]
        loops = {"project": project_loop, "handwritten": handwritten_loop, "raw": raw_loop}
        results: dict[str, list[float]] = {name: [] for name in loops}
        for round_number in range(1, rounds + 1):
            for name, loop in loops.items():
                fill_stream(private_redis.client, driver_ids, events)
                results[name].append(loop(private_redis.client, events))
            report(
                f"stream worker: round {round_number}/{rounds}: "
                + ", ".join(f"{name} {rates[-1]:,.0f}/s" for name, rates in results.items())
            )
    project, handwritten, raw = (median(results[name]) for name in loops)
    to_handwritten, to_raw = project / handwritten, project / raw
    return Section(
        title="Stream worker throughput",
        command=f"{COMMAND} --events {events} --rounds {rounds}",
        table=markdown_table(
            ["path (batches of 100)", "events/s (median)", "÷ hand-written", "÷ raw", "target"],
            [
                [
                    "rides stream worker: validate, known-driver check, versioned apply (one Lua call per batch), "
                    "log, XACK",
                    f"{project:,.0f}",
                    f"{to_handwritten:.2f}",
                    f"{to_raw:.2f}",
                    "≥ 1.0 of hand-written; ≥ 0.3 of raw (≥ 0.5 earlier)",
                ],
                [
                    "hand-written redis-py consumer: json.loads, HSET + SADD/SREM pipelined with the XACK, log",
                    f"{handwritten:,.0f}",
                    "1.00",
                    f"{handwritten / raw:.2f}",
                    "",
                ],
                ["raw redis-py XREADGROUP + XACK, no work", f"{raw:,.0f}", "", "1.00", ""],
            ],
        ),
        notes=(
            "The hand-written consumer is what a user would write instead: it trusts every entry (no "
            "validation, no version check, no known-driver check). The raw loop does nothing per entry: the "
            "physical limit of one redis-py client. Log lines go to /dev/null, formatted as the worker's."
        ),
        targets=[
            Target("stream worker ÷ hand-written redis-py consumer", to_handwritten, "≥ 1.0", to_handwritten >= 1.0),
            Target("stream worker ÷ raw XREADGROUP + XACK", to_raw, "≥ 0.3 (≥ 0.5 earlier)", to_raw >= 0.5),
        ],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"events": int, "rounds": int})
