"""`python manage.py check_services`: fail fast, in one line, when Redis or the database is missing.

With REDIS_CLUSTER it asks the cluster (every slot served) and, beside it, the channel layer's
own Redis (RIDEHAIL_CHANNEL_LAYER_URL), and says which of the two failed."""

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.utils import Error as DatabaseError

from ridehail.events.connection import worker_redis
from ridehail.health import channel_layer_problem, redis_problem

TIMEOUT = 2.0


def redis_hint(url: str, variable: str = "REDIS_URL") -> str:
    """How to start the Redis that `url` names (its own port), or point `variable` elsewhere."""
    parts = urlsplit(url)
    port = parts.port or 6379
    start = f"redis-server --daemonize yes --port {port} --save '' --appendonly no"
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        start = f"start the Redis at {parts.hostname}:{port}"
    return (
        f"Redis is not reachable at {url}. Start one with: {start} "
        f"(or: docker run -d -p {port}:6379 redis:7), or point {variable} at yours."
    )


def cluster_hint(url: str, problem: str) -> str:
    """What to do when the Redis Cluster that REDIS_URL names does not serve."""
    return (
        f"The Redis Cluster at {url} (REDIS_CLUSTER=1) does not serve: {problem}. "
        "Point REDIS_URL at any node of a running cluster; for a local one, `python -m tests.cluster` "
        "starts 3 masters + 3 replicas and prints its REDIS_URL (REDIS_CLUSTER=0 for a single Redis)."
    )


class Command(BaseCommand):
    help = "Check that Redis and the database answer; say how to fix it if not."

    def handle(self, *args: Any, **options: Any) -> None:
        if problem := redis_problem(lambda: worker_redis(timeout=TIMEOUT)):
            if settings.REDIS_CLUSTER:
                raise CommandError(cluster_hint(settings.REDIS_URL, problem))
            raise CommandError(redis_hint(settings.REDIS_URL))
        layer = settings.RIDEHAIL_CHANNEL_LAYER_URL
        separate_layer = layer != settings.REDIS_URL
        if separate_layer and channel_layer_problem(timeout=TIMEOUT):
            raise CommandError(f"The channel layer's {redis_hint(layer, 'RIDEHAIL_CHANNEL_LAYER_URL')}")
        try:
            connection.ensure_connection()
        except DatabaseError as exc:
            raise CommandError(f"The database is not reachable ({exc}). Check DATABASE_URL.") from None
        redis_named = (
            f"Redis Cluster ({settings.REDIS_URL})" if settings.REDIS_CLUSTER else f"Redis ({settings.REDIS_URL})"
        )
        if separate_layer:
            redis_named += f", the channel layer's Redis ({layer})"
        self.stdout.write(f"{redis_named} and the database ({connection.vendor}) answer.")
