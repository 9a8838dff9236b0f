"""`PUT /api/users/driver-status` at the database's pace: the endpoint against pgbench running the
same transaction, and what publishing and the transactional outbox cost on it.

Every case is `python -m ridehail.server` (what scripts/serve runs: uvicorn, one process per
core) under wrk: 32 keep-alive connections spread over 1,000 drivers, each request a toggle
(`{}`), so every request commits a change, writes its outbox row and publishes its event. Two
anchors, alternating with the servers in the same invocation, on PostgreSQL and a private Redis:
pgbench with 32 clients running the endpoint's transaction on the same tables
(bench/put_status.sql: lock, toggle and bump the driver's row in one UPDATE ... RETURNING, insert
the outbox row, commit), and an authenticated DRF `GET /api/users/me` on the same server (what
any DRF request with a token costs here, without the write).

    .venv/bin/python -m bench.put_status [--seconds 10] [--rounds 2] [--full]
    (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/ridehail_bench)
"""

import os
import re
import subprocess
import uuid
from pathlib import Path

import psycopg

from bench.common import PrivateRedis, free_port, median, production_env, python, wait_port, wait_ready
from bench.django_env import setup_django
from bench.report import Progress, Section, Target, cli, markdown_table, progress
from bench.wrk import run_wrk

COMMAND = ".venv/bin/python -m bench.put_status"
DRIVERS = 1000
CONNECTIONS = 32
SQL = Path(__file__).with_suffix(".sql")
STATUS, ME = "/api/users/driver-status", "/api/users/me"
# name: (app, path, method)
CASES = {
    "as shipped (DRF view, outbox)": ("ridehail.asgi:application", STATUS, "PUT"),
    "without outbox": ("bench.no_outbox_asgi:application", STATUS, "PUT"),
    "publishing off": ("bench.no_publish_asgi:application", STATUS, "PUT"),
    "GET /api/users/me (DRF, same server)": ("ridehail.asgi:application", ME, "GET"),
}


def fresh_database(url: str) -> None:
    """Drop and recreate the benchmark's database, so every run starts from the same empty tables.

    Runs used to pile up drivers (8,000 per status run), and a worker's rebuild over 70,000 of
    them showed up as a second of matching latency. Only a database whose name says "bench" is
    dropped: BENCH_DATABASE_URL pointed at real data stops here instead.
    """
    name = url.rsplit("/", 1)[1]
    if "bench" not in name:
        raise SystemExit(
            f"BENCH_DATABASE_URL names {name!r}: benchmarks drop and recreate their database, "
            "so its name must contain 'bench'"
        )
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drivers_with_tokens(database_url: str, count: int) -> list[str]:
    """`count` drivers with tokens, and the table pgbench picks them from."""
    from rest_framework.authtoken.models import Token

    from users.models import Role, User

    prefix = uuid.uuid4().hex[:8]
    users = User.objects.bulk_create(
        [User(username=f"bench-status-{prefix}-{n}", role=Role.DRIVER, password="!") for n in range(count)]
    )
    tokens = Token.objects.bulk_create([Token(user=user, key=Token.generate_key()) for user in users])
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_driver")
        conn.execute("CREATE TABLE bench_driver (n integer PRIMARY KEY, id uuid NOT NULL)")
        with conn.cursor().copy("COPY bench_driver (n, id) FROM STDIN") as copy:
            for n, user in enumerate(users, 1):
                copy.write_row((n, user.pk))
    return [token.key for token in tokens]


def empty_outbox(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE events_outboxevent")
        conn.execute("VACUUM ANALYZE users_user")


def serve_case(app: str, path: str, method: str, env: dict[str, str], tokens: list[str], seconds: float) -> dict:
    port = free_port()
    server = python("-m", "ridehail.server", app, env={**env, "PORT": str(port)}, stderr=open(os.devnull, "w"))
    try:
        wait_port(port)
        wait_ready(port)
        result = run_wrk(
            f"http://127.0.0.1:{port}{path}",
            seconds=seconds,
            connections=CONNECTIONS,
            method=method,
            body="{}" if method == "PUT" else "",
            tokens=tokens,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return result.__dict__


def pgbench(database_url: str, seconds: float) -> dict:
    """The same transaction straight on PostgreSQL: transactions/s and mean latency."""
    rest = database_url.removeprefix("postgres://")
    user_host, name = rest.rsplit("/", 1)
    user, host_port = user_host.split("@")
    host, _, port = host_port.partition(":")
    command = ["pgbench", "-n", "-c", str(CONNECTIONS), "-j", "2", "-T", str(int(seconds)), "-f", str(SQL)]
    command += ["-h", host, "-p", port or "5432", "-U", user, name]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return {
        "requests_per_s": float(re.search(r"tps = ([\d.]+)", output)[1]),
        "p50_ms": float(re.search(r"latency average = ([\d.]+) ms", output)[1]),
        "p99_ms": float("nan"),
        "non_2xx": int(re.search(r"number of failed transactions: (\d+)", output)[1]),
    }


def run(
    *, full: bool = False, seconds: float | None = None, rounds: int | None = None, report: Progress = progress
) -> Section:
    seconds = seconds or (15 if full else 10)
    rounds = rounds or (3 if full else 2)
    database_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ridehail_bench")
    fresh_database(database_url)
    cores = os.cpu_count() or 1
    results: dict[str, list[dict]] = {name: [] for name in [*CASES, "pgbench, the same transaction"]}
    with PrivateRedis() as private_redis:
        setup_django(database_url, private_redis.url)
        env = production_env(
            database_url,
            private_redis.url,
            WEB_CONCURRENCY=str(cores),
            RIDEHAIL_THROTTLE_DRIVER_STATUS="1000000/minute",
        )
        for round_number in range(1, rounds + 1):
            for name, (app, path, method) in CASES.items():
                # Drivers of its own for each case: a case that publishes nothing (or another's
                # versions) would leave the next one's publish-order checks without markers.
                tokens = drivers_with_tokens(database_url, DRIVERS)
                empty_outbox(database_url)
                row = serve_case(app, path, method, env, tokens, seconds)
                results[name].append(row)
                report(
                    f"PUT: round {round_number}/{rounds}: {name}: {row['requests_per_s']:,.0f} req/s, "
                    f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, {row['non_2xx']} non-2xx"
                )
            empty_outbox(database_url)
            row = pgbench(database_url, seconds)
            results["pgbench, the same transaction"].append(row)
            report(f"PUT: round {round_number}/{rounds}: pgbench: {row['requests_per_s']:,.0f} transactions/s")
    summary = {name: {key: median([row[key] for row in rows]) for key in rows[0]} for name, rows in results.items()}
    names = list(results)
    shipped, no_outbox, no_publish, me, anchor = (summary[name]["requests_per_s"] for name in names)
    database_ratio, outbox_ratio, publish_ratio = shipped / anchor, shipped / no_outbox, shipped / no_publish
    drf_ratio = shipped / me
    shipped_p99 = summary[names[0]]["p99_ms"]
    rows = [
        [
            name,
            f"{row['requests_per_s']:,.0f}",
            f"{row['p50_ms']:.1f}" + (" (mean)" if name.startswith("pgbench") else ""),
            "" if name.startswith("pgbench") else f"{row['p99_ms']:.1f}",
            f"{row['non_2xx']:.0f}",
            f"{row['requests_per_s'] / anchor:.2f}",
        ]
        for name, row in summary.items()
    ]
    table = markdown_table(
        ["PUT /api/users/driver-status, 32 connections", "requests/s", "p50 ms", "p99 ms", "errors", "÷ pgbench"], rows
    )
    table += (
        f"\n\nRatios: endpoint ÷ pgbench = **{database_ratio:.3f}** (target ≥ 0.12); "
        f"endpoint ÷ GET /api/users/me = **{drf_ratio:.2f}** (target ≥ 0.8); "
        f"with outbox ÷ without = **{outbox_ratio:.2f}** (target ≥ 0.90); publishing on ÷ off = "
        f"**{publish_ratio:.2f}**; p99 as shipped **{shipped_p99:.1f} ms** (target ≤ 50)."
    )
    return Section(
        title="PUT /api/users/driver-status against PostgreSQL's own pace",
        command=f"{COMMAND} --seconds {seconds:g} --rounds {rounds}",
        table=table,
        notes=(
            f"`python -m ridehail.server` with {cores} processes (scripts/serve), wrk with 32 keep-alive "
            "connections over 1,000 drivers, every request a toggle, answered by the DRF view (the only "
            "implementation). 'GET /api/users/me' is an authenticated DRF read on the same server: the cost of "
            "any token request here. pgbench runs bench/put_status.sql, the endpoint's transaction "
            "(row lock, update, outbox insert, commit); after the commit the endpoint also "
            "publishes to Redis and marks its own row published (ridehail/events/publisher.py), which pgbench "
            "does not. wrk, pgbench, "
            "PostgreSQL and the server share the two cores."
        ),
        targets=[
            Target("PUT driver-status ÷ pgbench same transaction", database_ratio, "≥ 0.12", database_ratio >= 0.12),
            Target("PUT driver-status ÷ GET /api/users/me, same run", drf_ratio, "≥ 0.8", drf_ratio >= 0.8),
            Target("PUT driver-status p99 ms, 32 connections", shipped_p99, "≤ 50", shipped_p99 <= 50),
            Target("PUT with outbox ÷ without outbox", outbox_ratio, "≥ 0.90", outbox_ratio >= 0.90),
            Target("PUT publishing on ÷ off", publish_ratio, "≥ 0.85", publish_ratio >= 0.85),
        ],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"seconds": float, "rounds": int})
