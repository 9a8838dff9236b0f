"""The matching pool: the drivers the rides worker may offer rides to (online, per
driver-status-changed), kept in Redis by its MatchingPoolHandler."""

from users.driver_set import VersionedDriverSet

MATCHING_POOL = VersionedDriverSet("rides:matching-pool")
