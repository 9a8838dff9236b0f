from locations.subscribers import TRACKED_DRIVERS
from users.apis import DriverSetApi


class TrackingApi(DriverSetApi):
    driver_set = TRACKED_DRIVERS
