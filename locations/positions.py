"""Where every tracked driver is: a Redis geo index, kept by the locations worker.

The positions are split into RIDEHAIL_POSITION_PARTITIONS partitions by driver, like the
topic `driver-location-updated` (a driver's partition is `DRIVER_LOCATION.partition_of`), so
that on a Redis Cluster no shard carries all of them. Partition `c` (named by its channel)
has `locations:positions:{c}`, the geo index (GEOADD / GEOSEARCH) used to find candidates
near a point, `locations:positions:{c}:data`, each driver's exact latitude, longitude and
timestamp (the geo index rounds coordinates to ~0.6 m and has no room for a time), and its
part of the tracked drivers, `locations:tracked-drivers:{c}`: one hash tag, so each script
below runs on one partition, in one slot. With one partition, `c` is
`driver-location-updated`.

A position is applied only for a tracked (online) driver and only if it is newer than the
one held, in one Lua script per partition and batch, so a late or duplicated message never
moves a driver back. Positions are live: nothing here is rebuilt from the database; a
rebuild only drops what must not be offered (drivers no longer tracked, positions too old).
The nearest drivers overall are the nearest of the partitions' nearest, so a search asks
every partition (in one round trip) and merges.
"""

import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import redis
from redis.commands.core import Script

from locations.events import DRIVER_LOCATION
from ridehail.events.connection import run_script
from users.driver_set import SetPart, VersionedDriverSet

# The drivers the locations worker tracks (online, per driver-status-changed), split like the positions.
TRACKED_DRIVERS = VersionedDriverSet("locations:tracked-drivers", DRIVER_LOCATION)
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
class Partition:
    """One partition's keys, all in the slot of its channel's hash tag."""

    tracked: SetPart  # its part of TRACKED_DRIVERS
    geo_index: str
    geo_data: str


def partitions() -> list[Partition]:
    return [
        Partition(tracked, f"locations:positions:{{{channel}}}", f"locations:positions:{{{channel}}}:data")
        for tracked, channel in zip(TRACKED_DRIVERS.parts(), DRIVER_LOCATION.channels, strict=True)
    ]


def partition_of(driver_id: uuid.UUID) -> Partition:
    return partitions()[DRIVER_LOCATION.partition_of(str(driver_id))]


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
    """Apply a batch: one script per partition it touches, all in one round trip."""
    by_partition = _by_partition(positions, key=lambda position: position.driver_id)
    calls = []
    for partition, held in by_partition.items():
        args: list[str] = []
        for position in held:
            args += [str(position.driver_id), repr(position.lat), repr(position.lng), str(_ms(position.timestamp))]
        calls.append(([partition.tracked.key, partition.geo_index, partition.geo_data], args))
    counts = _each(client, _APPLY, calls)
    return Applied(*(sum(int(count[n]) for count in counts) for n in range(4)))


def drop_positions(client: redis.Redis, driver_ids: Iterable[uuid.UUID]) -> None:
    calls = [
        ([partition.geo_index, partition.geo_data], [str(driver_id) for driver_id in drivers])
        for partition, drivers in _by_partition(driver_ids, key=lambda driver_id: driver_id).items()
    ]
    _each(client, _DROP, calls)


def prune_positions(client: redis.Redis, *, max_age: float) -> int:
    """Drop positions of drivers no longer tracked and positions older than `max_age`, in every
    partition; returns how many."""
    calls = [
        ([partition.tracked.key, partition.geo_index, partition.geo_data], [int(max_age * 1000)])
        for partition in partitions()
    ]
    return sum(int(removed) for removed in _each(client, _PRUNE, calls))


def fresh_positions_near(
    client: redis.Redis,
    *,
    lat: float,
    lng: float,
    radius_km: float,
    limit: int,
    max_age: float,
    among: VersionedDriverSet | None = None,
) -> list[Position]:
    """Up to `limit` positions at most `max_age` seconds old within `radius_km` of each partition,
    nearest first within a partition, in one round trip.

    The nearest `limit` overall are among them (each is among its own partition's nearest
    `limit`): the caller sorts and cuts. `among`: a set split like the positions (the
    matcher's pool) the drivers must belong to; each partition's script reads its part.
    """
    if among is not None and among.partitioned_like is not DRIVER_LOCATION:
        raise ValueError(f"{among.name} is not split like the positions: a search cannot read it per partition")
    pool_parts: Sequence[SetPart | None] = among.parts() if among else [None] * len(DRIVER_LOCATION.channels)
    args = [repr(lng), repr(lat), repr(radius_km), limit, int(max_age * 1000)]
    calls = [
        ([partition.geo_index, partition.geo_data, *([pool.key] if pool else [])], args)
        for partition, pool in zip(partitions(), pool_parts, strict=True)
    ]
    found = []
    for pairs in (iter(answer) for answer in _each(client, _SEARCH, calls)):
        found += [Position.from_held(driver, held) for driver, held in zip(pairs, pairs, strict=True)]
    return found


def held_positions(client: redis.Redis) -> dict[str, Position]:
    """Every position in the index, by driver id (for the dashboard's snapshot and for tests)."""
    pipe = client.pipeline(transaction=False)
    for partition in partitions():
        pipe.hgetall(partition.geo_data)
    # Replies are bytes (connection.py's clients do not decode); redis-py types them bytes | str.
    held_by_driver = {
        driver: held for answer in pipe.execute() for driver, held in cast(dict[bytes, bytes], answer).items()
    }
    return {driver.decode(): Position.from_held(driver, held) for driver, held in held_by_driver.items()}


T = TypeVar("T")


def _by_partition(items: Iterable[T], *, key: Callable[[T], uuid.UUID]) -> dict[Partition, list[T]]:
    every = partitions()
    grouped: dict[Partition, list[T]] = {}
    for item in items:
        grouped.setdefault(every[DRIVER_LOCATION.partition_of(str(key(item)))], []).append(item)
    return grouped


def _each(client: redis.Redis, script: Script, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
    """Run `script` once per (keys, args), each call on one partition (one slot), in one round
    trip; their answers in order.

    Several calls go in a pipeline (`run_script` sends EVAL in a cluster's, which sends each
    node its commands at once: N partitions on N masters still cost about one round trip).
    """
    if len(calls) <= 1:
        return [run_script(client, script, keys=keys, args=args) for keys, args in calls]
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:
        run_script(pipe, script, keys=keys, args=args)
    return pipe.execute()


def distance_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance (haversine) on the mean Earth radius."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lng2 - lng1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _ms(moment: datetime) -> int:
    # In integers: through a float, a time on a whole millisecond could come back 1 ms early.
    return (moment - EPOCH) // timedelta(milliseconds=1)
