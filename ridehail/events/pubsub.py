"""The Pub/Sub loop: live, at most once, and rebuilt from the database after every gap.

Fire-and-forget means a message sent while the worker is away is gone, so after every
(re)connect every handler rebuilds its state from the database. The loop subscribes
*before* rebuilding, so a change committed in between is either in the database snapshot
or arrives as a message (the version check makes both orders correct).

A worker subscribes to all its channels on one connection (`PubSubReader`), and routes each
message to the handler of its channel. The same connection carries the worker's signals:
channels whose message only sets a flag (the outbox relay's wake-up), so nothing else in the
worker needs a connection of its own to wait on.
"""

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import partial

import redis
from django.db import close_old_connections

from ridehail.events import metrics
from ridehail.events.connection import Subscription
from ridehail.events.runner import OUTAGES, Reader, Runner


class PubSubReader(Reader):
    """One subscribed connection for every channel of the worker's Pub/Sub handlers, and its signals."""

    runners: "Sequence[PubSubRunner]"

    def __init__(
        self,
        runners: "Sequence[PubSubRunner]",
        *,
        read_client: redis.Redis,
        stop: threading.Event,
        signals: Mapping[str, threading.Event] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.signals = dict(signals or {})
        super().__init__(runners, read_client=read_client, stop=stop, logger=logger, what=", ".join(self.signals))

    def _run_connected(self) -> None:
        by_channel = {channel: runner for runner in self.runners for channel in runner.topic.channels}
        with Subscription(self.read_client, [*by_channel, *self.signals]) as subscription:
            for runner in self.runners:  # each may have missed messages while we were away
                self.isolated(runner, partial(runner.rebuild, ""))
            for signal in self.signals.values():  # one may have been sent while we were away
                signal.set()
            self.backoff.reset()
            for channel in [*by_channel, *self.signals]:
                self.logger.info("listening on %s", channel)
            while not self.stop.is_set():
                batch = subscription.read_batch()
                if batch:
                    raws: dict[str, list[bytes]] = defaultdict(list)
                    for channel, data in batch:
                        if (flag := self.signals.get(channel)) is not None:
                            flag.set()
                            continue
                        raws[channel].append(data)
                    for channel, messages in raws.items():
                        if (target := by_channel.get(channel)) is not None:
                            self.isolated(target, partial(target.handle, messages))
                else:
                    close_old_connections()
                self.reconcile_and_idle()


class PubSubRunner(Runner):
    reader_class = PubSubReader

    def handle(self, raws: list[bytes]) -> None:
        events = self.handler.parse_messages(raws)
        if not events:
            return
        failed = False
        try:
            self.handler.handle_batch(events)
        except OUTAGES:
            raise
        except Exception:
            # On Pub/Sub the batch is gone either way: say so loudly and repair the state
            # from the database on the next turn, rather than wait for the periodic reconcile.
            self.logger.exception("handler failed on %d event(s) of %s; rebuilding", len(events), self.topic.name)
            self.next_resync = time.monotonic()
            failed = True
        # One HINCRBY per read batch, never one per event.
        metrics.count_handled(
            self.handler.redis, worker=self.handler.name, topic=self.topic.name, count=len(events), failed=failed
        )
