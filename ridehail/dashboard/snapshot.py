"""What a dashboard is sent first: the state of the city, built from the apps' selectors.

Drivers and rides come from the database (the truth), positions from the locations worker's
geo index (live data has no other home). The consumer joins the fan-out *before* building
it, and forwards only events newer than the versions in it: no gap, no duplicate.
"""

from typing import Any

from locations.selectors import tracked_positions
from ridehail.events.connection import shared_redis
from rides.selectors import active_rides
from users.selectors import dashboard_drivers, usernames


def build_snapshot() -> dict[str, Any]:
    rides = active_rides()
    names = usernames({ride.rider_id for ride in rides})
    return {
        "type": "snapshot",
        "drivers": dashboard_drivers(),
        "positions": tracked_positions(shared_redis()),
        "rides": [ride.to_dict(riderName=names.get(str(ride.rider_id))) for ride in rides],
    }


def snapshot_versions(snapshot: dict[str, Any]) -> dict[str, int]:
    """What the snapshot already shows, by the key a Delivery carries ("<topic>:<key>")."""
    versions = {f"driver-status-changed:{driver['driverId']}": driver["version"] for driver in snapshot["drivers"]}
    versions.update({f"ride-status-changed:{ride['rideId']}": ride["version"] for ride in snapshot["rides"]})
    return versions
