"""Reads on users that other parts of the project (workers, dashboard) rely on."""

import uuid
from typing import Any

from ridehail.events.driver_set import DriverState
from ridehail.events.event import format_timestamp
from users.models import Role, User


def driver_states() -> list[DriverState]:
    """Every driver's availability and version: the truth the workers rebuild from."""
    rows = User.objects.filter(role=Role.DRIVER).values_list("id", "is_available", "status_version")
    return [DriverState(driver_id, available, version) for driver_id, available, version in rows]


def driver_ids() -> list[uuid.UUID]:
    return list(User.objects.filter(role=Role.DRIVER).values_list("id", flat=True))


def active_staff_ids(user_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these users may still use the operator tools."""
    return set(User.objects.filter(pk__in=user_ids, is_active=True, is_staff=True).values_list("pk", flat=True))


def is_driver(driver_id: uuid.UUID) -> bool:
    return User.objects.filter(pk=driver_id, role=Role.DRIVER).exists()


def dashboard_drivers() -> list[dict[str, Any]]:
    """Every driver as the dashboard's snapshot lists them (same field names as the event)."""
    rows = (
        User.objects.filter(role=Role.DRIVER)
        .order_by("username")
        .values_list("id", "username", "is_available", "status_version", "status_changed_at")
    )
    return [
        {
            "driverId": str(driver_id),
            "username": username,
            "available": available,
            "version": version,
            "timestamp": format_timestamp(changed_at) if changed_at else None,
        }
        for driver_id, username, available, version, changed_at in rows
    ]
