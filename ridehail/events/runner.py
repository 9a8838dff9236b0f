"""The worker loops. Both keep going through Redis and database outages, with backoff.

`PubSubRunner`: fire-and-forget means a message sent while the worker is away is gone,
so after every (re)connect it rebuilds its state from the database. It subscribes
*before* rebuilding, so a change committed in between is either in the database
snapshot or arrives as a message (the version check makes both orders correct).

`StreamRunner` (ridehail/events/stream.py) reads the stream with a consumer group instead.
"""

import logging
import threading
import time

import redis
from django.db import Error as DatabaseError
from django.db import close_old_connections, connections

from ridehail.events.connection import HEALTH_CHECK_SECONDS, Backoff, Heartbeat
from ridehail.events.event import CHANNEL
from ridehail.events.subscriber import DriverSetSubscriber

POLL_SECONDS = 1.0  # how long one read blocks: bounds how late a stop request is seen
PING_PAYLOAD = b"ridehail-health"
BATCH_SIZE = 100  # messages handled per Redis round trip when they arrive faster than one by one


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

    def __init__(self, subscriber: DriverSetSubscriber, *, read_client: redis.Redis, stop: threading.Event) -> None:
        self.subscriber = subscriber
        self.read_client = read_client  # dedicated to subscribing / blocking reads
        self.stop = stop
        self.logger = subscriber.logger
        self.backoff = Backoff()

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
        finally:
            connections.close_all()  # this thread's connections, when a runner runs in one
        self.logger.info("stopped")

    def _run_connected(self) -> None:
        raise NotImplementedError

    def _wait_before_retry(self, what: str, exc: Exception) -> None:
        delay = self.backoff.next_delay()
        self.logger.warning("%s (%s); retrying in %.1fs", what, exc, delay)
        self.stop.wait(delay)


class PubSubRunner(Runner):
    def _run_connected(self) -> None:
        pubsub = self.read_client.pubsub()
        try:
            self._subscribe(pubsub)
            close_old_connections()
            self.subscriber.rebuild()
            self.backoff.reset()
            self.logger.info("listening on %s", CHANNEL)
            self._listen(pubsub)
        finally:
            pubsub.close()

    def _subscribe(self, pubsub: redis.client.PubSub) -> None:
        pubsub.subscribe(CHANNEL)
        deadline = time.monotonic() + HEALTH_CHECK_SECONDS
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=POLL_SECONDS)
            if message and message["type"] == "subscribe":
                return
        raise redis.TimeoutError(f"no confirmation of SUBSCRIBE {CHANNEL}")

    def _listen(self, pubsub: redis.client.PubSub) -> None:
        heartbeat = Heartbeat()
        while not self.stop.is_set():
            message = pubsub.get_message(timeout=POLL_SECONDS)
            if message is None:
                if heartbeat.should_ping():
                    pubsub.ping(PING_PAYLOAD)
                close_old_connections()
                continue
            heartbeat.heard()
            # Take whatever else is already buffered, so a burst costs one Redis round trip
            # per batch instead of one per message.
            batch = [message]
            while len(batch) < BATCH_SIZE and (more := pubsub.get_message(timeout=0)) is not None:
                batch.append(more)
            self.subscriber.handle_messages([m["data"] for m in batch if m["type"] == "message"])
