"""The rides worker: what `python manage.py run_subscriber rides` runs.

| handler | topic | transport |
|---|---|---|
| `MatchingPoolHandler`: the drivers who may be offered rides | `driver-status-changed` | `--transport` |
| `RideMatcher`: every requested ride matched to a free driver near it | `ride-status-changed` | stream, always |
"""

import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings

from ridehail.events.handler import Handler, Transport
from ridehail.events.tracing import span
from ridehail.events.wire import format_timestamp
from ridehail.events.worker import Worker
from rides.events import RIDE_STATUS, RideState, RideStatusChanged
from rides.matching import FreeDrivers, Outcome, match, match_batch
from rides.models import RideStatus
from rides.pool import MATCHING_POOL
from rides.selectors import overdue_ride_ids, rides_of_inactive_drivers, waiting_rides
from rides.services import expire_ride, release_ride
from users.driver_set import DriverSetHandler

__all__ = ["MATCHING_POOL", "WORKER", "MatchingPoolHandler", "RideMatcher"]

RETRY_PAGE = 200  # waiting rides read per query of a retry round (a round tries every one)
BATCH_LIMIT = 500  # rides matched together at most: the solver's time grows faster than linearly


class MatchingPoolHandler(DriverSetHandler):
    """Keeps the matching pool: the drivers who are online, whom requested rides may be offered to."""

    name = "rides"
    driver_set = MATCHING_POOL

    def on_added(self, driver_id: uuid.UUID) -> None:
        self.logger.info("driver %s added to matching pool", driver_id)

    def on_removed(self, driver_id: uuid.UUID) -> None:
        self.logger.info("driver %s removed from matching pool", driver_id)


class RideMatcher(Handler[RideStatusChanged]):
    """Matches requested rides; always on the stream: a request must be processed, not just seen.

    The first attempt is made when the request's event arrives. A ride with no free driver
    near it does not hold up the others: it is tried again with every waiting ride every
    RIDEHAIL_MATCH_RETRY_SECONDS, from the database (so a retry survives this worker's
    death: whichever rides worker runs next finds it), and expires after
    RIDEHAIL_MATCH_TIMEOUT_SECONDS.
    """

    name = "rides"
    topic = RIDE_STATUS
    transport = Transport.STREAM

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.next_retry = 0.0
        self.last_batch: dict[str, Any] | None = None  # read by the heartbeat thread: replaced, never changed

    def gather_seconds(self) -> float:
        """The window: the stream loop gathers requests this long before one `handle_batch` of them.

        They stay pending, unacknowledged, until the batch's assignments committed: a worker
        killed while it gathers or assigns leaves them to be claimed by another one.
        """
        return settings.RIDEHAIL_MATCH_WINDOW_SECONDS

    def handle_batch(self, events: list[RideStatusChanged]) -> int:
        requested = [event.ride for event in events if event.ride.status == RideStatus.REQUESTED]
        rides = list({ride.ride_id: ride for ride in requested}.values())  # a redelivered request once
        if not rides:
            return 0
        if settings.RIDEHAIL_MATCH_WINDOW_SECONDS:
            outcomes = self.match_together(rides)
        else:
            outcomes = {ride.ride_id: self.match_one(ride) for ride in rides}
        for ride_id, outcome in outcomes.items():
            if outcome is Outcome.NO_DRIVER:
                self.logger.info(
                    "ride %s: no free driver within %g km yet; trying again every %gs",
                    ride_id,
                    settings.RIDEHAIL_MATCH_RADIUS_KM,
                    settings.RIDEHAIL_MATCH_RETRY_SECONDS,
                )
        return sum(outcome is Outcome.ASSIGNED for outcome in outcomes.values())

    def match_one(self, ride: RideState) -> Outcome:
        """Greedy (window 0): the nearest free driver, now."""
        with span("match ride", {"ridehail.ride.id": str(ride.ride_id)}) as matching:
            outcome = match(self.redis, ride).outcome
            matching.set_attribute("ridehail.match.outcome", outcome.value)
        return outcome

    def match_together(
        self, rides: Sequence[RideState], *, free: FreeDrivers | None = None
    ) -> dict[uuid.UUID, Outcome]:
        """Match in batches of at most BATCH_LIMIT (a backlog read at once is several batches)."""
        outcomes: dict[uuid.UUID, Outcome] = {}
        for start in range(0, len(rides), BATCH_LIMIT):
            part = rides[start : start + BATCH_LIMIT]
            with span("match batch", {"ridehail.batch.size": len(part)}) as matching:
                batch = match_batch(self.redis, part, free=free)
                matching.set_attribute("ridehail.batch.assigned", batch.assigned)
            self.logger.info(
                "matched a batch of %d: %d assigned, solved in %.1f ms", batch.size, batch.assigned, batch.solve_ms
            )
            self.last_batch = {
                "size": batch.size,
                "assigned": batch.assigned,
                "solve_ms": round(batch.solve_ms, 3),
                "at": format_timestamp(datetime.now(UTC)),
            }
            outcomes |= batch.outcomes
        return outcomes

    def heartbeat(self) -> dict[str, Any]:
        """How this process matches, and its last batch (a retry round's too): the dashboard's health strip."""
        return {"matcher": {"window_s": settings.RIDEHAIL_MATCH_WINDOW_SECONDS, "last_batch": self.last_batch}}

    def on_idle(self) -> None:
        if time.monotonic() >= self.next_retry:
            self.retry_waiting()

    def rebuild(self) -> None:
        """The database is the matcher's state: catching up is trying every waiting ride now."""
        self.retry_waiting()

    def retry_waiting(self) -> None:
        self.next_retry = time.monotonic() + settings.RIDEHAIL_MATCH_RETRY_SECONDS
        # A deactivated driver's assigned ride goes back to matching, however they were
        # deactivated (a queryset .update() included, which no event tells of; or while they
        # were offline already): one query a round, found from the database, not from events,
        # so the driver-status handlers keep no query per event on their hot path.
        for ride_id in rides_of_inactive_drivers():
            if release_ride(ride_id=ride_id) is not None:
                self.logger.info("ride %s back to matching: its driver was deactivated", ride_id)
        for ride_id in overdue_ride_ids(timeout_seconds=settings.RIDEHAIL_MATCH_TIMEOUT_SECONDS):
            if expire_ride(ride_id=ride_id) is not None:
                self.logger.info("ride %s expired: no driver in %gs", ride_id, settings.RIDEHAIL_MATCH_TIMEOUT_SECONDS)
        # Every waiting ride, however many wait where no driver is: a ride in reach of a free
        # driver is never starved by the others. A ride assigned or cancelled since its page was
        # read ends its attempt: the assignment re-checks under the row lock.
        # One round asks the database about each driver once, and not at all while nobody is free.
        free = FreeDrivers()
        if not settings.RIDEHAIL_MATCH_WINDOW_SECONDS:
            if free.anyone():
                for ride in waiting_rides(page_size=RETRY_PAGE):
                    match(self.redis, ride, free=free)
            return
        for rides in self._retry_batches():
            self.match_together(rides, free=free)

    def _retry_batches(self) -> Iterator[list[RideState]]:
        """Every ride waiting longer than one window, in batches of BATCH_LIMIT.

        A ride still in its first window is left to the stream loop, which is gathering it with
        the other requests of that window: taken alone by a retry round, it would be matched
        without them, which is what the window is there to avoid. One whose event did not
        arrive (Redis was down) is older than a window by the next round, and tried here.
        """
        batch: list[RideState] = []
        for ride in waiting_rides(page_size=RETRY_PAGE, waiting_for=settings.RIDEHAIL_MATCH_WINDOW_SECONDS):
            batch.append(ride)
            if len(batch) == BATCH_LIMIT:
                yield batch
                batch = []
        if batch:
            yield batch


WORKER = Worker("rides", [MatchingPoolHandler, RideMatcher])
