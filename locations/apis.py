"""HTTP endpoints of locations: they validate, call a service or selector, and serialize."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from locations.positions import TRACKED_DRIVERS
from locations.selectors import nearby_drivers
from locations.serializers import (
    NearbyQuerySerializer,
    NearbyResponseSerializer,
    PositionSerializer,
    ReportedPositionSerializer,
)
from locations.services import report_position
from ridehail.events.connection import shared_redis
from ridehail.web.schema import responses
from ridehail.web.throttling import DRIVER_LOCATION, UserThrottle
from users.apis import DriverSetApi
from users.permissions import AuthenticatedRequest, IsDriver, IsRiderOrOperator

OFFLINE = "The driver is offline: go online before reporting a position."


class TrackingApi(DriverSetApi):
    driver_set = TRACKED_DRIVERS


class DriverLocationApi(APIView):
    permission_classes = [IsAuthenticated, IsDriver]
    throttle_classes = [UserThrottle]
    throttle_scope = DRIVER_LOCATION

    @extend_schema(
        request=PositionSerializer,
        responses=responses({202: ReportedPositionSerializer}, 400, 401, 403, 409, 413, 415, 429),
        description="Published at once on `driver-location-updated` (live only: nothing is stored), as "
        "answered; `timestamp` in whole milliseconds, as `nearby` and the dashboard show it. A driver the "
        "database says is offline gets 409; Redis unreachable, 503.",
    )
    def put(self, request: AuthenticatedRequest) -> Response:
        serializer = PositionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if not request.user.is_available:
            return Response({"detail": OFFLINE}, status=status.HTTP_409_CONFLICT)
        event = report_position(driver_id=request.user.pk, **serializer.validated_data)
        return Response(event.to_dict(), status=status.HTTP_202_ACCEPTED)


class NearbyApi(APIView):
    permission_classes = [IsAuthenticated, IsRiderOrOperator]

    @extend_schema(
        parameters=[
            OpenApiParameter("lat", float, required=True),
            OpenApiParameter("lng", float, required=True),
            OpenApiParameter("radius_km", float, description="in (0, 50], default 5"),
            OpenApiParameter("limit", int, description="in [1, 100], default 10"),
        ],
        responses=responses({200: NearbyResponseSerializer}, 400, 401, 403),
    )
    def get(self, request: Request) -> Response:
        query = NearbyQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        drivers = nearby_drivers(shared_redis(), **query.validated_data)
        return Response({"drivers": [driver.to_dict() for driver in drivers]})
