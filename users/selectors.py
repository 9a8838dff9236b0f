"""Reads on users that other parts of the project (workers, dashboard) rely on."""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from users.events import DriverStatus
from users.models import Role, User


@dataclass(frozen=True, slots=True)
class DriverState:
    """What a worker's driver set holds per driver: the database's truth it rebuilds from."""

    driver_id: uuid.UUID
    available: bool
    version: int


def driver_states(driver_ids: Iterable[uuid.UUID] | None = None) -> list[DriverState]:
    """Every driver's (or these drivers') availability and version.

    A deactivated driver is never available, whatever the row's flag says: a queryset
    `.update(is_active=False)` publishes nothing, and the next rebuild takes them out.
    """
    drivers = User.objects.filter(role=Role.DRIVER)
    if driver_ids is not None:
        drivers = drivers.filter(pk__in=list(driver_ids))
    rows = drivers.values_list("id", "is_available", "is_active", "status_version")
    return [DriverState(driver_id, available and active, version) for driver_id, available, active, version in rows]


def existing_driver_ids(driver_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these ids are drivers, in one query."""
    return set(User.objects.filter(pk__in=list(driver_ids), role=Role.DRIVER).values_list("id", flat=True))


def active_staff_ids(user_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these users may still use the operator tools."""
    return set(User.objects.filter(pk__in=user_ids, is_active=True, is_staff=True).values_list("pk", flat=True))


def driver_status(driver: User) -> DriverStatus:
    return DriverStatus(driver.id, driver.is_available, driver.status_changed_at, driver.status_version)


def dashboard_drivers() -> list[dict[str, Any]]:
    """Every driver as the dashboard's snapshot lists them: the status shape plus the username."""
    rows = (
        User.objects.filter(role=Role.DRIVER)
        .order_by("username")
        .values_list("id", "username", "is_available", "status_version", "status_changed_at")
    )
    return [
        {**DriverStatus(driver_id, available, changed_at, version).to_dict(), "username": username}
        for driver_id, username, available, version, changed_at in rows
    ]


def driver_versions(driver_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, tuple[int, str]]:
    """The current status version and the username of each of these ids that is a driver, in one query."""
    rows = User.objects.filter(pk__in=list(driver_ids), role=Role.DRIVER).values_list(
        "id", "status_version", "username"
    )
    return {driver_id: (version, username) for driver_id, version, username in rows}


def usernames(user_ids: Iterable[uuid.UUID]) -> dict[str, str]:
    """id → username for these users, in one query (for people a screen names)."""
    return {str(pk): name for pk, name in User.objects.filter(pk__in=list(user_ids)).values_list("id", "username")}
