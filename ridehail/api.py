"""Pieces every app's API shares: URL helper, strict bodies, staff permission, error mapping."""

import logging
from collections.abc import Mapping
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.urls import URLPattern, re_path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from ridehail.events.connection import shared_redis
from ridehail.events.driver_set import VersionedDriverSet
from ridehail.schema import responses

logger = logging.getLogger(__name__)


def optional_slash_path(route: str, view: Any, *, name: str) -> URLPattern:
    """Match `route` with and without a trailing slash, without redirecting (a redirect loses a PUT body)."""
    return re_path(rf"^{route}/?$", view, name=name)


class StrictSerializer(serializers.Serializer):
    """The base of every serializer that reads a request body: a field it does not know is an error.

    DRF ignores unknown fields, so a misspelt `{"availble": true}` read as `{}`, which toggles.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - known)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class IsStaff(BasePermission):
    message = "Only staff may see this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class DriverSetApi(APIView):
    """The drivers a worker keeps in Redis: what the worker believes, not the database."""

    permission_classes = [IsStaff]
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


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus 413 for a body over DATA_UPLOAD_MAX_MEMORY_SIZE and 503 when a backing
    service is down: never a 500 (nor Django's HTML 400) for what a client sends or for an outage."""
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response({"detail": f"Request body too large: at most {limit} bytes."}, status=413)
    if isinstance(exc, redis.RedisError):
        logger.warning("Redis unavailable while serving %s: %s", context["request"].path, exc)
        return Response({"detail": "Redis is unavailable; try again shortly."}, status=503)
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("database unavailable while serving %s: %s", context["request"].path, exc)
        return Response({"detail": "The database is unavailable; try again shortly."}, status=503)
    return None
