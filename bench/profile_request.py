"""One token request at a time through Django's WSGI handler, in process: Python calls, queries
and a cProfile of each hot endpoint.

Function calls per request are deterministic, so they compare code on a machine whose load
swings (the servers' throughput does not); the profile says where they go. No server, no
network between client and Django: this is the Python a request costs, not the server's.

    .venv/bin/python -m bench.profile_request [me status position] [--profile] [--requests 300]
    (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/ridehail_bench; REDIS_URL)
"""

import argparse
import cProfile
import io
import os
import pstats
import sys
import uuid
from typing import Any

ENDPOINTS = {
    "me": ("GET", "/api/users/me", b""),
    "status": ("PUT", "/api/users/driver-status", b"{}"),  # a toggle: every request commits and publishes
    "position": ("PUT", "/api/locations/driver-location", b'{"lat": 52.52, "lng": 13.405}'),
}


class Counting:
    """A database execute wrapper that writes down every statement."""

    def __init__(self, statements: list[str]) -> None:
        self.statements = statements

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.statements.append(sql)
        return execute(sql, params, many, context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("endpoints", nargs="*", default=list(ENDPOINTS))
    parser.add_argument("--profile", action="store_true", help="print the 40 costliest functions of each")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ridehail_bench")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="ridehail.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-only-secret-key-not-for-production-use-0123456789",
        RIDEHAIL_THROTTLE_DRIVER_STATUS="1000000/minute",
        RIDEHAIL_THROTTLE_DRIVER_LOCATION="1000000/minute",
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from users.models import Role, User

    call_command("migrate", verbosity=0)
    application = get_wsgi_application()
    driver = User.objects.create(username=f"profile-{uuid.uuid4().hex[:8]}", role=Role.DRIVER, password="!")
    token = Token.objects.create(user=driver, key=Token.generate_key()).key

    def request(name: str) -> str:
        method, path, body = ENDPOINTS[name]
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_AUTHORIZATION": f"Token {token}",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        statuses: list[str] = []
        answer = application(environ, lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(answer)
        answer.close()
        return statuses[0]

    for name in args.endpoints:
        if name == "position":
            User.objects.filter(pk=driver.pk).update(is_available=True)  # an offline driver is a 409
        for _ in range(50):  # warm: the URL resolver, the pool, the scripts loaded in Redis
            request(name)
        statements: list[str] = []
        with connection.execute_wrapper(Counting(statements)):
            status = request(name)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.requests):
            request(name)
        profile.disable()
        stats = pstats.Stats(profile)
        calls = stats.total_calls / args.requests  # type: ignore[attr-defined]
        print(f"{name}: {status}, {calls:,.0f} calls/request, {len(statements)} statements (BEGIN/COMMIT not counted)")
        if args.profile:
            stats.sort_stats("tottime").print_stats(40)


if __name__ == "__main__":
    main()
