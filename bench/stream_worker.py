"""Stream worker throughput: the rides worker's real handler vs a raw XREADGROUP + XACK loop.

Both read the same pre-filled stream with a fresh consumer group, batches of 100, in the
same invocation, alternating. The project's side is `StreamRunner` exactly as
`run_subscriber rides --transport stream` runs it: validation, known-driver check,
versioned apply in Redis (pipelined Lua), one log line per event, acknowledgement.

    .venv/bin/python -m bench.stream_worker [--events 100000] [--rounds 3]
"""

import argparse
import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime

import redis

from bench.common import PrivateRedis, median, temp_sqlite_url
from bench.django_env import setup_django

BATCH = 100
DRIVERS = 1000


def fill_stream(client: redis.Redis, driver_ids: list[uuid.UUID], events: int) -> None:
    client.delete("stream:driver-status-changed")
    pipe = client.pipeline(transaction=False)
    for n in range(events):
        driver, version = driver_ids[n % len(driver_ids)], n // len(driver_ids) + 1
        event = {
            "driverId": str(driver),
            "available": version % 2 == 1,
            "eventId": str(uuid.uuid4()),
            "version": version,
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        pipe.xadd("stream:driver-status-changed", {"event": json.dumps(event, separators=(",", ":"))})
        if n % 1000 == 999:
            pipe.execute()
    pipe.execute()


def raw_loop(client: redis.Redis, events: int) -> float:
    client.xgroup_create("stream:driver-status-changed", "raw", id="0")
    started, done = time.perf_counter(), 0
    while done < events:
        response = client.xreadgroup("raw", "raw-1", {"stream:driver-status-changed": ">"}, count=BATCH, block=1000)
        entries = response[0][1]
        client.xack("stream:driver-status-changed", "raw", *[entry_id for entry_id, _ in entries])
        done += len(entries)
    elapsed = time.perf_counter() - started
    client.xgroup_destroy("stream:driver-status-changed", "raw")
    return events / elapsed


def project_loop(client: redis.Redis, events: int) -> float:
    from ridehail.events.connection import worker_redis
    from ridehail.events.stream import StreamRunner
    from rides.subscribers import MATCHING_POOL, MatchingPoolSubscriber

    MATCHING_POOL.clear(client)
    stop = threading.Event()
    runner = StreamRunner(
        MatchingPoolSubscriber(worker_redis()), read_client=worker_redis(), stop=stop, batch_size=BATCH
    )
    runner.ensure_group()
    runner.subscriber.load_known_drivers()
    started, done = time.perf_counter(), 0
    while done < events:
        done += runner.read_new()
    elapsed = time.perf_counter() - started
    client.xgroup_destroy("stream:driver-status-changed", "rides")
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with PrivateRedis() as private_redis:
        setup_django(temp_sqlite_url(), private_redis.url)
        # The worker logs one line per event, as in production; here the lines go to /dev/null.
        handler = logging.StreamHandler(open("/dev/null", "w"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        logging.getLogger("rides").handlers = [handler]
        logging.getLogger("rides").propagate = False
        from ridehail.events.runner import lean_log_records

        lean_log_records()  # as run_subscriber does
        from users.models import Role, User

        drivers = User.objects.bulk_create(
            [User(username=f"bench-{n}", role=Role.DRIVER, password="!") for n in range(DRIVERS)]
        )
        driver_ids = [driver.id for driver in drivers]
        results: dict[str, list[float]] = {"project": [], "raw": []}
        for round_number in range(1, args.rounds + 1):
            for name, loop in (("project", project_loop), ("raw", raw_loop)):
                fill_stream(private_redis.client, driver_ids, args.events)
                rate = loop(private_redis.client, args.events)
                results[name].append(rate)
                print(f"[round {round_number}] {name}: {rate:,.0f} events/s", flush=True)
    project, raw = median(results["project"]), median(results["raw"])
    print("\n| path | events/s (median) | ratio (project ÷ raw) | target |")
    print("|---|---|---|---|")
    print(f"| rides stream worker (handler, log, XACK) | {project:,.0f} | {project / raw:.2f} | ≥ 0.5 |")
    print(f"| raw redis-py XREADGROUP + XACK | {raw:,.0f} | 1.00 | |")


if __name__ == "__main__":
    main()
