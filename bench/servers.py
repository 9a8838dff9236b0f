"""Which server serves the HTTP API best on this machine: the production command as shipped
(`python -m ridehail.server`: uvicorn, ASGI, one process per core) against gunicorn with sync
workers (WSGI, `ridehail.wsgi`), same endpoints, same run, alternating.

This is the measurement behind the serving design (docs/serving.md): splitting the HTTP API
onto sync WSGI workers (and the websockets onto an ASGI server behind a router) is worth its
router only if gunicorn serves the API clearly faster *here*, in the same run. Three endpoints,
each with wrk (32 keep-alive connections; gunicorn's sync workers close every connection, so
there wrk reconnects per request, as a proxy in front of them would): the status toggle
(`PUT /api/users/driver-status`), an authenticated DRF read (`GET /api/users/me`), and the
position report (`PUT /api/locations/driver-location`). Each server is asked `/healthz` until
it answers before the load starts: gunicorn binds before its workers have loaded Django.

    .venv/bin/python -m bench.servers [--seconds 8] [--rounds 2] [--workers N] [--full]
    (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/ridehail_bench)
"""

import os

from bench.common import PrivateRedis, free_port, median, production_env, python, wait_port, wait_ready
from bench.django_env import setup_django
from bench.positions import online_drivers_with_tokens
from bench.put_status import drivers_with_tokens, empty_outbox, fresh_database
from bench.report import Progress, Section, Target, cli, markdown_table, progress
from bench.wrk import run_wrk

COMMAND = ".venv/bin/python -m bench.servers"
DRIVERS = 1000
CONNECTIONS = 32
POSITION = '{"lat": 52.5200, "lng": 13.4050}'
# name: (path, method, body, drivers online)
ENDPOINTS = {
    "PUT /api/users/driver-status": ("/api/users/driver-status", "PUT", "{}", False),
    "GET /api/users/me": ("/api/users/me", "GET", "", False),
    "PUT /api/locations/driver-location": ("/api/locations/driver-location", "PUT", POSITION, True),
}


def server_command(server: str, port: int, workers: int) -> list[str]:
    if server == "uvicorn":
        return ["-m", "ridehail.server"]  # reads PORT and WEB_CONCURRENCY
    return ["-m", "gunicorn", "ridehail.wsgi:application", "-k", "sync", "-w", str(workers), "-b", f"127.0.0.1:{port}"]


def one_case(server: str, endpoint: str, env: dict[str, str], workers: int, seconds: float, db: str) -> dict:
    path, method, body, online = ENDPOINTS[endpoint]
    tokens = online_drivers_with_tokens(DRIVERS)[1] if online else drivers_with_tokens(db, DRIVERS)
    empty_outbox(db)
    port = free_port()
    process = python(
        *server_command(server, port, workers),
        env={**env, "PORT": str(port), "WEB_CONCURRENCY": str(workers)},
        stdout=open(os.devnull, "w"),
        stderr=open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "a"),
    )
    try:
        wait_port(port)
        wait_ready(port)
        result = run_wrk(
            f"http://127.0.0.1:{port}{path}",
            seconds=seconds,
            connections=CONNECTIONS,
            method=method,
            body=body,
            tokens=tokens,
        )
    finally:
        process.terminate()
        process.wait(timeout=60)
    return result.__dict__


def run(
    *,
    full: bool = False,
    seconds: float | None = None,
    rounds: int | None = None,
    workers: int | None = None,
    report: Progress = progress,
) -> Section:
    seconds = seconds or (15 if full else 8)
    rounds = rounds or (3 if full else 2)
    workers = workers or os.cpu_count() or 1
    database_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ridehail_bench")
    fresh_database(database_url)
    results: dict[tuple[str, str], list[dict]] = {}
    with PrivateRedis() as private_redis:
        setup_django(database_url, private_redis.url)
        env = production_env(
            database_url,
            private_redis.url,
            RIDEHAIL_THROTTLE_DRIVER_STATUS="1000000/minute",
            RIDEHAIL_THROTTLE_DRIVER_LOCATION="1000000/minute",
        )
        for round_number in range(1, rounds + 1):
            for endpoint in ENDPOINTS:
                for server in ("uvicorn", "gunicorn"):
                    row = one_case(server, endpoint, env, workers, seconds, database_url)
                    results.setdefault((endpoint, server), []).append(row)
                    report(
                        f"servers: round {round_number}/{rounds}: {endpoint} on {server}: "
                        f"{row['requests_per_s']:,.0f} req/s, p99 {row['p99_ms']:.1f} ms, {row['non_2xx']} non-2xx"
                    )
    summary = {key: {name: median([row[name] for row in rows]) for name in rows[0]} for key, rows in results.items()}
    rows, ratios = [], {}
    for endpoint in ENDPOINTS:
        asgi, wsgi = summary[(endpoint, "uvicorn")], summary[(endpoint, "gunicorn")]
        ratios[endpoint] = wsgi["requests_per_s"] / asgi["requests_per_s"] if asgi["requests_per_s"] else float("nan")
        for server, row in (("uvicorn (scripts/serve)", asgi), ("gunicorn, sync workers", wsgi)):
            rows.append(
                [
                    endpoint,
                    server,
                    f"{row['requests_per_s']:,.0f}",
                    f"{row['p50_ms']:.1f}",
                    f"{row['p99_ms']:.1f}",
                    f"{row['non_2xx']:.0f}",
                ]
            )
    headers = ["endpoint", f"server, {workers} processes", "requests/s", "p50 ms", "p99 ms", "non-2xx"]
    table = markdown_table(headers, rows)
    table += "\n\nRatios gunicorn ÷ uvicorn: " + "; ".join(f"{name} **{ratio:.2f}**" for name, ratio in ratios.items())
    return Section(
        title="Serving the HTTP API: uvicorn (ASGI) against gunicorn sync workers (WSGI)",
        command=f"{COMMAND} --seconds {seconds:g} --rounds {rounds} --workers {workers}",
        table=table,
        notes=(
            "The same Django project under both servers, alternating, on PostgreSQL and a private Redis, wrk with "
            "32 connections (keep-alive under uvicorn; gunicorn's sync workers close each connection). A split "
            "(gunicorn for HTTP, an ASGI server for websockets) also needs a router on the one port, whose cost "
            "comes on top of the gunicorn figure (docs/serving.md)."
        ),
        targets=[Target(f"gunicorn ÷ uvicorn, {name} (reported)", ratio, "—", True) for name, ratio in ratios.items()],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"seconds": float, "rounds": int, "workers": int})
