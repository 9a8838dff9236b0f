"""The options every start command gives the production ASGI server (uvicorn).

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
cores), from the environment alone.
"""

import os
import sys

WS_MAX_SIZE = 65536  # bytes per websocket message

UVICORN_OPTIONS = ["--no-proxy-headers", "--ws-max-size", str(WS_MAX_SIZE), "--ws-per-message-deflate", "false"]


def uvicorn_command(*, host: str, port: int) -> list[str]:
    """`uvicorn ...` arguments (after the program name) serving this project on host:port."""
    return ["ridehail.asgi:application", "--host", host, "--port", str(port), *UVICORN_OPTIONS]


def serve_command(*, app: str = "ridehail.asgi:application") -> list[str]:
    """The production server's command line, from PORT and WEB_CONCURRENCY."""
    port = _positive_int("PORT", 8000)
    workers = _positive_int("WEB_CONCURRENCY", os.cpu_count() or 1)
    command = [sys.executable, "-m", "uvicorn", *uvicorn_command(host="0.0.0.0", port=port)]
    command[3] = app
    return [*command, "--workers", str(workers), "--no-access-log"]


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        sys.exit(f"{name}={raw!r} must be a whole number of at least 1")
    return int(raw)


if __name__ == "__main__":
    command = serve_command(app=sys.argv[1] if len(sys.argv) > 1 else "ridehail.asgi:application")
    os.execv(command[0], command)
