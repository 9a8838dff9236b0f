"""Driver positions: the ingest endpoint against a bare ASGI app, and the locations worker
against a raw redis-py subscriber doing GEOADD per message.

Ingest: `PUT /api/locations/driver-location` under the production web command
(`python -m ridehail.server`, what scripts/serve runs: uvicorn, one process per core) with
64 keep-alive connections (wrk) spread over 1,000 online drivers, every report answered by
the DRF view (the only implementation: token and user in one query, the rate limit in Redis,
one PUBLISH), against bench/bare_asgi.py under the same command and process count, alternating.
The per-driver rate limit is raised out of the way (it is still counted on every request).
The locations worker does not run during the ingest runs, so both servers have the two cores
to themselves and wrk.

Worker: a flood of position messages buffered by Redis, then drained by the locations
worker's positions loop (PubSubRunner + PositionsHandler, as `run_subscriber locations`
runs it) or by a raw subscriber doing json.loads + GEOADD per message.

    .venv/bin/python -m bench.positions [--seconds 8] [--rounds 2] [--events 50000] [--full]
    (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/ridehail_bench)
"""

import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime

from bench.common import PrivateRedis, free_port, median, production_env, python, wait_port, wait_ready
from bench.django_env import quiet_worker_logs, setup_django
from bench.put_status import fresh_database
from bench.report import Progress, Section, Target, cli, markdown_table, progress
from bench.subscriber import Drain
from bench.wrk import run_wrk

COMMAND = ".venv/bin/python -m bench.positions"
DRIVERS = 1000
CONNECTIONS = 64
BODY = '{"lat": 52.5200, "lng": 13.4050}'


def online_drivers_with_tokens(count: int) -> tuple[list[str], list[str]]:
    from rest_framework.authtoken.models import Token

    from users.models import Role, User

    prefix = uuid.uuid4().hex[:8]
    users = User.objects.bulk_create(
        [
            User(username=f"bench-loc-{prefix}-{n}", role=Role.DRIVER, is_available=True, password="!")
            for n in range(count)
        ]
    )
    tokens = Token.objects.bulk_create([Token(user=user, key=Token.generate_key()) for user in users])
    return [str(user.id) for user in users], [token.key for token in tokens]


def serve(app: str, env: dict[str, str]) -> tuple[object, int]:
    port = free_port()
    server = python("-m", "ridehail.server", app, env={**env, "PORT": str(port)}, stderr=open(os.devnull, "w"))
    wait_port(port)
    wait_ready(port)
    return server, port


def ingest_round(env: dict[str, str], tokens: list[str], seconds: float) -> dict[str, dict]:
    rows = {}
    cases = (
        ("project", "ridehail.asgi:application"),
        ("bare", "bench.bare_asgi:app"),
    )
    for name, app in cases:
        server, port = serve(app, env)
        try:
            result = run_wrk(
                f"http://127.0.0.1:{port}/api/locations/driver-location",
                seconds=seconds,
                connections=CONNECTIONS,
                method="PUT",
                body=BODY,
                tokens=tokens,
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
        rows[name] = result.__dict__
    return rows


def flood_positions(redis_url: str, drivers: list[str], total: int) -> None:
    import redis

    from locations.events import DRIVER_LOCATION, DriverLocationUpdated

    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline(transaction=False)
    start = datetime.now(UTC).timestamp() - 30
    for n in range(total):
        moment = datetime.fromtimestamp(start + n / 10_000, UTC)
        event = DriverLocationUpdated(uuid.UUID(drivers[n % len(drivers)]), 52 + n / 1e6, 13 + n / 1e6, moment)
        pipe.publish(DRIVER_LOCATION.channel, DRIVER_LOCATION.encode(event))
        if n % 500 == 499:
            pipe.execute()
    pipe.execute()


def worker_run(redis_url: str, drivers: list[str], total: int) -> Drain:
    from locations.subscribers import PositionsHandler
    from ridehail.events.connection import worker_redis
    from ridehail.events.pubsub import PubSubRunner

    drain = Drain(total, hold=True)

    class Counting(PositionsHandler):
        def parse_messages(self, raws: list[bytes]) -> list:
            drain.go.wait()
            return super().parse_messages(raws)

        def handle_batch(self, events: list) -> int:
            applied = super().handle_batch(events)
            drain.seen(len(events))
            return applied

    stop = threading.Event()
    runner = PubSubRunner(Counting(worker_redis()), read_client=worker_redis(), stop=stop)
    thread = threading.Thread(target=runner.run)
    thread.start()
    client = worker_redis()
    while client.pubsub_numsub("driver-location-updated")[0][1] < 1:
        time.sleep(0.05)
    time.sleep(0.5)  # its first prune
    flood_positions(redis_url, drivers, total)
    drain.release()
    drain.wait()
    stop.set()
    thread.join()
    return drain


def raw_run(redis_url: str, drivers: list[str], total: int) -> Drain:
    import redis

    drain = Drain(total, hold=True)
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("driver-location-updated")

    def loop() -> None:
        drain.go.wait()
        while drain.count < total and (not drain.last or time.perf_counter() - drain.last < 3):
            message = pubsub.get_message(timeout=0.5)
            if message:
                data = json.loads(message["data"])
                client.geoadd("raw:positions", (data["lng"], data["lat"], data["driverId"]))
                drain.seen(1)

    thread = threading.Thread(target=loop)
    thread.start()
    time.sleep(0.2)
    flood_positions(redis_url, drivers, total)
    drain.release()
    thread.join()
    pubsub.close()
    return drain


def run(
    *,
    full: bool = False,
    seconds: float | None = None,
    rounds: int | None = None,
    events: int | None = None,
    report: Progress = progress,
) -> Section:
    seconds = seconds or (20 if full else 8)
    rounds = rounds or (3 if full else 2)
    events = events or (200_000 if full else 50_000)
    database_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ridehail_bench")
    fresh_database(database_url)
    cores = os.cpu_count() or 1
    ingest: dict[str, list[dict]] = {"project": [], "bare": []}
    drains: dict[str, list[float]] = {"worker": [], "raw": []}
    with PrivateRedis("--client-output-buffer-limit", "pubsub", "0", "0", "0") as private_redis:
        setup_django(database_url, private_redis.url)
        quiet_worker_logs("locations")
        drivers, tokens = online_drivers_with_tokens(DRIVERS)
        env = production_env(
            database_url,
            private_redis.url,
            WEB_CONCURRENCY=str(cores),
            RIDEHAIL_THROTTLE_DRIVER_LOCATION="1000000/minute",
        )
        for round_number in range(1, rounds + 1):
            rows = ingest_round(env, tokens, seconds)
            for name, row in rows.items():
                ingest[name].append(row)
            report(
                f"positions: ingest round {round_number}/{rounds}: project {rows['project']['requests_per_s']:,.0f}/s "
                f"(p99 {rows['project']['p99_ms']:.1f} ms, {rows['project']['non_2xx']} non-2xx), "
                f"bare {rows['bare']['requests_per_s']:,.0f}/s"
            )
        for round_number in range(1, rounds + 1):
            worker, raw = worker_run(private_redis.url, drivers, events), raw_run(private_redis.url, drivers, events)
            drains["worker"].append(worker.rate)
            drains["raw"].append(raw.rate)
            report(f"positions: worker round {round_number}/{rounds}: {worker.rate:,.0f}/s, raw {raw.rate:,.0f}/s")
    summary = {name: {key: median([row[key] for row in rows]) for key in rows[0]} for name, rows in ingest.items()}
    ingest_ratio = summary["project"]["requests_per_s"] / summary["bare"]["requests_per_s"]
    worker_ratio = median(drains["worker"]) / median(drains["raw"])
    table = markdown_table(
        [
            f"PUT /api/locations/driver-location, {CONNECTIONS} connections, {cores} processes",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "non-2xx",
        ],
        [
            [
                label,
                f"{row['requests_per_s']:,.0f}",
                f"{row['p50_ms']:.1f}",
                f"{row['p99_ms']:.1f}",
                f"{row['non_2xx']:.0f}",
            ]
            for label, row in (
                ("project (scripts/serve): the DRF view", summary["project"]),
                ("bare ASGI app, same server", summary["bare"]),
            )
        ],
    )
    table += "\n\n" + markdown_table(
        ["applying positions (drain of a buffered flood)", "positions/s (median)"],
        [
            ["locations worker (PubSubRunner + PositionsHandler)", f"{median(drains['worker']):,.0f}"],
            ["raw redis-py subscriber: json.loads + GEOADD per message", f"{median(drains['raw']):,.0f}"],
        ],
    )
    table += (
        f"\n\nRatios: ingest ÷ bare = **{ingest_ratio:.3f}** (target ≥ 0.20); "
        f"worker ÷ raw = **{worker_ratio:.2f}** (target ≥ 0.5)."
    )
    return Section(
        title="Driver positions: ingest and the locations worker",
        command=f"{COMMAND} --seconds {seconds:g} --rounds {rounds} --events {events}",
        table=table,
        notes=(
            "Every report goes through Django and DRF (a token query, the request cycle, the serializer, one "
            "PUBLISH). The worker batches "
            "what Redis has buffered (one Lua call per batch, only the latest position per driver); the raw loop "
            "pays a round trip per message."
        ),
        targets=[
            Target("position ingest ÷ bare ASGI app", ingest_ratio, "≥ 0.20", ingest_ratio >= 0.20),
            Target("locations worker ÷ raw subscriber + GEOADD", worker_ratio, "≥ 0.5", worker_ratio >= 0.5),
        ],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"seconds": float, "rounds": int, "events": int})
