"""What every worker loop shares: it survives outages and bad batches, and reconciles.

A reader reads for a worker's handlers on one transport (`PubSubReader` in pubsub.py: one
connection subscribed to every channel; `StreamReader` in stream.py: one blocking read of
every stream) until the worker's shared stop flag is set; a `Runner` is one handler's part.
Redis or the database going away is logged and waited out with backoff; any other
exception is logged with its traceback and the loop carries on, so no message, however odd, silences a worker. Every
RIDEHAIL_RESYNC_SECONDS the handler rebuilds its state from the database: whatever was
lost or corrupted behind the worker's back (a FLUSHALL, a forged message) is repaired
without a restart.
"""

import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

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


def fewer_gc_pauses() -> None:
    """Take what start-up allocated out of every future garbage collection, and collect less often.

    Call it once a process has imported and set up everything (Django, the URLconf, the
    handlers). A full collection walks every tracked object: ~145,000 of them in a rides
    worker, 70-80 ms of CPU here, landing inside whatever allocated last, a batch's solve
    included (its p99 was these collections: bench/matching_quality.py); ~1,000 open sockets
    stalled the dashboard for 100-200 ms the same way (bench/fanout.py). Frozen objects are
    never walked again; the larger first threshold makes collections rarer. Start-up objects
    live as long as the process, so freezing them frees nothing that would have been freed.
    """
    gc.freeze()
    gc.set_threshold(20_000, 10, 100)


class Runner:
    """One handler's part of a loop: its rebuild, its periodic reconcile, its idle work.

    A worker reads for all its handlers at once (`Reader`: one Pub/Sub connection for every
    channel, one blocking read for every stream); `run()` runs one handler alone on its
    own `read_client`, as tests and benchmarks do.
    """

    reader_class: ClassVar[type["Reader"]]

    def __init__(
        self,
        handler: Handler,
        *,
        read_client: redis.Redis | None = None,
        stop: threading.Event,
        resync_seconds: float = 300.0,
    ) -> None:
        self.handler = handler
        self.topic = handler.topic
        self.read_client = read_client  # only for run(): in a worker, the reader's connection
        self.stop = stop
        self.logger = handler.logger
        self.backoff = Backoff()  # between retries of a rebuild that failed
        self.resync_seconds = resync_seconds
        self.next_resync = time.monotonic() + resync_seconds

    def run(self) -> None:
        """Run this handler alone until stopped."""
        if self.read_client is None:
            raise ValueError("a runner run alone needs its own read_client")
        self.reader_class([self], read_client=self.read_client, stop=self.stop).run()
        self.logger.info("stopped")

    def rebuild(self, why: str) -> None:
        """Make the handler's state equal to the database; the periodic reconcile starts over."""
        close_old_connections()
        if why:
            self.logger.info("%s: %s", self.topic.name, why)
        self.handler.rebuild()
        self.next_resync = time.monotonic() + self.resync_seconds
        self.backoff.reset()

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


class Reader:
    """Reads for several handlers on one connection until stopped; an outage is logged, waited out and retried.

    Redis or the database going away stops the whole reader (every handler on it would
    fail alike) and it starts over, which rebuilds or re-reads. Anything else a handler
    raises is that handler's: logged, and the others carry on (`isolated`).
    """

    runners: Sequence[Runner]

    def __init__(
        self,
        runners: Sequence[Runner],
        *,
        read_client: redis.Redis,
        stop: threading.Event,
        logger: logging.Logger | None = None,
        what: str = "",
    ) -> None:
        if not runners and logger is None:
            raise ValueError("a reader without runners needs a logger")
        self.runners = list(runners)
        self.read_client = read_client  # dedicated to subscribing / blocking reads
        self.stop = stop
        self.logger = logger or self.runners[0].logger
        self.what = ", ".join(runner.topic.name for runner in self.runners) or what
        self.backoff = Backoff()
        self.turned_at = time.monotonic()  # when the loop last came round: the heartbeat's proof of life

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.turned_at = time.monotonic()
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
                    self.logger.exception("%s loop failed; starting over", self.what)
                    self.stop.wait(self.backoff.next_delay())
        finally:
            connections.close_all()  # this thread's connections: each reader runs in one

    def _run_connected(self) -> None:
        raise NotImplementedError

    def _wait_before_retry(self, what: str, exc: Exception) -> None:
        delay = self.backoff.next_delay()
        self.logger.warning("%s (%s); retrying in %.1fs", what, exc, delay)
        self.stop.wait(delay)

    def isolated(self, runner: Runner, action: Callable[[], object]) -> None:
        """Run one handler's step; an outage stops the reader, any other failure only this handler's step.

        A failed step leaves that handler's state in doubt: it is rebuilt from the database
        once its backoff has passed, while the other handlers read on.
        """
        try:
            action()
        except OUTAGES:
            raise
        except Exception:
            delay = runner.backoff.next_delay()
            self.logger.exception("%s failed; rebuilding it in %.1fs", runner.topic.name, delay)
            runner.next_resync = time.monotonic() + delay

    def reconcile_and_idle(self) -> None:
        """Every handler's periodic reconcile and idle work, one handler's failure not stopping the others."""
        self.turned_at = time.monotonic()
        for runner in self.runners:
            self.isolated(runner, runner.reconcile_if_due)
            runner.idle()
