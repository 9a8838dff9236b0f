"""The web servers' start commands and their options: gunicorn (HTTP) and uvicorn (websockets).

`--no-proxy-headers`, always. uvicorn otherwise rewrites the client address from
X-Forwarded-For: by default for any peer on 127.0.0.1 (so a client on the same host, or a
sidecar, could pick its own address), and with `--forwarded-allow-ips=*` it takes the
*leftmost* address, the one the client wrote itself. Rate limits per client address would then
be reset by a new header on each try. Instead the server passes the headers through untouched
and Django alone decides what to believe: X-Forwarded-For the RIDEHAIL_TRUSTED_PROXIES hops from
the right (ridehail/web/throttling.py), X-Forwarded-Proto only with DJANGO_HTTPS and a trusted proxy
(settings.SECURE_PROXY_SSL_HEADER). One rule, the same flags whatever the settings say.

`--ws-max-size 65536`: dashboards only listen; a client sending more than 64 KiB at once is
closed (1009).

`--ws-per-message-deflate false`: browsers offer compression and uvicorn accepts it by default,
which would compress every frame once *per socket*: the fan-out encodes a frame once for a
thousand dashboards, and deflating a ~100 KB positions frame a thousand times a second would
cost more CPU than everything else together. Dashboards are operators' screens on a decent link.

`scripts/serve` (what docker-compose.yml runs) is `python -m ridehail.server`: HTTP and
websockets on $PORT (default 8000), with $WEB_CONCURRENCY processes (default: the machine's
cores), from the environment alone. A `module:attribute` argument serves that ASGI app instead,
with the same flags (the benchmarks' anchors).

`python -m ridehail.server http` (`scripts/serve http`) serves the HTTP API in production:
gunicorn's sync workers (WSGI, `ridehail.wsgi`) behind the router (deploy/nginx/ridehail.conf.template),
which sends /ws/ to the command above (docker-compose.yml: router, web, ws). Through the router
they served the API 1.4-1.9x faster than uvicorn alone here (bench/servers.py, docs/performance.md
"Serving"). The one-port uvicorn command stays for a
single process without a router (tests/chaos.py, a small install). gunicorn's flags, for the
same reasons as uvicorn's:

`--forwarded-allow-ips ""`: gunicorn otherwise believes X-Forwarded-Proto (and its kin) from a
peer on 127.0.0.1 and sets the request's scheme from it, a second rule beside Django's. Trusting
no peer leaves that to Django alone, as above. gunicorn never rewrites the client address.

`--worker-tmp-dir /dev/shm`: each worker's heartbeat is a file it touches; on a container's
overlay filesystem that write can stall a worker (gunicorn's docs, "blocking os.fchmod").

`--no-control-socket`: gunicorn 25+ opens one under $HOME by default, which a service user may not have.
"""

import os
import sys

WS_MAX_SIZE = 65536  # bytes per websocket message

UVICORN_OPTIONS = ["--no-proxy-headers", "--ws-max-size", str(WS_MAX_SIZE), "--ws-per-message-deflate", "false"]


def uvicorn_command(*, host: str, port: int, app: str = "ridehail.asgi:application") -> list[str]:
    """`uvicorn ...` arguments (after the program name) serving this project on host:port."""
    return [app, "--host", host, "--port", str(port), *UVICORN_OPTIONS]


GUNICORN_OPTIONS = [
    "--worker-class",
    "sync",
    "--forwarded-allow-ips",
    "",
    "--worker-tmp-dir",
    "/dev/shm",
    "--no-control-socket",
]


def gunicorn_command(*, host: str, port: int, workers: int) -> list[str]:
    """`gunicorn ...` arguments (after the program name) serving this project's HTTP on host:port."""
    return ["ridehail.wsgi:application", "--bind", f"{host}:{port}", "--workers", str(workers), *GUNICORN_OPTIONS]


ROLES = ("all", "http")


def serve_command(role: str = "all", *, app: str = "ridehail.asgi:application") -> list[str]:
    """The server's command line for `role` (see above), from PORT and WEB_CONCURRENCY.

    `app` replaces the ASGI application (the benchmarks' bare anchors, under the same flags).
    """
    if role not in ROLES:
        sys.exit(f"unknown role {role!r}: one of {', '.join(ROLES)}, or an ASGI app as module:attribute")
    port = _positive_int("PORT", 8000)
    workers = _positive_int("WEB_CONCURRENCY", os.cpu_count() or 1)
    if role == "http":
        return [sys.executable, "-m", "gunicorn", *gunicorn_command(host="0.0.0.0", port=port, workers=workers)]
    uvicorn = uvicorn_command(host="0.0.0.0", port=port, app=app)
    return [sys.executable, "-m", "uvicorn", *uvicorn, "--workers", str(workers), "--no-access-log"]


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        sys.exit(f"{name}={raw!r} must be a whole number of at least 1")
    return int(raw)


def _from_arguments(arguments: list[str]) -> list[str]:
    """`[all | http | APP]`: a `module:attribute` is an ASGI app served as `all`."""
    if not arguments:
        return serve_command()
    if ":" in arguments[0]:
        return serve_command(app=arguments[0])
    return serve_command(arguments[0])


if __name__ == "__main__":
    command = _from_arguments(sys.argv[1:])
    os.execv(command[0], command)
