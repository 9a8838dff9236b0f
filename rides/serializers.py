"""What the rides endpoints read, and the ride's shape for the OpenAPI schema (the views render
`RideState.to_dict()`; a test holds these fields to the keys it renders)."""

from rest_framework import serializers

from locations.events import LATITUDE, LONGITUDE
from locations.serializers import CoordinateField
from ridehail.web.api import StrictSerializer
from rides.models import RideStatus


class PointSerializer(StrictSerializer):
    lat = CoordinateField(low=LATITUDE[0], high=LATITUDE[1])
    lng = CoordinateField(low=LONGITUDE[0], high=LONGITUDE[1])


class RideRequestSerializer(StrictSerializer):
    pickup = PointSerializer()
    dropoff = PointSerializer()


class RideListQuerySerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=RideStatus.choices, required=False)


class RideSerializer(serializers.Serializer):
    rideId = serializers.UUIDField()
    riderId = serializers.UUIDField()
    driverId = serializers.UUIDField(allow_null=True, help_text="null until assigned")
    pickupDistanceKm = serializers.FloatField(
        allow_null=True,
        min_value=0,
        help_text="how far the assigned driver was from the pickup when matched (great-circle km); null until assigned",
    )
    status = serializers.ChoiceField(choices=RideStatus.choices)
    pickup = PointSerializer()
    dropoff = PointSerializer()
    requestedAt = serializers.DateTimeField()
    timestamp = serializers.DateTimeField(help_text="the last change")
    version = serializers.IntegerField(min_value=1, help_text="+1 per change, 1 when requested")


class CurrentRideSerializer(serializers.Serializer):
    ride = RideSerializer(allow_null=True)


class RideListSerializer(serializers.Serializer):
    rides = RideSerializer(many=True)


class ConflictSerializer(serializers.Serializer):
    detail = serializers.CharField()
    status = serializers.ChoiceField(choices=RideStatus.choices, help_text="the ride's current status")
