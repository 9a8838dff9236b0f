"""The rides worker: what `python manage.py run_subscriber rides` runs.

| handler | topic | transport |
|---|---|---|
| `MatchingPoolHandler`: the pool of drivers the matcher may offer rides to | `driver-status-changed` | `--transport` |
"""

import uuid

from ridehail.events.worker import Worker
from users.driver_set import DriverSetHandler, VersionedDriverSet

MATCHING_POOL = VersionedDriverSet("rides:matching-pool")


class MatchingPoolHandler(DriverSetHandler):
    name = "rides"
    driver_set = MATCHING_POOL

    def on_added(self, driver_id: uuid.UUID) -> None:
        self.logger.info("driver %s added to matching pool", driver_id)

    def on_removed(self, driver_id: uuid.UUID) -> None:
        self.logger.info("driver %s removed from matching pool", driver_id)


WORKER = Worker("rides", [MatchingPoolHandler])
