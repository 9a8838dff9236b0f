"""The outbox relay: publishes what the fast path could not, and prunes what went out.

It runs as a thread inside every worker process (`run_subscriber`), so a committed event
reaches Redis with nothing running but the web server, the workers and Redis. Several
relays at once are safe: publishing is idempotent per event and ordered per key. The
relay does not trim streams: only the web processes do, with their RIDEHAIL_STREAM_MAXLEN,
so a worker started with another value cannot shorten a stream behind their back.
"""

import logging
import threading
import time
from datetime import timedelta

import redis
from django.conf import settings
from django.db import Error as DatabaseError
from django.db import close_old_connections, connections
from django.utils import timezone

from ridehail.events.connection import Backoff
from ridehail.events.models import OutboxEvent
from ridehail.events.publisher import BATCH_SIZE, LEAVE_TO_THE_FAST_PATH, publish_pending_rows

logger = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 60.0


def relay_once(*, trim: bool = True, older_than: float = 0.0) -> int:
    """Publish every pending row (older than `older_than` seconds), batch after batch; returns how many."""
    total = new = 0
    while True:
        rows, fresh = publish_pending_rows(trim=trim, older_than=older_than)
        total, new = total + rows, new + fresh
        if rows < BATCH_SIZE:
            break
    if new:
        # Only events that had not reached Redis: the fast path had failed (Redis down or
        # slow) or its process died after the commit.
        logger.info("outbox: published %d event(s) that missed the fast path", new)
    return total


def prune_published(*, older_than: timedelta) -> int:
    deleted, _ = OutboxEvent.objects.filter(published_at__lt=timezone.now() - older_than).delete()
    return deleted


class OutboxRelay(threading.Thread):
    def __init__(self, stop: threading.Event, *, interval: float = 1.0) -> None:
        super().__init__(name="outbox-relay", daemon=True)
        self.stop = stop
        self.interval = interval
        self.backoff = Backoff(first=interval, maximum=10.0)

    def run(self) -> None:
        delay, last_prune = 0.0, 0.0
        while not self.stop.wait(delay):
            close_old_connections()
            try:
                relay_once(trim=False, older_than=LEAVE_TO_THE_FAST_PATH)
                if time.monotonic() - last_prune > PRUNE_EVERY_SECONDS:
                    prune_published(older_than=timedelta(seconds=settings.RIDEHAIL_OUTBOX_RETENTION))
                    last_prune = time.monotonic()
                delay = self.interval
                self.backoff.reset()
            except (redis.RedisError, DatabaseError) as exc:
                delay = self.backoff.next_delay()
                logger.warning("outbox: relay failed (%s); retrying in %.1fs", exc, delay)
        connections.close_all()
