"""The dashboard's origin check, rule by rule (the live handshake is in test_dashboard.py)."""

import pytest

from ridehail.dashboard.origin import is_same_origin


def scope(*, origin: str | None, host: str, scheme: str = "ws", **headers: str) -> dict:
    all_headers = {"host": host, **({"origin": origin} if origin else {}), **headers}
    return {
        "type": "websocket",
        "scheme": scheme,
        "headers": [(k.encode(), v.encode()) for k, v in all_headers.items()],
    }


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws"),
        ("HTTP://LOCALHOST:8000", "localhost:8000", "ws"),
        ("http://localhost", "localhost", "ws"),
        ("http://localhost:80", "localhost", "ws"),  # the default port, written or not
        ("https://localhost", "localhost:443", "wss"),
        ("http://[::1]:8000", "[::1]:8000", "ws"),
    ],
)
def test_the_pages_own_origin_is_accepted(settings, origin, host, scheme):
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
    assert is_same_origin(scope(origin=origin, host=host, scheme=scheme))


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        (None, "localhost:8000", "ws"),
        ("http://localhost:9999", "localhost:8000", "ws"),
        ("https://localhost:8000", "localhost:8000", "ws"),
        ("http://localhost", "localhost", "wss"),
        ("http://evil.example:8000", "evil.example:8000", "ws"),  # same origin, but not an allowed host
        ("http://localhost:8000", "", "ws"),
        ("http://localhost:port", "localhost:8000", "ws"),
        ("http://[::1:8000", "localhost:8000", "ws"),
        ("http://user@localhost:8000", "localhost:8000", "ws"),
    ],
)
def test_any_other_origin_is_refused(settings, origin, host, scheme):
    settings.ALLOWED_HOSTS = ["localhost"]
    assert not is_same_origin(scope(origin=origin, host=host, scheme=scheme))


def test_a_trusted_proxys_https_counts_only_when_django_believes_it(settings):
    settings.ALLOWED_HOSTS = ["example.com"]
    behind_tls = scope(origin="https://example.com", host="example.com", x_forwarded_proto="https")
    behind_tls["headers"] = [(k.replace(b"_", b"-"), v) for k, v in behind_tls["headers"]]

    settings.SECURE_PROXY_SSL_HEADER = None
    assert not is_same_origin(behind_tls)
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert is_same_origin(behind_tls)
