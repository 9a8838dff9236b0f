"""HTTP answers every path shares: 405 with `Allow` (as JSON, never a CSRF page), JSON 404s under
/api/, chunked bodies read like any other, and a JSON 503 whenever the database is unavailable."""

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

logger = logging.getLogger(__name__)

View = Callable[..., HttpResponse]


def allow_methods(*methods: str) -> Callable[[View], View]:
    """Declare the methods a function view answers (HEAD comes with GET); others get a 405."""

    def declare(view: View) -> View:
        view.allowed_methods = _with_head([method.upper() for method in methods])  # type: ignore[attr-defined]
        return view

    return declare


def allowed_methods(view: View) -> list[str] | None:
    """What a view answers: declared with `allow_methods`, or the handlers of a class-based view."""
    declared = getattr(view, "allowed_methods", None)
    if declared is not None:
        return declared
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return None  # a function view that did not say: let it answer for itself
    names = getattr(view, "view_initkwargs", {}).get("http_method_names", view_class.http_method_names)
    return _with_head([name.upper() for name in names if hasattr(view_class, name)])


_ORDER = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"]


def _with_head(methods: list[str]) -> list[str]:
    """HEAD wherever GET is (Django answers it with the GET handler), in the usual order."""
    named = set(methods) | ({"HEAD"} if "GET" in methods else set())
    return sorted(named, key=lambda method: _ORDER.index(method) if method in _ORDER else len(_ORDER))


class ChunkedBodyMiddleware:
    """A body sent with `Transfer-Encoding: chunked` is read like one with a Content-Length.

    Under ASGI the server hands Django the whole body but no CONTENT_LENGTH, and DRF reads a
    request without one as having no body (`Request._load_stream`): `{"available": false}` sent
    chunked toggled the driver online, and a chunked `POST /api/rides` was "pickup: required".
    So the body is read here and its length written down. `request.body` measures what arrived
    and refuses more than DATA_UPLOAD_MAX_MEMORY_SIZE; then a length over the limit is written
    down instead, and DRF's own read of the body answers 413 as it does for a declared length.
    """

    def __init__(self, get_response: View) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "CONTENT_LENGTH" not in request.META and "HTTP_TRANSFER_ENCODING" in request.META:
            try:
                request.META["CONTENT_LENGTH"] = str(len(request.body))
            except RequestDataTooBig:
                request.META["CONTENT_LENGTH"] = str((settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0) + 1)
        return self.get_response(request)


class MethodNotAllowedMiddleware:
    """A method the view does not answer is a 405 with `Allow`, decided before the CSRF check.

    Without it a POST to a GET-only page (`/healthz`) met CsrfViewMiddleware first and got its
    HTML 403 page, and a signed-in browser's DELETE to an API endpoint got DRF's "CSRF Failed".
    Must come before CsrfViewMiddleware.
    """

    def __init__(self, get_response: View) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view: View, args: Any, kwargs: Any) -> HttpResponse | None:
        allowed = allowed_methods(view)
        if allowed is None or request.method in allowed:
            return None
        response = JsonResponse({"detail": f'Method "{request.method}" not allowed.'}, status=405)
        response["Allow"] = ", ".join(allowed)
        return response


@csrf_exempt  # any method: an unknown path is a 404 whatever is sent to it
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """The last route under /api/: what matched nothing there is a JSON 404, as the API speaks."""
    return JsonResponse({"detail": "Not found."}, status=404)


# The body of every 503 for a database outage (JSON).
DATABASE_UNAVAILABLE = b'{"detail":"The database is unavailable; try again shortly."}'


def log_database_unavailable(path: str, exc: Exception) -> None:
    logger.warning("database unavailable while serving %s: %s", path, exc)


def database_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    """The answer to a request the database could not serve (down, refusing, or too slow): a 503 to retry."""
    log_database_unavailable(request.path, exc)
    return HttpResponse(DATABASE_UNAVAILABLE, status=503, content_type="application/json")


class DatabaseUnavailableMiddleware:
    """A database outage in any view (pages, /metrics, the admin) is a JSON 503, not a 500.

    DRF's views answer the same through ridehail.web.api.exception_handler.
    """

    def __init__(self, get_response: View) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if isinstance(exc, OperationalError | InterfaceError):
            return database_unavailable(request, exc)
        return None
