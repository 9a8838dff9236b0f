"""What publishing, and the transactional outbox, cost on `PUT /api/users/driver-status`.

32 concurrent clients (one driver each, keep-alive) against uvicorn, the production
server of docker-compose.yml, on PostgreSQL and a private Redis: requests/s and p50/p99
with the outbox (the project as shipped), without it (bench/no_outbox_asgi.py) and with
publishing off (bench/no_publish_asgi.py), plus daphne for comparison, alternating in the
same invocation.

    .venv/bin/python -m bench.put_status [--seconds 8] [--rounds 3] [--clients 32] [--full]
    (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/ridehail_bench)
"""

import json
import os
import subprocess
import time

import psycopg

from bench.common import PrivateRedis, free_port, median, percentile, python, wait_port
from bench.django_env import setup_django
from bench.report import Progress, Section, Target, cli, markdown_table, progress

COMMAND = ".venv/bin/python -m bench.put_status"
UVICORN = ["-m", "uvicorn", "--no-access-log", "--log-level", "warning", "--port"]
SERVERS = {
    "uvicorn, with outbox (as shipped)": [*UVICORN, "{port}", "ridehail.asgi:application"],
    "uvicorn, without outbox": [*UVICORN, "{port}", "bench.no_outbox_asgi:application"],
    "uvicorn, publishing off": [*UVICORN, "{port}", "bench.no_publish_asgi:application"],
    "daphne, with outbox": ["-m", "daphne", "--port", "{port}", "ridehail.asgi:application"],
}


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


def run_case(command: list[str], *, database_url: str, redis_url: str, seconds: float, tokens: list[str]) -> dict:
    port = free_port()
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production-use-0123456789",
    }
    server = python(
        *(part.format(port=port) for part in command),
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


def run(
    *,
    full: bool = False,
    seconds: float | None = None,
    rounds: int | None = None,
    clients: int | None = None,
    report: Progress = progress,
) -> Section:
    seconds = seconds or (15 if full else 8)
    clients = clients or 32
    rounds = rounds or 3
    database_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ridehail_bench")
    ensure_database(database_url)
    with PrivateRedis() as private_redis:
        setup_django(database_url, private_redis.url)
        tokens = make_tokens(clients)
        results: dict[str, list[dict]] = {name: [] for name in SERVERS}
        for round_number in range(1, rounds + 1):
            for name, command in SERVERS.items():
                row = run_case(
                    command, database_url=database_url, redis_url=private_redis.url, seconds=seconds, tokens=tokens
                )
                results[name].append(row)
                report(
                    f"PUT: round {round_number}/{rounds}: {name}: {row['requests_per_s']:,.0f} req/s, "
                    f"p99 {row['p99_ms']:.0f} ms, {row['errors']} non-200"
                )
    summary = {name: {key: median([row[key] for row in rows]) for key in rows[0]} for name, rows in results.items()}
    names = list(SERVERS)
    shipped, no_outbox, no_publish = (summary[name]["requests_per_s"] for name in names[:3])
    outbox_ratio, publish_ratio = shipped / no_outbox, shipped / no_publish
    rows = [
        [name, f"{row['requests_per_s']:,.0f}", f"{row['p50_ms']:.0f}", f"{row['p99_ms']:.0f}", f"{row['errors']:.0f}"]
        for name, row in summary.items()
    ]
    table = markdown_table(
        [f"PUT /api/users/driver-status, {clients} clients", "requests/s", "p50 ms", "p99 ms", "non-200"], rows
    )
    table += (
        f"\n\nRatios: with outbox ÷ without outbox = **{outbox_ratio:.2f}** (target ≥ 0.85); "
        f"publishing on ÷ off = **{publish_ratio:.2f}** (target ≥ 0.85)."
    )
    return Section(
        title="PUT /api/users/driver-status under load",
        command=f"{COMMAND} --seconds {seconds:g} --rounds {rounds}",
        table=table,
        notes=(
            "One server process each, PostgreSQL 15, a private Redis, 32 keep-alive clients (bench/http_load.py), "
            "one driver per client. Django runs the sync view in a thread per request under ASGI; on two cores "
            "shared with the load generator and PostgreSQL the absolute rate is low for both servers: compare "
            "the ratios. uvicorn is the production server (docker-compose.yml): its websockets-sansio protocol "
            "writes each frame without a coroutine hop of its own, which is what the dashboard's fan-out needs "
            "(bench/fanout.py), and the daphne ÷ uvicorn ratio above is its HTTP comparison."
        ),
        targets=[
            Target("PUT with outbox ÷ without outbox", outbox_ratio, "≥ 0.85", outbox_ratio >= 0.85),
            Target("PUT publishing on ÷ off", publish_ratio, "≥ 0.85", publish_ratio >= 0.85),
        ],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"seconds": float, "rounds": int, "clients": int})
