"""Writes on users. Changing a driver's status happens here and nowhere else."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import cast

from django.contrib.auth import logout
from django.contrib.auth.password_validation import validate_password
from django.db import IntegrityError, connection, transaction
from django.db.models import Field
from django.http import HttpRequest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from ridehail.events.publisher import publish_on_commit
from ridehail.events.tracing import traced
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


def deactivate_user(*, user_id: uuid.UUID) -> None:
    """End a user's access; a driver also goes offline, through the status change (its event).

    The event takes them out of the workers' sets at once. Matching itself never relies on
    it: the assignment refuses an inactive driver, and the rides worker's next retry round
    gives an assigned ride of theirs back to matching (so a queryset `.update()` is safe too).
    """
    with transaction.atomic():
        User.objects.filter(pk=user_id).update(is_active=False)
        if User.objects.filter(pk=user_id, role=Role.DRIVER).exists():
            set_driver_availability(driver_id=user_id, available=False)


@traced
def set_driver_availability(*, driver_id: uuid.UUID, available: bool | None = None) -> StatusChange:
    """Set (or with `available=None`, toggle) a driver's availability and announce it.

    The row is locked for the whole transaction, so concurrent changes to one driver
    queue up and each gets its own version. The event is published only after the
    commit; setting the value the driver already has changes and publishes nothing.
    Raises User.DoesNotExist if `driver_id` is not a driver.
    """
    changed_at = timezone.now()
    with transaction.atomic():
        written = _write_status_change(driver_id, available, changed_at)
        if written is None:  # not a driver, or already as asked: nothing written
            return StatusChange(driver_status(User.objects.get(pk=driver_id, role=Role.DRIVER)), event_id=None)
        now_available, version = written
        event = DriverStatusChanged(
            driver_id=driver_id,
            available=now_available,
            timestamp=changed_at,
            event_id=uuid.uuid4(),
            version=version,
        )
        publish_on_commit(event)
    return StatusChange(event.status, event_id=event.event_id)


def _write_status_change(driver_id: uuid.UUID, available: bool | None, changed_at: datetime) -> tuple[bool, int] | None:
    """Lock, change and bump the driver's row in one `UPDATE … RETURNING`; None if no row changed.

    This is the hottest write of the project, and the ORM's way (`select_for_update().get()`,
    then `save(update_fields=…)`) cost two round trips and ~0.9 ms of CPU to build them, more
    than PostgreSQL spends on the whole transaction (bench/put_status.py). One statement
    takes the same row lock, and only changes a driver whose availability differs from
    `available`. Values go through each field's `get_db_prep_value`, as the ORM's would (a
    UUID is 32 hex digits on SQLite). The skipped `post_save` receivers ignore status saves.
    """
    fields = _status_fields()
    params = [
        fields["status_changed_at"].get_db_prep_value(changed_at, connection),
        fields["id"].get_db_prep_value(driver_id, connection),
        Role.DRIVER.value,
    ]
    if available is not None:
        params[:0] = [available]
        params.append(available)
    with connection.cursor() as cursor:
        cursor.execute(_status_change_sql(toggle=available is None), params)
        row = cursor.fetchone()
    return (bool(row[0]), int(row[1])) if row is not None else None


@cache
def _status_fields() -> dict[str, Field]:
    # Columns of the table itself, which the type checker cannot tell from a name: never a
    # relation (`get_field` may return one), and each has its `column` (None only on relations).
    return {
        name: cast(Field, User._meta.get_field(name))
        for name in ("id", "role", "is_available", "status_version", "status_changed_at")
    }


@cache
def _status_change_sql(*, toggle: bool) -> str:
    """Built once per process: the project has one database."""
    quote = connection.ops.quote_name
    table = quote(User._meta.db_table)
    column = {name: quote(cast(str, field.column)) for name, field in _status_fields().items()}
    available, version = column["is_available"], column["status_version"]
    new_value = f"NOT {available}" if toggle else "%s"
    only_if_different = "" if toggle else f" AND {available} <> %s"
    return (
        f"UPDATE {table} SET {available} = {new_value}, {version} = {version} + 1, {column['status_changed_at']} = %s"
        f" WHERE {column['id']} = %s AND {column['role']} = %s{only_if_different}"
        f" RETURNING {available}, {version}"
    )
