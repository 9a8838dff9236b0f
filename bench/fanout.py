"""Fan-out benchmark: 1,000 dashboard websockets against a bare `websockets` server.

Three loads, each on the project (uvicorn + Channels consumer + the per-process fan-out,
session auth and origin check included, one process) and on the anchor (a bare `websockets`
server with one Redis subscription doing the same work: status events as they come,
positions merged and sent once a second), alternating, on a private Redis:

- status: 20 status changes/s (20,000 deliveries/s);
- city: 2,000 drivers reporting every 2 s (1,000 positions/s, one ~100 KB frame per socket
  per second) while 20 status changes/s go on: every change must reach every socket within
  a second (p99) and every socket must get a positions frame every interval;
- busy: 80 status changes/s (80,000 deliveries/s).

Server CPU per socket is the server process's CPU time during the run divided by sockets
and seconds.

    .venv/bin/python -m bench.fanout [--connections 1000] [--seconds 20] [--rounds 1] [--server uvicorn] [--full]
"""

import argparse
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass

import redis

from bench.common import PrivateRedis, free_port, median, percentile, python, rss_bytes, temp_sqlite_url, wait_port
from bench.flood import event
from bench.report import Progress, Section, Target, cli, markdown_table, progress

CLIENT_PROCESSES = 2  # one Python process cannot read 20k frames/s on its own
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Load:
    name: str
    status_per_s: float
    positions_per_s: float


LOADS = [Load("status", 20, 0), Load("city", 20, 1000), Load("busy", 80, 0)]


def prepare_project_database(database_url: str, drivers: int) -> tuple[str, list[str]]:
    """Migrate a throwaway database; a staff session cookie and the drivers' ids (events of
    drivers the database does not know never reach a dashboard)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ridehail.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from users.models import Role, User

    call_command("migrate", verbosity=0)
    staff = User.objects.create(username="bench-operator", is_staff=True)
    made = User.objects.bulk_create(
        [User(username=f"bench-fan-{n}", role=Role.DRIVER, password="!") for n in range(drivers)]
    )
    client = Client()
    client.force_login(staff)
    return f"sessionid={client.cookies['sessionid'].value}", [str(driver.id) for driver in made]


def start_project(port: int, redis_url: str, database_url: str, server: str = "uvicorn") -> subprocess.Popen:
    # Every benchmark socket shares one operator's session: the per-session cap is lifted.
    env = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "RIDEHAIL_DASHBOARD_QUEUE_LIMIT": "100000",
        "RIDEHAIL_DASHBOARD_SOCKETS_PER_SESSION": "100000",
    }
    if server == "daphne":
        args = ["-m", "daphne", "--port", str(port), "ridehail.asgi:application"]
    else:
        from ridehail.server import UVICORN_OPTIONS

        args = ["-m", "uvicorn", "ridehail.asgi:application", "--port", str(port), *UVICORN_OPTIONS]
        args += ["--no-access-log", "--log-level", "warning"]
    return python(*args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_bare(port: int, redis_url: str) -> subprocess.Popen:
    return python("-m", "bench.bare_ws_server", str(port), redis_url, stdout=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def publish_status(client: redis.Redis, drivers: list[str], *, rate: float, seconds: float) -> int:
    total = int(rate * seconds)
    start = time.monotonic()
    for n in range(total):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        client.publish("driver-status-changed", event(drivers[n % len(drivers)], 1_000_000 + n))
    return total


def publish_positions(redis_url: str, drivers: list[str], *, rate: float, seconds: float) -> None:
    """`rate` positions a second, in ten pipelined bursts a second (as many web processes would)."""
    from datetime import UTC, datetime

    client = redis.Redis.from_url(redis_url)
    start, n = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        pipe = client.pipeline(transaction=False)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for _ in range(int(rate / 10)):
            driver = drivers[n % len(drivers)]
            payload = json.dumps({"driverId": driver, "lat": 52.5 + (n % 97) / 1e4, "lng": 13.4, "timestamp": stamp})
            pipe.publish("driver-location-updated", payload)
            n += 1
        pipe.execute()
        time.sleep(max(0.0, start + n / rate - time.monotonic()))


def run_case(
    server: subprocess.Popen,
    port: int,
    load: Load,
    args: argparse.Namespace,
    redis_url: str,
    headers: list[str],
    drivers: list[str],
) -> dict:
    wait_port(port)
    time.sleep(0.5)
    rss_before = rss_bytes(server.pid)
    expected = int(load.status_per_s * args.seconds)
    from users.models import User

    User.objects.filter(pk__in=drivers).update(status_version=0)  # each load's snapshots start at 0
    per_process = args.connections // CLIENT_PROCESSES
    url = f"ws://127.0.0.1:{port}/ws/dashboard/"
    clients = [
        python(
            "-m",
            "bench.ws_clients",
            url,
            str(per_process),
            str(expected),
            str(args.seconds + 60),
            *headers,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(CLIENT_PROCESSES)
    ]
    for client in clients:
        line = client.stdout.readline()
        if "clients ready" not in line:
            raise RuntimeError(f"clients did not connect: {line!r}")
    time.sleep(1)
    # The fan-out shows an event only if the database has reached its version (a forged one would
    # hide the real ones after it); the snapshots said 0, the events below say 1,000,000 and up.
    User.objects.filter(pk__in=drivers).update(status_version=2_000_000_000)
    rss_connected = rss_bytes(server.pid)
    positions = None
    if load.positions_per_s:
        positions = threading.Thread(
            target=publish_positions,
            args=(redis_url, drivers),
            kwargs={"rate": load.positions_per_s, "seconds": args.seconds},
        )
        positions.start()
    cpu_before, started = cpu_seconds(server.pid), time.monotonic()
    publish_status(redis.Redis.from_url(redis_url), drivers, rate=load.status_per_s, seconds=args.seconds)
    if positions:
        positions.join()
    cpu_used, elapsed = cpu_seconds(server.pid) - cpu_before, time.monotonic() - started
    results = [json.loads(client.stdout.readline()) for client in clients]
    for client in clients:
        client.wait(timeout=30)
    latencies = [latency for result in results for latency in result["latencies"]]
    connections = per_process * CLIENT_PROCESSES
    frames = [count for result in results for count in result["position_frames"]]
    gaps = [gap for result in results for gap in result["positions_gaps"]]
    return {
        "delivered_fraction": sum(r["received"] for r in results) / (expected * connections),
        "deliveries_per_s": sum(r["received"] for r in results) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "cpu_us_per_socket_s": cpu_used / connections / elapsed * 1e6,
        "rss_per_connection_kib": (rss_connected - rss_before) / connections / 1024,
        "min_position_frames": min(frames) if frames else 0,
        "longest_positions_gap_s": max(gaps) if gaps else 0.0,
        "client_errors": sum(result["failed"] for result in results),
    }


def measure(args: argparse.Namespace, loads: list[Load], report: Progress) -> dict[tuple[str, str], list[dict]]:
    database_url = temp_sqlite_url()
    cookie, drivers = prepare_project_database(database_url, 2000)
    rows: dict[tuple[str, str], list[dict]] = {}
    with PrivateRedis() as private_redis:
        for round_number in range(1, args.rounds + 1):
            for load in loads:
                for name in ("project", "bare"):
                    port = free_port()
                    if name == "project":
                        server = start_project(port, private_redis.url, database_url, args.server)
                        headers = [cookie, f"http://127.0.0.1:{port}"]
                    else:
                        server, headers = start_bare(port, private_redis.url), []
                    try:
                        row = run_case(server, port, load, args, private_redis.url, headers, drivers)
                    finally:
                        server.terminate()
                        server.wait(timeout=30)
                    rows.setdefault((load.name, name), []).append(row)
                    report(
                        f"fanout: round {round_number}/{args.rounds}: {load.name}, {name}: p99 {row['p99_ms']:.0f} ms, "
                        f"{row['delivered_fraction']:.3f} delivered, {row['cpu_us_per_socket_s']:.0f} µs CPU/socket/s"
                        + (f", positions frames ≥ {row['min_position_frames']}" if load.positions_per_s else "")
                    )
    return rows


def run(*, full: bool = False, report: Progress = progress, **overrides: object) -> Section:
    args = argparse.Namespace(connections=1000, seconds=30 if full else 20, rounds=3 if full else 1, server="uvicorn")
    for key, value in overrides.items():
        if value is not None:
            setattr(args, key, value)
    loads = LOADS if args.server == "uvicorn" else LOADS[:1]
    rows = measure(args, loads, report)

    def med(load: str, name: str, key: str) -> float:
        return median([row[key] for row in rows[(load, name)]])

    table_rows, targets = [], []
    for load in loads:
        for key, label in (
            ("delivered_fraction", "every event to every socket"),
            ("p99_ms", "p99 ms, publish → received"),
            ("p50_ms", "p50 ms"),
            ("cpu_us_per_socket_s", "server CPU µs per socket per second"),
        ):
            project, bare = med(load.name, "project", key), med(load.name, "bare", key)
            table_rows.append(
                [load.name, label, f"{project:,.3g}", f"{bare:,.3g}", f"{project / bare:.2f}" if bare else ""]
            )
        if load.positions_per_s:
            frames = med(load.name, "project", "min_position_frames")
            gap = med(load.name, "project", "longest_positions_gap_s")
            table_rows.append(
                [
                    load.name,
                    "positions frames per socket (least) / longest gap s",
                    f"{frames:.0f} / {gap:.2f}",
                    f"{med(load.name, 'bare', 'min_position_frames'):.0f} / "
                    f"{med(load.name, 'bare', 'longest_positions_gap_s'):.2f}",
                    "",
                ]
            )
    status_ratio = med("status", "project", "p99_ms") / med("status", "bare", "p99_ms")
    delivered = med("status", "project", "delivered_fraction")
    targets.append(
        Target(f"dashboard ({args.server}) 20 ev/s: every event to every socket", delivered, "1.0", delivered >= 1.0)
    )
    targets.append(
        Target(f"dashboard ({args.server}) 20 ev/s: p99 ÷ bare p99", status_ratio, "≤ 2.0", status_ratio <= 2.0)
    )
    if any(load.name == "city" for load in loads):
        city_p99 = med("city", "project", "p99_ms")
        gap = med("city", "project", "longest_positions_gap_s")
        targets.append(
            Target("dashboard city (1,000 positions/s + 20 ev/s): status p99 ms", city_p99, "≤ 1000", city_p99 <= 1000)
        )
        targets.append(Target("dashboard city: longest gap between positions frames, s", gap, "≤ 1.5", gap <= 1.5))
        busy = med("busy", "project", "p99_ms") / med("busy", "bare", "p99_ms")
        targets.append(Target("dashboard 80 ev/s: p99 ÷ bare p99 (reported)", busy, "—", True))
    return Section(
        title=f"Dashboard fan-out: {args.connections:,} websockets, {args.server}",
        command=f".venv/bin/python -m bench.fanout --connections {args.connections} --seconds {args.seconds:g} "
        f"--rounds {args.rounds}" + (f" --server {args.server}" if args.server != "uvicorn" else ""),
        table=markdown_table(["load", "metric (median of rounds)", "project", "bare websockets", "ratio"], table_rows),
        notes=(
            "Project: one uvicorn process (the production flags of ridehail/server.py) with the Channels consumer "
            "and the per-process fan-out, session auth and the origin check. Anchor: a bare `websockets` server "
            "with one Redis subscription doing the same work (status events broadcast as they come, positions "
            "merged and broadcast once a second). Clients (bench/ws_clients.py) split frames themselves and look "
            "only at each frame's head, so the load generator is not the bottleneck."
        ),
        targets=targets,
    )


if __name__ == "__main__":
    cli(run, __doc__, {"connections": int, "seconds": float, "rounds": int, "server": str})
