"""The locations worker: what `python manage.py run_subscriber locations` runs.

| handler | topic | transport |
|---|---|---|
| `TrackingHandler`: which drivers are tracked (online) | `driver-status-changed` | `--transport` |
| `PositionsHandler`: tracked drivers' latest positions (geo index) | `driver-location-updated` | Pub/Sub, live only |
"""

import time
import uuid
from datetime import timedelta

import redis
from django.conf import settings
from django.utils import timezone

from locations.events import DRIVER_LOCATION, DriverLocationUpdated
from locations.positions import TRACKED_DRIVERS, Position, apply_positions, drop_positions, prune_positions
from ridehail.events.handler import Handler
from ridehail.events.worker import Worker
from users.driver_set import DriverSetHandler

__all__ = ["TRACKED_DRIVERS", "WORKER", "PositionsHandler", "TrackingHandler"]

# A clock a little ahead of ours is tolerated; a position from further in the future is not.
FUTURE_TOLERANCE = timedelta(seconds=5)
SUMMARY_SECONDS = 60.0  # positions are summed up in one log line a minute, never one line each
PRUNE_SECONDS = 10.0


class TrackingHandler(DriverSetHandler):
    """Keeps the tracked drivers (those online), whose positions the geo index holds."""

    name = "locations"
    driver_set = TRACKED_DRIVERS

    def on_added(self, driver_id: uuid.UUID) -> None:
        self.logger.info("started tracking driver %s", driver_id)

    def on_removed(self, driver_id: uuid.UUID) -> None:
        drop_positions(self.redis, [driver_id])  # an effect: done before the version is written
        self.logger.info("stopped tracking driver %s", driver_id)

    def after_rebuild(self) -> None:
        # Positions of drivers who went offline while nobody listened go with the rebuild.
        prune_positions(self.redis, max_age=settings.RIDEHAIL_POSITION_MAX_AGE)


class PositionsHandler(Handler[DriverLocationUpdated]):
    """Keeps the latest position of each tracked driver; positions of others are ignored."""

    name = "locations"
    topic = DRIVER_LOCATION

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.counts = {"applied": 0, "untracked": 0, "not newer": 0, "too near a pole": 0, "from the future": 0}
        self.summary_at = time.monotonic() + SUMMARY_SECONDS
        self.prune_at = time.monotonic() + PRUNE_SECONDS

    def handle_batch(self, events: list[DriverLocationUpdated]) -> int:
        latest: dict[uuid.UUID, DriverLocationUpdated] = {}
        horizon = timezone.now() + FUTURE_TOLERANCE
        for event in events:
            if event.timestamp > horizon:
                self.counts["from the future"] += 1
                self.logger.warning(
                    "ignored a position of driver %s from the future: %s", event.driver_id, event.timestamp
                )
            elif event.driver_id not in latest or event.timestamp >= latest[event.driver_id].timestamp:
                latest[event.driver_id] = event
        applied = apply_positions(
            self.redis, [Position(e.driver_id, e.lat, e.lng, e.timestamp) for e in latest.values()]
        )
        self.counts["applied"] += applied.applied
        self.counts["untracked"] += applied.untracked
        self.counts["not newer"] += applied.not_newer + len(events) - len(latest)
        self.counts["too near a pole"] += applied.polar
        self._housekeeping()
        return applied.applied

    def rebuild(self) -> None:
        """Positions are live: nothing comes back from the database. Drop what must not be offered."""
        removed = prune_positions(self.redis, max_age=settings.RIDEHAIL_POSITION_MAX_AGE)
        self.prune_at = time.monotonic() + PRUNE_SECONDS
        self.logger.info("positions: dropped %d of untracked drivers or too old", removed)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self.prune_at:
            prune_positions(self.redis, max_age=settings.RIDEHAIL_POSITION_MAX_AGE)
            self.prune_at = now + PRUNE_SECONDS
        if now >= self.summary_at and any(self.counts.values()):
            self.logger.info(
                "positions in the last %ds: %s",
                SUMMARY_SECONDS,
                ", ".join(f"{n} {what}" for what, n in self.counts.items()),
            )
            self.counts = dict.fromkeys(self.counts, 0)
            self.summary_at = now + SUMMARY_SECONDS


WORKER = Worker("locations", [TrackingHandler, PositionsHandler])
