from django.db import models
from django.utils import timezone


class OutboxEvent(models.Model):
    """An event of a durable topic, written in the same transaction as the change it announces.

    If the process dies or Redis is down right after the commit, the row is still here,
    and the relay publishes it later: a committed change is never left unannounced. One
    table serves every durable topic; order is kept per `(topic, key)`.
    """

    event_id = models.UUIDField(unique=True)
    topic = models.CharField(max_length=100)
    key = models.CharField(max_length=100, help_text="what the version counts: the driver's or the ride's id")
    version = models.PositiveIntegerField()
    payload = models.TextField(help_text="the event's JSON, exactly as it is published")
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # NULL: no trace context (tracing off, or a row written before it existed), never a string to parse.
    trace_context = models.CharField(  # noqa: DJ001
        max_length=128,
        null=True,
        blank=True,
        help_text="the W3C traceparent of the change's span, for the relay's producer span (tracing on only)",
    )
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["topic", "key", "id"],
                condition=models.Q(published_at__isnull=True),
                name="outbox_pending_by_key",
            ),
            models.Index(fields=["published_at"], name="outbox_published_at"),
        ]

    def __str__(self) -> str:
        state = f"published {self.published_at:%Y-%m-%d %H:%M:%S}" if self.published_at else "pending"
        return f"{self.topic} {self.key} v{self.version} ({state})"
