"""Marking outbox rows published, in batches, off the request's path.

Right after the commit the fast path publishes a change's event; marking its row published
used to be a second transaction on the same request. Now the row's id goes into this
process's queue, and a background thread marks what has gathered every MARK_INTERVAL with
one UPDATE. If the database is away, the batch is kept and tried again (up to MAX_KEPT rows),
so the rows are marked soon after it is back. A row whose mark never happens (the process
was killed) stays pending: the relay republishes it after a while, the Redis marker turns
that into a no-op, and the relay marks it.
"""

import atexit
import logging
import threading

from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone

from ridehail.events.models import OutboxEvent

logger = logging.getLogger(__name__)

MARK_INTERVAL = 0.1  # seconds: how long a published row may look pending
MAX_BATCH = 1000
MAX_KEPT = 20 * MAX_BATCH  # beyond that, a long outage leaves the rest to the relay


class PublishedMarks:
    def __init__(self) -> None:
        self.waiting: list[int] = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.failing = False

    def add(self, row_id: int) -> None:
        with self.lock:
            self.waiting.append(row_id)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="outbox-marks", daemon=True)
                self.thread.start()
        if len(self.waiting) >= MAX_BATCH:
            self.wake.set()

    def flush(self) -> int:
        """Mark what has gathered now; returns how many rows were marked."""
        with self.lock:
            row_ids, self.waiting = self.waiting, []
        if not row_ids:
            return 0
        try:
            marked = OutboxEvent.objects.filter(id__in=row_ids, published_at__isnull=True).update(
                published_at=timezone.now()
            )
        except DatabaseError as exc:
            with self.lock:
                kept = (row_ids + self.waiting)[:MAX_KEPT]
                self.waiting = kept
            if not self.failing:  # once per outage, not every interval
                logger.warning("outbox: %d published row(s) not marked yet (retrying): %s", len(kept), exc)
            self.failing = True
            return 0
        self.failing = False
        return marked

    def _run(self) -> None:
        while True:
            self.wake.wait(MARK_INTERVAL)
            self.wake.clear()
            close_old_connections()
            if not self.flush() and not self.waiting:
                connections.close_all()  # idle for a whole interval: do not hold a connection


marks = PublishedMarks()
atexit.register(marks.flush)
