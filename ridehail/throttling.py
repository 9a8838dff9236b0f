"""Request throttles: 429 with Retry-After, counted in the shared cache (Redis) across processes."""

import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

logger = logging.getLogger(__name__)


class SettingsRateThrottle(SimpleRateThrottle):
    """Reads its rate from RIDEHAIL_THROTTLE_RATES, and lets requests through if the cache is down.

    A throttle must never turn a Redis outage into failed logins or status changes: the
    outage is logged and the request is allowed.
    """

    def get_rate(self) -> str:
        try:
            return settings.RIDEHAIL_THROTTLE_RATES[self.scope]
        except KeyError:
            raise ImproperlyConfigured(
                f"no rate for throttle scope {self.scope!r} in RIDEHAIL_THROTTLE_RATES"
            ) from None

    def allow_request(self, request: Request, view: APIView) -> bool:
        self.rate = self.get_rate()  # the setting may change at run time (tests)
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # the cache backend's errors are not a fixed set of types
            logger.warning("throttle %s not applied: cache unavailable: %s", self.scope, exc)
            return True


class AuthThrottle(SettingsRateThrottle):
    """Login and register, per client IP: slows down password guessing and sign-up floods."""

    scope = "auth"

    def get_cache_key(self, request: Request, view: APIView) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class DriverStatusThrottle(SettingsRateThrottle):
    """Status changes, per driver (reads are not limited)."""

    scope = "driver-status"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if request.method != "PUT" or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
