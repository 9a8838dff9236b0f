"""Helpers for tests that drive real processes, real Redis and a real database."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import websockets
from django.conf import settings
from django.db import connection, connections
from django.test import Client

from ridehail.events.event import CHANNEL
from ridehail.server import uvicorn_command

MANAGE_PY = Path(settings.BASE_DIR) / "manage.py"


def wait_until(condition: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll until `condition()` is truthy and return it; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_database_url() -> str:
    """A DATABASE_URL that lets a child process reach the test database this test uses."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


class ChannelListener:
    """Subscribes to the event channel before the test acts, so no message can slip by."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.pubsub = client.pubsub()
        self.pubsub.subscribe(CHANNEL)
        confirmation = self.pubsub.get_message(timeout=5)
        assert confirmation and confirmation["type"] == "subscribe", confirmation

    def next_message(self, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                return message["data"]
        raise AssertionError(f"no message on {CHANNEL} within {timeout}s")

    def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(self.next_message(timeout))

    def assert_nothing_published(self) -> None:
        """Publish a marker; Pub/Sub keeps order, so if it comes first nothing came before it."""
        marker = b"marker-" + os.urandom(8).hex().encode()
        self.client.publish(CHANNEL, marker)
        assert self.next_message() == marker, "an event was published"

    def close(self) -> None:
        self.pubsub.close()


class ManagedProcess:
    """A child process (`manage.py ...` or a server) whose output the test can wait on."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.log_file = tempfile.NamedTemporaryFile(prefix="ridehail-proc-", suffix=".log", delete=False)
        self.process: subprocess.Popen | None = None

    def start(self) -> "ManagedProcess":
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    @property
    def output(self) -> str:
        return Path(self.log_file.name).read_text(errors="replace")

    def wait_for_output(self, text: str, *, count: int = 1, timeout: float = 15.0) -> None:
        def seen() -> bool:
            if self.process and self.process.poll() is not None and self.output.count(text) < count:
                raise AssertionError(
                    f"process exited ({self.process.returncode}) before printing {text!r}:\n{self.output}"
                )
            return self.output.count(text) >= count

        try:
            wait_until(seen, timeout=timeout, what=f"{text!r} x{count}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- output of {' '.join(self.args)} ---\n{self.output}") from None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        self.log_file.close()
        Path(self.log_file.name).unlink(missing_ok=True)


def manage_py(*args: str, env: dict[str, str] | None = None) -> ManagedProcess:
    """A `manage.py` child process that uses this test's database and Redis."""
    child_env = {"DATABASE_URL": child_database_url(), "REDIS_URL": settings.REDIS_URL, "PYTHONUNBUFFERED": "1"}
    return ManagedProcess([sys.executable, str(MANAGE_PY), *args], env={**child_env, **(env or {})})


class AsgiServer(ManagedProcess):
    """The production ASGI server (uvicorn) serving this project on a free port, as the Dockerfile runs it."""

    def __init__(self, *, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        child_env = {"DATABASE_URL": child_database_url(), "REDIS_URL": settings.REDIS_URL, **(env or {})}
        args = ["-m", "uvicorn", *uvicorn_command(host="127.0.0.1", port=self.port), "--no-access-log"]
        super().__init__([sys.executable, *args], env=child_env)

    def start(self) -> "AsgiServer":
        super().start()
        self.wait_for_output("Application startup complete")
        return self


class TcpProxy:
    """A TCP proxy for fault tests: it can delay what the server sends back, or cut the link."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, free_port()
        self.delay = 0.0
        self.writers: list[asyncio.StreamWriter] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> "TcpProxy":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(timeout=5)
        return self

    async def _serve(self) -> None:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)

    def cut(self) -> None:
        """Drop every connection and refuse new ones, as a server that went away would."""
        asyncio.run_coroutine_threadsafe(self._close_all(), self.loop).result(timeout=5)

    def restore(self) -> None:
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(timeout=5)

    async def _close_all(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        pipes = asyncio.all_tasks() - {asyncio.current_task()}
        for pipe in pipes:  # one may be sleeping out a delay
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        self.writers.clear()

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [client_writer, redis_writer]

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow: bool) -> None:
            while data := await reader.read(65536):
                if slow and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
            writer.close()

        await asyncio.gather(
            pipe(client_reader, redis_writer, False), pipe(redis_reader, client_writer, True), return_exceptions=True
        )

    def stop(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


class RedisServer:
    """A throwaway redis-server on a free port, for tests that stop and restart Redis."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), what=f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


# -- dashboard websockets ---------------------------------------------------------------

RECEIVE_TIMEOUT = 1.0  # the spec: every event reaches every dashboard within a second


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def connect(server: "AsgiServer", *, cookie: str | None, origin: str | None = "use-server", **kwargs: Any) -> Any:
    headers = {}
    if cookie:
        headers["Cookie"] = cookie
    if origin == "use-server":
        origin = server.url
    if origin:
        headers["Origin"] = origin
    return websockets.connect(f"{server.ws_url}/ws/dashboard/", additional_headers=headers, **kwargs)


async def receive_json(socket: websockets.ClientConnection, timeout: float = RECEIVE_TIMEOUT) -> dict:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


async def change_soon(change: Callable[..., Any], *args: Any) -> None:
    """Run database work from async code: in a thread, whose connection is closed afterwards."""

    def change_and_close() -> None:
        try:
            change(*args)
        finally:
            connections.close_all()

    await asyncio.to_thread(change_and_close)
