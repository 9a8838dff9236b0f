"""The options every start command gives the production ASGI server (uvicorn).

`--no-proxy-headers`, always. uvicorn otherwise rewrites the client address from
X-Forwarded-For: by default for any peer on 127.0.0.1 (so a client on the same host, or a
sidecar, could pick its own address), and with `--forwarded-allow-ips=*` it takes the
*leftmost* address, the one the client wrote itself. Rate limits per client address would then
be reset by a new header on each try. Instead the server passes the headers through untouched
and Django alone decides what to believe: X-Forwarded-For the RIDEHAIL_TRUSTED_PROXIES hops from
the right (ridehail/throttling.py), X-Forwarded-Proto only with DJANGO_HTTPS and a trusted proxy
(settings.SECURE_PROXY_SSL_HEADER). One rule, the same flags whatever the settings say.

`--ws-max-size 65536`: dashboards only listen; a client sending more than 64 KiB at once is
closed (1009).

The Dockerfile and docker-compose.yml spell these flags out; a start script in Python can use
`uvicorn_command`.
"""

WS_MAX_SIZE = 65536  # bytes per websocket message

UVICORN_OPTIONS = ["--no-proxy-headers", "--ws-max-size", str(WS_MAX_SIZE)]


def uvicorn_command(*, host: str, port: int) -> list[str]:
    """`uvicorn ...` arguments (after the program name) serving this project on host:port."""
    return ["ridehail.asgi:application", "--host", host, "--port", str(port), *UVICORN_OPTIONS]
