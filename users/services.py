"""Writes on users. Changing a driver's status happens here and nowhere else."""

import uuid
from dataclasses import dataclass

from django.contrib.auth import logout
from django.contrib.auth.password_validation import validate_password
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from ridehail.events.publisher import publish_on_commit
from users.events import DriverStatus, DriverStatusChanged
from users.models import Role, User
from users.selectors import driver_status


@dataclass(frozen=True, slots=True)
class StatusChange:
    status: DriverStatus
    event_id: uuid.UUID | None  # None when nothing changed (and nothing was published)

    @property
    def changed(self) -> bool:
        return self.event_id is not None


class UsernameTaken(Exception):
    pass


def register_user(*, username: str, password: str, role: Role) -> User:
    """Create a user; raises django's ValidationError for a weak password, UsernameTaken.

    The name is stored NFKC-normalised (fullwidth `d1` is `d1`); the database refuses one that differs
    from a taken name only in case, also when two registrations race.
    """
    user = User(username=User.normalize_username(username), role=role)
    validate_password(password, user=user)
    if User.objects.filter(username__iexact=user.username).exists():
        raise UsernameTaken(username)  # before hashing: a taken name costs the server no hash
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save(force_insert=True)
    except IntegrityError:  # the name is taken (users_username_ci_unique), perhaps a moment ago
        raise UsernameTaken(username) from None
    return user


def revoke_credentials(request: HttpRequest, *, token: Token | None) -> None:
    """Sign out: delete the API token (every client using it loses access) and end the session."""
    if token is not None:
        token.delete()
    logout(request)


def set_driver_availability(*, driver_id: uuid.UUID, available: bool | None = None) -> StatusChange:
    """Set (or with `available=None`, toggle) a driver's availability and announce it.

    The row is locked for the whole transaction, so concurrent changes to one driver
    queue up and each gets its own version. The event is published only after the
    commit; setting the value the driver already has changes and publishes nothing.
    """
    with transaction.atomic():
        driver = User.objects.select_for_update().get(pk=driver_id, role=Role.DRIVER)
        target = not driver.is_available if available is None else available
        if target == driver.is_available:
            return StatusChange(driver_status(driver), event_id=None)
        driver.is_available = target
        driver.status_version += 1
        driver.status_changed_at = timezone.now()
        driver.save(update_fields=["is_available", "status_version", "status_changed_at"])
        event = DriverStatusChanged(
            driver_id=driver.id,
            available=driver.is_available,
            timestamp=driver.status_changed_at,
            event_id=uuid.uuid4(),
            version=driver.status_version,
        )
        publish_on_commit(event)
    return StatusChange(event.status, event_id=event.event_id)
