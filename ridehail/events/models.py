from django.db import models
from django.utils import timezone


class OutboxEvent(models.Model):
    """An event written in the same transaction as the change it announces.

    If the process dies or Redis is down right after the commit, the row is still here,
    and the relay publishes it later: a committed change is never left unannounced.
    """

    event_id = models.UUIDField(unique=True)
    driver_id = models.UUIDField()
    version = models.PositiveIntegerField()
    payload = models.TextField(help_text="the event's JSON, exactly as it is published")
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["driver_id", "id"],
                condition=models.Q(published_at__isnull=True),
                name="outbox_pending_by_driver",
            ),
            models.Index(fields=["published_at"], name="outbox_published_at"),
        ]

    def __str__(self) -> str:
        state = f"published {self.published_at:%Y-%m-%d %H:%M:%S}" if self.published_at else "pending"
        return f"driver {self.driver_id} v{self.version} ({state})"
