"""The only place that builds Redis clients: everything else asks here."""

from functools import cache

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry


@cache
def shared_redis() -> redis.Redis:
    """The process-wide pooled client used by the web side (publisher, health checks, reads).

    Short timeouts: a request must never hang on a slow or missing Redis.
    """
    timeout = settings.RIDEHAIL_PUBLISH_TIMEOUT
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )


def worker_redis() -> redis.Redis:
    """A fresh client for a long-running worker, with timeouts that tolerate a busy Redis.

    No silent retries: redis-py would reconnect (and resubscribe) behind our back, and
    the worker would never learn that it missed messages and must rebuild its state.
    """
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=10,
        socket_connect_timeout=3,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
    )
