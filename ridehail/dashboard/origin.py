"""The dashboard websocket accepts only its own page's origin: same scheme, host and port.

Channels' AllowedHostsOriginValidator compares the Origin's host with ALLOWED_HOSTS and ignores
scheme and port, so a page served by anything else on an allowed host (`http://127.0.0.1:9999`)
could open a socket with the operator's cookies. Here the Origin must be exactly the origin of
the page that the websocket request itself names: its Host header, with ws -> http and
wss -> https (or https when Django believes a trusted proxy's X-Forwarded-Proto, as it does for
pages), and that host must be in DJANGO_ALLOWED_HOSTS. A missing or unparsable Origin is refused.
"""

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # scheme, host, port


class SameOriginValidator:
    """ASGI middleware for websockets: refuses the handshake (403) unless `is_same_origin`."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if is_same_origin(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)


def is_same_origin(scope: dict[str, Any]) -> bool:
    headers = _headers(scope)
    origin, page = parse_origin(headers.get("origin")), page_origin(scope, headers)
    return origin is not None and origin == page and validate_host(page[1], settings.ALLOWED_HOSTS)


def parse_origin(value: str | None) -> Origin | None:
    """("http", "127.0.0.1", 8000) from "http://127.0.0.1:8000"; None for anything else."""
    if not value:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # a port that is not a number, an unbalanced IPv6 bracket
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in DEFAULT_PORTS or not host or parts.path or parts.query or parts.username:
        return None
    return scheme, _bracketed(host), port or DEFAULT_PORTS[scheme]


def page_origin(scope: dict[str, Any], headers: dict[str, str]) -> Origin | None:
    """The origin of the page this websocket belongs to, from its Host header and scheme."""
    host, port = split_domain_port(headers.get("host", ""))
    if not host:
        return None
    scheme = "https" if scope.get("scheme") == "wss" or _forwarded_https(headers) else "http"
    try:
        return scheme, host, int(port) if port else DEFAULT_PORTS[scheme]
    except ValueError:
        return None


def _forwarded_https(headers: dict[str, str]) -> bool:
    """Django's own rule for pages (SECURE_PROXY_SSL_HEADER: set only when a proxy is trusted)."""
    if not settings.SECURE_PROXY_SSL_HEADER:
        return False
    meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
    header = meta_name.removeprefix("HTTP_").replace("_", "-").lower()
    return headers.get(header, "").split(",")[0].strip() == secure_value


def _bracketed(host: str) -> str:
    """split_domain_port keeps IPv6 hosts in brackets; urlsplit's hostname drops them."""
    return f"[{host}]" if ":" in host else host


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
