"""A set of driver ids kept in Redis from `driver-status-changed`, updated only by newer versions.

Both workers keep one (the rides worker's matching pool, the locations worker's tracked
drivers) through a `DriverSetHandler`. Each handled event first has its effects (the
hooks: log lines, positions dropped...), and only then is its version written, in one Lua
script that writes only if it is still newer: a hook that fails leaves the event undone,
to be retried whole; two workers, a redelivered entry or a rebuild racing a live event
can never leave an older state behind a newer one.

A set is split like the driver positions (RIDEHAIL_POSITION_PARTITIONS): a driver's entry
(member and version) lives in its partition's part, in that partition's slot, so the
position scripts read it with the positions it guards.
"""

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar, cast

import redis
from redis.commands.core import Script

from ridehail.events.handler import Handler
from ridehail.events.topic import Topic
from users.events import DRIVER_STATUS, DriverStatusChanged
from users.selectors import DriverState, driver_states, existing_driver_ids

T = TypeVar("T")

# Shared by the scripts below; each runs on one part of a set (SetPart, one slot).
# KEYS[1]: the part's members set, KEYS[2]: its versions hash.
_SET_STATE = b"""
local function set_state(driver, available, version)
  redis.call('HSET', KEYS[2], driver, version)
  if available == '1' then
    redis.call('SADD', KEYS[1], driver)
  else
    redis.call('SREM', KEYS[1], driver)
  end
end
"""

# Loaded once per server and then called by SHA (EVALSHA); one call applies a whole batch.
# Versions are compared as Lua numbers (exact below 2^53) but written as the strings they
# came as: Lua would print a large number as "9.007199254741e+15".
# KEYS: members set, versions hash. ARGV: triples of driver id, "1"/"0", version.
# Returns, per triple, -1 if applied or else the newer version already held.
_APPLY = Script(
    None,  # type: ignore[arg-type]  # no client of its own: every call passes client=
    _SET_STATE
    + b"""
local results = {}
for i = 1, #ARGV, 3 do
  local driver, version = ARGV[i], tonumber(ARGV[i + 2])
  local seen = tonumber(redis.call('HGET', KEYS[2], driver) or '0')
  if version <= seen then
    results[#results + 1] = seen
  else
    set_state(driver, ARGV[i + 1], ARGV[i + 2])
    results[#results + 1] = -1
  end
end
return results
""",
)

# KEYS: members set, versions hash. ARGV: triples of driver id, "1"/"0", version: the
# database's truth. A driver's entry is replaced unless Redis holds a newer version, which
# is either an event applied after the database was read or a forgery: those are returned
# (driver, version held) for the caller to check. Drivers absent from the database go.
# Returns {number in the set, driver, held, driver, held, ...}.
_MERGE = Script(
    None,  # type: ignore[arg-type]  # no client of its own: every call passes client=
    _SET_STATE
    + b"""
local keep, ahead = {}, {}
for i = 1, #ARGV, 3 do
  local driver, version = ARGV[i], tonumber(ARGV[i + 2])
  keep[driver] = true
  local held = redis.call('HGET', KEYS[2], driver) or '0'
  if version >= tonumber(held) then
    set_state(driver, ARGV[i + 1], ARGV[i + 2])
  else
    ahead[#ahead + 1] = driver
    ahead[#ahead + 1] = held
  end
end
for _, driver in ipairs(redis.call('HKEYS', KEYS[2])) do
  if not keep[driver] then redis.call('HDEL', KEYS[2], driver) end
end
for _, driver in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not keep[driver] then redis.call('SREM', KEYS[1], driver) end
end
local result = {redis.call('SCARD', KEYS[1])}
for _, value in ipairs(ahead) do result[#result + 1] = value end
return result
""",
)

# KEYS: members set, versions hash. ARGV: quadruples of driver id, "1"/"0", version (the
# database, read after the merge), version held at the merge. The database's state replaces
# the entry if Redis still holds that version: no committed change explains it.
_REPLACE_FORGED = Script(
    None,  # type: ignore[arg-type]  # no client of its own: every call passes client=
    _SET_STATE
    + b"""
local replaced = 0
for i = 1, #ARGV, 4 do
  local driver, version, held = ARGV[i], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local seen = tonumber(redis.call('HGET', KEYS[2], driver) or '0')
  if seen == held and held > version then
    set_state(driver, ARGV[i + 1], ARGV[i + 2])
    replaced = replaced + 1
  end
end
return replaced
""",
)


@dataclass(frozen=True)
class SetPart:
    """One partition's share of a set: its members and their versions, in one slot (`{<channel>}`)."""

    key: str

    @property
    def versions_key(self) -> str:
        return f"{self.key}:versions"


@dataclass(frozen=True)
class VersionedDriverSet:
    """Drivers in the set are those whose latest known event said `available: true`.

    Split like the partitions of `partitioned_like` (the position topic): a driver's entry
    lives in the part of its partition, `<name>:{<the partition's channel>}`, so one script
    can read it together with that partition's positions (one slot on a cluster). Each
    script below runs on one part; a call that spans drivers of several parts runs once per
    part. With one partition there is one part.
    """

    name: str
    partitioned_like: Topic = field(repr=False)

    def parts(self) -> list[SetPart]:
        return [SetPart(f"{self.name}:{{{channel}}}") for channel in self.partitioned_like.channels]

    def part_of(self, driver_id: uuid.UUID) -> SetPart:
        return self.parts()[self.partitioned_like.partition_of(str(driver_id))]

    def versions(self, client: redis.Redis, driver_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
        """The versions held for these drivers (0 for none), in one round trip (a pipeline: one HMGET per part)."""
        by_part = self._by_part(list(driver_ids), key=lambda driver_id: driver_id)
        if not by_part:
            return {}
        pipe = client.pipeline(transaction=False)
        for part, ids in by_part.items():
            pipe.hmget(part.versions_key, [str(driver_id) for driver_id in ids])
        held: dict[uuid.UUID, int] = {}
        for ids, values in zip(by_part.values(), pipe.execute(), strict=True):
            held.update({driver_id: int(value or 0) for driver_id, value in zip(ids, values, strict=True)})
        return held

    def apply_many(self, client: redis.Redis, states: list[DriverState]) -> list[int | None]:
        """Apply changes in order, one script call per part; per change, None if applied, else the newer
        version held."""
        results: dict[int, int | None] = {}
        for part, indexed in self._by_part(list(enumerate(states)), key=lambda pair: pair[1].driver_id).items():
            answers = _APPLY(
                keys=[part.key, part.versions_key], args=_flatten(state for _, state in indexed), client=client
            )
            for (i, _), answer in zip(indexed, answers, strict=True):
                results[i] = None if answer == -1 else int(answer)
        return [results[i] for i in range(len(states))]

    def merge(self, client: redis.Redis, states: Iterable[DriverState]) -> tuple[int, dict[uuid.UUID, int]]:
        """Bring the set in line with the database; returns (drivers in the set, drivers Redis holds ahead).

        Every part is merged, even one no driver of the database falls in: it must be emptied.
        """
        by_part = self._by_part(list(states), key=lambda state: state.driver_id)
        size, ahead = 0, {}
        for part in self.parts():
            in_part, *held = _MERGE(
                keys=[part.key, part.versions_key], args=_flatten(by_part.get(part, [])), client=client
            )
            size += int(in_part)
            pairs = iter(held)
            ahead.update({uuid.UUID(d.decode()): int(version) for d, version in zip(pairs, pairs, strict=True)})
        return size, ahead

    def replace_forged(self, client: redis.Redis, fresh: list[DriverState], held: dict[uuid.UUID, int]) -> int:
        replaced = 0
        for part, states in self._by_part(fresh, key=lambda state: state.driver_id).items():
            args: list[str | int] = []
            for state in states:
                args += [*_flatten([state]), held[state.driver_id]]
            replaced += int(_REPLACE_FORGED(keys=[part.key, part.versions_key], args=args, client=client))
        return replaced

    def members(self, client: redis.Redis) -> list[str]:
        """Every driver in the set, sorted (one round trip: a pipeline of one SMEMBERS per part)."""
        pipe = client.pipeline(transaction=False)
        for part in self.parts():
            pipe.smembers(part.key)
        # Replies are bytes (connection.py's clients do not decode); redis-py types them bytes | str.
        return sorted(member.decode() for members in pipe.execute() for member in cast(set[bytes], members))

    def clear(self, client: redis.Redis) -> None:
        for part in self.parts():
            client.delete(part.key, part.versions_key)

    def _by_part(self, items: list[T], *, key: Callable[[T], uuid.UUID]) -> dict[SetPart, list[T]]:
        """The items grouped by the part of their driver, each group in the items' order."""
        parts = self.parts()
        grouped: dict[SetPart, list[T]] = {}
        for item in items:
            grouped.setdefault(parts[self.partitioned_like.partition_of(str(key(item)))], []).append(item)
        return grouped


def _flatten(states: Iterable[DriverState]) -> list[str | int]:
    args: list[str | int] = []
    for state in states:
        args += [str(state.driver_id), "1" if state.available else "0", state.version]
    return args


class KnownDrivers:
    """Which ids are drivers, answered from memory: one query fills it, a miss costs one per batch.

    Negative answers are kept for a while too, so a flood of events for made-up drivers
    does not turn into a flood of queries.
    """

    NEGATIVE_SECONDS = 30.0
    NEGATIVE_LIMIT = 100_000

    def __init__(self) -> None:
        self.known: set[uuid.UUID] = set()
        self.unknown: dict[uuid.UUID, float] = {}

    def reset(self, driver_ids: Iterable[uuid.UUID]) -> None:
        self.known, self.unknown = set(driver_ids), {}

    def filter(self, driver_ids: set[uuid.UUID]) -> set[uuid.UUID]:
        """The drivers among these ids."""
        new = driver_ids - self.known
        if not new:
            return driver_ids  # the common case: every one already known
        now = time.monotonic()
        to_ask = {i for i in new if self.unknown.get(i, 0.0) < now}
        if to_ask:
            found = existing_driver_ids(to_ask)
            self.known |= found
            if len(self.unknown) > self.NEGATIVE_LIMIT:
                self.unknown.clear()
            self.unknown.update(dict.fromkeys(to_ask - found, now + self.NEGATIVE_SECONDS))
        return driver_ids & self.known


class DriverSetHandler(Handler[DriverStatusChanged]):
    """Keeps a `VersionedDriverSet`: a driver is in it while available. Subclasses add the hooks."""

    topic = DRIVER_STATUS
    driver_set: ClassVar[VersionedDriverSet]

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.known_drivers = KnownDrivers()

    def on_added(self, driver_id: uuid.UUID) -> None:
        """An effect of an event that made the driver available (runs before its version is written)."""

    def on_removed(self, driver_id: uuid.UUID) -> None:
        """An effect of an event that made the driver unavailable (runs before its version is written)."""

    def handle(self, event: DriverStatusChanged) -> bool:
        """Apply one event; returns whether it changed anything."""
        return self.handle_batch([event]) == 1

    def handle_message(self, raw: bytes) -> bool:
        """Handle one raw message; anything invalid is logged and skipped, never raised."""
        events = self.parse_messages([raw])
        return bool(events) and self.handle_batch(events) == 1

    def handle_batch(self, events: list[DriverStatusChanged]) -> int:
        """Check, run the effects, then write the versions; returns how many events changed something.

        Unknown drivers and stale versions are logged and skipped: they are handled, not failed.
        """
        known = self._of_known_drivers(events)
        held = self.driver_set.versions(self.redis, {event.driver_id for event in known})
        changes = []
        for event in known:
            driver_id, version = event.driver_id, event.version
            seen = held[driver_id]
            if version <= seen:
                self.logger.warning(
                    "ignored stale event %s: driver %s version %d, already at version %d",
                    event.event_id,
                    driver_id,
                    version,
                    seen,
                )
                continue
            (self.on_added if event.available else self.on_removed)(driver_id)
            held[driver_id] = version
            changes.append(DriverState(driver_id, event.available, version))
        # Last: a version written means every effect of its event is done.
        self.driver_set.apply_many(self.redis, changes)
        return len(changes)

    def _of_known_drivers(self, events: list[DriverStatusChanged]) -> list[DriverStatusChanged]:
        ids = {event.driver_id for event in events}
        drivers = self.known_drivers.filter(ids)
        if len(drivers) == len(ids):
            return events
        for event in events:
            if event.driver_id not in drivers:
                self.logger.warning("ignored event %s: unknown driver %s", event.event_id, event.driver_id)
        return [event for event in events if event.driver_id in drivers]

    def rebuild(self) -> int:
        """Make the set equal to the database, whatever versions Redis held before; returns its size.

        An entry newer than the database is kept only if the database, read again after
        the merge, has caught up with it (an event applied while we were reading); an entry
        that no committed change explains (a forged or corrupt version) is replaced.
        """
        states = driver_states()
        in_set, ahead = self.driver_set.merge(self.redis, states)
        if ahead:
            replaced = self.driver_set.replace_forged(self.redis, driver_states(ahead), ahead)
            if replaced:
                self.logger.warning("replaced %d entries newer than the database (forged or corrupt)", replaced)
                in_set = len(self.driver_set.members(self.redis))
        self.known_drivers.reset(state.driver_id for state in states)
        self.after_rebuild()
        self.logger.info("rebuilt from the database: %d of %d drivers in %s", in_set, len(states), self.driver_set.name)
        return in_set

    def after_rebuild(self) -> None:
        """Whatever else a subclass keeps in line with the set (the locations worker: positions)."""
