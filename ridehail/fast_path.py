"""The pieces every ASGI fast path shares: reading and replaying a body, answering as Django would.

A fast path sits in front of Django for one hot endpoint (locations/fast_path.py for
position reports, users/fast_path.py for status changes). It answers the common case itself
and hands everything else to Django untouched, replaying the body it already read. The DRF
view stays the reference: a fast path may only ever answer what the view would, with the same
status, body and headers (each app's tests compare both paths over a real server).
"""

from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from csp.utils import build_policy

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# What Django's middleware puts on every API answer (security headers), so that the two
# paths cannot be told apart; each fast path adds its view's `Allow`.
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def is_put(scope: Scope, paths: set[str]) -> bool:
    return scope["type"] == "http" and scope["method"] == "PUT" and scope["path"] in paths


def token_of(scope: Scope, *, body_required: bool = True) -> str | None:
    """The key of `Authorization: Token <key>`, else None (the view's case).

    With `body_required`, also None unless the body is declared JSON: any other content type
    is the view's to refuse (415).
    """
    headers = dict(scope["headers"])
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip()
    if body_required and content_type != b"application/json":
        return None
    kind, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    key = key.strip()
    return key if kind == "Token" and key and " " not in key else None


async def read_body(receive: Receive, *, limit: int) -> tuple[bytes, bool]:
    """The body up to `limit` bytes, and whether that is all of it."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False  # a disconnect: the view will see it too
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False


def replaying(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A `receive` that gives what was already read first, then whatever follows."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay


async def respond_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A JSON answer with the security headers Django's middleware would add."""
    every = [
        (b"content-type", b"application/json"),
        *headers,
        *SECURITY_HEADERS,
        *csp_header(),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": every})
    await send({"type": "http.response.body", "body": body})


def throttled_body(wait: int) -> bytes:
    """DRF's own words for a 429."""
    plural = "" if wait == 1 else "s"
    return f'{{"detail":"Request was throttled. Expected available in {wait} second{plural}."}}'.encode()


@cache
def csp_header() -> list[tuple[bytes, bytes]]:
    """django-csp's header, built from the same settings its middleware reads."""
    return [(b"content-security-policy", build_policy().encode())]
