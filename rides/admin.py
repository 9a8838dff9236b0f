from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from ridehail.events.models import OutboxEvent
from rides.events import RIDE_STATUS
from rides.models import Ride


@admin.register(Ride)
class RideAdmin(admin.ModelAdmin):
    """Read-only: a ride changes only through rides.services (row lock, version, event)."""

    list_display = ["id", "status", "rider", "driver", "requested_at", "status_changed_at", "version"]
    list_filter = ["status"]
    search_fields = ["id", "rider__username", "driver__username"]
    list_select_related = ["rider", "driver"]
    readonly_fields = [field.name for field in Ride._meta.fields] + ["event_history"]
    ordering = ["-requested_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Ride | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Ride | None = None) -> bool:
        return False

    @admin.display(description="Events (from the outbox, while it keeps them)")
    def event_history(self, ride: Ride) -> str:
        rows: QuerySet[OutboxEvent] = OutboxEvent.objects.filter(topic=RIDE_STATUS.name, key=str(ride.id))
        return format_html_join(
            "\n",
            "<div>v{} · {} · published {} · <code>{}</code></div>",
            ((row.version, row.created_at, row.published_at or "not yet", row.payload) for row in rows.order_by("id")),
        )
