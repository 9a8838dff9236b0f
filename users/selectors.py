"""Reads on users that other parts of the project (workers, dashboard) rely on."""

import uuid

from ridehail.events.driver_set import DriverState
from users.models import Role, User


def driver_states() -> list[DriverState]:
    """Every driver's availability and version: the truth the workers rebuild from."""
    rows = User.objects.filter(role=Role.DRIVER).values_list("id", "is_available", "status_version")
    return [DriverState(driver_id, available, version) for driver_id, available, version in rows]


def is_driver(driver_id: uuid.UUID) -> bool:
    return User.objects.filter(pk=driver_id, role=Role.DRIVER).exists()
