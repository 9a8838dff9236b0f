"""Fan-out benchmark: 1,000 dashboard websockets, 20 events/s for 30 s (issue: live dashboard).

The project's path (uvicorn + Channels consumer + the per-process fan-out, session auth and
origin check included) against the anchor: a bare `websockets` server fed by the same Redis
channel. Both run in the same invocation, alternating, on a private Redis; the table gives
each figure and the project ÷ anchor ratio.

    .venv/bin/python -m bench.fanout [--connections 1000] [--rate 20] [--seconds 30] [--rounds 1]
"""

import argparse
import json
import os
import subprocess
import time
import uuid

import redis

from bench.common import PrivateRedis, free_port, median, percentile, python, rss_bytes, temp_sqlite_url, wait_port
from bench.flood import event
from bench.report import Progress, Section, Target, cli, markdown_table, progress

CLIENT_PROCESSES = 2  # one Python process cannot read 20k frames/s on its own


def prepare_project_database(database_url: str) -> str:
    """Migrate a throwaway database and return a staff session cookie for the dashboard."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ridehail.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from users.models import User

    call_command("migrate", verbosity=0)
    staff = User.objects.create(username="bench-operator", is_staff=True)
    client = Client()
    client.force_login(staff)
    return f"sessionid={client.cookies['sessionid'].value}"


def start_project(port: int, redis_url: str, database_url: str, server: str = "uvicorn") -> subprocess.Popen:
    env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url, "RIDEHAIL_DASHBOARD_QUEUE_LIMIT": "100000"}
    if server == "daphne":
        args = ["-m", "daphne", "--port", str(port), "ridehail.asgi:application"]
    else:
        args = [
            "-m",
            "uvicorn",
            "ridehail.asgi:application",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    return python(*args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_bare(port: int, redis_url: str) -> subprocess.Popen:
    return python("-m", "bench.bare_ws_server", str(port), redis_url, stdout=subprocess.DEVNULL)


def publish_events(redis_client: redis.Redis, *, rate: float, seconds: float) -> int:
    drivers = [uuid.uuid4() for _ in range(50)]
    total = int(rate * seconds)
    start = time.monotonic()
    for n in range(total):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        driver = drivers[n % len(drivers)]
        version = n // len(drivers) + 1
        redis_client.publish("driver-status-changed", event(str(driver), version))
    return total


def run_case(
    name: str,
    server: subprocess.Popen,
    port: int,
    args: argparse.Namespace,
    redis_client: redis.Redis,
    headers: list[str],
) -> dict:
    wait_port(port)
    time.sleep(0.5)
    rss_before = rss_bytes(server.pid)
    expected = int(args.rate * args.seconds)
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
            raise RuntimeError(f"{name}: clients did not connect: {line!r}")
    time.sleep(1)
    rss_connected = rss_bytes(server.pid)
    started = time.monotonic()
    publish_events(redis_client, rate=args.rate, seconds=args.seconds)
    results = [json.loads(client.stdout.readline()) for client in clients]
    elapsed = time.monotonic() - started
    for client in clients:
        client.wait(timeout=30)
    latencies = [latency for result in results for latency in result["latencies"]]
    received = sum(result["received"] for result in results)
    connections = per_process * CLIENT_PROCESSES
    return {
        "server": name,
        "connections": connections,
        "events": expected,
        "expected_deliveries": expected * connections,
        "delivered": received,
        "delivered_fraction": received / (expected * connections),
        "deliveries_per_s": received / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "rss_per_connection_kib": (rss_connected - rss_before) / connections / 1024,
        "client_errors": sum(result["failed"] for result in results),
    }


def measure(args: argparse.Namespace, report: Progress = progress) -> list[dict]:
    database_url = temp_sqlite_url()
    cookie = prepare_project_database(database_url)
    rows = []
    with PrivateRedis() as private_redis:
        for round_number in range(1, args.rounds + 1):
            for name in ("project", "bare"):
                port = free_port()
                if name == "project":
                    server = start_project(port, private_redis.url, database_url, args.server)
                    headers = [cookie, f"http://127.0.0.1:{port}"]
                else:
                    server = start_bare(port, private_redis.url)
                    headers = []
                report(
                    f"fanout: round {round_number}/{args.rounds}: {name}, {args.connections} sockets, "
                    f"{args.rate:g} events/s for {args.seconds:g}s"
                )
                try:
                    row = run_case(name, server, port, args, private_redis.client, headers)
                finally:
                    server.terminate()
                    server.wait(timeout=30)
                row["round"] = round_number
                rows.append(row)
    return rows


def run(*, full: bool = False, report: Progress = progress, **overrides: float) -> Section:
    args = argparse.Namespace(connections=1000, rate=20, seconds=30, rounds=3 if full else 1, server="uvicorn")
    for key, value in overrides.items():
        if value is not None:
            setattr(args, key, value)
    rows = measure(args, report)

    def med(name: str, key: str) -> float:
        return median([row[key] for row in rows if row["server"] == name])

    targets = {
        "delivered_fraction": ("every event to every socket", "1.0", lambda r: r >= 1.0),
        "deliveries_per_s": ("deliveries/s", "≥ 0.5", lambda r: r >= 0.5),
        "p50_ms": ("p50 latency, ms (publish → received)", "", None),
        "p99_ms": ("p99 latency, ms (publish → received)", "≤ 2.0", lambda r: r <= 2.0),
        "rss_per_connection_kib": ("server memory per connection, KiB", "", None),
    }
    table_rows, checks = [], []
    for key, (label, target, check) in targets.items():
        project, bare = med("project", key), med("bare", key)
        ratio = project / bare if bare else float("nan")
        table_rows.append(
            [
                label,
                f"{project:,.3g}" if key == "delivered_fraction" else f"{project:,.1f}",
                f"{bare:,.3g}" if key == "delivered_fraction" else f"{bare:,.1f}",
                f"{ratio:.2f}",
                target,
            ]
        )
        if check:
            checks.append(Target(f"dashboard fan-out ({args.server}): {label}", ratio, target, check(ratio)))
    return Section(
        title=f"Dashboard fan-out: {args.connections:,} websockets, {args.rate:g} events/s, {args.server}",
        command=f".venv/bin/python -m bench.fanout --connections {args.connections} --rate {args.rate:g} "
        f"--seconds {args.seconds:g} --rounds {args.rounds}"
        + (f" --server {args.server}" if args.server != "uvicorn" else ""),
        table=markdown_table(
            ["metric (median of rounds)", "project", "bare websockets", "ratio", "target"], table_rows
        ),
        notes=(
            "Project: uvicorn + Channels consumer + the per-process fan-out, with session auth and the origin "
            "check. Anchor: a bare `websockets` server with one Redis subscription broadcasting the same bytes. "
            "Both are fed by the same private Redis channel; the offered load is connections x rate, so a "
            "throughput ratio of 1.00 means both kept up. Clients (bench/ws_clients.py) split frames "
            "themselves, so the load generator is not the bottleneck."
        ),
        targets=checks,
    )


if __name__ == "__main__":
    cli(run, __doc__, {"connections": int, "rate": float, "seconds": float, "rounds": int, "server": str})
