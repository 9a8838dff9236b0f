"""`GET /metrics`: for operators' sessions and for Prometheus's bearer token."""

import hmac
from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from ridehail.metrics.collector import registry
from ridehail.web.http import allow_methods
from users.permissions import is_operator


def may_read_metrics(request: HttpRequest) -> bool:
    """A bearer token decides alone when one is sent (right: yes; wrong, or none configured: no);
    otherwise the session must be an operator's."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        expected = settings.RIDEHAIL_METRICS_TOKEN
        return bool(expected) and hmac.compare_digest(credential.strip().encode(), expected.encode())
    return is_operator(request.user)


@cache
def _registry() -> CollectorRegistry:
    return registry()


@allow_methods("GET")
def metrics(request: HttpRequest) -> HttpResponse:
    if not may_read_metrics(request):
        # 403 for anonymous callers too: there is no sign-in page to send a scraper to.
        return HttpResponse("Forbidden: staff session or metrics bearer token required.\n", status=403)
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
