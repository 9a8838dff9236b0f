"""The locations worker: what `python manage.py run_subscriber locations` runs.

| handler | topic | transport |
|---|---|---|
| `TrackingHandler`: which drivers are tracked (online) | `driver-status-changed` | `--transport` |
"""

import uuid

from ridehail.events.worker import Worker
from users.driver_set import DriverSetHandler, VersionedDriverSet

TRACKED_DRIVERS = VersionedDriverSet("locations:tracked-drivers")


class TrackingHandler(DriverSetHandler):
    name = "locations"
    driver_set = TRACKED_DRIVERS

    def on_added(self, driver_id: uuid.UUID) -> None:
        self.logger.info("started tracking driver %s", driver_id)

    def on_removed(self, driver_id: uuid.UUID) -> None:
        self.logger.info("stopped tracking driver %s", driver_id)


WORKER = Worker("locations", [TrackingHandler])
