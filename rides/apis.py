from ridehail.api import DriverSetApi
from rides.subscribers import MATCHING_POOL


class MatchingPoolApi(DriverSetApi):
    driver_set = MATCHING_POOL
