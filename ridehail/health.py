"""Liveness and readiness probes for orchestrators (docker compose, Kubernetes)."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as CheckTimeout

import redis
from django.conf import settings
from django.db import connection
from django.db.utils import Error as DatabaseError
from django.http import HttpRequest, JsonResponse

from ridehail.events.connection import channel_layer_redis, shared_redis
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
    """Ready when both the database and Redis answer within READY_CHECK_TIMEOUT; a 503 names what failed.

    Beside a Redis Cluster the channel layer has a Redis of its own (RIDEHAIL_CHANNEL_LAYER_URL),
    asked too. Without it every request is still served, only dashboards are refused (4503: a
    sign-out could not reach them), so it does not make the process unready, which would take
    the whole API out of the load balancer for the dashboards' sake: the answer stays 200 and
    says `"status": "degraded"`, naming it under `degraded`.
    """
    checks = {"database": _database, "redis": _redis}
    if settings.RIDEHAIL_CHANNEL_LAYER_URL != settings.REDIS_URL:  # else the redis check asked that server
        checks["channel_layer"] = _channel_layer
    running = {name: _checks.submit(check) for name, check in checks.items()}
    failed = {}
    for name, check in running.items():
        try:
            error = check.result(timeout=READY_CHECK_TIMEOUT)
        except CheckTimeout:
            error = f"no answer within {READY_CHECK_TIMEOUT:g}s"
        if error:
            failed[name] = error
    degraded = {"degraded": {"channel_layer": failed.pop("channel_layer")}} if "channel_layer" in failed else {}
    if failed:
        return JsonResponse({"status": "unavailable", "failed": failed, **degraded}, status=503)
    return JsonResponse({"status": "degraded" if degraded else "ok", **degraded})


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
    return redis_problem(shared_redis)


def _channel_layer() -> str:
    return channel_layer_problem(timeout=READY_CHECK_TIMEOUT)


def redis_problem(client: Callable[[], redis.Redis]) -> str:
    """'' when Redis answers; why not otherwise. On a cluster it must also say every slot is served
    (`cluster_state:ok`): a cluster in `fail` state refuses every command on keys (CLUSTERDOWN),
    though its nodes still answer PING. `client` is called here: a cluster client is built by
    reaching a node, which can fail too."""
    try:
        if not settings.REDIS_CLUSTER:
            client().ping()
            return ""
        state = client().execute_command("CLUSTER INFO").get("cluster_state")
    except redis.RedisError as exc:
        return str(exc) or type(exc).__name__
    return "" if state == "ok" else f"the cluster answers but is not serving every slot (cluster_state:{state})"


def channel_layer_problem(*, timeout: float) -> str:
    """'' when the channel layer's Redis (RIDEHAIL_CHANNEL_LAYER_URL) answers; why not otherwise."""
    try:
        channel_layer_redis(settings.RIDEHAIL_CHANNEL_LAYER_URL, timeout=timeout).ping()
    except redis.RedisError as exc:
        return str(exc) or type(exc).__name__
    return ""
