"""The rides worker: what `python manage.py run_subscriber rides` runs.

| handler | topic | transport |
|---|---|---|
| `MatchingPoolHandler`: the drivers who may be offered rides | `driver-status-changed` | `--transport` |
| `RideMatcher`: every requested ride matched to the nearest free driver | `ride-status-changed` | stream, always |
"""

import time
import uuid

import redis
from django.conf import settings

from ridehail.events.handler import Handler, Transport
from ridehail.events.tracing import span
from ridehail.events.worker import Worker
from rides.events import RIDE_STATUS, RideStatusChanged
from rides.matching import Outcome, match
from rides.models import RideStatus
from rides.pool import MATCHING_POOL
from rides.selectors import overdue_ride_ids, rides_of_inactive_drivers, waiting_rides
from rides.services import expire_ride, release_ride
from users.driver_set import DriverSetHandler

__all__ = ["MATCHING_POOL", "WORKER", "MatchingPoolHandler", "RideMatcher"]

RETRY_PAGE = 200  # waiting rides read per query of a retry round (a round tries every one)


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

    def handle_batch(self, events: list[RideStatusChanged]) -> int:
        assigned = 0
        for event in events:
            if event.ride.status != RideStatus.REQUESTED:
                continue
            with span("match ride", {"ridehail.ride.id": str(event.ride.ride_id)}) as matching:
                outcome = match(self.redis, event.ride).outcome
                matching.set_attribute("ridehail.match.outcome", outcome.value)
            assigned += outcome is Outcome.ASSIGNED
            if outcome is Outcome.NO_DRIVER:
                self.logger.info(
                    "ride %s: no free driver within %g km yet; trying again every %gs",
                    event.ride.ride_id,
                    settings.RIDEHAIL_MATCH_RADIUS_KM,
                    settings.RIDEHAIL_MATCH_RETRY_SECONDS,
                )
        return assigned

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
        for ride in waiting_rides(page_size=RETRY_PAGE):
            match(self.redis, ride)


WORKER = Worker("rides", [MatchingPoolHandler, RideMatcher])
