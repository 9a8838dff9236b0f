"""Marking outbox rows published, in batches, off the request's path.

Right after the commit the fast path publishes a change's event; marking its row published
used to be a second transaction on the same request. Now the row's id goes into this
process's queue, and a background thread marks what has gathered every MARK_INTERVAL with
one UPDATE. A row whose mark never happens (the process was killed, the database hiccuped)
stays pending: the relay republishes it after a while, the Redis marker turns that into a
no-op, and the relay marks it.
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


class PublishedMarks:
    def __init__(self) -> None:
        self.waiting: list[int] = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None

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
            return OutboxEvent.objects.filter(id__in=row_ids, published_at__isnull=True).update(
                published_at=timezone.now()
            )
        except DatabaseError as exc:
            logger.warning("outbox: %d published row(s) not marked (the relay will): %s", len(row_ids), exc)
            return 0

    def _run(self) -> None:
        while True:
            self.wake.wait(MARK_INTERVAL)
            self.wake.clear()
            close_old_connections()
            if not self.flush() and not self.waiting:
                connections.close_all()  # idle for a whole interval: do not hold a connection


marks = PublishedMarks()
atexit.register(marks.flush)
