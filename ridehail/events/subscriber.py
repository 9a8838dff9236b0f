"""What a worker does with one event, independent of how the event arrived.

Apps declare a subclass in their `subscribers.py` (rides, locations); `run_subscriber
<name>` finds it by `name`. The same handler serves the Pub/Sub and the stream
transports, and handling an event twice has the effect of handling it once.
"""

import logging
import uuid
from importlib import import_module
from typing import ClassVar

import redis
from django.apps import apps
from django.utils.module_loading import module_has_submodule

from ridehail.events.driver_set import DriverState, VersionedDriverSet
from ridehail.events.event import DriverStatusChanged, InvalidEvent

_registry: dict[str, type["DriverSetSubscriber"]] = {}


class DriverSetSubscriber:
    """Keeps a `VersionedDriverSet` in Redis: a driver is in it while available."""

    name: ClassVar[str]
    driver_set: ClassVar[VersionedDriverSet]

    def __init_subclass__(cls, register: bool = True, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if register:  # a test's variant of a subscriber passes register=False
            _registry[cls.name] = cls

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self.logger = logging.getLogger(self.name)
        self._known_drivers: set[uuid.UUID] = set()

    def on_added(self, driver_id: uuid.UUID) -> None:
        """Called once per event that made the driver available."""

    def on_removed(self, driver_id: uuid.UUID) -> None:
        """Called once per event that made the driver unavailable."""

    def handle_message(self, raw: bytes) -> bool:
        """Handle one raw message; anything invalid is logged and skipped, never raised."""
        return self.handle_messages([raw]) == 1

    def handle_messages(self, raws: list[bytes]) -> int:
        """Parse and apply raw messages in order; returns how many changed something."""
        events = []
        for raw in raws:
            try:
                events.append(DriverStatusChanged.from_json(raw))
            except InvalidEvent as exc:
                self.logger.warning("ignored message: %s: %r", exc, raw[:200])
        return self.handle_batch(events) if events else 0

    def handle(self, event: DriverStatusChanged) -> bool:
        """Apply one event; returns whether it changed anything."""
        return self.handle_batch([event]) == 1

    def handle_batch(self, events: list[DriverStatusChanged]) -> int:
        """Apply events in order, in one Redis round trip; returns how many changed something.

        Unknown drivers and stale versions are logged and skipped: they are handled, not failed.
        """
        known = [event for event in events if self._is_known_driver(event)]
        if not known:
            return 0
        states = [DriverState(event.driver_id, event.available, event.version) for event in known]
        applied = 0
        for event, newer in zip(known, self.driver_set.apply_many(self.redis, states), strict=True):
            if newer is not None:
                self.logger.warning(
                    "ignored stale event %s: driver %s version %d, already at version %d",
                    event.event_id,
                    event.driver_id,
                    event.version,
                    newer,
                )
                continue
            (self.on_added if event.available else self.on_removed)(event.driver_id)
            applied += 1
        return applied

    def _is_known_driver(self, event: DriverStatusChanged) -> bool:
        if self._is_driver(event.driver_id):
            return True
        self.logger.warning("ignored event %s: unknown driver %s", event.event_id, event.driver_id)
        return False

    def rebuild(self) -> int:
        """Bring the set in line with the database; returns how many drivers are in it."""
        from users.selectors import driver_states

        states = driver_states()
        in_set = self.driver_set.merge(self.redis, states)
        self._known_drivers = {state.driver_id for state in states}
        self.logger.info("rebuilt from the database: %d of %d drivers in %s", in_set, len(states), self.driver_set.key)
        return in_set

    def load_known_drivers(self) -> None:
        """Fill the known-driver cache in one query, so handling events needs none."""
        from users.selectors import driver_ids

        self._known_drivers = set(driver_ids())

    def _is_driver(self, driver_id: uuid.UUID) -> bool:
        # The cache is filled by rebuild(); only a driver registered since costs a query.
        if driver_id in self._known_drivers:
            return True
        from users.selectors import is_driver

        if is_driver(driver_id):
            self._known_drivers.add(driver_id)
            return True
        return False


def subscriber_classes() -> dict[str, type[DriverSetSubscriber]]:
    """Every subscriber declared in an installed app's `subscribers` module, by name."""
    for app_config in apps.get_app_configs():
        if module_has_submodule(app_config.module, "subscribers"):
            import_module(f"{app_config.name}.subscribers")
    return dict(sorted(_registry.items()))
