"""What the transactional outbox costs on `PUT /api/users/driver-status`.

32 concurrent clients (one driver each, keep-alive) against uvicorn, the production
server of docker-compose.yml, on PostgreSQL and a private Redis: requests/s and p50/p99
with the outbox (the project as shipped) and without it (bench/no_outbox_asgi.py),
alternating in the same invocation.

    .venv/bin/python -m bench.put_status [--seconds 15] [--rounds 3] [--clients 32]
    (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/ridehail_bench)
"""

import argparse
import json
import os
import subprocess
import time

import psycopg

from bench.common import PrivateRedis, free_port, median, percentile, python, wait_port
from bench.django_env import setup_django

SERVERS = {"with outbox": "ridehail.asgi:application", "without outbox": "bench.no_outbox_asgi:application"}


def ensure_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def make_tokens(count: int) -> list[str]:
    from rest_framework.authtoken.models import Token

    from users.models import Role, User

    tokens = []
    for n in range(count):
        user, _ = User.objects.get_or_create(username=f"bench-driver-{n}", defaults={"role": Role.DRIVER})
        tokens.append(Token.objects.get_or_create(user=user)[0].key)
    return tokens


def run_case(app: str, *, database_url: str, redis_url: str, seconds: float, tokens: list[str]) -> dict:
    port = free_port()
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production-use-0123456789",
    }
    server = python(
        "-m",
        "uvicorn",
        app,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        env=env,
        stderr=open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "a"),
    )
    try:
        wait_port(port)
        time.sleep(0.5)
        load = python("-m", "bench.http_load", str(port), str(seconds), *tokens, stdout=subprocess.PIPE, text=True)
        result = json.loads(load.communicate(timeout=seconds + 60)[0])
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies = result["latencies"]
    return {
        "requests_per_s": result["requests"] / result["elapsed"],
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": result["error_count"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    database_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ridehail_bench")
    ensure_database(database_url)
    with PrivateRedis() as private_redis:
        setup_django(database_url, private_redis.url)
        tokens = make_tokens(args.clients)
        results: dict[str, list[dict]] = {name: [] for name in SERVERS}
        for round_number in range(1, args.rounds + 1):
            for name, app in SERVERS.items():
                row = run_case(
                    app, database_url=database_url, redis_url=private_redis.url, seconds=args.seconds, tokens=tokens
                )
                results[name].append(row)
                print(
                    f"[round {round_number}] {name}: " + json.dumps({k: round(v, 2) for k, v in row.items()}),
                    flush=True,
                )
    summary = {name: {key: median([row[key] for row in rows]) for key in rows[0]} for name, rows in results.items()}
    on, off = summary["with outbox"], summary["without outbox"]
    print("\n| PUT /api/users/driver-status, 32 clients | requests/s | p50 ms | p99 ms | non-200 |")
    print("|---|---|---|---|---|")
    for name, row in summary.items():
        rate, p50, p99, errors = row["requests_per_s"], row["p50_ms"], row["p99_ms"], row["errors"]
        print(f"| {name} | {rate:,.0f} | {p50:.1f} | {p99:.1f} | {errors:.0f} |")
    ratio = on["requests_per_s"] / off["requests_per_s"]
    print(f"| ratio (with ÷ without) | {ratio:.2f} | | | target ≥ 0.85 (within 15%) |")


if __name__ == "__main__":
    main()
