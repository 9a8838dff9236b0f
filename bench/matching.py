"""Matching: how fast a request becomes an assignment, and how many one rides worker assigns.

Latency: riders request rides at 50/s (the service, committed as the API commits it) with 500
drivers online and placed around the pickups; a real `run_subscriber rides` process matches
them; a helper thread completes assigned rides after ~0.5 s so drivers come free again.
Latency is `assigned_at - requested_at` as both processes wrote them. Anchor: the raw round
trip of one XADD → XREADGROUP → XACK at the same rate.

Latency is measured with RIDEHAIL_MATCH_WINDOW_SECONDS=0 (greedy, at once): a window adds up
to its length on purpose.

Throughput: 2,000 requested rides wait on the stream with 5,000 drivers in the index; one
rides worker's matcher (StreamRunner + RideMatcher, in this process, the default window)
drains them: batches of up to 500, one GEOSEARCH per request, one database check per batch,
one transaction per batch. Anchor: the same database transaction (ride row locked
SKIP LOCKED, driver row locked, update, outbox insert, commit), raw psycopg, one connection.

Two matchers: two `run_subscriber rides` processes in one consumer group, 2,000 requests
(--rides) for 1,000 drivers packed in a 3 km square, nothing completed: a driver with two
rides, ever, is a double assignment, counted from the database and from the workers' lines
(which also give each batch's size and solve time, measured in a real worker).

    .venv/bin/python -m bench.matching [--seconds 10] [--rides 2000] [--full]
    (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/ridehail_bench)
"""

import json
import os
import random
import subprocess
import threading
import time
import uuid
from typing import TYPE_CHECKING

import psycopg
import redis

from bench.common import PrivateRedis, percentile, production_env, python, wait_until
from bench.django_env import quiet_worker_logs, setup_django
from bench.put_status import fresh_database
from bench.report import Progress, Section, Target, cli, markdown_table, progress

if TYPE_CHECKING:
    from ridehail.events.stream import StreamRunner

COMMAND = ".venv/bin/python -m bench.matching"
CENTER = (52.52, 13.405)
RATE = 50.0


def spread(n: int, *, km: float) -> tuple[float, float]:
    """A point within a `km` square around the centre (~0.009° of latitude per km)."""
    rng = random.Random(n)
    return CENTER[0] + rng.uniform(-km, km) * 0.009, CENTER[1] + rng.uniform(-km, km) * 0.0147


def place_drivers(count: int, *, km: float) -> list:
    """Drivers online in the database, in the matching pool and the tracked set, with fresh positions."""
    from django.utils import timezone

    from locations.positions import TRACKED_DRIVERS, Position, apply_positions
    from ridehail.events.connection import shared_redis
    from rides.pool import MATCHING_POOL
    from users.models import Role, User
    from users.selectors import DriverState

    prefix = uuid.uuid4().hex[:6]
    drivers = User.objects.bulk_create(
        [
            User(username=f"bench-m-{prefix}-{n}", role=Role.DRIVER, is_available=True, password="!")
            for n in range(count)
        ]
    )
    client = shared_redis()
    MATCHING_POOL.merge(client, [DriverState(d.id, True, 1) for d in drivers])
    TRACKED_DRIVERS.merge(client, [DriverState(d.id, True, 1) for d in drivers])
    now = timezone.now()
    apply_positions(client, [Position(d.id, *spread(n, km=km), now) for n, d in enumerate(drivers)])
    return drivers


def make_riders(count: int) -> list:
    from users.models import User

    prefix = uuid.uuid4().hex[:6]
    return User.objects.bulk_create([User(username=f"bench-r-{prefix}-{n}", password="!") for n in range(count)])


def keep_positions_fresh(drivers: list, stop: threading.Event) -> None:
    from django.utils import timezone

    from locations.positions import Position, apply_positions
    from ridehail.events.connection import shared_redis

    while not stop.wait(10):
        now = timezone.now()
        apply_positions(shared_redis(), [Position(d.id, *spread(n, km=3), now) for n, d in enumerate(drivers)])


def complete_assigned(stop: threading.Event) -> None:
    from django.db import connections

    from rides.models import Ride, RideStatus
    from rides.services import complete_ride

    while not stop.wait(0.25):
        for ride_id in Ride.objects.filter(status=RideStatus.ASSIGNED).values_list("id", flat=True):
            complete_ride(ride_id=ride_id)
    connections.close_all()


def latency_run(redis_url: str, database_url: str, seconds: float) -> list[float]:
    from rides.events import Point
    from rides.models import Ride
    from rides.services import Trip, request_ride

    drivers = place_drivers(500, km=3)
    riders = make_riders(int(RATE * seconds) + 10)
    # Window 0: the path's own latency (a window adds up to its length by design; BENCHMARKS.md's
    # matching quality section measures what the window buys).
    env = {**production_env(database_url, redis_url), "RIDEHAIL_MATCH_WINDOW_SECONDS": "0"}
    quiet = open(os.devnull, "w")
    worker = python("manage.py", "run_subscriber", "rides", env=env, stdout=quiet, stderr=quiet)
    stop = threading.Event()
    helpers = [
        threading.Thread(target=complete_assigned, args=(stop,)),
        threading.Thread(target=keep_positions_fresh, args=(drivers, stop)),
    ]
    try:
        wait_until(lambda: reading(redis_url), timeout=120, what="the rides worker reading the ride stream")
        for helper in helpers:
            helper.start()
        started, ride_ids = time.monotonic(), []
        for n, rider in enumerate(riders[: int(RATE * seconds)]):
            delay = started + n / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            trip = Trip(Point(*spread(n, km=2)), Point(*spread(n + 1, km=4)))
            ride_ids.append(request_ride(rider_id=rider.id, trip=trip).id)
        deadline = time.monotonic() + 10
        while Ride.objects.filter(pk__in=ride_ids, assigned_at__isnull=True).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for helper in helpers:
            if helper.is_alive():
                helper.join()
        worker.terminate()
        worker.wait(timeout=30)
    rows = Ride.objects.filter(pk__in=ride_ids, assigned_at__isnull=False).values_list("requested_at", "assigned_at")
    return [(assigned - requested).total_seconds() for requested, assigned in rows]


def reading(redis_url: str, *, readers: int = 1) -> bool:
    """The workers are up: subscribed to driver status (Pub/Sub, the default) and blocked reading the ride stream."""
    client = redis.Redis.from_url(redis_url)
    try:
        [(_, subscribers)] = client.pubsub_numsub("driver-status-changed")
        blocked_reads = [c for c in client.client_list() if c.get("cmd") == "xreadgroup"]
        return subscribers >= readers and len(blocked_reads) >= readers
    finally:
        client.close()


def raw_stream_latency(redis_url: str, seconds: float) -> list[float]:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete("raw:latency")
    client.xgroup_create("raw:latency", "g", id="$", mkstream=True)
    latencies: list[float] = []
    total = int(RATE * seconds)

    def consume() -> None:
        reader = redis.Redis.from_url(redis_url)
        while len(latencies) < total:
            response = reader.xreadgroup("g", "c", {"raw:latency": ">"}, count=10, block=1000)
            for _, entries in response or []:
                for entry_id, fields in entries:
                    reader.xack("raw:latency", "g", entry_id)
                    latencies.append(time.time() - float(fields[b"t"]))

    thread = threading.Thread(target=consume)
    thread.start()
    started = time.monotonic()
    for n in range(total):
        delay = started + n / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        client.xadd("raw:latency", {"t": repr(time.time())})
    thread.join(timeout=seconds + 10)
    return latencies


def throughput_run(rides: int) -> tuple[float, int]:
    from django.conf import settings
    from django.utils import timezone

    from locations.positions import Position, apply_positions
    from ridehail.events.connection import shared_redis, worker_redis
    from ridehail.events.stream import StreamRunner
    from rides.events import Point
    from rides.models import Ride, RideStatus
    from rides.services import Trip, request_ride
    from rides.subscribers import RideMatcher

    drivers = place_drivers(5000, km=10)
    riders = make_riders(rides)
    ride_ids = [
        request_ride(rider_id=r.id, trip=Trip(Point(*spread(n, km=8)), Point(*spread(n + 7, km=8)))).id
        for n, r in enumerate(riders)
    ]
    # Writing the requests can take longer than a position stays fresh or a request waits on a
    # busy machine: fresh positions again, and no expiry while the matcher drains them.
    now = timezone.now()
    positions = [Position(d.id, *spread(n, km=10), now) for n, d in enumerate(drivers)]
    for start in range(0, len(positions), 500):  # one script call each: short enough for a busy Redis
        apply_positions(shared_redis(), positions[start : start + 500])
    settings.RIDEHAIL_MATCH_TIMEOUT_SECONDS = 3600.0
    stop = threading.Event()
    runner = StreamRunner(RideMatcher(worker_redis()), read_client=worker_redis(), stop=stop, batch_size=100)
    thread = threading.Thread(target=runner.run)
    started = time.perf_counter()
    thread.start()
    # Timed until every request was tried once (the group has read and acknowledged them all):
    # a ride left with no free driver near it waits for a retry or its expiry, which is not the
    # matcher's pace (a first version waited for those and reported a minute of expiry as 32/s).
    while not drained(runner) and time.perf_counter() - started < 300:
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    assigned = Ride.objects.filter(pk__in=ride_ids, status=RideStatus.ASSIGNED).count()
    stop.set()
    thread.join()
    return assigned / elapsed, assigned


def drained(runner: "StreamRunner") -> bool:
    try:
        groups = runner.redis.xinfo_groups(runner.stream)
    except redis.ResponseError:  # the group is not there yet
        return False
    return any(g["name"] == runner.group.encode() and g["lag"] == 0 and g["pending"] == 0 for g in groups)


def raw_transaction_rate(database_url: str, count: int) -> float:
    """The matcher's database transaction alone, with psycopg: lock ride and driver, update, outbox row."""
    from rides.events import Point
    from rides.models import Ride
    from rides.services import Trip, request_ride

    drivers = place_drivers(count, km=10)
    riders = make_riders(count)
    rides = [request_ride(rider_id=r.id, trip=Trip(Point(*CENTER), Point(*CENTER))).id for r in riders]
    payload = json.dumps({"bench": "x" * 300})
    with psycopg.connect(database_url, autocommit=True) as conn:
        started = time.perf_counter()
        for ride_id, driver in zip(rides, drivers, strict=True):
            with conn.transaction():
                conn.execute("SELECT id FROM rides_ride WHERE id = %s FOR UPDATE SKIP LOCKED", [ride_id])
                conn.execute("SELECT id, is_available FROM users_user WHERE id = %s FOR UPDATE", [driver.id])
                conn.execute(
                    "UPDATE rides_ride SET driver_id = %s, status = 'assigned', assigned_at = now(), version = 2, "
                    "status_changed_at = now() WHERE id = %s",
                    [driver.id, ride_id],
                )
                conn.execute(
                    "INSERT INTO events_outboxevent (event_id, topic, key, version, payload, created_at, attempts, "
                    "last_error) VALUES (%s, 'ride-status-changed', %s, 2, %s, now(), 0, '')",
                    [uuid.uuid4(), str(ride_id), payload],
                )
        elapsed = time.perf_counter() - started
    Ride.objects.filter(pk__in=rides).update(status="completed")
    return count / elapsed


def two_matchers_run(redis_url: str, database_url: str, rides: int) -> dict[str, float]:
    """Two rides worker processes in one group, `rides` requests for half as many drivers: who got what twice.

    Drivers are fewer than requests and packed in a 3 km square, so the two workers' batches
    want the same drivers all along; no ride is completed, so a driver given two rides, ever,
    is a double assignment. Counted from the database (every ride with a driver, whatever its
    status now) and, separately, from the workers' own "assigned to driver" lines.
    """
    import re
    import tempfile

    from django.db import connection

    from rides.events import Point
    from rides.models import Ride, RideStatus
    from rides.services import Trip, request_ride
    from users.models import Role, User

    # The earlier runs' drivers and rides out of the way: only this run's drivers are free.
    Ride.objects.filter(status__in=[RideStatus.REQUESTED, RideStatus.ASSIGNED]).update(
        status=RideStatus.CANCELLED, driver=None
    )
    User.objects.filter(role=Role.DRIVER).update(is_available=False)
    drivers = place_drivers(rides // 2, km=3)
    riders = make_riders(rides)
    # The default window; no expiry while the two drain the requests on a busy machine.
    env = {**production_env(database_url, redis_url), "RIDEHAIL_MATCH_TIMEOUT_SECONDS": "3600"}
    logs = [tempfile.TemporaryFile(mode="w+") for _ in range(2)]
    workers = [python("manage.py", "run_subscriber", "rides", env=env, stdout=log, stderr=log) for log in logs]
    stop = threading.Event()
    fresh = threading.Thread(target=keep_positions_fresh, args=(drivers, stop))
    try:
        wait_until(lambda: reading(redis_url, readers=2), timeout=120, what="both rides workers reading the stream")
        fresh.start()
        ride_ids = [
            request_ride(rider_id=r.id, trip=Trip(Point(*spread(n, km=3)), Point(*spread(n + 1, km=3)))).id
            for n, r in enumerate(riders)
        ]

        def settled() -> bool:
            return Ride.objects.filter(pk__in=ride_ids, status=RideStatus.ASSIGNED).count() >= len(drivers)

        wait_until(settled, timeout=300, what="every driver given a ride by the two workers")
    finally:
        stop.set()
        if fresh.is_alive():
            fresh.join()
        for worker in workers:
            worker.terminate()
        # A worker finishes its round first. With every driver busy, a round over the 1,000 waiting
        # rides used to widen its geo ask and ask the database again for each ride (over 30 s here
        # once); now it asks one query (rides.matching.FreeDrivers). How long the stop took is reported.
        terminated = time.monotonic()
        stopped_s = []
        for worker in workers:
            try:
                worker.wait(timeout=180)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            stopped_s.append(time.monotonic() - terminated)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM (SELECT driver_id FROM rides_ride WHERE id = ANY(%s) AND driver_id IS NOT NULL "
            "GROUP BY driver_id HAVING count(*) > 1) AS twice",
            [ride_ids],
        )
        [(drivers_twice,)] = cursor.fetchall()
    assigned = Ride.objects.filter(pk__in=ride_ids, driver__isnull=False).count()
    lines, batches = [], []
    for log in logs:
        log.seek(0)
        output = log.read()
        lines.append(re.findall(r"ride (\S+) assigned to driver (\S+)", output))
        found = re.findall(r"batch of (\d+): .* solved in ([\d.]+) ms", output)
        batches += [(int(size), float(ms)) for size, ms in found]
        log.close()
    said = [pair for worker_lines in lines for pair in worker_lines]
    solve_ms = sorted(ms for _, ms in batches)
    return {
        "batches": len(batches),
        "largest_batch": max((size for size, _ in batches), default=0),
        "solve_p99_ms": percentile(solve_ms, 0.99),
        "solve_max_ms": solve_ms[-1] if solve_ms else float("nan"),
        "rides": rides,
        "drivers": len(drivers),
        "assigned": assigned,
        "drivers_twice_db": drivers_twice,
        "drivers_twice_logs": len(said) - len({driver for _, driver in said}),
        "rides_twice_logs": len(said) - len({ride for ride, _ in said}),
        "by_first": len(lines[0]),
        "by_second": len(lines[1]),
        "stopped_s": max(stopped_s),
    }


def run(
    *, full: bool = False, seconds: float | None = None, rides: int | None = None, report: Progress = progress
) -> Section:
    seconds = seconds or (30 if full else 10)
    rides = rides or (5000 if full else 2000)
    database_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ridehail_bench")
    fresh_database(database_url)
    with PrivateRedis() as private_redis:
        setup_django(database_url, private_redis.url)
        quiet_worker_logs("rides")
        from rides.models import Ride

        Ride.objects.filter(status__in=["requested", "assigned"]).update(status="cancelled")  # a clean slate
        project = latency_run(private_redis.url, database_url, seconds)
        raw = raw_stream_latency(private_redis.url, seconds)
        p50, p99 = percentile(project, 0.5) * 1000, percentile(project, 0.99) * 1000
        report(
            f"matching: latency p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(project)} assigned); "
            f"raw stream p99 {percentile(raw, 0.99) * 1000:.2f} ms"
        )
        rate, assigned = throughput_run(rides)
        raw_rate = raw_transaction_rate(database_url, min(rides, 2000))
        report(f"matching: {rate:,.0f} matched/s ({assigned} of {rides}); raw transaction {raw_rate:,.0f}/s")
        twice = two_matchers_run(private_redis.url, database_url, rides)
        report(f"matching: two matchers, {twice}")
    p50, p99 = percentile(project, 0.5) * 1000, percentile(project, 0.99) * 1000
    raw_p50, raw_p99 = percentile(raw, 0.5) * 1000, percentile(raw, 0.99) * 1000
    ratio = rate / raw_rate
    table = markdown_table(
        ["at 50 requests/s, 500 drivers", "p50 ms", "p99 ms"],
        [
            ["request committed → assigned (rides worker, window 0)", f"{p50:.1f}", f"{p99:.1f}"],
            ["raw XADD → XREADGROUP → XACK", f"{raw_p50:.2f}", f"{raw_p99:.2f}"],
        ],
    )
    table += "\n\n" + markdown_table(
        ["one rides worker, 5,000 drivers in the index", "per second"],
        [
            [f"requests matched (batched: one transaction per batch; {assigned} of {rides})", f"{rate:,.0f}"],
            ["the same transaction, raw psycopg, one connection", f"{raw_rate:,.0f}"],
        ],
    )
    table += (
        f"\n\nMatching p99 ÷ raw stream p99 = {p99 / raw_p99:.1f} (reported); p99 {p99:.1f} ms (sanity bound ≤ 20 ms); "
        f"throughput ÷ raw transaction = **{ratio:.2f}** (target ≥ 0.3)."
    )
    doubles = twice["drivers_twice_db"] + twice["drivers_twice_logs"] + twice["rides_twice_logs"]
    table += "\n\n" + markdown_table(
        [f"two rides workers, one group: {twice['rides']:,} requests, {twice['drivers']:,} drivers", "count"],
        [
            ["rides assigned (database)", f"{twice['assigned']:,}"],
            ["... by the first worker / the second (their log lines)", f"{twice['by_first']} / {twice['by_second']}"],
            ["drivers with two rides (database: every ride with a driver)", f"**{twice['drivers_twice_db']}**"],
            [
                "drivers / rides named twice in the workers' assignment lines",
                f"{twice['drivers_twice_logs']} / {twice['rides_twice_logs']}",
            ],
            [
                f"batches the two solved: {twice['batches']:.0f}, the largest {twice['largest_batch']:.0f} requests; "
                "solve wall-clock p99 / max, ms (the workers' log)",
                f"{twice['solve_p99_ms']:.1f} / {twice['solve_max_ms']:.1f}",
            ],
            [
                f"seconds from SIGTERM until both workers stopped, {twice['rides'] - twice['drivers']:,} "
                "rides waiting, every driver busy",
                f"{twice['stopped_s']:.1f}",
            ],
        ],
    )
    return Section(
        title="Matching: latency and throughput",
        command=f"{COMMAND} --seconds {seconds:g} --rides {rides}",
        table=table,
        notes=(
            "Latency is measured from the timestamps the processes wrote (requested_at at the request, assigned_at "
            "in the assignment's transaction), on PostgreSQL, with the rides worker as a process of its own."
        ),
        targets=[
            Target("matching p99 (ms, absolute)", p99, "≤ 20", p99 <= 20),
            Target("matching throughput ÷ raw transaction", ratio, "≥ 0.3", ratio >= 0.3),
            Target(f"drivers assigned twice, two matchers, {twice['rides']:,} requests", doubles, "0", doubles == 0),
        ],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"seconds": float, "rides": int})
