"""What every worker loop shares: it survives outages and bad batches, and reconciles.

A loop runs one handler on one transport (`PubSubRunner` in pubsub.py, `StreamRunner` in
stream.py) until the worker's shared stop flag is set. Redis or the database going away
is logged and waited out with backoff; any other exception is logged with its traceback
and the loop carries on, so no message, however odd, silences a worker. Every
RIDEHAIL_RESYNC_SECONDS the handler rebuilds its state from the database: whatever was
lost or corrupted behind the worker's back (a FLUSHALL, a forged message) is repaired
without a restart.
"""

import logging
import threading
import time

import redis
from django.db import Error as DatabaseError
from django.db import close_old_connections, connections

from ridehail.events.connection import Backoff
from ridehail.events.handler import Handler

# Infrastructure failures: nothing is acknowledged and the whole loop backs off.
OUTAGES = (redis.ConnectionError, redis.TimeoutError, DatabaseError)


def lean_log_records() -> None:
    """Workers log one line per event: skip the LogRecord fields our log format never prints.

    The logging HOWTO's "Optimization" section lists these switches; caller lookup
    (`_srcfile`) alone was ~10% of a stream worker's time per event (bench/stream_worker.py).
    """
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None


class Runner:
    """Runs `_run_connected` until stopped; an outage is logged, waited out and retried."""

    def __init__(
        self, handler: Handler, *, read_client: redis.Redis, stop: threading.Event, resync_seconds: float = 300.0
    ) -> None:
        self.handler = handler
        self.topic = handler.topic
        self.read_client = read_client  # dedicated to subscribing / blocking reads
        self.stop = stop
        self.logger = handler.logger
        self.backoff = Backoff()
        self.resync_seconds = resync_seconds
        self.next_resync = time.monotonic() + resync_seconds

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    self._run_connected()
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    self._wait_before_retry("Redis unavailable", exc)
                except DatabaseError as exc:
                    close_old_connections()
                    self._wait_before_retry("database unavailable", exc)
                except Exception:
                    # A bug or an odd answer from Redis: say everything, wait, start over
                    # (which rebuilds or re-reads): never die of it.
                    self.logger.exception("%s loop failed; starting over", self.topic.name)
                    self.stop.wait(self.backoff.next_delay())
        finally:
            connections.close_all()  # this thread's connections: each runner runs in one

    def _run_connected(self) -> None:
        raise NotImplementedError

    def _wait_before_retry(self, what: str, exc: Exception) -> None:
        delay = self.backoff.next_delay()
        self.logger.warning("%s (%s); retrying in %.1fs", what, exc, delay)
        self.stop.wait(delay)

    def rebuild(self, why: str) -> None:
        """Make the handler's state equal to the database; the periodic reconcile starts over."""
        close_old_connections()
        if why:
            self.logger.info("%s: %s", self.topic.name, why)
        self.handler.rebuild()
        self.next_resync = time.monotonic() + self.resync_seconds

    def reconcile_if_due(self) -> None:
        if time.monotonic() >= self.next_resync:
            self.rebuild("")

    def idle(self) -> None:
        """The handler's own periodic work; a failure of it never stops the loop."""
        try:
            self.handler.on_idle()
        except OUTAGES:
            raise
        except Exception:
            self.logger.exception("%s: periodic work failed; trying again shortly", self.topic.name)
