"""The locations worker: starts and stops tracking drivers as they go online and offline."""

import uuid

from ridehail.events.driver_set import VersionedDriverSet
from ridehail.events.subscriber import DriverSetSubscriber

TRACKED_DRIVERS = VersionedDriverSet("locations:tracked-drivers")


class TrackingSubscriber(DriverSetSubscriber):
    name = "locations"
    driver_set = TRACKED_DRIVERS

    def on_added(self, driver_id: uuid.UUID) -> None:
        self.logger.info("started tracking driver %s", driver_id)

    def on_removed(self, driver_id: uuid.UUID) -> None:
        self.logger.info("stopped tracking driver %s", driver_id)
