"""Reads of the locations app: who is tracked and where drivers are, as the locations worker keeps it."""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.utils import timezone

from locations.positions import (
    GEO_MAX_LATITUDE,
    TRACKED_DRIVERS,
    Position,
    distance_km,
    fresh_positions_near,
    held_positions,
)
from ridehail.events import wire
from users.driver_set import VersionedDriverSet


@dataclass(frozen=True, slots=True)
class NearbyDriver:
    position: Position
    distance_km: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "driverId": str(self.position.driver_id),
            "lat": self.position.lat,
            "lng": self.position.lng,
            "distanceKm": round(self.distance_km, 4),
            "timestamp": wire.format_timestamp(self.position.timestamp),
        }


def nearby_drivers(
    client: redis.Redis,
    *,
    lat: float,
    lng: float,
    radius_km: float,
    limit: int,
    among: VersionedDriverSet | None = None,
) -> list[NearbyDriver]:
    """Tracked drivers with a fresh position within `radius_km` of the point, nearest first (one round trip).

    The index finds candidates, the nearest `limit` of each partition; distances are
    great-circle distances from the exact positions, so the order, the radius and the
    nearest `limit` of all partitions together are exact too. `among`: only drivers in this
    set (split like the positions: the matcher's pool).
    """
    # The index covers latitudes within ±85.05°: search from the nearest point it covers, far
    # enough to include everything within `radius_km` of the real point.
    indexed_lat = max(-GEO_MAX_LATITUDE, min(GEO_MAX_LATITUDE, lat))
    reach = radius_km + distance_km(lat, lng, indexed_lat, lng)
    found = fresh_positions_near(
        client,
        lat=indexed_lat,
        lng=lng,
        radius_km=reach,
        limit=limit,
        max_age=settings.RIDEHAIL_POSITION_MAX_AGE,
        among=among,
    )
    near = [NearbyDriver(position, distance_km(lat, lng, position.lat, position.lng)) for position in found]
    return sorted((driver for driver in near if driver.distance_km <= radius_km), key=lambda d: d.distance_km)[:limit]


def tracked_positions(client: redis.Redis) -> list[dict[str, Any]]:
    """Every tracked driver's latest fresh position, as the dashboard's snapshot lists them."""
    tracked = set(TRACKED_DRIVERS.members(client))
    oldest = timezone.now() - timedelta(seconds=settings.RIDEHAIL_POSITION_MAX_AGE)
    return [
        {
            "driverId": driver,
            "lat": position.lat,
            "lng": position.lng,
            "timestamp": wire.format_timestamp(position.timestamp),
        }
        for driver, position in held_positions(client).items()
        if driver in tracked and position.timestamp >= oldest
    ]
