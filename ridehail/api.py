"""Pieces every app's API shares: the URL helper and the error mapping."""

import logging
from typing import Any

import redis
from django.db import InterfaceError, OperationalError
from django.urls import URLPattern, re_path
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


def optional_slash_path(route: str, view: Any, *, name: str) -> URLPattern:
    """Match `route` with and without a trailing slash, without redirecting (a redirect loses a PUT body)."""
    return re_path(rf"^{route}/?$", view, name=name)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus 503 when a backing service is down: never a 500 for an outage."""
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    if isinstance(exc, redis.RedisError):
        logger.warning("Redis unavailable while serving %s: %s", context["request"].path, exc)
        return Response({"detail": "Redis is unavailable; try again shortly."}, status=503)
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("database unavailable while serving %s: %s", context["request"].path, exc)
        return Response({"detail": "The database is unavailable; try again shortly."}, status=503)
    return None
