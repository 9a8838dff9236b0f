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
from datetime import UTC, datetime

import redis

from bench.common import PrivateRedis, free_port, median, percentile, python, rss_bytes, temp_sqlite_url, wait_port

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


def start_project(port: int, redis_url: str, database_url: str) -> subprocess.Popen:
    env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url, "RIDEHAIL_DASHBOARD_QUEUE_LIMIT": "100000"}
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
    return python(*args, env=env, stdout=subprocess.DEVNULL)


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
        event = {
            "driverId": str(driver),
            "available": version % 2 == 1,
            "eventId": str(uuid.uuid4()),
            "version": version,
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        redis_client.publish("driver-status-changed", json.dumps(event, separators=(",", ":")))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    database_url = temp_sqlite_url()
    cookie = prepare_project_database(database_url)
    rows = []
    with PrivateRedis() as private_redis:
        for round_number in range(args.rounds):
            for name in ("project", "bare"):
                port = free_port()
                if name == "project":
                    server = start_project(port, private_redis.url, database_url)
                    headers = [cookie, f"http://127.0.0.1:{port}"]
                else:
                    server = start_bare(port, private_redis.url)
                    headers = []
                try:
                    row = run_case(name, server, port, args, private_redis.client, headers)
                finally:
                    server.terminate()
                    server.wait(timeout=30)
                row["round"] = round_number + 1
                rows.append(row)
                rounded = {key: round(value, 3) if isinstance(value, float) else value for key, value in row.items()}
                print(f"[round {round_number + 1}] {name}: {json.dumps(rounded)}", flush=True)
    report(rows)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=2)


def report(rows: list[dict]) -> None:
    def med(name: str, key: str) -> float:
        return median([row[key] for row in rows if row["server"] == name])

    print("\n| metric | project | bare websockets | ratio (project ÷ bare) | target |")
    print("|---|---|---|---|---|")
    targets = {
        "delivered_fraction": "1.0 (every event to every socket)",
        "deliveries_per_s": "≥ 0.5",
        "p50_ms": "",
        "p99_ms": "≤ 2.0",
        "rss_per_connection_kib": "",
    }
    for key, target in targets.items():
        project, bare = med("project", key), med("bare", key)
        ratio = project / bare if bare else float("nan")
        print(f"| {key} | {project:,.3f} | {bare:,.3f} | {ratio:.2f} | {target} |")


if __name__ == "__main__":
    main()
