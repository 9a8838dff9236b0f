"""The rides worker: keeps the pool of drivers the matcher may offer rides to."""

import uuid

from ridehail.events.driver_set import VersionedDriverSet
from ridehail.events.subscriber import DriverSetSubscriber

MATCHING_POOL = VersionedDriverSet("rides:matching-pool")


class MatchingPoolSubscriber(DriverSetSubscriber):
    name = "rides"
    driver_set = MATCHING_POOL

    def on_added(self, driver_id: uuid.UUID) -> None:
        self.logger.info("driver %s added to matching pool", driver_id)

    def on_removed(self, driver_id: uuid.UUID) -> None:
        self.logger.info("driver %s removed from matching pool", driver_id)
