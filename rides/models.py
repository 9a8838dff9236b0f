import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class RideStatus(models.TextChoices):
    REQUESTED = "requested"
    ASSIGNED = "assigned"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


ACTIVE = [RideStatus.REQUESTED, RideStatus.ASSIGNED]


class Ride(models.Model):
    """A rider's request and what became of it; it changes only through `rides.services`.

    The database, not the worker, keeps the promises: a driver has at most one assigned ride
    and a rider at most one active ride (partial unique indexes), a ride that is requested has
    no driver and an assigned or completed one has exactly one (check constraints). Two
    workers, a redelivered event or a rider cancelling at the same moment end in a clean
    conflict, never in a double assignment.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    rider = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rides_taken")
    driver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="rides_driven"
    )
    status = models.CharField(max_length=10, choices=RideStatus.choices, default=RideStatus.REQUESTED)
    pickup_lat = models.FloatField()
    pickup_lng = models.FloatField()
    dropoff_lat = models.FloatField()
    dropoff_lng = models.FloatField()
    requested_at = models.DateTimeField(default=timezone.now)
    assigned_at = models.DateTimeField(null=True, blank=True)
    # How far the driver was from the pickup when the matcher chose them (straight line, km):
    # what the matcher minimised, kept with the assignment. Null until assigned (and when given back).
    pickup_distance_km = models.FloatField(null=True, blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    # Grows by one on every change (1 when requested), so consumers drop anything older.
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=RideStatus.values), name="ride_status_valid"),
            models.CheckConstraint(
                condition=Q(status=RideStatus.REQUESTED, driver__isnull=True)
                | Q(status__in=[RideStatus.ASSIGNED, RideStatus.COMPLETED], driver__isnull=False)
                | Q(status__in=[RideStatus.CANCELLED, RideStatus.EXPIRED]),
                name="ride_driver_matches_status",
            ),
            models.UniqueConstraint(
                fields=["driver"], condition=Q(status=RideStatus.ASSIGNED), name="one_assigned_ride_per_driver"
            ),
            models.UniqueConstraint(fields=["rider"], condition=Q(status__in=ACTIVE), name="one_active_ride_per_rider"),
        ]
        indexes = [
            models.Index(fields=["requested_at"], condition=Q(status=RideStatus.REQUESTED), name="ride_waiting"),
            models.Index(fields=["status", "-requested_at"], name="ride_by_status"),
        ]

    def __str__(self) -> str:
        return f"ride {self.id} ({self.status})"
