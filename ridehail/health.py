"""Liveness and readiness probes for orchestrators (docker compose, Kubernetes)."""

import redis
from django.db import connection
from django.db.utils import Error as DatabaseError
from django.http import HttpRequest, JsonResponse

from ridehail.events.connection import shared_redis
from ridehail.http import allow_methods


@allow_methods("GET")
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up; says nothing about its dependencies."""
    return JsonResponse({"status": "ok"})


@allow_methods("GET")
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when both the database and Redis answer; a 503 names what failed."""
    failed = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        failed["database"] = str(exc).strip() or type(exc).__name__
    try:
        shared_redis().ping()
    except redis.RedisError as exc:
        failed["redis"] = str(exc) or type(exc).__name__
    if failed:
        return JsonResponse({"status": "unavailable", "failed": failed}, status=503)
    return JsonResponse({"status": "ok"})
