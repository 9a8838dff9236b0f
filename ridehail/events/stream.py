"""The stream loop: a consumer group on a durable topic's stream, at least once.

An entry is acknowledged only after its handler did every effect of it. Entries left
pending by a consumer that died are claimed (XAUTOCLAIM) once idle longer than
`claim_idle`; an entry delivered more than `max_deliveries` times goes to the dead-letter
stream instead of being retried forever; an entry that is not a valid event goes there at
once. Handlers are idempotent (versions), so a redelivery has the effect of one delivery.

What the loop repairs by itself, without exiting:
- the group or the stream is gone (FLUSHALL, Redis restarted empty, the key deleted):
  the group is recreated and the handler rebuilds from the database;
- entries this group had not read were trimmed (`MAXLEN`) before it got to them: it logs
  how many, rebuilds, and moves the group past the gap so `lag` is right again (Redis 7.0
  does not record trimmed entries as deleted: the count comes from `entries-added`);
- consumers that died long ago and hold nothing are removed from the group.
"""

import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

import redis
from django.conf import settings
from django.db import close_old_connections
from redis.crc import key_slot

from ridehail.events import metrics
from ridehail.events.connection import POLL_SECONDS
from ridehail.events.handler import Handler
from ridehail.events.runner import OUTAGES, Reader, Runner
from ridehail.events.topic import STREAM_FIELD
from ridehail.events.wire import InvalidEvent

Entry = tuple[bytes, dict[bytes, bytes]]


def group_was_lost(exc: redis.ResponseError) -> bool:
    """NOGROUP: no such key or group; UNBLOCKED: the key was deleted under a blocked read."""
    return str(exc).startswith(("NOGROUP", "UNBLOCKED"))


def stream_id(value: bytes | str | None) -> tuple[int, int]:
    """A stream id as a comparable pair ("0-0" when there is none)."""
    text = value.decode() if isinstance(value, bytes) else (value or "0-0")
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


def previous_id(entry_id: tuple[int, int]) -> tuple[int, int]:
    milliseconds, sequence = entry_id
    return (milliseconds, sequence - 1) if sequence else (milliseconds - 1, 2**64 - 1)


class StreamReader(Reader):
    """One blocking XREADGROUP for every stream of the worker's stream handlers, on one connection.

    All of a worker's handlers are one consumer group (the worker's name) and one consumer
    (this process), so `XREADGROUP GROUP g c STREAMS a b > >` reads them all in one call and
    each batch goes to the handler of its stream.

    On a Redis Cluster the keys of one call must share a hash slot, and each topic's stream
    has a slot of its own (`stream:{T}`): there the worker runs one reader per slot
    (`by_slot`), each in its own thread with its own blocking connection to the node that
    owns that slot. A blocking read on a quiet stream thus never delays another stream's
    entries, which taking turns on one connection would (up to a whole POLL_SECONDS each).
    """

    runners: "Sequence[StreamRunner]"

    def __init__(self, runners: "Sequence[StreamRunner]", *, read_client: redis.Redis, stop: threading.Event) -> None:
        super().__init__(runners, read_client=read_client, stop=stop)
        first = self.runners[0]
        if any((runner.group, runner.consumer) != (first.group, first.consumer) for runner in self.runners):
            raise ValueError("the streams read together must share their group and consumer")
        self.group, self.consumer, self.batch_size = first.group, first.consumer, first.batch_size
        self.by_stream = {runner.stream: runner for runner in self.runners}

    def _run_connected(self) -> None:
        try:
            for runner in self.runners:
                runner.ensure_group()
                runner.ensure_consumer()
                runner.check_trimmed()
            self.backoff.reset()
            for runner in self.runners:
                self.logger.info("reading %s as %s/%s", runner.stream, self.group, self.consumer)
            self._read_until_stopped()
        except redis.ResponseError as exc:
            if not group_was_lost(exc):
                raise
            # run() calls us again at once: ensure_group() recreates the group and rebuilds.
            self.logger.warning("consumer group %s on %s is gone (%s); recreating it", self.group, self.what, exc)

    def _read_until_stopped(self) -> None:
        next_maintenance = 0.0
        while not self.stop.is_set():
            if time.monotonic() >= next_maintenance:
                for runner in self.runners:
                    runner.maintain()
                next_maintenance = time.monotonic() + min(max(0.5, runner.claim_idle / 2) for runner in self.runners)
            self.read_new()
            self.reconcile_and_idle()
            close_old_connections()

    def read_new(self) -> int:
        """One blocking read of every stream; each batch to its handler. Returns how many entries came."""
        response = self.read_client.xreadgroup(
            self.group,
            self.consumer,
            dict.fromkeys(self.by_stream, ">"),
            count=self.batch_size,
            block=int(POLL_SECONDS * 1000),
        )
        read = 0
        # Replies are bytes in RESP2's lists (connection.py's clients); redis-py's types allow str and RESP3's dict.
        for stream, entries in cast(list[tuple[bytes, list[Entry]]], response or []):
            self.by_stream[stream.decode()].process(entries)
            read += len(entries)
        return read


def by_slot(runners: "Sequence[StreamRunner]") -> list[list["StreamRunner"]]:
    """The runners whose streams one XREADGROUP may read together: all of them on a single Redis,
    those of one hash slot on a cluster (see StreamReader)."""
    if not settings.REDIS_CLUSTER:
        return [list(runners)] if runners else []
    groups: dict[int, list[StreamRunner]] = defaultdict(list)
    for runner in runners:
        groups[key_slot(runner.stream.encode())].append(runner)
    return list(groups.values())


class StreamRunner(Runner):
    reader_class = StreamReader

    def __init__(
        self,
        handler: Handler,
        *,
        read_client: redis.Redis | None = None,
        stop: threading.Event,
        consumer: str | None = None,
        batch_size: int = 100,
        claim_idle: float = 30.0,
        max_deliveries: int = 5,
        resync_seconds: float = 300.0,
    ) -> None:
        super().__init__(handler, read_client=read_client, stop=stop, resync_seconds=resync_seconds)
        self.stream = self.topic.stream
        self.dead_letters = self.topic.dead_letters
        self.group = handler.name
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch_size = batch_size
        self.claim_idle = claim_idle
        self.max_deliveries = max_deliveries
        # A consumer silent this long, holding nothing, is a dead process's leftover.
        self.forget_idle = 10 * claim_idle
        self.redis = handler.redis

    def maintain(self) -> None:
        """The periodic work besides reading: claims, trimmed entries, dead consumers, our own name."""
        self.claim_abandoned()
        self.check_trimmed()
        self.forget_dead_consumers()
        self.ensure_consumer()

    def read_new(self) -> int:
        """Read this handler's stream alone (tests); a worker reads all its streams in one `StreamReader`."""
        assert self.read_client is not None, "reading alone needs this runner's own read_client"
        return StreamReader([self], read_client=self.read_client, stop=self.stop).read_new()

    def ensure_consumer(self) -> None:
        """Make this process a consumer of the group now, not when its first entry arrives.

        Redis 7.0 creates a consumer only when XREADGROUP delivers it something, so a worker
        blocked on a quiet stream was "0 consumer(s)" in `events status` and XINFO; and an
        empty read does not refresh its idle time there, so another process may remove it as
        dead (`forget_dead_consumers`): this puts it back at every maintenance. Idempotent.
        """
        self.redis.xgroup_createconsumer(self.stream, self.group, self.consumer)

    def ensure_group(self) -> bool:
        """Create the group if it is missing, from the beginning of what the stream holds.

        Replaying what the stream holds gives every event's effects. If the stream does not
        hold every event ever added (it is new, or was trimmed), the state is rebuilt from
        the database first. Returns whether the group was created.
        """
        try:
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return False
        self.logger.info("created consumer group %s on %s", self.group, self.stream)
        info = self.redis.xinfo_stream(self.stream)
        if info["length"] == 0 or info["entries-added"] > info["length"]:
            # A stream nothing was ever added to (every first start) missed nothing: not a gap.
            new = info["entries-added"] == 0
            self.rebuild(
                "a new stream: state read from the database"
                if new
                else "the stream does not hold every event: rebuilt from the database"
            )
            self._skip_gap(info)
        return True

    def check_trimmed(self) -> int:
        """Detect entries trimmed before this group read them: log how many, rebuild, skip the gap.

        Trimming removes entries from the head. Those the group had read number `entries-read`;
        every other entry no longer in the stream was trimmed before the group got to it.
        """
        info = self.redis.xinfo_stream(self.stream)
        group = self._group_info()
        last_delivered = stream_id(group["last-delivered-id"])
        first = info.get("first-entry")
        if first is not None and stream_id(first[0]) <= last_delivered:
            return 0  # the group reads inside what the stream holds: no gap behind it
        read = group.get("entries-read")
        if read is None and last_delivered == (0, 0):
            read = 0  # a group that never read anything
        removed = info["entries-added"] - info["length"]
        if read is not None and removed <= read:
            return 0
        missed = removed - read if read is not None else None
        self.logger.warning(
            "%s unread entries of %s were trimmed before group %s read them; rebuilding from the database",
            missed if missed is not None else "an unknown number of",
            self.stream,
            self.group,
        )
        self.rebuild("")
        self._skip_gap(info)
        return missed or 0

    def _skip_gap(self, info: dict[str, Any]) -> None:
        # Just before the first entry left, with the read counter right again: `events status`
        # shows the true lag, and the gap is not reported twice.
        first = info.get("first-entry")
        target = previous_id(stream_id(first[0])) if first is not None else stream_id(info["last-generated-id"])
        if stream_id(self._group_info()["last-delivered-id"]) >= target:
            return  # another consumer of the group already moved it on
        self.redis.xgroup_setid(
            self.stream, self.group, f"{target[0]}-{target[1]}", entries_read=info["entries-added"] - info["length"]
        )

    def _group_info(self) -> dict[str, Any]:
        for group in self.redis.xinfo_groups(self.stream):
            if group["name"].decode() == self.group:
                return group
        raise redis.ResponseError(f"NOGROUP no consumer group {self.group} on {self.stream}")

    def claim_abandoned(self) -> int:
        """Take over entries idle for longer than `claim_idle` (their consumer is gone or stuck)."""
        _, claimed, deleted = self.redis.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_time=int(self.claim_idle * 1000), count=self.batch_size
        )
        if deleted:
            # Delivered, never acknowledged, now gone: their effects may be incomplete.
            self.logger.warning("%d pending entries were trimmed before anyone handled them", len(deleted))
            self.rebuild("rebuilding from the database")
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
            self.stream,
            self.group,
            min=entry_ids[0],
            max=entry_ids[-1],
            count=len(entry_ids),
            consumername=self.consumer,
        )
        return {cast(bytes, item["message_id"]): cast(int, item["times_delivered"]) for item in pending}

    def forget_dead_consumers(self) -> int:
        """Remove consumers idle for `forget_idle` that hold nothing: dead processes' names."""
        forgotten = 0
        for consumer in self.redis.xinfo_consumers(self.stream, self.group):
            name = consumer["name"].decode()
            if name != self.consumer and consumer["pending"] == 0 and consumer["idle"] > self.forget_idle * 1000:
                self.redis.xgroup_delconsumer(self.stream, self.group, name)
                forgotten += 1
        if forgotten:
            self.logger.info("removed %d idle consumer(s) with nothing pending from group %s", forgotten, self.group)
        return forgotten

    def process(self, entries: list[Entry]) -> None:
        """Handle entries, acknowledging each one whose every effect is done."""
        parsed = []
        for entry_id, fields in entries:
            raw = fields.get(STREAM_FIELD.encode())
            try:
                if raw is None:
                    raise InvalidEvent(f"entry has no {STREAM_FIELD!r} field")
                parsed.append((entry_id, self.topic.parse(raw)))
            except InvalidEvent as exc:
                # Retrying cannot make garbage valid: straight to the dead letters.
                self.logger.warning("entry %s is not a valid event: %s", entry_id.decode(), exc)
                self.dead_letter(entry_id, raw, str(exc), deliveries=1)
        if not parsed:
            return
        try:
            self.handler.handle_batch([event for _, event in parsed])
        except OUTAGES:
            raise
        except Exception:
            # Something in the batch failed: go one by one, so only the failing entries
            # stay pending (to be retried after claim_idle, then dead-lettered).
            self.logger.exception("a batch of %d entries failed; retrying them one by one", len(parsed))
            for entry_id, event in parsed:
                self._process_one(entry_id, event)
            return
        self._ack([entry_id for entry_id, _ in parsed])

    def _ack(self, entry_ids: list[bytes]) -> None:
        """Acknowledge handled entries and count them for /metrics, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(self.stream, self.group, *entry_ids)
        metrics.count_handled(pipe, worker=self.group, topic=self.topic.name, count=len(entry_ids))
        pipe.execute()

    def _process_one(self, entry_id: bytes, event: Any) -> None:
        try:
            self.handler.handle_batch([event])
        except OUTAGES:
            raise
        except Exception:
            self.logger.exception(
                "handler failed for entry %s (%s %s); it stays pending for a retry",
                entry_id.decode(),
                self.topic.name,
                event.key,
            )
            metrics.count_handled(self.redis, worker=self.group, topic=self.topic.name, count=1, failed=True)
            return
        self._ack([entry_id])

    def dead_letter(self, entry_id: bytes, raw: bytes | None, error: str, deliveries: int) -> None:
        """Move an entry to the dead-letter stream and acknowledge it, atomically."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(
            self.dead_letters,
            {
                STREAM_FIELD: raw if raw is not None else b"",
                "error": error[:1000],
                "group": self.group,
                "consumer": self.consumer,
                "entry_id": entry_id,
                "deliveries": deliveries,
            },
        )
        pipe.xack(self.stream, self.group, entry_id)
        pipe.execute()
        self.logger.error("entry %s moved to %s: %s", entry_id.decode(), self.dead_letters, error)
