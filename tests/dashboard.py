"""Dashboard websockets from a test: a signed-in staff cookie, a connection, JSON frames."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import websockets
from django.db import connections
from django.test import Client

from tests.servers import AsgiServer

RECEIVE_TIMEOUT = 1.0  # the spec: every event reaches every dashboard within a second


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def connect(server: AsgiServer, *, cookie: str | None, origin: str | None = "use-server", **kwargs: Any) -> Any:
    headers = {}
    if cookie:
        headers["Cookie"] = cookie
    if origin == "use-server":
        origin = server.url
    if origin:
        headers["Origin"] = origin
    return websockets.connect(f"{server.ws_url}/ws/dashboard/", additional_headers=headers, **kwargs)


async def receive_json(
    socket: websockets.ClientConnection, timeout: float = RECEIVE_TIMEOUT, *, skip: tuple[str, ...] = ("health",)
) -> dict:
    """The next frame within `timeout` (counted afresh after each skipped one), skipping the workers'
    health frames, which every process sends every few seconds whatever the test does."""
    while True:
        frame = json.loads(await asyncio.wait_for(socket.recv(), timeout))
        if frame.get("type") not in skip:
            return frame


async def change_soon(change: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run database work from async code: in a thread, whose connection is closed afterwards."""

    def change_and_close() -> None:
        try:
            change(*args, **kwargs)
        finally:
            connections.close_all()

    await asyncio.to_thread(change_and_close)
