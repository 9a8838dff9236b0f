"""Liveness and readiness probes for orchestrators (docker compose, Kubernetes)."""

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as CheckTimeout

import redis
from django.db import connection
from django.db.utils import Error as DatabaseError
from django.http import HttpRequest, JsonResponse

from ridehail.events.connection import shared_redis
from ridehail.web.http import allow_methods

# Seconds /readyz waits for each dependency (they are asked at the same time): a stalled one is
# reported as down within the probe's own timeout (docker-compose.yml gives it 3 s), however
# long its query would hang.
READY_CHECK_TIMEOUT = 2.0

# The checks run here, so a hung one cannot hold the request. A few threads: while a stalled
# database holds them, further checks queue, time out and say so; nothing piles up.
_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")


@allow_methods("GET")
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up; says nothing about its dependencies."""
    return JsonResponse({"status": "ok"})


@allow_methods("GET")
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when both the database and Redis answer within READY_CHECK_TIMEOUT; a 503 names what failed."""
    running = {"database": _checks.submit(_database), "redis": _checks.submit(_redis)}
    failed = {}
    for name, check in running.items():
        try:
            error = check.result(timeout=READY_CHECK_TIMEOUT)
        except CheckTimeout:
            error = f"no answer within {READY_CHECK_TIMEOUT:g}s"
        if error:
            failed[name] = error
    if failed:
        return JsonResponse({"status": "unavailable", "failed": failed}, status=503)
    return JsonResponse({"status": "ok"})


def _database() -> str:
    """'' when the database answers; why not otherwise. Runs in a check thread: its connection is its own."""
    try:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        finally:
            connection.close()  # back to the pool: the thread keeps nothing between checks
    except DatabaseError as exc:
        return str(exc).strip() or type(exc).__name__
    return ""


def _redis() -> str:
    try:
        shared_redis().ping()
    except redis.RedisError as exc:
        return str(exc) or type(exc).__name__
    return ""
