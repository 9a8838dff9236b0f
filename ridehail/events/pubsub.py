"""The Pub/Sub loop: live, at most once, and rebuilt from the database after every gap.

Fire-and-forget means a message sent while the worker is away is gone, so after every
(re)connect the handler rebuilds its state from the database. The loop subscribes
*before* rebuilding, so a change committed in between is either in the database snapshot
or arrives as a message (the version check makes both orders correct).
"""

import time

from django.db import close_old_connections

from ridehail.events import metrics
from ridehail.events.connection import Subscription
from ridehail.events.runner import OUTAGES, Runner


class PubSubRunner(Runner):
    def _run_connected(self) -> None:
        with Subscription(self.read_client, [self.topic.channel]) as subscription:
            self.rebuild("")
            self.backoff.reset()
            self.logger.info("listening on %s", self.topic.channel)
            while not self.stop.is_set():
                batch = subscription.read_batch()
                if batch:
                    self.handle([data for _, data in batch])
                else:
                    close_old_connections()
                self.reconcile_if_due()
                self.idle()

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
