"""A set of driver ids kept in Redis, updated only by newer versions.

Both workers keep one (the matching pool, the tracked drivers). The version check and
the update run in one Lua script, so two workers, a redelivered stream entry or a
rebuild racing a live event can never leave an older state behind a newer one.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from redis.commands.core import Script

# Loaded once per server and then called by SHA (EVALSHA); one call applies a whole batch.
# KEYS: members set, versions hash. ARGV: triples of driver id, "1"/"0", version.
# Returns, per triple, -1 if applied or else the newer version already held.
_APPLY = Script(
    None,
    b"""
local results = {}
for i = 1, #ARGV, 3 do
  local driver, version = ARGV[i], tonumber(ARGV[i + 2])
  local seen = tonumber(redis.call('HGET', KEYS[2], driver) or '0')
  if version <= seen then
    results[#results + 1] = seen
  else
    redis.call('HSET', KEYS[2], driver, version)
    if ARGV[i + 1] == '1' then
      redis.call('SADD', KEYS[1], driver)
    else
      redis.call('SREM', KEYS[1], driver)
    end
    results[#results + 1] = -1
  end
end
return results
""",
)

# KEYS: members set, versions hash. ARGV: triples of driver id, "1"/"0", version: the
# database's truth. A driver's entry is replaced unless Redis already holds a newer
# version (an event applied after the database was read); drivers absent from the
# database are dropped.
_MERGE = Script(
    None,
    b"""
local keep = {}
for i = 1, #ARGV, 3 do
  local driver, version = ARGV[i], tonumber(ARGV[i + 2])
  keep[driver] = true
  local seen = tonumber(redis.call('HGET', KEYS[2], driver) or '0')
  if version >= seen then
    redis.call('HSET', KEYS[2], driver, version)
    if ARGV[i + 1] == '1' then
      redis.call('SADD', KEYS[1], driver)
    else
      redis.call('SREM', KEYS[1], driver)
    end
  end
end
for _, driver in ipairs(redis.call('HKEYS', KEYS[2])) do
  if not keep[driver] then redis.call('HDEL', KEYS[2], driver) end
end
for _, driver in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not keep[driver] then redis.call('SREM', KEYS[1], driver) end
end
return redis.call('SCARD', KEYS[1])
""",
)


@dataclass(frozen=True, slots=True)
class DriverState:
    driver_id: uuid.UUID
    available: bool
    version: int


@dataclass(frozen=True)
class VersionedDriverSet:
    """Drivers in the set are those whose latest known event said `available: true`."""

    key: str

    @property
    def versions_key(self) -> str:
        return f"{self.key}:versions"

    def apply_many(self, client: redis.Redis, states: list[DriverState]) -> list[int | None]:
        """Apply changes in order, in one script call; per change, None if applied, else the newer version held."""
        if not states:
            return []
        results = _APPLY(keys=[self.key, self.versions_key], args=_triples(states), client=client)
        return [None if result == -1 else int(result) for result in results]

    def merge(self, client: redis.Redis, states: Iterable[DriverState]) -> int:
        """Bring the set in line with the database; returns how many drivers are in it."""
        return int(_MERGE(keys=[self.key, self.versions_key], args=_triples(states), client=client))

    def members(self, client: redis.Redis) -> list[str]:
        return sorted(member.decode() for member in client.smembers(self.key))

    def clear(self, client: redis.Redis) -> None:
        client.delete(self.key, self.versions_key)


def _triples(states: Iterable[DriverState]) -> list[str | int]:
    args: list[str | int] = []
    for state in states:
        args += [str(state.driver_id), "1" if state.available else "0", state.version]
    return args
