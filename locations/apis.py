from locations.subscribers import TRACKED_DRIVERS
from ridehail.api import DriverSetApi


class TrackingApi(DriverSetApi):
    driver_set = TRACKED_DRIVERS
