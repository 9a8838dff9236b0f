"""Plausible movement at city scale: random waypoints in a disc, straight lines at a speed.

A few kilometres from a centre the earth is flat enough: an equirectangular projection is off by
well under a metre, and a disc in it is convex, so a straight line between two points in the
area never leaves it.
"""

import math
import random
from typing import NamedTuple

KM_PER_DEGREE_LAT = 111.32


class Point(NamedTuple):
    lat: float
    lng: float

    def as_json(self) -> dict[str, float]:
        return {"lat": round(self.lat, 6), "lng": round(self.lng, 6)}


def parse_point(text: str) -> Point:
    """ "52.52,13.405" → Point; ValueError names what is wrong."""
    lat_text, _, lng_text = text.partition(",")
    lat, lng = float(lat_text), float(lng_text)
    if not (-85 <= lat <= 85 and -180 <= lng <= 180):
        raise ValueError(f"{text!r} is not a latitude,longitude pair away from the poles")
    return Point(lat, lng)


def _km_per_degree_lng(lat: float) -> float:
    return KM_PER_DEGREE_LAT * math.cos(math.radians(lat))


def distance_km(a: Point, b: Point) -> float:
    """Great-circle distance (haversine), the one the server's matching uses."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat, dlng = lat2 - lat1, math.radians(b.lng - a.lng)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlng / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def offset(origin: Point, *, km: float, bearing: float) -> Point:
    """The point `km` away from `origin` towards `bearing` (radians, 0 = north)."""
    return Point(
        origin.lat + km * math.cos(bearing) / KM_PER_DEGREE_LAT,
        origin.lng + km * math.sin(bearing) / _km_per_degree_lng(origin.lat),
    )


def random_point(center: Point, radius_km: float, rng: random.Random) -> Point:
    """A point uniformly spread over the disc (sqrt: otherwise points bunch up at the centre)."""
    return offset(center, km=radius_km * math.sqrt(rng.random()), bearing=rng.uniform(0, 2 * math.pi))


def point_near(
    origin: Point, center: Point, *, min_km: float, max_km: float, radius_km: float, rng: random.Random
) -> Point:
    """A point `min_km`..`max_km` from `origin`, kept inside the area (a trip's dropoff)."""
    for _ in range(20):
        candidate = offset(origin, km=rng.uniform(min_km, max_km), bearing=rng.uniform(0, 2 * math.pi))
        if distance_km(candidate, center) <= radius_km:
            return candidate
    return random_point(center, radius_km, rng)


def advance(position: Point, target: Point, km: float) -> Point:
    """Move up to `km` along the straight line to `target`; stop on it rather than overshoot."""
    remaining = distance_km(position, target)
    if remaining <= km or remaining == 0:
        return target
    share = km / remaining
    return Point(position.lat + (target.lat - position.lat) * share, position.lng + (target.lng - position.lng) * share)
