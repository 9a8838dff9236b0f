from rides.subscribers import MATCHING_POOL
from users.apis import DriverSetApi


class MatchingPoolApi(DriverSetApi):
    driver_set = MATCHING_POOL
