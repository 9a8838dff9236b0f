"""The stream worker loop: a consumer group on `stream:driver-status-changed`, at least once.

An entry is acknowledged only after its handler succeeded. Entries left pending by a
consumer that died are claimed (XAUTOCLAIM) once idle longer than `claim_idle`; an entry
delivered more than `max_deliveries` times goes to the dead-letter stream instead of
being retried forever. Handlers are idempotent (the version check), so a redelivery has
the effect of one delivery.
"""

import os
import socket
import threading
import time

import redis
from django.db import Error as DatabaseError
from django.db import close_old_connections

from ridehail.events.event import DEAD_LETTER_STREAM, STREAM, STREAM_FIELD, DriverStatusChanged, InvalidEvent
from ridehail.events.runner import POLL_SECONDS, Runner
from ridehail.events.subscriber import DriverSetSubscriber

# Infrastructure failures: the entry stays pending and the whole loop backs off.
_OUTAGES = (redis.ConnectionError, redis.TimeoutError, DatabaseError)


class StreamRunner(Runner):
    def __init__(
        self,
        subscriber: DriverSetSubscriber,
        *,
        read_client: redis.Redis,
        stop: threading.Event,
        consumer: str | None = None,
        batch_size: int = 100,
        claim_idle: float = 30.0,
        max_deliveries: int = 5,
    ) -> None:
        super().__init__(subscriber, read_client=read_client, stop=stop)
        self.group = subscriber.name
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch_size = batch_size
        self.claim_idle = claim_idle
        self.max_deliveries = max_deliveries
        self.redis = subscriber.redis

    def _run_connected(self) -> None:
        self.ensure_group()
        self.subscriber.load_known_drivers()
        self.backoff.reset()
        self.logger.info("reading %s as %s/%s", STREAM, self.group, self.consumer)
        next_claim = 0.0
        while not self.stop.is_set():
            if time.monotonic() >= next_claim:
                self.claim_abandoned()
                next_claim = time.monotonic() + max(0.5, self.claim_idle / 2)
            self.read_new()
            close_old_connections()

    def ensure_group(self) -> None:
        """Create the group on first start, from the beginning of what the stream holds."""
        try:
            self.redis.xgroup_create(STREAM, self.group, id="0", mkstream=True)
            self.logger.info("created consumer group %s on %s", self.group, STREAM)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_new(self) -> int:
        response = self.read_client.xreadgroup(
            self.group, self.consumer, {STREAM: ">"}, count=self.batch_size, block=int(POLL_SECONDS * 1000)
        )
        entries = response[0][1] if response else []
        self.process(entries)
        return len(entries)

    def claim_abandoned(self) -> int:
        """Take over entries idle for longer than `claim_idle` (their consumer is gone or stuck)."""
        _, claimed, deleted = self.redis.xautoclaim(
            STREAM, self.group, self.consumer, min_idle_time=int(self.claim_idle * 1000), count=self.batch_size
        )
        if deleted:
            self.logger.warning(
                "%d pending entries were trimmed from the stream before anyone handled them", len(deleted)
            )
        claimed = [(entry_id, fields) for entry_id, fields in claimed if fields is not None]
        if not claimed:
            return 0
        deliveries = self._delivery_counts([entry_id for entry_id, _ in claimed])
        retry = []
        for entry_id, fields in claimed:
            if deliveries.get(entry_id, 0) > self.max_deliveries:
                error = f"handler failed {self.max_deliveries} times"
                self.dead_letter(entry_id, fields.get(STREAM_FIELD.encode()), error, deliveries[entry_id])
            else:
                retry.append((entry_id, fields))
        self.logger.info("claimed %d abandoned entries", len(claimed))
        self.process(retry)
        return len(claimed)

    def _delivery_counts(self, entry_ids: list[bytes]) -> dict[bytes, int]:
        pending = self.redis.xpending_range(
            STREAM, self.group, min=entry_ids[0], max=entry_ids[-1], count=len(entry_ids), consumername=self.consumer
        )
        return {item["message_id"]: item["times_delivered"] for item in pending}

    def process(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Handle entries, acknowledging each one whose handler succeeded."""
        parsed: list[tuple[bytes, DriverStatusChanged]] = []
        for entry_id, fields in entries:
            raw = fields.get(STREAM_FIELD.encode())
            try:
                if raw is None:
                    raise InvalidEvent(f"entry has no {STREAM_FIELD!r} field")
                parsed.append((entry_id, DriverStatusChanged.from_json(raw)))
            except InvalidEvent as exc:
                # Retrying cannot make garbage valid: straight to the dead letters.
                self.logger.warning("entry %s is not a valid event: %s", entry_id.decode(), exc)
                self.dead_letter(entry_id, raw, str(exc), deliveries=1)
        if not parsed:
            return
        try:
            self.subscriber.handle_batch([event for _, event in parsed])
            self.redis.xack(STREAM, self.group, *[entry_id for entry_id, _ in parsed])
        except _OUTAGES:
            raise
        except Exception:
            # Something in the batch failed: go one by one, so only the failing entries
            # stay pending (to be retried after claim_idle, then dead-lettered).
            for entry_id, event in parsed:
                self._process_one(entry_id, event)

    def _process_one(self, entry_id: bytes, event: DriverStatusChanged) -> None:
        try:
            self.subscriber.handle_batch([event])
        except _OUTAGES:
            raise
        except Exception:
            self.logger.exception(
                "handler failed for entry %s (driver %s, version %d); it stays pending for a retry",
                entry_id.decode(),
                event.driver_id,
                event.version,
            )
            return
        self.redis.xack(STREAM, self.group, entry_id)

    def dead_letter(self, entry_id: bytes, raw: bytes | None, error: str, deliveries: int) -> None:
        """Move an entry to the dead-letter stream and acknowledge it, atomically."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(
            DEAD_LETTER_STREAM,
            {
                STREAM_FIELD: raw if raw is not None else b"",
                "error": error[:1000],
                "group": self.group,
                "consumer": self.consumer,
                "entry_id": entry_id,
                "deliveries": deliveries,
            },
        )
        pipe.xack(STREAM, self.group, entry_id)
        pipe.execute()
        self.logger.error("entry %s moved to %s: %s", entry_id.decode(), DEAD_LETTER_STREAM, error)
