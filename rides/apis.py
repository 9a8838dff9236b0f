"""HTTP endpoints of rides: they validate, call a service or selector, and serialize."""

import uuid

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ridehail.web.schema import responses
from ridehail.web.throttling import RIDES, UserThrottle
from rides.events import Point
from rides.models import Ride, RideStatus
from rides.pool import MATCHING_POOL
from rides.selectors import current_ride, recent_rides, ride_state, ride_visible_to
from rides.serializers import (
    ConflictSerializer,
    CurrentRideSerializer,
    RideListQuerySerializer,
    RideListSerializer,
    RideRequestSerializer,
    RideSerializer,
)
from rides.services import RideConflict, Trip, cancel_ride, complete_ride, request_ride
from users.apis import DriverSetApi
from users.permissions import AuthenticatedRequest, is_operator

CONFLICT = OpenApiResponse(ConflictSerializer, description="Not possible in the ride's status (given)")


def ride_data(ride: Ride) -> dict:
    return ride_state(ride).to_dict()


def conflict(exc: RideConflict) -> Response:
    return Response({"detail": exc.detail, "status": exc.status}, status=status.HTTP_409_CONFLICT)


class MatchingPoolApi(DriverSetApi):
    driver_set = MATCHING_POOL


class RidesApi(APIView):
    """POST: a rider requests a ride. GET: staff list recent rides.

    Requests and cancels count in one window per rider (RIDES): each makes events and matcher
    work, so one account cannot flood them by asking and cancelling."""

    permission_classes = [IsAuthenticated]
    throttle_classes = [UserThrottle]
    throttle_scope = RIDES

    @extend_schema(
        request=RideRequestSerializer,
        responses={**responses({201: RideSerializer}, 400, 401, 403, 415, 429), 409: CONFLICT},
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        if request.user.is_driver:
            raise PermissionDenied("Only riders request rides.")
        body = RideRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        trip = Trip(pickup=Point(**body.validated_data["pickup"]), dropoff=Point(**body.validated_data["dropoff"]))
        try:
            ride = request_ride(rider_id=request.user.pk, trip=trip)
        except RideConflict as exc:
            return conflict(exc)
        return Response(ride_data(ride), status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="rides_list",
        parameters=[OpenApiParameter("status", str, enum=RideStatus.values)],
        responses=responses({200: RideListSerializer}, 400, 401, 403),
    )
    def get(self, request: Request) -> Response:
        if not is_operator(request.user):
            raise PermissionDenied("Only staff list rides.")
        query = RideListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        rides = recent_rides(status=query.validated_data.get("status"))
        return Response({"rides": [ride_data(ride) for ride in rides]})


class CurrentRideApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=responses({200: CurrentRideSerializer}, 401, 403))
    def get(self, request: AuthenticatedRequest) -> Response:
        ride = current_ride(request.user)
        return Response({"ride": ride_data(ride) if ride else None})


class RideApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=responses({200: RideSerializer}, 401, 403, 404))
    def get(self, request: AuthenticatedRequest, ride_id: str) -> Response:
        return Response(ride_data(self.visible_ride(request, ride_id)))

    @staticmethod
    def visible_ride(request: AuthenticatedRequest, ride_id: str) -> Ride:
        ride = ride_visible_to(request.user, uuid.UUID(ride_id))  # the URL pattern only lets UUIDs through
        if ride is None:
            raise NotFound("No such ride.")
        return ride


class CancelRideApi(APIView):
    """Its rider, or staff; a requested or assigned ride. Counts in the rider's RIDES window."""

    permission_classes = [IsAuthenticated]
    throttle_classes = [UserThrottle]
    throttle_scope = RIDES

    @extend_schema(request=None, responses={**responses({200: RideSerializer}, 401, 403, 404, 429), 409: CONFLICT})
    def post(self, request: AuthenticatedRequest, ride_id: str) -> Response:
        ride = RideApi.visible_ride(request, ride_id)
        if not (ride.rider_id == request.user.pk or is_operator(request.user)):
            raise PermissionDenied("Only the ride's rider or staff may cancel it.")
        try:
            return Response(ride_data(cancel_ride(ride_id=ride.id)))
        except RideConflict as exc:
            return conflict(exc)


class CompleteRideApi(APIView):
    """Its driver; an assigned ride."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={**responses({200: RideSerializer}, 401, 403, 404), 409: CONFLICT})
    def post(self, request: AuthenticatedRequest, ride_id: str) -> Response:
        ride = RideApi.visible_ride(request, ride_id)
        if ride.driver_id != request.user.pk:
            raise PermissionDenied("Only the ride's driver may complete it.")
        try:
            return Response(ride_data(complete_ride(ride_id=ride.id)))
        except RideConflict as exc:
            return conflict(exc)
