import uuid
from typing import TYPE_CHECKING, ClassVar

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower


class Role(models.TextChoices):
    DRIVER = "driver", "Driver"
    RIDER = "rider", "Rider"


if TYPE_CHECKING:
    # Generic in django-stubs only: Django's UserManager cannot be subscripted at runtime.
    _UserManager = UserManager["User"]
else:
    _UserManager = UserManager


class CaseInsensitiveUserManager(_UserManager):
    def get_by_natural_key(self, username: str | None) -> "User":
        """Every way to sign in (API, login form, admin) finds `Driver1` and fullwidth `driver1` as `driver1`."""
        normalized = self.model.normalize_username(username)
        return self.alias(username_key=Lower("username")).get(username_key=Lower(models.Value(normalized)))


class User(AbstractUser):
    """Riders and drivers; a driver's availability changes only through `users.services`.

    Usernames are stored NFKC-normalised (as Django's user forms and manager already do) and are
    unique whatever their case: one constraint, so a race between two registrations ends in an
    IntegrityError, not in two accounts. Case folding is the database's LOWER(): full Unicode on
    PostgreSQL with a UTF-8 locale, ASCII letters only on SQLite.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.RIDER)
    is_available = models.BooleanField(default=False)
    # Grows by one on every change, so consumers can drop events older than what they hold.
    status_version = models.PositiveIntegerField(default=0)
    status_changed_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[CaseInsensitiveUserManager] = CaseInsensitiveUserManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Lower("username"),
                name="users_username_ci_unique",
                violation_error_message="A user with that username already exists.",
            ),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="user_role_valid"),
            models.CheckConstraint(
                condition=models.Q(role=Role.DRIVER) | models.Q(is_available=False),
                name="only_drivers_available",
            ),
        ]

    @property
    def is_driver(self) -> bool:
        return self.role == Role.DRIVER
