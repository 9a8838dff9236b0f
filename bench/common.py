"""Shared plumbing for the benchmarks: statistics, a throwaway database, and the test suite's
process helpers (a private Redis, child processes, ports) re-exported under the names used here."""

import statistics
import tempfile
import urllib.request
from pathlib import Path

from tests.processes import ROOT, Router, free_port, port_open, python, wait_until
from tests.processes import RedisServer as PrivateRedis

__all__ = [
    "ROOT",
    "PrivateRedis",
    "Router",
    "free_port",
    "median",
    "percentile",
    "production_env",
    "python",
    "rss_bytes",
    "temp_sqlite_url",
    "wait_port",
    "wait_ready",
    "wait_until",
]


def production_env(database_url: str, redis_url: str, **settings: str) -> dict[str, str]:
    """The environment of a server or worker run as in production (DEBUG off), plus `settings`."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production-use-0123456789",
        **settings,
    }


def wait_port(port: int, timeout: float = 120) -> None:
    """Until something listens on `port`: generous, a loaded two-core machine starts Python slowly."""
    wait_until(lambda: port_open(port), timeout=timeout, what=f"something listening on port {port}")


def wait_ready(port: int, *, path: str = "/healthz", timeout: float = 120) -> None:
    """Until `path` answers four times in a row: every worker process of the server has loaded its app.

    A server binds its port before its workers have loaded Django (gunicorn's master, uvicorn's
    parent); a fixed sleep after the bind measured the workers' start-up on a loaded machine.
    """
    answered = 0

    def answers() -> bool:
        nonlocal answered
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
                answer.read()
            answered += 1
        except OSError:
            answered = 0
        return answered >= 4

    wait_until(answers, timeout=timeout, what=f"{path} answering on port {port}")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def temp_sqlite_url() -> str:
    return f"sqlite:///{tempfile.mkdtemp(prefix='ridehail-bench-')}/bench.sqlite3"
