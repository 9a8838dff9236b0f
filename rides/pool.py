"""The matching pool: the drivers the rides worker may offer rides to (online, per
driver-status-changed), kept in Redis by its MatchingPoolHandler."""

from locations.events import DRIVER_LOCATION
from users.driver_set import VersionedDriverSet

# Split like the positions, so the search for candidates reads a partition's positions and its
# part of the pool in one script (one slot).
MATCHING_POOL = VersionedDriverSet("rides:matching-pool", DRIVER_LOCATION)
