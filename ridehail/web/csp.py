"""django-csp's middleware, with the policy built once per process instead of on every response.

django-csp builds the header from CONTENT_SECURITY_POLICY on every response (`build_policy`,
twice: the policy and the report-only one, each after a deep `dataclasses.asdict`): about 350
Python calls a request, ~9 % of an authenticated API request's, for a string that only changes
when a view asks for its own policy or a nonce. Here a response with neither gets the header
built from the settings once (rebuilt if a test changes them); anything else is django-csp's
own `process_response`, unchanged.
"""

from functools import cache
from typing import Any

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject
from csp.middleware import CSPMiddleware as DjangoCSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponseBase

# What a view sets on its response to change the policy (django-csp's decorators).
_PER_RESPONSE = ("_csp_config", "_csp_update", "_csp_replace", "_csp_config_ro", "_csp_update_ro", "_csp_replace_ro")
# Answers django-csp leaves alone under DEBUG (its debug pages).
_DEBUG_EXEMPT = (404, 500)


@cache
def _settings_policy() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """(header, value, excluded path prefixes) for the policy and the report-only one, from the settings."""
    policies = []
    for header, setting, report_only in (
        (HEADER, "CONTENT_SECURITY_POLICY", False),
        (HEADER_REPORT_ONLY, "CONTENT_SECURITY_POLICY_REPORT_ONLY", True),
    ):
        value = build_policy(report_only=report_only)
        if value:
            prefixes = (getattr(settings, setting, None) or {}).get("EXCLUDE_URL_PREFIXES", None) or ()
            policies.append((header, value, tuple(prefixes)))
    return tuple(policies)


@receiver(setting_changed)
def _forget_policy(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        _settings_policy.cache_clear()


class CSPMiddleware(DjangoCSPMiddleware):
    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if getattr(request, "_csp_nonce", None) is not None or any(hasattr(response, a) for a in _PER_RESPONSE):
            return super().process_response(request, response)
        if settings.DEBUG and response.status_code in _DEBUG_EXEMPT:
            return response
        exempt = {HEADER: "_csp_exempt", HEADER_REPORT_ONLY: "_csp_exempt_ro"}
        for header, value, excluded in _settings_policy():
            if header not in response and not getattr(response, exempt[header], False):
                if not request.path_info.startswith(excluded):
                    response[header] = value
        # As django-csp does: a nonce asked for after the header went out is an error, not a silent gap.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)  # type: ignore[attr-defined]
        return response
