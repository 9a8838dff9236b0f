"""Which way of serving the HTTP API is fastest on this machine, same endpoints, same run,
alternating: uvicorn alone (`python -m ridehail.server all`: ASGI, one process per core, HTTP
and websockets on one port, no router), gunicorn's sync workers alone (`ridehail.server http`:
WSGI, `ridehail.wsgi`), the split's HTTP path, nginx with the committed router configuration
(deploy/nginx/ridehail.conf.template) in front of those gunicorn workers, and the same nginx in
front of uvicorn (the router's own cost: the same server with and without the hop).

This is the measurement behind the serving design (docs/performance.md, "Serving"): the split
(gunicorn for HTTP, the ASGI server for /ws/, a router on the one port) is worth its router only
if nginx -> gunicorn serves the API clearly faster than uvicorn alone *here*. Three endpoints,
each with wrk (32 keep-alive connections; gunicorn's sync workers close every connection, so
there wrk reconnects per request; nginx keeps wrk's connections and opens one to gunicorn per
request): the status toggle (`PUT /api/users/driver-status`), an authenticated DRF read
(`GET /api/users/me`), and the position report (`PUT /api/locations/driver-location`). Each
server is asked `/healthz` until it answers before the load starts: gunicorn binds before its
workers have loaded Django.

    .venv/bin/python -m bench.servers [--seconds 8] [--rounds 2] [--workers N] [--http-workers N] [--full]

--workers is uvicorn's process count (default: the machine's cores); --http-workers gunicorn's
(default: the same). Sync workers wait idle on every database and Redis round trip, which is why
gunicorn's documentation starts from 2 x cores + 1; both are reported in the table.
    (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/ridehail_bench)
"""

import os

from bench.common import PrivateRedis, Router, free_port, median, production_env, python, wait_port, wait_ready
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


# name: (role for `python -m ridehail.server`, behind the router); the production commands themselves
SERVERS = {
    "uvicorn": ("all", False),
    "gunicorn": ("http", False),
    "nginx -> gunicorn": ("http", True),
    "nginx -> uvicorn": ("all", True),
}
LABELS = {
    "uvicorn": "uvicorn alone (ridehail.server all)",
    "gunicorn": "gunicorn sync workers alone (ridehail.server http)",
    "nginx -> gunicorn": "nginx -> gunicorn sync workers (the split's HTTP path)",
    "nginx -> uvicorn": "nginx -> uvicorn (the router's own cost, same server behind it)",
}


def one_case(server: str, endpoint: str, env: dict[str, str], workers: int, seconds: float, db: str) -> dict:
    """One server under wrk on one endpoint; `workers`: its process count."""
    path, method, body, online = ENDPOINTS[endpoint]
    role, routed = SERVERS[server]
    tokens = online_drivers_with_tokens(DRIVERS)[1] if online else drivers_with_tokens(db, DRIVERS)
    empty_outbox(db)
    port = free_port()
    process = python(
        "-m",
        "ridehail.server",
        role,
        env={**env, "PORT": str(port), "WEB_CONCURRENCY": str(workers), "RIDEHAIL_TRUSTED_PROXIES": str(int(routed))},
        stdout=open(os.devnull, "w"),
        stderr=open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "a"),
    )
    router = None
    try:
        # Only HTTP is measured: the router's websocket upstream is named but never asked.
        router = Router(http_port=port, ws_port=free_port()).start() if routed else None
        wait_port(port)
        wait_ready(port)
        front = router.port if router else port
        wait_ready(front)
        result = run_wrk(
            f"http://127.0.0.1:{front}{path}",
            seconds=seconds,
            connections=CONNECTIONS,
            method=method,
            body=body,
            tokens=tokens,
        )
    finally:
        if router:
            router.stop()
        process.terminate()
        process.wait(timeout=60)
    return result.__dict__


def run(
    *,
    full: bool = False,
    seconds: float | None = None,
    rounds: int | None = None,
    workers: int | None = None,
    http_workers: int | None = None,
    report: Progress = progress,
) -> Section:
    seconds = seconds or (15 if full else 8)
    rounds = rounds or (3 if full else 2)
    workers = workers or os.cpu_count() or 1
    http_workers = http_workers or workers
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
        names = list(SERVERS)
        for round_number in range(1, rounds + 1):
            for index, endpoint in enumerate(ENDPOINTS):
                # A different server first each time: every case adds 1,000 drivers and leaves the
                # database and the machine warmer, so a fixed order would favour whoever goes first.
                shift = (round_number - 1 + index) % len(names)
                for server in names[shift:] + names[:shift]:
                    processes = workers if SERVERS[server][0] == "all" else http_workers
                    row = one_case(server, endpoint, env, processes, seconds, database_url)
                    results.setdefault((endpoint, server), []).append(row)
                    report(
                        f"servers: round {round_number}/{rounds}: {endpoint} on {server}: "
                        f"{row['requests_per_s']:,.0f} req/s, p99 {row['p99_ms']:.1f} ms, {row['non_2xx']} non-2xx"
                    )
    summary = {key: {name: median([row[name] for row in rows]) for name in rows[0]} for key, rows in results.items()}
    rows, ratios = [], {}
    for endpoint in ENDPOINTS:
        asgi = summary[(endpoint, "uvicorn")]["requests_per_s"]
        routed = summary[(endpoint, "nginx -> gunicorn")]["requests_per_s"]
        routed_asgi = summary[(endpoint, "nginx -> uvicorn")]["requests_per_s"]
        ratios[endpoint] = (routed / asgi if asgi else float("nan"), routed_asgi / asgi if asgi else float("nan"))
        for server in SERVERS:
            row = summary[(endpoint, server)]
            rows.append(
                [
                    endpoint,
                    LABELS[server],
                    f"{row['requests_per_s']:,.0f}",
                    f"{row['p50_ms']:.1f}",
                    f"{row['p99_ms']:.1f}",
                    f"{row['non_2xx']:.0f}",
                ]
            )
    headers = [
        "endpoint",
        f"server (uvicorn {workers} processes, gunicorn {http_workers})",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
    ]
    table = markdown_table(headers, rows)
    table += (
        "\n\nRatios (nginx -> gunicorn) ÷ uvicorn, and the router's own cost (nginx -> uvicorn) ÷ uvicorn: "
        + "; ".join(f"{name} **{split:.2f}**, {hop:.2f}" for name, (split, hop) in ratios.items())
    )
    load = os.getloadavg()
    # Other work on the machine moves these figures more than anything measured here: say how much there was.
    table += f"\n\nLoad average at the end: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} ({os.cpu_count()} cores)."
    return Section(
        title="Serving the HTTP API: uvicorn alone against the split's nginx -> gunicorn sync workers",
        command=f"{COMMAND} --seconds {seconds:g} --rounds {rounds} --workers {workers} --http-workers {http_workers}",
        table=table,
        notes=(
            "The same Django project under each, alternating, on PostgreSQL and a private Redis, wrk with 32 "
            "connections (keep-alive to uvicorn and to nginx; gunicorn's sync workers close each connection, so "
            "nginx opens one per request, and so does wrk against gunicorn alone; nginx opens one per request to "
            "uvicorn too, as the router's config has no upstream keep-alive). The router's own cost is "
            "nginx -> uvicorn ÷ uvicorn, the same server with and without it. Production serves the split "
            '(docs/performance.md, "Serving").'
        ),
        targets=[
            Target(f"(nginx -> gunicorn) ÷ uvicorn, {name} (reported)", split, "—", True)
            for name, (split, _) in ratios.items()
        ],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"seconds": float, "rounds": int, "workers": int, "http_workers": int})
