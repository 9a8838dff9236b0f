"""The outbox and the dead letters in the Django admin: read them, and replay one dead letter.

The outbox is a model: a read-only ModelAdmin (rows change only through the publisher).
Dead letters live in Redis, not in the database, so they get a plain admin view
(`dead_letters_view`, routed under /admin/ in ridehail/urls.py and wrapped in
`admin.site.admin_view`: staff only, the admin's own sign-in and CSRF protection).
"""

import re

import redis
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from ridehail.events.connection import worker_redis
from ridehail.events.models import OutboxEvent
from ridehail.events.status import dead_letters, replay_dead_letter
from ridehail.events.topic import Topic, declared_topics

STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")
ERROR_COLUMN = 80  # characters of last_error the outbox list shows; the row's page has all of it

# Dead letters are no model, so the index's app list would not show them: its template adds them.
admin.site.index_template = "admin/events/index.html"


class PublishedFilter(admin.SimpleListFilter):
    title = "published"
    parameter_name = "published"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Published"), ("no", "Waiting (the backlog)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> QuerySet[OutboxEvent]:
        if self.value() in ("yes", "no"):
            return queryset.filter(published_at__isnull=self.value() == "no")
        return queryset


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    """Read-only: rows are written by `publish_on_commit` and marked by the publisher and relay."""

    # Short columns: a full last_error (a traceback's worth) and long dates pushed the list wider
    # than the screen.
    list_display = ["id", "topic", "key", "version", "created", "published", "attempts", "error"]
    list_filter = ["topic", PublishedFilter]
    search_fields = ["key", "event_id"]
    readonly_fields = [field.name for field in OutboxEvent._meta.fields]
    ordering = ["-id"]

    @admin.display(description="created", ordering="created_at")
    def created(self, event: OutboxEvent) -> str:
        return f"{event.created_at:%Y-%m-%d %H:%M:%S}"

    @admin.display(description="published", ordering="published_at")
    def published(self, event: OutboxEvent) -> str:
        return f"{event.published_at:%Y-%m-%d %H:%M:%S}" if event.published_at else "waiting"

    @admin.display(description="last error")
    def error(self, event: OutboxEvent) -> str:
        first_line = event.last_error.strip().splitlines()[0] if event.last_error.strip() else ""
        return first_line if len(first_line) <= ERROR_COLUMN else f"{first_line[: ERROR_COLUMN - 1]}…"

    # Staff are the operators (SPEC, Accounts): they see the outbox without a model permission
    # granted one by one, as they see the dead letters and /metrics.
    def has_view_permission(self, request: HttpRequest, obj: OutboxEvent | None = None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OutboxEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: OutboxEvent | None = None) -> bool:
        return False


def _durable_topics() -> dict[str, Topic]:
    return {topic.name: topic for topic in declared_topics() if topic.durable}


@require_http_methods(["GET", "POST"])
def dead_letters_view(request: HttpRequest) -> HttpResponse:
    """GET: every durable topic's dead letters. POST (topic, letter): replay that one, once."""
    client = worker_redis(timeout=3.0)
    try:
        if request.method == "POST":
            _replay(request, client)
            return HttpResponseRedirect(reverse("admin-dead-letters"))
        topics = [(name, dead_letters(client, topic)) for name, topic in _durable_topics().items()]
        error = ""
    except redis.RedisError as exc:
        topics, error = [], f"Redis is unreachable: {exc}"
    finally:
        client.close()
    context = {**admin.site.each_context(request), "title": "Dead letters", "topics": topics, "error": error}
    return TemplateResponse(request, "admin/events/dead_letters.html", context)


def _replay(request: HttpRequest, client: redis.Redis) -> None:
    topic = _durable_topics().get(request.POST.get("topic", ""))
    letter_id = request.POST.get("letter", "")
    if topic is None or not STREAM_ID.fullmatch(letter_id):
        messages.error(request, "No such dead letter.")
    elif replay_dead_letter(client, topic, letter_id):
        messages.success(request, f"Dead letter {letter_id} of {topic.name} put back on {topic.stream}, once.")
    else:
        messages.warning(request, f"Dead letter {letter_id} of {topic.name} is not there (already replayed?).")
