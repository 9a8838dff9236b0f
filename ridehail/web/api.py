"""Pieces every app's API shares: the URL helper, strict request bodies, the error mapping."""

import logging
from collections.abc import Mapping
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.urls import URLPattern, re_path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ridehail.web.http import database_unavailable

logger = logging.getLogger(__name__)


# A UUID in a URL, strictly: anything else is a 404 before any view sees it.
UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


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


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
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
        return database_unavailable(context["request"], exc)
    return None
