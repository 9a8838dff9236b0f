"""`python manage.py check_services`: fail fast, in one line, when Redis or the database is missing."""

from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.utils import Error as DatabaseError

from ridehail.events.connection import worker_redis


def redis_hint(url: str) -> str:
    """How to start the Redis that `url` names (its own port), or point REDIS_URL elsewhere."""
    parts = urlsplit(url)
    port = parts.port or 6379
    start = f"redis-server --daemonize yes --port {port} --save '' --appendonly no"
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        start = f"start the Redis at {parts.hostname}:{port}"
    return (
        f"Redis is not reachable at {url}. Start one with: {start} "
        f"(or: docker run -d -p {port}:6379 redis:7), or point REDIS_URL at yours."
    )


class Command(BaseCommand):
    help = "Check that Redis and the database answer; say how to fix it if not."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            worker_redis(timeout=2.0).ping()
        except redis.RedisError:
            raise CommandError(redis_hint(settings.REDIS_URL)) from None
        try:
            connection.ensure_connection()
        except DatabaseError as exc:
            raise CommandError(f"The database is not reachable ({exc}). Check DATABASE_URL.") from None
        self.stdout.write(f"Redis ({settings.REDIS_URL}) and the database ({connection.vendor}) answer.")
