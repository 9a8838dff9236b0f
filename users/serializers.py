from typing import Any

from rest_framework import serializers

from ridehail.web.api import StrictSerializer
from users.models import Role, User
from users.services import StatusChange


class StrictBooleanField(serializers.BooleanField):
    """Only JSON true/false: DRF's BooleanField would also take "yes", 1 or "false"."""

    default_error_messages = {"invalid": "Must be a JSON boolean (true or false)."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class RegisterSerializer(StrictSerializer):
    # Whether the name is taken is the database's to say (a unique constraint, case-insensitive):
    # a query here first would race with a concurrent registration.
    username = serializers.CharField(max_length=150, validators=User._meta.get_field("username").validators)
    password = serializers.CharField(write_only=True, max_length=128, trim_whitespace=False)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.RIDER)


class LoginSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "role"]


class MeSerializer(UserSerializer):
    """The signed-in user; drivers also see whether they are available."""

    def to_representation(self, instance: User) -> dict[str, Any]:
        data = super().to_representation(instance)
        if instance.is_driver:
            data["available"] = instance.is_available
        return data


class DriverStatusUpdateSerializer(StrictSerializer):
    """An empty body toggles; `{"available": true|false}` sets."""

    available = StrictBooleanField(required=False)


def status_change_data(change: StatusChange) -> dict[str, Any]:
    return {
        **change.status.to_dict(eventId=str(change.event_id) if change.event_id else None),
        "changed": change.changed,
    }


# Response shapes, for the OpenAPI schema: the views render `DriverStatus.to_dict()`, and a
# test holds these fields to the keys it renders.


class MeResponseSerializer(UserSerializer):
    available = serializers.BooleanField(required=False, help_text="drivers only")

    class Meta(UserSerializer.Meta):
        fields = [*UserSerializer.Meta.fields, "available"]


class LoginResponseSerializer(serializers.Serializer):
    token = serializers.CharField()
    user = UserSerializer()


class DriverStatusResponseSerializer(serializers.Serializer):
    driverId = serializers.UUIDField()
    available = serializers.BooleanField()
    timestamp = serializers.DateTimeField(allow_null=True, help_text="last change, null if never")
    version = serializers.IntegerField(min_value=0)


class StatusChangeResponseSerializer(DriverStatusResponseSerializer):
    eventId = serializers.UUIDField(allow_null=True, help_text="null when nothing changed")
    changed = serializers.BooleanField()
