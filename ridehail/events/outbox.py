"""The outbox relay: publishes every row the request that committed it did not, and prunes what went out.

It runs as a thread inside every worker process (`run_subscriber`), so a committed event
reaches Redis with nothing running but the web server, the workers and Redis. A request that
leaves a row to the relay PUBLISHes a wake-up (publisher.py); the worker hears it on its one
subscribed connection and sets `wake` (pubsub.py), so such a row goes out at once. The same
wait ends after `interval` for a scan that finds what nobody could announce (Redis was down,
a process died after its commit, a wake-up sent while the worker was reconnecting). Several relays at
once are safe: publishing is idempotent per event and ordered per key. The relay does not
trim streams: only the web processes do, with their RIDEHAIL_STREAM_MAXLEN, so a worker
started with another value cannot shorten a stream behind their back.
"""

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

from ridehail.events.connection import Backoff
from ridehail.events.models import OutboxEvent
from ridehail.events.publisher import BATCH_SIZE, publish_pending

logger = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 60.0


def relay_once(*, trim: bool = True) -> int:
    """Publish every pending row, batch after batch; returns how many."""
    total = new = 0
    while True:
        batch = publish_pending(trim=trim)
        total, new = total + batch.rows, new + batch.new
        if batch.rows < BATCH_SIZE or batch.marked < batch.rows:
            # The last batch, or one whose rows stay pending (no replica confirmed them): the
            # next batch would be the same rows; the next round tries them again.
            break
    if new:
        # Events that had not reached Redis: their request left them to the relay (Redis was
        # down or slow, an older version of the key was pending) or its process died.
        logger.info("outbox: published %d event(s) that their request did not", new)
    return total


PRUNE_BATCH = 10_000  # rows per DELETE: each stays well within RIDEHAIL_DB_STATEMENT_TIMEOUT


def prune_published(*, older_than: timedelta) -> int:
    """Delete rows published before `older_than`, oldest first, in batches.

    One DELETE of a day's rows at thousands of events a second would outlast the statement
    timeout, be cancelled every time, and the table would only grow.
    """
    cutoff, deleted = timezone.now() - older_than, 0
    while True:
        old = OutboxEvent.objects.filter(published_at__lt=cutoff).order_by("id")
        batch, _ = OutboxEvent.objects.filter(id__in=list(old.values_list("id", flat=True)[:PRUNE_BATCH])).delete()
        deleted += batch
        if batch < PRUNE_BATCH:
            return deleted


class OutboxRelay(threading.Thread):
    def __init__(self, stop: threading.Event, *, interval: float = 1.0) -> None:
        super().__init__(name="outbox-relay", daemon=True)
        self.stop = stop
        self.interval = interval
        self.backoff = Backoff(first=interval, maximum=10.0)
        self.wake = threading.Event()  # set by the worker's subscriber on a wake-up (RELAY_WAKE)
        self.rounds = 0  # rounds finished: how a test knows the first scan is over

    def run(self) -> None:
        last_prune = 0.0
        while not self.stop.is_set():
            # Whatever goes wrong in a round (Redis, the database, a row no one foresaw) is
            # logged with its traceback, and the next round runs: a relay that dies leaves
            # every later event of a process whose request could not publish it unannounced.
            self.wake.clear()  # a wake-up from here on means another round: this one may miss its row
            try:
                close_old_connections()
                relay_once(trim=False)
                if time.monotonic() - last_prune > PRUNE_EVERY_SECONDS:
                    prune_published(older_than=timedelta(seconds=settings.RIDEHAIL_OUTBOX_RETENTION))
                    last_prune = time.monotonic()
                self.backoff.reset()
                self.rounds += 1
            except Exception:
                delay = self.backoff.next_delay()
                logger.exception("outbox: relay round failed; retrying in %.1fs", delay)
                self.stop.wait(delay)
                continue
            self.wake.wait(self.interval)  # a request left a row to the relay, or it is time to scan
        connections.close_all()
