"""HTTP endpoints of users: they validate, call a service or selector, and serialize."""

from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ridehail.events.connection import shared_redis
from ridehail.web.schema import responses
from ridehail.web.throttling import AUTH, DRIVER_STATUS, ClientAddressThrottle, UserThrottle
from users.driver_set import VersionedDriverSet
from users.permissions import AuthenticatedRequest, IsDriver, IsOperator
from users.selectors import driver_status
from users.serializers import (
    DriverStatusResponseSerializer,
    DriverStatusUpdateSerializer,
    LoginResponseSerializer,
    LoginSerializer,
    MeResponseSerializer,
    MeSerializer,
    RegisterSerializer,
    StatusChangeResponseSerializer,
    UserSerializer,
    status_change_data,
)
from users.services import UsernameTaken, register_user, revoke_credentials, set_driver_availability


class RegisterApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [ClientAddressThrottle]
    throttle_scope = AUTH

    @extend_schema(request=RegisterSerializer, responses=responses({201: UserSerializer}, 400, 415, 429))
    def post(self, request: Request) -> Response:
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            user = register_user(**serializer.validated_data)
        except DjangoValidationError as exc:
            raise ValidationError({"password": list(exc.messages)}) from exc
        except UsernameTaken:
            raise ValidationError({"username": ["A user with that username already exists."]}) from None
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


class LoginApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [ClientAddressThrottle]
    throttle_scope = AUTH

    @extend_schema(request=LoginSerializer, responses=responses({200: LoginResponseSerializer}, 400, 401, 415, 429))
    def post(self, request: Request) -> Response:
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request, **serializer.validated_data)
        if user is None:
            return Response(
                {"detail": "Invalid username or password."},
                status=status.HTTP_401_UNAUTHORIZED,
                headers={"WWW-Authenticate": "Token"},
            )
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key, "user": UserSerializer(user).data})


class LogoutApi(APIView):
    """Revokes the token the request was made with (a session is ended too)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses=responses({204: None}, 401, 403))
    def post(self, request: Request) -> Response:
        revoke_credentials(request._request, token=request.auth if isinstance(request.auth, Token) else None)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=responses({200: MeResponseSerializer}, 401, 403))
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user).data)


class DriverStatusApi(APIView):
    permission_classes = [IsAuthenticated, IsDriver]
    throttle_classes = [UserThrottle]
    throttle_scope = DRIVER_STATUS

    @extend_schema(responses=responses({200: DriverStatusResponseSerializer}, 401, 403))
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(driver_status(request.user).to_dict())

    @extend_schema(
        request=DriverStatusUpdateSerializer,
        responses=responses({200: StatusChangeResponseSerializer}, 400, 401, 403, 413, 415, 429),
        description='An empty body (or `{}`) toggles; `{"available": true|false}` sets.',
    )
    def put(self, request: AuthenticatedRequest) -> Response:
        serializer = DriverStatusUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        change = set_driver_availability(
            driver_id=request.user.pk, available=serializer.validated_data.get("available")
        )
        return Response(status_change_data(change))


class DriverSetApi(APIView):
    """The drivers a worker keeps in Redis: what the worker believes, not the database."""

    permission_classes = [IsOperator]
    driver_set: VersionedDriverSet

    @extend_schema(
        responses=responses(
            {200: inline_serializer("DriverIds", {"drivers": serializers.ListField(child=serializers.UUIDField())})},
            401,
            403,
        )
    )
    def get(self, request: Request) -> Response:
        return Response({"drivers": self.driver_set.members(shared_redis())})
