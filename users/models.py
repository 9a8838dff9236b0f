import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models


class Role(models.TextChoices):
    DRIVER = "driver", "Driver"
    RIDER = "rider", "Rider"


class User(AbstractUser):
    """Riders and drivers; a driver's availability changes only through `users.services`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.RIDER)
    is_available = models.BooleanField(default=False)
    # Grows by one on every change, so consumers can drop events older than what they hold.
    status_version = models.PositiveIntegerField(default=0)
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="user_role_valid"),
            models.CheckConstraint(
                condition=models.Q(role=Role.DRIVER) | models.Q(is_available=False),
                name="only_drivers_available",
            ),
        ]

    @property
    def is_driver(self) -> bool:
        return self.role == Role.DRIVER
