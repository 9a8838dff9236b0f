"""`python manage.py check_services`: fail fast, in one line, when Redis or the database is missing."""

from typing import Any

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.utils import Error as DatabaseError

REDIS_HINT = (
    "Redis is not reachable at {url}. Start one with: "
    "redis-server --daemonize yes --port 6379 --save '' --appendonly no "
    "(or: docker run -d -p 6379:6379 redis:7), or point REDIS_URL at yours."
)


class Command(BaseCommand):
    help = "Check that Redis and the database answer; say how to fix it if not."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()
        except redis.RedisError:
            raise CommandError(REDIS_HINT.format(url=settings.REDIS_URL)) from None
        try:
            connection.ensure_connection()
        except DatabaseError as exc:
            raise CommandError(f"The database is not reachable ({exc}). Check DATABASE_URL.") from None
        self.stdout.write(f"Redis ({settings.REDIS_URL}) and the database ({connection.vendor}) answer.")
