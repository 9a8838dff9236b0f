"""What the locations endpoints read and write, validated once for every DRF view that reads them."""

import math
from typing import Any

from rest_framework import serializers

from locations.events import LATITUDE, LONGITUDE
from ridehail.web.api import StrictSerializer


class CoordinateField(serializers.FloatField):
    """A JSON number (never a string, boolean or null), finite, within the given range."""

    default_error_messages = {
        "invalid": "Must be a JSON number.",
        "not_finite": "Must be a finite number.",
        "out_of_range": "Must be between {low:g} and {high:g}.",
    }

    def __init__(self, *, low: float, high: float, **kwargs: Any) -> None:
        self.low, self.high = low, high
        super().__init__(min_value=low, max_value=high, **kwargs)
        self.validators = []  # the range is checked below, with the message above

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        if not math.isfinite(data):
            self.fail("not_finite")
        if not self.low <= data <= self.high:
            self.fail("out_of_range", low=self.low, high=self.high)
        return float(data)


class PositionSerializer(StrictSerializer):
    lat = CoordinateField(low=LATITUDE[0], high=LATITUDE[1])
    lng = CoordinateField(low=LONGITUDE[0], high=LONGITUDE[1])


class QueryNumberField(serializers.FloatField):
    """A number in a query string: finite, within (low, high] or [low, high]."""

    default_error_messages = {"invalid": "Must be a number.", "out_of_range": "Must be {bounds}."}

    def __init__(self, *, low: float, high: float, low_open: bool = False, **kwargs: Any) -> None:
        self.low, self.high, self.low_open = low, high, low_open
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> float:
        try:
            value = float(data)
        except (TypeError, ValueError):
            self.fail("invalid")
        if not math.isfinite(value):
            self.fail("invalid")
        above = value > self.low if self.low_open else value >= self.low
        if not (above and value <= self.high):
            self.fail(
                "out_of_range",
                bounds=f"{'more than' if self.low_open else 'at least'} {self.low:g} and at most {self.high:g}",
            )
        return value


class NearbyQuerySerializer(StrictSerializer):
    lat = QueryNumberField(low=LATITUDE[0], high=LATITUDE[1])
    lng = QueryNumberField(low=LONGITUDE[0], high=LONGITUDE[1])
    radius_km = QueryNumberField(low=0, high=50, low_open=True, default=5.0)
    limit = serializers.IntegerField(min_value=1, max_value=100, default=10)


# Response shapes, for the OpenAPI schema.


class ReportedPositionSerializer(serializers.Serializer):
    driverId = serializers.UUIDField()
    lat = serializers.FloatField()
    lng = serializers.FloatField()
    timestamp = serializers.DateTimeField()


class NearbyDriverSerializer(ReportedPositionSerializer):
    distanceKm = serializers.FloatField(help_text="great-circle distance from the query point")


class NearbyResponseSerializer(serializers.Serializer):
    drivers = NearbyDriverSerializer(many=True)
