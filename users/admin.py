from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from users.models import Role, User
from users.services import deactivate_user, set_driver_availability


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "role", "is_available", "status_version", "status_changed_at", "is_staff"]
    list_filter = ["role", "is_available", "is_staff", "is_active"]
    # Availability changes go through the service (version bump + event), never a form save.
    readonly_fields = ["is_available", "status_version", "status_changed_at"]
    fieldsets = [
        *(DjangoUserAdmin.fieldsets or ()),  # never None: django-stubs types it Optional
        ("Ride-hailing", {"fields": ["role", "is_available", "status_version", "status_changed_at"]}),
    ]
    add_fieldsets = [(None, {"fields": ["username", "role", "password1", "password2"]})]
    actions = ["set_online", "set_offline", "deactivate"]

    @admin.action(description="Set selected drivers online")
    def set_online(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        self._set_availability(request, queryset, available=True)

    @admin.action(description="Set selected drivers offline")
    def set_offline(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        self._set_availability(request, queryset, available=False)

    @admin.action(description="Deactivate selected users (drivers go offline)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        user_ids = list(queryset.values_list("id", flat=True))
        for user_id in user_ids:
            deactivate_user(user_id=user_id)
        self.message_user(request, f"{len(user_ids)} user(s) deactivated.", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        """Unticking "active" ends access through the service, so a driver also goes offline."""
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            deactivate_user(user_id=obj.pk)

    def _set_availability(self, request: HttpRequest, queryset: QuerySet[User], *, available: bool) -> None:
        changed = 0
        for driver_id in queryset.filter(role=Role.DRIVER).values_list("id", flat=True):
            changed += set_driver_availability(driver_id=driver_id, available=available).changed
        self.message_user(request, f"{changed} driver(s) changed.", messages.SUCCESS)
