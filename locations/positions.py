"""Where every tracked driver is: a Redis geo index, kept by the locations worker.

`locations:positions` is the geo index (GEOADD / GEOSEARCH) used to find candidates near a
point; `locations:positions:data` keeps each driver's exact latitude, longitude and
timestamp (the geo index rounds coordinates to ~0.6 m and has no room for a time).
A position is applied only for a tracked (online) driver and only if it is newer than the
one held, in one Lua script per batch, so a late or duplicated message never moves a
driver back. Positions are live: nothing here is rebuilt from the database; a rebuild only
drops what must not be offered (drivers no longer tracked, positions too old).
"""

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import redis
from redis.commands.core import Script

from users.driver_set import VersionedDriverSet

# The drivers the locations worker tracks (online, per driver-status-changed).
TRACKED_DRIVERS = VersionedDriverSet("locations:tracked-drivers")
GEO_INDEX = "locations:positions"
GEO_DATA = "locations:positions:data"
# Redis's geo index covers latitudes within ±85.05112878 (Web Mercator); a position nearer
# a pole is accepted and published, but cannot be indexed.
GEO_MAX_LATITUDE = 85.05112878
EARTH_RADIUS_KM = 6371.0088  # the mean radius (IUGG)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # positions' times are kept as milliseconds since

# KEYS: tracked set, geo index, data hash. ARGV: quadruples of driver, lat, lng, time (ms).
# Returns {applied, untracked, not newer, too near a pole}.
_APPLY = Script(
    None,  # type: ignore[arg-type]  # no client of its own: every call passes client=
    b"""
local applied, untracked, stale, polar = 0, 0, 0, 0
for i = 1, #ARGV, 4 do
  local driver, lat, lng, at = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  if redis.call('SISMEMBER', KEYS[1], driver) == 0 then
    untracked = untracked + 1
  elseif math.abs(tonumber(lat)) > 85.05112878 then
    polar = polar + 1
  else
    local held = redis.call('HGET', KEYS[3], driver)
    if held and tonumber(string.match(held, '[^ ]+$')) >= at then
      stale = stale + 1
    else
      redis.call('GEOADD', KEYS[2], lng, lat, driver)
      redis.call('HSET', KEYS[3], driver, lat .. ' ' .. lng .. ' ' .. ARGV[i + 3])
      applied = applied + 1
    end
  end
end
return {applied, untracked, stale, polar}
""",
)

# KEYS: geo index, data hash. ARGV: drivers.
_DROP = Script(
    None,  # type: ignore[arg-type]  # no client of its own: every call passes client=
    b"""
for _, driver in ipairs(ARGV) do
  redis.call('ZREM', KEYS[1], driver)
  redis.call('HDEL', KEYS[2], driver)
end
return #ARGV
""",
)

# KEYS: tracked set, geo index, data hash. ARGV: max age (ms). Drops positions of drivers no
# longer tracked, positions too old, and geo entries without data. Returns how many went.
_PRUNE = Script(
    None,  # type: ignore[arg-type]  # no client of its own: every call passes client=
    b"""
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[1])
local removed = 0
for _, driver in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local held = redis.call('HGET', KEYS[3], driver)
  if not held or redis.call('SISMEMBER', KEYS[1], driver) == 0
     or tonumber(string.match(held, '[^ ]+$')) < oldest then
    redis.call('ZREM', KEYS[2], driver)
    redis.call('HDEL', KEYS[3], driver)
    removed = removed + 1
  end
end
for _, driver in ipairs(redis.call('HKEYS', KEYS[3])) do
  if not redis.call('ZSCORE', KEYS[2], driver) then
    redis.call('HDEL', KEYS[3], driver)
    removed = removed + 1
  end
end
return removed
""",
)

# KEYS: geo index, data hash, and optionally a set the drivers must belong to. ARGV: lng, lat,
# radius (km), how many, max age (ms). The nearest fresh positions, nearest first:
# {driver, "lat lng ms", ...}. Asks the index for a few more than wanted and widens the ask
# only if stale entries (or drivers outside the set) crowded the wanted ones out.
_SEARCH = Script(
    None,  # type: ignore[arg-type]  # no client of its own: every call passes client=
    b"""
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[5])
local want = tonumber(ARGV[4])
local ask = want * 2 + 8
while true do
  local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
                           'BYRADIUS', ARGV[3], 'km', 'ASC', 'COUNT', ask)
  local fresh = {}
  for _, driver in ipairs(found) do
    local held = redis.call('HGET', KEYS[2], driver)
    if held and tonumber(string.match(held, '[^ ]+$')) >= oldest
       and (not KEYS[3] or redis.call('SISMEMBER', KEYS[3], driver) == 1) then
      fresh[#fresh + 1] = driver
      fresh[#fresh + 1] = held
      if #fresh >= 2 * want then return fresh end
    end
  end
  if #found < ask or ask >= 100000 then return fresh end
  ask = ask * 4
end
""",
)


@dataclass(frozen=True, slots=True)
class Position:
    driver_id: uuid.UUID
    lat: float
    lng: float
    timestamp: datetime

    @classmethod
    def from_held(cls, driver: bytes, held: bytes) -> "Position":
        lat, lng, at = held.decode().split(" ")
        return cls(uuid.UUID(driver.decode()), float(lat), float(lng), EPOCH + timedelta(milliseconds=int(at)))


@dataclass(frozen=True, slots=True)
class Applied:
    applied: int
    untracked: int
    not_newer: int
    polar: int


def apply_positions(client: redis.Redis, positions: Iterable[Position]) -> Applied:
    args: list[str] = []
    for position in positions:
        args += [str(position.driver_id), repr(position.lat), repr(position.lng), str(_ms(position.timestamp))]
    if not args:
        return Applied(0, 0, 0, 0)
    return Applied(*_APPLY(keys=[TRACKED_DRIVERS.key, GEO_INDEX, GEO_DATA], args=args, client=client))


def drop_positions(client: redis.Redis, driver_ids: Iterable[uuid.UUID]) -> None:
    drivers = [str(driver_id) for driver_id in driver_ids]
    if drivers:
        _DROP(keys=[GEO_INDEX, GEO_DATA], args=drivers, client=client)


def prune_positions(client: redis.Redis, *, max_age: float) -> int:
    """Drop positions of drivers no longer tracked and positions older than `max_age`; returns how many."""
    return int(_PRUNE(keys=[TRACKED_DRIVERS.key, GEO_INDEX, GEO_DATA], args=[int(max_age * 1000)], client=client))


def fresh_positions_near(
    client: redis.Redis,
    *,
    lat: float,
    lng: float,
    radius_km: float,
    limit: int,
    max_age: float,
    among: str | None = None,
) -> list[Position]:
    """Up to `limit` positions at most `max_age` seconds old within `radius_km`, nearest first, in one call.

    `among`: the key of a Redis set the drivers must belong to (the matcher passes its pool).
    """
    found = _SEARCH(
        keys=[GEO_INDEX, GEO_DATA, *([among] if among else [])],
        args=[repr(lng), repr(lat), repr(radius_km), limit, int(max_age * 1000)],
        client=client,
    )
    pairs = iter(found)
    return [Position.from_held(driver, held) for driver, held in zip(pairs, pairs, strict=True)]


def held_positions(client: redis.Redis) -> dict[str, Position]:
    """Every position in the index, by driver id (for the dashboard's snapshot and for tests)."""
    # Replies are bytes (connection.py's clients do not decode); redis-py types them bytes | str.
    held_by_driver = cast(dict[bytes, bytes], client.hgetall(GEO_DATA))
    return {driver.decode(): Position.from_held(driver, held) for driver, held in held_by_driver.items()}


def distance_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance (haversine) on the mean Earth radius."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lng2 - lng1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _ms(moment: datetime) -> int:
    # In integers: through a float, a time on a whole millisecond could come back 1 ms early.
    return (moment - EPOCH) // timedelta(milliseconds=1)
